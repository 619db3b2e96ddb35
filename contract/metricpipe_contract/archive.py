"""Where a log archive's files live on HDFS and what they are called (pure).

The archiver writes, the peek API reads, and the operator sums sizes: all three agree here.

    <root>/<namespace>/<name>/dt=YYYY-MM-DD/hour=HH/p<partition>-<first>-<last>.parquet
    <root>/<namespace>/<name>/_staging/p<partition>-<first>-<last>/...   (not yet committed)
    <root>/<namespace>/<name>/_offsets/p<partition>                      (next offset to write)

`first` and `last` are the Kafka offsets of the batch a file belongs to (20 digits, so names
sort by offset); one batch of a partition may span several hours and so several files, all
named by the batch's range. The hour is the record's Kafka timestamp (the time Fluentd gave
the log line) in UTC. Names of namespaces and archives are DNS labels, so no path built here
can leave the archive's directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

DEFAULT_ROOT = "/metricpipe/archives"
STAGING_DIR = "_staging"
OFFSETS_DIR = "_offsets"
COMPLETE_MARKER = "_COMPLETE"
HOUR_MS = 3_600_000
OFFSET_DIGITS = 20
LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
FILE_NAME = re.compile(r"^p(\d+)-(\d{20})-(\d{20})\.parquet$")
HOUR_DIR = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})$")

# The columns of every archive file, in order (the archiver's Parquet schema, the peek API's
# projection): Kafka coordinates, the time, the raw line and the parsed fields as JSON.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("partition", "int32"),
    ("offset", "int64"),
    ("time_ms", "int64"),  # the Kafka timestamp: the hour directory's clock
    ("key", "string"),
    ("raw", "string"),  # the log line as the source wrote it
    ("fields", "string"),  # the record's fields as a JSON object ("{}" when none parse)
)


class ArchivePathError(ValueError):
    """A namespace, name or file name that is not one of the archive's."""


@dataclass(frozen=True, order=True)
class BatchFile:
    """One committed file: partition and the offset range of the batch it belongs to."""

    partition: int
    first: int
    last: int

    @property
    def name(self) -> str:
        return build_file_name(self.partition, self.first, self.last)


def check_label(what: str, value: str) -> str:
    if not LABEL.fullmatch(value):
        raise ArchivePathError(
            f"{what} {value!r} is not a DNS label (lower-case letters, digits and '-', "
            "at most 63 characters)"
        )
    return value


def build_archive_dir(root: str, namespace: str, name: str) -> str:
    """The archive's directory; ArchivePathError for anything but two DNS labels."""
    check_label("namespace", namespace)
    check_label("archive name", name)
    return f"{root.rstrip('/')}/{namespace}/{name}"


def build_hour_key(time_ms: int) -> str:
    """`dt=YYYY-MM-DD/hour=HH` of a time (UTC)."""
    moment = datetime.fromtimestamp(time_ms // 1000, UTC)
    return f"dt={moment:%Y-%m-%d}/hour={moment:%H}"


def parse_hour_key(key: str) -> int:
    """The start (ms) of the hour `dt=.../hour=..` names; ArchivePathError otherwise."""
    found = HOUR_DIR.fullmatch(key)
    if found is None:
        raise ArchivePathError(f"{key!r} is not an hour directory (dt=YYYY-MM-DD/hour=HH)")
    day = datetime.strptime(found.group(1), "%Y-%m-%d").replace(tzinfo=UTC)
    hour = int(found.group(2))
    if hour > 23:
        raise ArchivePathError(f"{key!r}: hour {hour} is not 00..23")
    return int(day.timestamp()) * 1000 + hour * HOUR_MS


def build_file_name(partition: int, first: int, last: int) -> str:
    return f"p{partition}-{first:0{OFFSET_DIGITS}d}-{last:0{OFFSET_DIGITS}d}.parquet"


def parse_file_name(name: str) -> BatchFile | None:
    """The batch a committed file belongs to, or None for a name the archiver never writes."""
    found = FILE_NAME.fullmatch(name)
    if found is None:
        return None
    partition, first, last = (int(part) for part in found.groups())
    return BatchFile(partition, first, last) if first <= last else None


def build_staging_name(partition: int, first: int, last: int) -> str:
    """The staging directory of one batch (its files wait there until the batch commits)."""
    return f"p{partition}-{first:0{OFFSET_DIGITS}d}-{last:0{OFFSET_DIGITS}d}"


def hours_between(start_ms: int, end_ms: int) -> list[str]:
    """Hour keys of every hour that overlaps [start_ms, end_ms), oldest first."""
    if end_ms <= start_ms:
        return []
    first = start_ms - start_ms % HOUR_MS
    return [build_hour_key(at) for at in range(first, end_ms, HOUR_MS)]
