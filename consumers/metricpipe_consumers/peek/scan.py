"""The archive on HDFS, read for one request (the I/O shell around plan.py and rows.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from metricpipe_contract.archive import build_archive_dir

from ..webhdfs import WebHdfs
from .cursor import Position, encode_cursor, hour_end
from .errors import LimitError, PeekError
from .plan import (
    Entry,
    FileGroup,
    Step,
    decide_step,
    group_end,
    plan_days,
    plan_groups,
    plan_hours,
    summarise_hour,
)
from .reader import ReadCount, open_parquet
from .request import RecordsQuery
from .rows import (
    RowGroupSpan,
    build_mask,
    build_record,
    decide_offsets,
    keep_matching_fields,
    order_candidates,
    plan_columns,
)
from .timerange import TimeRange, format_time

SECOND_PASS = ("key", "raw", "fields")


@dataclass(frozen=True)
class Trailer:
    """The last NDJSON line of a page."""

    cursor: str | None
    scanned_bytes: int
    scanned_files: int
    more: bool
    stopped: str | None = None  # why the page ended early: max_scan_bytes or timeout

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"cursor": self.cursor, "scanned_bytes": self.scanned_bytes,
                                "scanned_files": self.scanned_files, "more": self.more}  # fmt: skip
        if self.stopped:
            body["stopped"] = self.stopped
        return body


@dataclass(frozen=True)
class ScanBudget:
    max_bytes: int
    deadline: float  # on `clock`
    clock: Callable[[], float]
    whole_file_bytes: int


class ArchiveReader:
    """One archive root on HDFS, read as the peek service's (read-only) user."""

    def __init__(self, hdfs: WebHdfs, root: str) -> None:
        self.hdfs, self.root = hdfs, root

    def _list(self, path: str) -> list[Entry] | None:
        listed = self.hdfs.list(path)
        if listed is None:
            return None
        return [Entry(s.name, s.is_dir, s.length) for s in listed]

    def _archive(self, namespace: str, name: str) -> tuple[str, list[Entry]]:
        base = build_archive_dir(self.root, namespace, name)
        entries = self._list(base)
        if entries is None:
            raise PeekError(404, f"log archive {namespace}/{name} has no files on HDFS (no such "
                            "archive, or nothing archived yet)")  # fmt: skip
        return base, entries

    def _hours(self, base: str, entries: list[Entry], span: TimeRange, query_order: Any,
               cursor: Position | None = None) -> list[tuple[str, int]]:  # fmt: skip
        hours: list[tuple[str, int]] = []
        for day in plan_days(entries, span, query_order):
            hours += plan_hours(day, self._list(f"{base}/{day}") or [], span, query_order, cursor)
        return hours

    def hours(self, namespace: str, name: str, span: TimeRange) -> list[dict[str, Any]]:
        """The archive's hours in the range, oldest first, with their bytes and files."""
        base, entries = self._archive(namespace, name)
        listing = []
        for key, start in self._hours(base, entries, span, "oldest"):
            size, files = summarise_hour(self._list(f"{base}/{key}") or [])
            listing.append({"hour": format_time(start), "dir": key, "bytes": size, "files": files})
        return listing

    def records(
        self, namespace: str, name: str, query: RecordsQuery, span: TimeRange,
        budget: ScanBudget,
    ) -> Iterator[list[dict[str, Any]] | Trailer]:  # fmt: skip
        """Pages of records (one list per group of files that had some), then the Trailer.
        Raises PeekError before the first item when nothing can be read within the limits."""
        base, entries = self._archive(namespace, name)
        order, count = query.order, ReadCount()
        hours = self._hours(base, entries, span, order, query.cursor)
        position, remaining = query.cursor, query.limit

        def trailer(more: bool, stopped: str | None = None) -> Trailer:
            cursor = encode_cursor(position, order) if position is not None else None
            return Trailer(cursor, count.bytes, count.files, more, stopped)

        for index, (key, hour_ms) in enumerate(hours):
            groups = plan_groups(self._list(f"{base}/{key}") or [], hour_ms, order, query.cursor)
            for number, group in enumerate(groups):
                timed_out = budget.clock() > budget.deadline
                step = decide_step(count.bytes, group.bytes, budget.max_bytes, timed_out=timed_out)
                if step is Step.TOO_LARGE:
                    raise LimitError(
                        413, f"the files of {key} partition {group.partition} hold {group.bytes} "
                        f"bytes, more than the {budget.max_bytes} one request may scan",
                        limit="max_scan_bytes", value=group.bytes, maximum=budget.max_bytes,
                        hint="ask the operator of the peek service to raise "
                        "METRICPIPE_PEEK_MAX_SCAN_BYTES (a narrower range cannot help)",
                    )  # fmt: skip
                if step is Step.STOP:
                    if position == query.cursor and timed_out:
                        raise PeekError(504, "the request timed out before one file was read: "
                                        "narrow --since/--until")  # fmt: skip
                    yield trailer(True, "timeout" if timed_out else "max_scan_bytes")
                    return
                found, done = self._read_group(
                    f"{base}/{key}", group, hour_ms, query=query, span=span,
                    remaining=remaining, count=count, whole_file_bytes=budget.whole_file_bytes,
                )  # fmt: skip
                remaining -= len(found)
                if found:
                    yield found
                if remaining == 0:
                    last = found[-1]
                    position = (
                        group_end(group, hour_ms, order)
                        if done
                        else Position(hour_ms, last["partition"], last["offset"])
                    )
                    more = not done or number + 1 < len(groups) or index + 1 < len(hours)
                    yield trailer(more)
                    return
                position = group_end(group, hour_ms, order)
            position = hour_end(hour_ms, order)
        yield trailer(False)

    def _read_group(
        self, hour_dir: str, group: FileGroup, hour_ms: int, *, query: RecordsQuery,
        span: TimeRange, remaining: int, count: ReadCount, whole_file_bytes: int,
    ) -> tuple[list[dict[str, Any]], bool]:  # fmt: skip
        """The group's next `remaining` matching records in the walk's order, and whether
        the group has no more."""
        columns = plan_columns(query.filter)
        opened: list[tuple[pq.ParquetFile, RowGroupSpan]] = []
        pieces: list[pa.Table] = []
        for number, (batch, length) in enumerate(group.files):
            parquet = open_parquet(self.hdfs, f"{hour_dir}/{batch.name}", length, count,
                                   whole_file_bytes)  # fmt: skip
            starts = [0]
            for index in range(parquet.num_row_groups):
                starts.append(starts[-1] + parquet.metadata.row_group(index).num_rows)
            opened.append((parquet, RowGroupSpan(tuple(starts))))
            offsets = decide_offsets(batch, hour_ms, query.order, query.cursor)
            if offsets[0] > offsets[1]:
                continue
            for index in range(parquet.num_row_groups):
                table = parquet.read_row_group(index, columns=columns)
                mask = build_mask(table, batch=batch, hour_ms=hour_ms, span=span,
                                  offsets=offsets, record_filter=query.filter)  # fmt: skip
                rows = pc.indices_nonzero(mask)
                if len(rows) == 0:
                    continue
                taken = table.take(rows)
                file_column = pa.array([number] * len(rows), pa.int32())
                row_column = pc.add(rows.cast(pa.int64()), starts[index])
                pieces.append(
                    taken.append_column("_file", file_column).append_column("_row", row_column)
                )
        if not pieces:
            return [], True
        candidates = keep_matching_fields(pa.concat_tables(pieces), query.filter)
        ordered = order_candidates(candidates, query.order)
        page = ordered.slice(0, remaining)
        done = ordered.num_rows <= remaining
        rows_out = page.to_pylist()
        missing = [c for c in SECOND_PASS if c not in page.column_names]
        by_file: dict[int, list[int]] = {}
        for at, row in enumerate(rows_out):
            by_file.setdefault(row["_file"], []).append(at)
        for number, ats in by_file.items():
            parquet, spans = opened[number]
            wanted = [rows_out[at]["_row"] for at in ats]
            row_groups = spans.groups_of(wanted)
            table = parquet.read_row_groups(row_groups, columns=missing)
            local = table.take(pa.array(spans.local_rows(row_groups, wanted))).to_pylist()
            for at, values in zip(ats, local, strict=True):
                rows_out[at].update(values)
        return [build_record(row) for row in rows_out], done
