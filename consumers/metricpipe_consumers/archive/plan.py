"""What the archiver decides (pure): rows of records, files per hour, flushes, recovery of a
batch left half-committed, the next offset of a partition, and compaction of a closed hour."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from metricpipe_contract.archive import (
    COMPLETE_MARKER,
    HOUR_MS,
    BatchFile,
    build_hour_key,
    parse_file_name,
    parse_hour_key,
)

from ..records import Rejected, decode_json_object, parse_apache_combined

Format = Literal["json", "apache_combined", "text"]
WRAPPER_KEYS = ("message", "log")  # where Fluentd's tail and container inputs put the line
STAGED_SUFFIX = ".parquet"


@dataclass(frozen=True)
class Row:
    """One record as the archive keeps it (the columns of contract.archive.COLUMNS)."""

    partition: int
    offset: int
    time_ms: int
    key: str | None
    raw: str
    fields: str


def build_row(
    partition: int, offset: int, time_ms: int, key: bytes | None, value: bytes | None,
    *, source_format: Format,
) -> Row:  # fmt: skip
    """Every record becomes a row, whatever it holds: an archive keeps all logs, so a record
    that does not parse keeps its raw text and empty fields (bytes that are not UTF-8 are kept
    with backslash escapes)."""
    text = (value or b"").decode("utf-8", "backslashreplace")
    fields: dict[str, Any] = {}
    raw = text
    if source_format != "text":
        decoded = decode_json_object(value or b"") if text.startswith("{") else None
        if isinstance(decoded, dict):
            fields = decoded
            wrapper = find_wrapper(decoded)
            if source_format == "apache_combined" and wrapper is not None:
                raw = decoded[wrapper]  # the line is the raw column, not a field again
                fields = {k: v for k, v in decoded.items() if k != wrapper}
        if source_format == "apache_combined":
            parsed = parse_apache_combined(raw)
            if not isinstance(parsed, Rejected):
                fields = {**fields, **parsed}
    key_text = None if key is None else key.decode("utf-8", "backslashreplace")
    return Row(partition, offset, time_ms, key_text, raw,
               json.dumps(fields, ensure_ascii=False, default=str))  # fmt: skip


def find_wrapper(decoded: dict[str, Any]) -> str | None:
    """The key holding the log line in a shipper's JSON record, if any."""
    return next((k for k in WRAPPER_KEYS if isinstance(decoded.get(k), str)), None)


def plan_hour_files(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """A batch's rows by the hour directory of their time, in offset order within each."""
    hours: dict[str, list[Row]] = {}
    for row in sorted(rows, key=lambda r: r.offset):
        hours.setdefault(build_hour_key(row.time_ms), []).append(row)
    return hours


def build_staged_name(hour_key: str) -> str:
    """A staged file's name says its hour (`dt=2015-05-17.hour=10.parquet`)."""
    return hour_key.replace("/", ".") + STAGED_SUFFIX


def parse_staged_name(name: str) -> str | None:
    """The hour key of a staged file, or None for another entry (the marker)."""
    if not name.endswith(STAGED_SUFFIX) or name.count(".") != 2:
        return None
    key = name.removesuffix(STAGED_SUFFIX).replace(".", "/")
    try:
        parse_hour_key(key)
    except ValueError:
        return None
    return key


def decide_flush(
    buffered_bytes: int, oldest_age_seconds: float, roll_bytes: int, roll_seconds: float
) -> bool:
    """A partition's batch is written once it holds roll_bytes, or its oldest record has waited
    roll_seconds (the bound on how long a record may be read but not yet on HDFS)."""
    return buffered_bytes > 0 and (
        buffered_bytes >= roll_bytes or oldest_age_seconds >= roll_seconds
    )


@dataclass(frozen=True)
class StagedBatch:
    name: str  # p<partition>-<first>-<last>
    partition: int
    last: int
    complete: bool  # the marker exists: every file was written before the first rename


def decide_recovery(batches: Iterable[StagedBatch]) -> tuple[list[StagedBatch], list[StagedBatch]]:
    """(roll forward, discard): a staged batch with its marker was wholly written and may be
    half renamed, so its renames are finished; one without was never renamed at all, so it goes
    (its records are read again from Kafka)."""
    ordered = sorted(batches, key=lambda b: b.name)
    return [b for b in ordered if b.complete], [b for b in ordered if not b.complete]


def parse_staging_entry(name: str, entries: Iterable[str]) -> StagedBatch | None:
    """The staging directory `name` holding `entries`, or None for one the archiver never made."""
    parsed = parse_file_name(name + ".parquet")
    if parsed is None:
        return None
    return StagedBatch(name, parsed.partition, parsed.last, COMPLETE_MARKER in set(entries))


def decide_next_offset(names: Iterable[str]) -> int | None:
    """The next offset of a partition from its `_offsets/p<N>/` entries (each an offset, the
    greatest wins: a new one is made before the old ones go), None when it has none."""
    offsets = [int(name) for name in names if name.isdigit()]
    return max(offsets) if offsets else None


@dataclass(frozen=True)
class Compaction:
    redundant: list[BatchFile]  # wholly inside another file's range: a compaction's leftovers
    merge: list[BatchFile]  # more than one left: read together into one file

    @property
    def merged(self) -> BatchFile | None:
        if len(self.merge) < 2:
            return None
        return BatchFile(self.merge[0].partition, min(f.first for f in self.merge),
                         max(f.last for f in self.merge))  # fmt: skip


def decide_compaction(files: Iterable[BatchFile], partition: int) -> Compaction:
    """One partition's files in one hour directory. A file whose range lies inside another's
    is redundant: the bigger one is a compaction that was renamed into place before the
    crash that kept it from deleting its inputs. The others merge into one file named by the
    whole range (its records are exactly theirs: each range's rows are the hour's records of
    that batch)."""
    mine = sorted({f for f in files if f.partition == partition},
                  key=lambda f: (f.first, -f.last))  # fmt: skip
    kept: list[BatchFile] = []
    redundant: list[BatchFile] = []
    for candidate in mine:
        if any(o != candidate and o.first <= candidate.first and candidate.last <= o.last
               for o in mine):  # fmt: skip
            redundant.append(candidate)
        else:
            kept.append(candidate)
    return Compaction(redundant, kept)


def decide_closed_hours(hours: Iterable[str], newest_time_ms: int, grace_ms: int) -> list[str]:
    """Hours that ended more than grace_ms before the newest record written: ready to compact
    (a later record of such an hour only adds one file, compacted in turn)."""
    return sorted(
        h for h in set(hours) if parse_hour_key(h) + 3_600_000 + grace_ms <= newest_time_ms
    )


def decide_expired_days(days: Iterable[str], now_ms: int, retention_days: int) -> list[str]:
    """`dt=YYYY-MM-DD` directories wholly older than the retention: a day goes once its last
    hour ended retention_days before now (kept a day longer rather than a record too few)."""
    expired = []
    for day in days:
        if not day.startswith("dt="):
            continue
        try:
            start = parse_hour_key(f"{day}/hour=00")
        except ValueError:
            continue
        if start + 24 * HOUR_MS + retention_days * 24 * HOUR_MS <= now_ms:
            expired.append(day)
    return sorted(expired)
