"""A LogArchive's conditions and its numbers read from HDFS (pure decisions, one I/O read).

Ready needs TopicReady, RouteReady and ArchiverReady; an observed HdfsReady that is False (the
operator cannot read the archive's directory) makes it False too. `bytes` and `files` count the
committed archive files only: the archive directory's content summary minus its `_offsets`
entries and its `_staging` batches. `archivedThrough`, `lagRecords` and the Archived condition
are the ResourceManager's (scaling/archive_plan.py); without Prometheus, Archived says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from metricpipe_contract.archive import OFFSETS_DIR, STAGING_DIR

from .status import Condition, condition_from_dict, merge_conditions, now_rfc3339

PARTS = ("TopicReady", "RouteReady", "ArchiverReady")
OBSERVED = ("HdfsReady",)
ORDER = ("Ready", *PARTS, *OBSERVED, "Archived")
TIMEOUT_SECONDS = 10.0
ARCHIVED_UNMEASURED = Condition(
    "Archived", None, "NotMeasured",
    "the operator runs without Prometheus (METRICPIPE_PROMETHEUS_URL): archivedThrough and "
    "lagRecords are measured by its ResourceManager from the exporter's archive series",
)  # fmt: skip


class HdfsReadError(RuntimeError):
    """WebHDFS did not answer a content summary; the message says where and why."""


@dataclass(frozen=True)
class Summary:
    bytes: int
    files: int


def decide_archive_ready(conditions: list[dict[str, Any]]) -> Condition:
    """True when topic, route and archiver are True and no observed part is False; otherwise
    the first part that is not, as the reason."""
    present = {c["type"]: condition_from_dict(c) for c in conditions}
    for kind in PARTS:
        part = present.get(kind) or Condition(kind, None, "Pending", f"{kind} not evaluated yet")
        if part.status is not True:
            return Condition("Ready", part.status, f"{kind}{part.reason}"[:128], part.message)
    for kind in OBSERVED:
        observed = present.get(kind)
        if observed is not None and observed.status is False:
            return Condition("Ready", False, f"{kind}{observed.reason}"[:128], observed.message)
    return Condition("Ready", True, "AllReady", "topic, route and archiver are in place")


def merge_archive_conditions(
    previous: list[dict[str, Any]], updates: list[Condition], generation: int,
    now: datetime | None = None, *, drop: tuple[str, ...] = (),
) -> list[dict[str, Any]]:  # fmt: skip
    """Merge a writer's conditions into the object's (without the types in `drop`), and
    recompute Ready."""
    kept = [c for c in previous if c.get("type") not in drop]
    merged = merge_conditions(kept, updates, generation, now)
    merged = merge_conditions(merged, [decide_archive_ready(merged)], generation, now)
    return sorted(merged, key=lambda c: ORDER.index(c["type"]) if c["type"] in ORDER else 99)


def decide_committed_summary(
    whole: tuple[int, int] | None, offsets: tuple[int, int] | None,
    staging: tuple[int, int] | None,
) -> Summary:  # fmt: skip
    """(bytes, files) of the archive directory, of its `_offsets` and of its `_staging` (None:
    absent) -> the committed archive files."""
    total = whole or (0, 0)
    minus = [part or (0, 0) for part in (offsets, staging)]
    size = total[0] - sum(part[0] for part in minus)
    files = total[1] - sum(part[1] for part in minus)
    return Summary(max(size, 0), max(files, 0))


def decide_summary_status(
    summary: Summary | None, error: str | None, directory: str, now: datetime | None = None
) -> tuple[dict[str, Any], Condition]:
    """The status numbers and HdfsReady after a read (an error keeps the last numbers)."""
    if summary is None:
        message = f"cannot read {directory} on HDFS: {error}"
        return {}, Condition("HdfsReady", False, "WebHdfsUnavailable", message)
    numbers = {"bytes": summary.bytes, "files": summary.files,
               "lastSummaryTime": now_rfc3339(now)}  # fmt: skip
    read = f"{summary.files} committed files, {summary.bytes} bytes in {directory}"
    return numbers, Condition("HdfsReady", True, "Read", read)


def fetch_content_summary(
    session: requests.Session, url: str, user: str, path: str
) -> tuple[int, int] | None:
    """(bytes, files) under an HDFS path by WebHDFS GETCONTENTSUMMARY; None when absent."""
    params = {"op": "GETCONTENTSUMMARY", "user.name": user}
    try:
        response = session.get(f"{url.rstrip('/')}{path}", params=params, timeout=TIMEOUT_SECONDS)
    except requests.RequestException as error:
        raise HdfsReadError(f"WebHDFS at {url}: {error}") from error
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise HdfsReadError(f"WebHDFS GETCONTENTSUMMARY {path}: HTTP {response.status_code}: "
                            f"{response.text[:300]}")  # fmt: skip
    try:
        found = response.json()["ContentSummary"]
        return int(found["length"]), int(found["fileCount"])
    except (ValueError, KeyError, TypeError) as error:
        raise HdfsReadError(f"WebHDFS GETCONTENTSUMMARY {path}: {error}") from error


def fetch_archive_summary(
    session: requests.Session, url: str, user: str, directory: str
) -> Summary:
    """The committed files of one archive (three reads; raises HdfsReadError)."""
    whole = fetch_content_summary(session, url, user, directory)
    if whole is None:
        return Summary(0, 0)
    offsets = fetch_content_summary(session, url, user, f"{directory}/{OFFSETS_DIR}")
    staging = fetch_content_summary(session, url, user, f"{directory}/{STAGING_DIR}")
    return decide_committed_summary(whole, offsets, staging)
