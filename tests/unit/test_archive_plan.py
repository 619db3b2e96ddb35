"""The archiver's decisions (archive/plan.py), by tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from metricpipe_consumers.archive.plan import (
    Row,
    StagedBatch,
    build_row,
    build_staged_name,
    decide_closed_hours,
    decide_compaction,
    decide_expired_days,
    decide_flush,
    decide_next_offset,
    decide_recovery,
    parse_staged_name,
    parse_staging_entry,
    plan_hour_files,
)
from metricpipe_contract.archive import BatchFile, build_staging_name

HOUR = 3_600_000
T = 1_431_856_800_000  # 2015-05-17T10:00:00Z
LINE = '83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /a.png HTTP/1.1" 503 7 "-" "curl/8"'


@pytest.mark.parametrize(("value", "fmt", "raw", "fields"), [
    (b'{"level": "error", "n": 3}', "json", '{"level": "error", "n": 3}',
     {"level": "error", "n": 3}),
    (json.dumps({"message": LINE, "stream": "stdout"}).encode(), "apache_combined", LINE,
     {"stream": "stdout", "status": 503, "method": "GET", "path": "/a.png"}),
    (LINE.encode(), "apache_combined", LINE, {"status": 503, "bytes": 7}),
    (b"not an access line", "apache_combined", "not an access line", {}),
    (b'{"a": 1, "a": 2}', "json", '{"a": 1, "a": 2}', {}),  # ambiguous: kept raw, no fields
    (b"{broken", "json", "{broken", {}),
    (b"plain text", "json", "plain text", {}),
    (b'{"x": 1}', "text", '{"x": 1}', {}),
    (b"caf\xe9", "text", "caf\\xe9", {}),  # not UTF-8: kept, escaped
    (None, "json", "", {}),
])  # fmt: skip
def test_every_record_becomes_a_row(value: bytes | None, fmt: str, raw: str,
                                     fields: dict[str, object]) -> None:  # fmt: skip
    row = build_row(2, 41, T, b"k", value, source_format=fmt)  # type: ignore[arg-type]
    assert (row.partition, row.offset, row.time_ms, row.key, row.raw) == (2, 41, T, "k", raw)
    assert json.loads(row.fields).items() >= fields.items()
    assert "message" not in json.loads(row.fields) or fmt == "json"
    if not fields:
        assert json.loads(row.fields) == {}


def test_rows_go_to_the_hour_of_their_time_in_offset_order() -> None:
    rows = [Row(0, o, t, None, "", "{}") for o, t in ((5, T + HOUR), (3, T), (4, T + 10), (6, T))]
    planned = plan_hour_files(rows)
    assert {k: [r.offset for r in v] for k, v in planned.items()} == {
        "dt=2015-05-17/hour=10": [3, 4, 6], "dt=2015-05-17/hour=11": [5]}  # fmt: skip


@pytest.mark.parametrize("hour", ["dt=2015-05-17/hour=10", "dt=1999-12-31/hour=23"])
def test_staged_names_carry_their_hour(hour: str) -> None:
    assert parse_staged_name(build_staged_name(hour)) == hour


@pytest.mark.parametrize("name", ["_COMPLETE", "dt=2015-05-17.hour=24.parquet", "x.parquet",
                                  "dt=2015-05-17.hour=10.parquet.tmp"])  # fmt: skip
def test_other_staged_entries_are_not_files(name: str) -> None:
    assert parse_staged_name(name) is None


@pytest.mark.parametrize(("size", "age", "flush"), [
    (0, 999.0, False),  # nothing waiting
    (1, 59.9, False),
    (1, 60.0, True),  # waited its time
    (64, 0.0, True),  # big enough
    (63, 0.0, False),
])  # fmt: skip
def test_decide_flush(size: int, age: float, flush: bool) -> None:
    assert decide_flush(size, age, roll_bytes=64, roll_seconds=60.0) is flush


def test_complete_batches_roll_forward_and_others_go() -> None:
    a = parse_staging_entry(build_staging_name(1, 0, 9), ["_COMPLETE", "dt=x.parquet"])
    b = parse_staging_entry(build_staging_name(1, 10, 19), ["dt=2015-05-17.hour=10.parquet"])
    assert a == StagedBatch(build_staging_name(1, 0, 9), 1, 9, True)
    assert b is not None
    assert not b.complete
    assert decide_recovery([b, a]) == ([a], [b])
    assert parse_staging_entry("compact-p1-x", []) is None


@pytest.mark.parametrize(("names", "expected"), [
    ([], None), (["100"], 100), (["100", "250"], 250), (["junk", "7"], 7), (["junk"], None),
])  # fmt: skip
def test_decide_next_offset(names: list[str], expected: int | None) -> None:
    assert decide_next_offset(names) == expected


@pytest.mark.parametrize(("files", "redundant", "merge"), [
    ([(0, 9)], [], [(0, 9)]),
    ([(0, 9), (10, 19), (20, 29)], [], [(0, 9), (10, 19), (20, 29)]),
    ([(0, 29), (0, 9), (10, 19)], [(0, 9), (10, 19)], [(0, 29)]),  # a merge's leftovers
    ([(0, 29), (0, 9), (30, 39)], [(0, 9)], [(0, 29), (30, 39)]),
])  # fmt: skip
def test_decide_compaction(files: list[tuple[int, int]], redundant: list[tuple[int, int]],
                           merge: list[tuple[int, int]]) -> None:  # fmt: skip
    other = BatchFile(2, 0, 99)  # another partition's file is never touched
    plan = decide_compaction([BatchFile(1, a, b) for a, b in files] + [other], partition=1)
    assert sorted(plan.redundant) == [BatchFile(1, a, b) for a, b in redundant]
    assert plan.merge == [BatchFile(1, a, b) for a, b in merge]
    merged = plan.merged
    if len(merge) > 1:
        assert merged == BatchFile(1, merge[0][0], merge[-1][1])
    else:
        assert merged is None


def test_decide_closed_hours() -> None:
    hours = ["dt=2015-05-17/hour=10", "dt=2015-05-17/hour=11"]
    assert decide_closed_hours(hours, T + HOUR + 599_999, 600_000) == []
    assert decide_closed_hours(hours, T + HOUR + 600_000, 600_000) == ["dt=2015-05-17/hour=10"]
    assert decide_closed_hours(hours, T + 3 * HOUR, 600_000) == hours


@pytest.mark.parametrize(("now", "retention", "expired"), [
    ("2015-05-20T00:00:00", 2, ["dt=2015-05-17"]),  # the 17th ended two days before the 20th
    ("2015-05-19T23:59:59", 2, []),
    ("2015-05-21T00:00:00", 2, ["dt=2015-05-17", "dt=2015-05-18"]),
    ("2016-01-01T00:00:00", 365, []),
])  # fmt: skip
def test_decide_expired_days(now: str, retention: int, expired: list[str]) -> None:
    at = int(datetime.fromisoformat(now).replace(tzinfo=UTC).timestamp() * 1000)
    days = ["dt=2015-05-17", "dt=2015-05-18", "_staging", "dt=junk"]
    assert decide_expired_days(days, at, retention) == expired
