"""What a peek request reads and how rows are chosen (pure, by tables): day and hour
pruning, groups of files, the scan budget, filters and their vectorised masks, duplicates."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pytest

from metricpipe_consumers.peek.cursor import Order, Position
from metricpipe_consumers.peek.match import (
    RecordFilter,
    build_filter,
    field_text,
    lookup_field,
    match_fields,
    match_raw,
)
from metricpipe_consumers.peek.plan import (
    Entry,
    Step,
    decide_step,
    group_end,
    plan_days,
    plan_groups,
    plan_hours,
    summarise_hour,
)
from metricpipe_consumers.peek.rows import (
    RowGroupSpan,
    build_mask,
    decide_offsets,
    keep_matching_fields,
    order_candidates,
    plan_columns,
)
from metricpipe_consumers.peek.timerange import TimeRange
from metricpipe_contract.archive import BatchFile, build_file_name

H = 3_600_000
DAY0 = int(datetime(2025, 5, 1, tzinfo=UTC).timestamp() * 1000)


def _dirs(*names: str) -> list[Entry]:
    return [Entry(name, True) for name in names]


@pytest.mark.parametrize(
    ("start", "end", "order", "days"),
    [
        (DAY0 + 10 * H, DAY0 + 12 * H, "oldest", ["dt=2025-05-01"]),
        (DAY0 - H, DAY0 + H, "oldest", ["dt=2025-04-30", "dt=2025-05-01"]),
        (DAY0 - H, DAY0 + H, "newest", ["dt=2025-05-01", "dt=2025-04-30"]),
        (DAY0 + 24 * H, DAY0 + 25 * H, "oldest", ["dt=2025-05-02"]),
        (DAY0 - 2 * H, DAY0, "oldest", ["dt=2025-04-30"]),  # until is exclusive
    ],
)
def test_days_in_range(start: int, end: int, order: Order, days: list[str]) -> None:
    entries = _dirs("dt=2025-04-29", "dt=2025-04-30", "dt=2025-05-01", "dt=2025-05-02",
                    "_staging", "_offsets", "dt=2025-5-1", "dt=garbage")  # fmt: skip
    assert plan_days(entries, TimeRange(start, end), order) == days


@pytest.mark.parametrize(
    ("start", "end", "order", "cursor", "hours"),
    [
        (DAY0 + 10 * H, DAY0 + 12 * H, "oldest", None, [10, 11]),
        (DAY0 + 10 * H + 1, DAY0 + 12 * H + 1, "oldest", None, [10, 11, 12]),
        (DAY0 + 10 * H, DAY0 + 12 * H, "newest", None, [11, 10]),
        (DAY0, DAY0 + 24 * H, "oldest", Position(DAY0 + 11 * H, 0, 5), [11, 12]),
        (DAY0, DAY0 + 24 * H, "newest", Position(DAY0 + 11 * H, 0, 5), [11, 10]),
    ],
)
def test_hours_in_range(
    start: int, end: int, order: Order, cursor: Position | None, hours: list[int]
) -> None:
    entries = _dirs("hour=10", "hour=11", "hour=12", "hour=24", "hour=x", "_tmp")
    planned = plan_hours("dt=2025-05-01", entries, TimeRange(start, end), order, cursor)
    assert [start for _, start in planned] == [DAY0 + h * H for h in hours]
    assert all(key == f"dt=2025-05-01/hour={(ms - DAY0) // H:02d}" for key, ms in planned)


def _file(partition: int, first: int, last: int, length: int = 100) -> Entry:
    return Entry(build_file_name(partition, first, last), False, length)


HOUR_FILES = [
    _file(1, 50, 59),
    _file(0, 10, 19),
    _file(0, 20, 29),
    _file(0, 25, 26),  # a writer's duplicate inside p0 20..29
    _file(0, 30, 39),
    Entry("p0-1-2.parquet.tmp", False, 5),
    Entry("_COMPLETE", False, 0),
    Entry("p0-00000000000000000001-00000000000000000000.parquet", False, 5),  # first > last
    Entry("nested", True),
]


@pytest.mark.parametrize(
    ("order", "cursor", "groups"),
    [
        ("oldest", None, [(0, 10, 19), (0, 20, 29), (0, 30, 39), (1, 50, 59)]),
        ("newest", None, [(1, 50, 59), (0, 30, 39), (0, 20, 29), (0, 10, 19)]),
        ("oldest", Position(H, 0, 19), [(0, 20, 29), (0, 30, 39), (1, 50, 59)]),
        ("oldest", Position(H, 0, 22), [(0, 20, 29), (0, 30, 39), (1, 50, 59)]),
        ("oldest", Position(H, 0, 39), [(1, 50, 59)]),
        ("oldest", Position(H - H, 9, 9), [(0, 10, 19), (0, 20, 29), (0, 30, 39), (1, 50, 59)]),
        ("newest", Position(H, 0, 35), [(0, 30, 39), (0, 20, 29), (0, 10, 19)]),
        ("newest", Position(H, 0, 30), [(0, 20, 29), (0, 10, 19)]),
        ("newest", Position(H, 0, 29), [(0, 20, 29), (0, 10, 19)]),
        ("newest", Position(H, 0, 10), []),
    ],
)
def test_groups_of_an_hour(
    order: Order, cursor: Position | None, groups: list[tuple[int, int, int]]
) -> None:
    planned = plan_groups(HOUR_FILES, H, order, cursor)
    assert [(g.partition, g.first, g.last) for g in planned] == groups
    overlap = next(g for g in plan_groups(HOUR_FILES, H, "oldest") if g.first == 20)
    assert [batch.last for batch, _ in overlap.files] == [29, 26]
    assert overlap.bytes == 200


def test_group_ends_and_hour_sizes() -> None:
    group = plan_groups(HOUR_FILES, H, "oldest")[1]
    assert group_end(group, H, "oldest") == Position(H, 0, 29)
    assert group_end(group, H, "newest") == Position(H, 0, 20)
    assert summarise_hour(HOUR_FILES) == (500, 5)


@pytest.mark.parametrize(
    ("scanned", "group", "timed_out", "step"),
    [
        (0, 100, False, Step.READ),
        (0, 1000, False, Step.READ),
        (0, 1001, False, Step.TOO_LARGE),
        (500, 500, False, Step.READ),
        (500, 501, False, Step.STOP),
        (10, 10, True, Step.STOP),
        (0, 10, True, Step.STOP),
    ],
)
def test_scan_budget(scanned: int, group: int, timed_out: bool, step: Step) -> None:
    assert decide_step(scanned, group, 1000, timed_out=timed_out) is step


FIELDS: dict[str, Any] = {
    "status": 500, "method": "GET", "ok": False, "none": None,
    "req": {"path": "/a", "size": 1.5}, "a.b": "flat", "list": [1],
}  # fmt: skip


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("status", "500"), ("method", "GET"), ("ok", "false"), ("none", "null"),
        ("req.path", "/a"), ("req.size", "1.5"), ("a.b", "flat"), ("req", None),
        ("list", None), ("missing", None), ("req.path.deeper", None),
    ],
)  # fmt: skip
def test_field_values(path: str, text: str | None) -> None:
    assert field_text(lookup_field(FIELDS, path)) == text


@pytest.mark.parametrize(
    ("fields", "matches"),
    [
        ({"status": "500"}, True), ({"status": "500", "method": "GET"}, True),
        ({"status": "500", "method": "POST"}, False), ({"req.path": "/a"}, True),
        ({"status": "5"}, False), ({"ok": "False"}, False), ({"missing": ""}, False),
    ],
)  # fmt: skip
def test_field_equalities(fields: dict[str, str], matches: bool) -> None:
    record_filter = build_filter(None, None, fields, max_pattern_chars=100)
    assert match_fields(record_filter, FIELDS) is matches
    assert match_fields(record_filter, "not an object") is False


ROWS = [
    ("10.0.0.1 GET /a status=500", {"status": 500, "method": "GET"}),
    ("10.0.0.2 POST /b status=200", {"status": 200, "method": "POST"}),
    ("10.0.0.3 GET /a?x=é status=503", {"status": 503, "method": "GET", "q": "é"}),
    ("GET /c status=404 (a+)+", {"status": "404", "method": "GET"}),
]


@pytest.mark.parametrize(
    ("grep", "regex", "fields"),
    [
        (None, None, {}), ("status=5", None, {}), (None, r"status=5\d\d$", {}),
        (None, r"^10\.0\.0\.[12] ", {}), ("GET", r"/a", {}), (None, "(a+)+", {}),
        (None, None, {"status": "404"}), (None, None, {"status": "500", "method": "GET"}),
        (None, None, {"q": "é"}), ("/a", None, {"method": "GET"}), ("é", None, {}),
    ],
)  # fmt: skip
def test_vectorised_masks_agree_with_the_reference(
    grep: str | None, regex: str | None, fields: dict[str, str]
) -> None:
    record_filter = build_filter(grep, regex, fields, max_pattern_chars=100)
    table = pa.table({
        "partition": pa.array([0] * len(ROWS), pa.int32()),
        "offset": pa.array(range(len(ROWS)), pa.int64()),
        "time_ms": pa.array([H + i for i in range(len(ROWS))], pa.int64()),
        "raw": [raw for raw, _ in ROWS],
        "fields": [json.dumps(f, ensure_ascii=i % 2 == 0) for i, (_, f) in enumerate(ROWS)],
    }).select(plan_columns(record_filter))  # fmt: skip
    mask = build_mask(table, batch=BatchFile(0, 0, 99), hour_ms=H, span=TimeRange(0, 10 * H),
                      offsets=(0, 99), record_filter=record_filter)  # fmt: skip
    kept = keep_matching_fields(table.filter(mask), record_filter)
    reference = [i for i, (raw, f) in enumerate(ROWS)
                 if match_raw(record_filter, raw) and match_fields(record_filter, f)]  # fmt: skip
    assert kept["offset"].to_pylist() == reference


@pytest.mark.parametrize(
    ("span", "offsets", "partition", "kept"),
    [
        (TimeRange(0, 10 * H), (0, 99), 0, [0, 1, 2, 3]),
        (TimeRange(H + 1, H + 3), (0, 99), 0, [1, 2]),
        (TimeRange(0, 10 * H), (1, 2), 0, [1, 2]),
        (TimeRange(0, 10 * H), (0, 99), 1, []),  # rows of another partition than the name's
    ],
)
def test_masks_keep_the_range_and_the_file_name(
    span: TimeRange, offsets: tuple[int, int], partition: int, kept: list[int]
) -> None:
    table = pa.table({"partition": pa.array([0, 0, 0, 0], pa.int32()),
                      "offset": pa.array([0, 1, 2, 3], pa.int64()),
                      "time_ms": pa.array([H, H + 1, H + 2, 2 * H], pa.int64())})  # fmt: skip
    mask = build_mask(table, batch=BatchFile(partition, 0, 99), hour_ms=H, span=span,
                      offsets=offsets, record_filter=RecordFilter())  # fmt: skip
    assert table.filter(mask)["offset"].to_pylist() == [o for o in kept if o < 3]


@pytest.mark.parametrize(
    ("order", "cursor", "bounds"),
    [
        ("oldest", None, (10, 19)), ("newest", None, (10, 19)),
        ("oldest", Position(H, 0, 14), (15, 19)), ("newest", Position(H, 0, 14), (10, 13)),
        ("oldest", Position(H, 1, 14), (10, 19)), ("oldest", Position(0, 0, 14), (10, 19)),
    ],
)  # fmt: skip
def test_offsets_a_file_may_give(
    order: Order, cursor: Position | None, bounds: tuple[int, int]
) -> None:
    assert decide_offsets(BatchFile(0, 10, 19), H, order, cursor) == bounds


@pytest.mark.parametrize(("order", "offsets"), [("oldest", [3, 5, 7, 9]), ("newest", [9, 7, 5, 3])])
def test_duplicates_come_out_once_in_the_walk_order(order: Order, offsets: list[int]) -> None:
    table = pa.table({"offset": pa.array([7, 3, 9, 5, 7, 3], pa.int64()),
                      "_file": pa.array([0, 0, 0, 0, 1, 1], pa.int32())})  # fmt: skip
    ordered = order_candidates(table, order)
    assert ordered["offset"].to_pylist() == offsets
    assert set(ordered["_file"].to_pylist()) == {0}  # the first file's copy


def test_rows_are_found_in_their_row_groups() -> None:
    spans = RowGroupSpan((0, 4, 8, 10))
    assert spans.groups_of([9, 1, 5]) == [0, 1, 2]
    assert spans.groups_of([8, 9]) == [2]
    assert spans.local_rows([2], [8, 9]) == [0, 1]
    assert spans.local_rows([0, 2], [1, 9]) == [1, 5]
