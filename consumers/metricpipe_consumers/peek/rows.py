"""Rows of one group of files (pure, on Arrow tables): the masks of the first pass, the
duplicates dropped, the order of the walk, and the records as the API writes them.

First pass: the coordinates (+ `raw` when the line is filtered, + `fields` when a field is)
of every row group; a row is a candidate when it lies in the range, in its file's named
partition and offset range, in its hour, after the cursor, and matches the filters. Then
the candidates are ordered, each (partition, offset) kept once, and cut to the page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from metricpipe_contract.archive import HOUR_MS, BatchFile

from .cursor import Order, Position
from .match import RecordFilter, build_fields_prefilter, match_fields
from .timerange import TimeRange, format_time

COORDINATES = ("partition", "offset", "time_ms")


def plan_columns(record_filter: RecordFilter) -> list[str]:
    """The columns the first pass reads."""
    extra = (["raw"] if record_filter.on_raw else []) + (["fields"] if record_filter.fields else [])
    return [*COORDINATES, *extra]


def decide_offsets(
    batch: BatchFile, hour_ms: int, order: Order, cursor: Position | None
) -> tuple[int, int]:
    """[low, high] of the offsets a file may contribute: its named range, narrowed by a cursor
    in the same hour and partition."""
    low, high = batch.first, batch.last
    if cursor is not None and (cursor.hour_ms, cursor.partition) == (hour_ms, batch.partition):
        if order == "oldest":
            low = max(low, cursor.offset + 1)
        else:
            high = min(high, cursor.offset - 1)
    return low, high


def build_mask(
    table: pa.Table, *, batch: BatchFile, hour_ms: int, span: TimeRange,
    offsets: tuple[int, int], record_filter: RecordFilter,
) -> pa.ChunkedArray:  # fmt: skip
    """The candidates of one row group's first-pass columns (the field equalities only by
    their verbatim pre-filter; `keep_matching_fields` decides them)."""
    time = table["time_ms"]
    offset = table["offset"]
    conditions = [
        pc.greater_equal(time, max(span.start_ms, hour_ms)),
        pc.less(time, min(span.end_ms, hour_ms + HOUR_MS)),
        pc.equal(table["partition"], batch.partition),
        pc.greater_equal(offset, offsets[0]),
        pc.less_equal(offset, offsets[1]),
    ]
    if record_filter.grep is not None:
        conditions.append(pc.match_substring(table["raw"], record_filter.grep))
    if record_filter.regex is not None:
        conditions.append(pc.match_substring_regex(table["raw"], record_filter.regex))
    conditions.extend(
        pc.match_substring(table["fields"], text) for text in build_fields_prefilter(record_filter)
    )
    mask = conditions[0]
    for condition in conditions[1:]:
        mask = pc.and_kleene(mask, condition)
    return pc.fill_null(mask, False)


def keep_matching_fields(candidates: pa.Table, record_filter: RecordFilter) -> pa.Table:
    """Candidates whose parsed fields hold every equality asked for."""
    if not record_filter.fields or candidates.num_rows == 0:
        return candidates
    keep = [
        text is not None and match_fields(record_filter, _loads(text))
        for text in candidates["fields"].to_pylist()
    ]
    return candidates.filter(pa.array(keep, pa.bool_()))


def _loads(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def order_candidates(candidates: pa.Table, order: Order) -> pa.Table:
    """Candidates of one group by offset in the walk's order, each offset once (a record two
    files of a group hold comes out once)."""
    if candidates.num_rows == 0:
        return candidates
    offsets = candidates["offset"].to_numpy()
    _, first = np.unique(offsets, return_index=True)  # sorted offsets, first occurrence each
    if order == "newest":
        first = first[::-1]
    return candidates.take(pa.array(first))


def build_record(row: dict[str, Any]) -> dict[str, Any]:
    """One NDJSON line: the record's time (RFC 3339, UTC), Kafka coordinates, key, raw line
    and parsed fields."""
    fields = row.get("fields")
    return {
        "time": format_time(row["time_ms"]),
        "partition": row["partition"],
        "offset": row["offset"],
        "key": row.get("key"),
        "raw": row.get("raw"),
        "fields": {} if fields is None else _loads(fields),
    }


@dataclass(frozen=True)
class RowGroupSpan:
    """Where a file's row groups start, to find the row groups holding wanted rows."""

    starts: tuple[int, ...]  # first row of each row group; one more entry: the row count

    def groups_of(self, rows: list[int]) -> list[int]:
        found = np.searchsorted(np.array(self.starts), np.array(rows), side="right") - 1
        return sorted({int(g) for g in found})

    def local_rows(self, groups: list[int], rows: list[int]) -> list[int]:
        """Indices of `rows` in the concatenation of `groups`."""
        base, shift = 0, {}
        for group in groups:
            shift[group] = base - self.starts[group]
            base += self.starts[group + 1] - self.starts[group]
        found = np.searchsorted(np.array(self.starts), np.array(rows), side="right") - 1
        return [row + shift[int(g)] for row, g in zip(rows, found, strict=True)]
