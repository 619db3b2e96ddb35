"""The demo's log archive (pure): the example LogArchive of the Apache log scaled to the demo's
clock, the demo's own count of the lines it replays (the outside check of what the archive must
hold, and of what the peek query must find), and the lines that report both."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from .archive_hdfs import ArchiveCount
from .schedule import Emission
from .settings import DemoSettings

ARCHIVE = "web-access"  # manifests/examples/web-access-archive.yaml
ARCHIVE_EXAMPLE = "web-access-archive"
ARCHIVER_HDFS_USER = "metricpipe-archiver"  # the operator's METRICPIPE_ARCHIVE_HDFS_USER default


def build_demo_archive(example: dict[str, Any], settings: DemoSettings) -> dict[str, Any]:
    """The example with a roll age and freshness target on the demo's clock, and its topic
    deleted with it when the demo is cleaned up."""
    archive = copy.deepcopy(example)
    spec = archive["spec"]
    spec["roll"] = {**spec.get("roll", {}), "maxAge": settings.archive_roll_age}
    spec["freshness"] = {"target": settings.freshness_target}
    spec.setdefault("topic", {})["deletionPolicy"] = "Delete"
    archive["metadata"] = {"name": example["metadata"]["name"], "namespace": settings.namespace}
    return archive


def status_pattern(status: int) -> re.Pattern[bytes]:
    """An Apache combined line answered `status`: the request's closing quote, then the code."""
    return re.compile(rb'" %d [0-9-]' % status)


def build_question_start(demo_start: float, settings: DemoSettings) -> float:
    """Where the peek's question starts on the demo clock (UNIX seconds): the burst's end, so
    that its answer is the source's own lines, not the burst's copies of one line."""
    return demo_start + (settings.burst_start_hours + settings.burst_hours) * 3600 / settings.speed


@dataclass
class LineTally:
    """Lines of one topic key the replay was handed, how many of them match `pattern`, and how
    many of those were due at or after `since` (demo clock, UNIX seconds)."""

    topic_key: str
    pattern: re.Pattern[bytes]
    since: float
    lines: int = 0
    matching: int = 0
    matching_since: int = 0


def tally_lines(plan: Iterable[Emission], tally: LineTally) -> Iterator[Emission]:
    """The plan unchanged, counting its lines of tally.topic_key as the replay takes them."""
    for emission in plan:
        if emission.topic_key == tally.topic_key:
            tally.lines += 1
            if tally.pattern.search(emission.payload) is not None:
                tally.matching += 1
                tally.matching_since += emission.due >= tally.since
        yield emission


def describe_archive_check(count: ArchiveCount, sent: int) -> str:
    """The archive's records against the lines the replay produced to its topic."""
    verdict = "equal" if count.distinct == sent else f"MISSING {sent - count.distinct:,}"
    if count.distinct > sent:
        verdict = f"{count.distinct - sent:,} MORE than sent"
    duplicates = count.rows - count.distinct
    return (
        f"archive on HDFS: {count.distinct:,} records in {len(count.hours)} hour(s), "
        f"{count.files} files; replayed to its topic: {sent:,} lines: {verdict}; "
        + ("no record in two files" if duplicates == 0 else f"{duplicates:,} DUPLICATE rows")
    )


def describe_peek(shown: int, limit: int, tally: LineTally, field: str, hours: int) -> str:
    """The one-line summary of the peek answer, with what the replay sent that it asks for
    (a line produced late, after the burst's end though due before it, would be one more)."""
    return (
        f"peek: {shown} record(s) with {field} since the burst's end (--limit {limit}, newest "
        f"first); the replay sent {tally.matching_since:,} such lines after it, "
        f"{tally.matching:,} in all; the archive holds {hours} hour(s)"
    )


def describe_requests(logged: Sequence[dict[str, Any]]) -> list[str]:
    """Each archive request as the peek API and the edge's Nginx logged it (lines of both
    logs, matched by X-Request-Id): who asked, what it read, which Nginx passed it on."""
    edge = {str(r["request_id"]): r for r in logged if "server" in r and "request_id" in r}
    lines = []
    for record in logged:
        if record.get("event") != "peek.request" or "/logarchives/" not in record["path"]:
            continue
        what = record["path"].rsplit("/", 1)[1]
        line = f"the API logged: {what} {record['status']} for {record.get('user')}"
        if "records" in record:
            line += (f", {record['records']} records, {record['scanned_files']} files / "
                     f"{record['scanned_bytes']:,} bytes read")  # fmt: skip
        line += f", {record['seconds']:.2f} s"
        nginx = edge.get(str(record.get("request_id")))
        if nginx is not None:
            line += (f"; {nginx['server']} logged it ({nginx['tls_protocol']}, "
                     f"{nginx['request_time']:.3f} s)")  # fmt: skip
        lines.append(line)
    return lines
