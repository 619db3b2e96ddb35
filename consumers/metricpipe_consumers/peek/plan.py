"""Which directories and files a request reads, in which order, and when it stops (pure).

Partition pruning: only `dt=` directories of days the range touches are listed, and only
`hour=` directories inside the range are read. Within an hour, committed files (named
`p<partition>-<first>-<last>.parquet`; `_staging/`, `_offsets/` and any other name are never
read) are grouped: files of one partition whose offset ranges overlap (a writer's duplicate)
form one group, read together so each record comes out once. Groups are disjoint in
(partition, offset), so a page can stop between two groups, and the next page skips every
group its cursor has passed without reading it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum

from metricpipe_contract.archive import (
    HOUR_MS,
    ArchivePathError,
    BatchFile,
    parse_file_name,
    parse_hour_key,
)

from .cursor import Order, Position, is_after
from .timerange import TimeRange

DAY_MS = 24 * HOUR_MS


@dataclass(frozen=True)
class Entry:
    """A directory entry as WebHDFS lists it (name, kind, size)."""

    name: str
    is_dir: bool
    length: int = 0


@dataclass(frozen=True)
class FileGroup:
    """Files of one partition whose offset ranges overlap (most groups hold one file)."""

    partition: int
    first: int
    last: int
    files: tuple[tuple[BatchFile, int], ...]  # (file, its length in bytes)

    @property
    def bytes(self) -> int:
        return sum(length for _, length in self.files)

    def bounds(self, hour_ms: int) -> tuple[Position, Position]:
        return Position(hour_ms, self.partition, self.first), Position(
            hour_ms, self.partition, self.last
        )


def _day_ms(name: str) -> int | None:
    if not name.startswith("dt="):
        return None
    try:
        day = datetime.strptime(name[3:], "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        return None
    return None if name != f"dt={day:%Y-%m-%d}" else int(day.timestamp()) * 1000


def plan_days(entries: Iterable[Entry], span: TimeRange, order: Order) -> list[str]:
    """The `dt=` directories whose day overlaps the range, in the walk's order."""
    days = [
        entry.name
        for entry in entries
        if entry.is_dir
        and (day := _day_ms(entry.name)) is not None
        and day < span.end_ms
        and day + DAY_MS > span.start_ms
    ]
    return sorted(days, reverse=order == "newest")


def plan_hours(
    day: str, entries: Iterable[Entry], span: TimeRange, order: Order,
    cursor: Position | None = None,
) -> list[tuple[str, int]]:  # fmt: skip
    """(hour key, hour start ms) of a day's `hour=` directories inside the range and not
    passed by the cursor, in the walk's order."""
    hours = []
    for entry in entries:
        if not entry.is_dir:
            continue
        try:
            start = parse_hour_key(f"{day}/{entry.name}")
        except ArchivePathError:
            continue
        if start >= span.end_ms or start + HOUR_MS <= span.start_ms:
            continue
        if cursor is not None and (
            start < cursor.hour_ms if order == "oldest" else start > cursor.hour_ms
        ):
            continue
        hours.append((f"{day}/{entry.name}", start))
    return sorted(hours, key=lambda hour: hour[1], reverse=order == "newest")


def plan_groups(
    entries: Iterable[Entry], hour_ms: int, order: Order, cursor: Position | None = None
) -> list[FileGroup]:
    """An hour's committed files as groups in the walk's order, without the groups the
    cursor has passed entirely."""
    files = sorted(
        (batch, entry.length)
        for entry in entries
        if not entry.is_dir and (batch := parse_file_name(entry.name)) is not None
    )
    groups: list[FileGroup] = []
    for batch, length in files:
        last = groups[-1] if groups else None
        if last is not None and last.partition == batch.partition and batch.first <= last.last:
            groups[-1] = FileGroup(
                last.partition, last.first, max(last.last, batch.last),
                (*last.files, (batch, length)),
            )  # fmt: skip
        else:
            groups.append(FileGroup(batch.partition, batch.first, batch.last, ((batch, length),)))
    if order == "newest":
        groups.reverse()

    def open_part(group: FileGroup) -> Position:  # its position furthest along the walk
        low, high = group.bounds(hour_ms)
        return high if order == "oldest" else low

    return [group for group in groups if is_after(open_part(group), cursor, order)]


def group_end(group: FileGroup, hour_ms: int, order: Order) -> Position:
    """The cursor after a group: every position of it examined."""
    low, high = group.bounds(hour_ms)
    return high if order == "oldest" else low


class Step(Enum):
    READ = "read"  # read the next group
    STOP = "stop"  # stop here: the page ends with more=true and the cursor so far
    TOO_LARGE = "too_large"  # nothing read yet and the next group alone is over the budget


def decide_step(scanned_bytes: int, group_bytes: int, max_bytes: int, *, timed_out: bool) -> Step:
    """Before each group: whether the request may read it. A group is read only when the
    bytes read so far plus its size stay within the budget (its size bounds what it costs;
    column projection usually reads less)."""
    if scanned_bytes == 0 and not timed_out:
        return Step.READ if group_bytes <= max_bytes else Step.TOO_LARGE
    if timed_out or scanned_bytes + group_bytes > max_bytes:
        return Step.STOP
    return Step.READ


def summarise_hour(entries: Sequence[Entry]) -> tuple[int, int]:
    """(bytes, files) of an hour's committed files."""
    committed = [e for e in entries if not e.is_dir and parse_file_name(e.name) is not None]
    return sum(e.length for e in committed), len(committed)
