"""The archiver's batch way (archive/columnar.py), in Python and with the native row maker
(archive/native.py), against its per-record definition (plan.build_row): the same rows, value
for value, on the real access log and on hostile records; the same hour files as
plan.plan_hour_files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from metricpipe_consumers.archive.columnar import (
    build_record_batch,
    measure_batch,
    plan_hour_tables,
)
from metricpipe_consumers.archive.native import NativeRows
from metricpipe_consumers.archive.plan import Row, build_row, plan_hour_files
from shared_data import access_log_lines

T = 1_431_856_800_000  # 2015-05-17T10:00:00Z
HOUR = 3_600_000
LINE = '83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /a.png HTTP/1.1" 200 7 "-" "curl/8"'
HEAD = '83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /a.png HTTP/1.1" 200 7'


def expected_rows(partition: int, values: list[bytes | None], keys: list[bytes | None],
                  fmt: str) -> list[Row]:  # fmt: skip
    return [build_row(partition, 100 + i, T + i * 60_000, key, value,
                      source_format=fmt)  # type: ignore[arg-type]
            for i, (key, value) in enumerate(zip(keys, values, strict=True))]  # fmt: skip


@pytest.fixture(params=["python", "native"])
def native(request: pytest.FixtureRequest, native_rows_path: Path) -> NativeRows | None:
    """Each test runs both ways: every row in Python, and with the native row maker."""
    return NativeRows(native_rows_path) if request.param == "native" else None


def assert_same_rows(values: list[bytes | None], native: NativeRows | None,
                     fmt: str = "apache_combined",
                     keys: list[bytes | None] | None = None) -> None:  # fmt: skip
    keys = keys if keys is not None else [None] * len(values)
    offsets = [100 + i for i in range(len(values))]
    times = [T + i * 60_000 for i in range(len(values))]
    batch = build_record_batch(4, offsets, times, keys, values, source_format=fmt,  # type: ignore[arg-type]
                               native=native)  # fmt: skip
    got = [Row(**row) for row in batch.to_pylist()]
    want = expected_rows(4, values, keys, fmt)
    for mine, theirs in zip(got, want, strict=True):
        assert mine == theirs, theirs.raw
    assert measure_batch(batch) == sum(len(r.raw) + len(r.fields) for r in want)


def wrapped(line: str, **others: Any) -> bytes:
    return json.dumps({"message": line, **others}).encode()


def test_the_real_log_as_fluentd_sends_it(data_dir: Path, native: NativeRows | None) -> None:
    lines = access_log_lines(data_dir)
    assert_same_rows([wrapped(line, stream="stdout") for line in lines], native)
    assert_same_rows([line.encode() for line in lines], native)  # unwrapped lines
    assert_same_rows([json.dumps({"log": line}).encode() for line in lines[:500]], native)
    assert_same_rows([wrapped(line, stream="stdout", n=3, tags=["a"]) for line in lines[:500]],
                     native)  # fmt: skip


@pytest.mark.parametrize(
    "value",
    [
        wrapped(LINE),
        wrapped(LINE, stream="stdout", time="2015-05-17T10:05:03Z"),
        wrapped(LINE, host="node-1"),  # a wrapper member named as a parsed field
        wrapped(LINE, status="x", rq=1, aq=None),
        json.dumps({"log": LINE, "stream": "stderr"}).encode(),
        json.dumps({"message": 7, "log": LINE}).encode(),  # the first string wrapper wins
        json.dumps({"message": LINE, "log": "other"}).encode(),
        b'{"message": "' + LINE.replace('"', '\\"').encode() + b'", "message": "x"}',  # twice
        b'{"s": "a", "message": "' + LINE.replace('"', '\\"').encode() + b'", "s": "b"}',
        b'{"message": "\\ud800 ' + LINE.replace('"', '\\"').encode() + b'"}',  # lone surrogate
        b'{"message": "' + LINE.replace('"', '\\"').encode() + b'", "n": NaN}',
        b'{"message": "' + LINE.replace('"', '\\"').encode() + b'", "n": 1e400}',
        b'{"message": "' + LINE.replace('"', '\\"').encode() + b'", "n": 123456789012345678901}',
        b'{"message": "' + LINE.replace('"', '\\"').encode() + b'"',  # malformed JSON
        b"[" + json.dumps(LINE).encode() + b"]",  # JSON, not an object
        b'{"other": 1}',  # an object without a wrapper
        b'{"message": ["not", "a", "string"]}',
        LINE.encode() + b"\xff",  # not UTF-8
        b"\xff" + LINE.encode(),
        LINE.encode(),
        (LINE + "\n\n").encode(),
        (LINE + " \t\r").encode(),
        (LINE + "\x1f").encode(),  # Python's \s takes \x1c-\x1f
        LINE.replace(" 7 ", " 00123456789012345678901234 ").encode(),  # bytes beyond int64
        LINE.replace(" 200 ", " 007 ").encode(),
        LINE.replace(" 7 ", " - ").encode(),
        LINE.replace("/a.png", '/a\\"b\\\\c\x01\u2028é😀').encode(),  # escapes, control, non-ASCII
        LINE.replace('"curl/8"', '"cu\\"rl\\x\t"').encode(),
        wrapped(LINE.replace('"curl/8"', '"\x00\x7f"')),
        (HEAD + ' "http://r/" "Mozilla/5.0 (X11').encode(),  # agent cut off
        (HEAD + ' "http://r/" "').encode(),
        (HEAD + ' "http://r/"').encode(),
        (HEAD + ' "http://r').encode(),  # referrer cut off
        (HEAD + ' "').encode(),
        (HEAD + ' "-" "cut inside an escape \\').encode(),
        (HEAD + ' "-" "cut \\\n  ').encode(),
        (HEAD + ' ""  ""').encode(),
        (HEAD + ' "" ""').encode(),
        (HEAD + ' "-" "agent" trailing words').encode(),
        (HEAD + ' "abc\\" "x"').encode(),
        HEAD.encode(),
        HEAD.replace('"GET /a.png HTTP/1.1"', '"-"').encode(),
        HEAD.replace('"GET /a.png HTTP/1.1"', '"GET /x HTTP/1.0 HTTP/1.1"').encode(),
        HEAD.replace('"GET /a.png HTTP/1.1"', '"GET HTTP/1.1"').encode(),
        HEAD.replace('"GET /a.png HTTP/1.1"', '"GET /a.png HTTP/"').encode(),  # no version
        HEAD.replace('"GET /a.png HTTP/1.1"', '"GET /a HTTP/ HTTP/1.0"').encode(),
        HEAD.replace(" 200 ", " 000 ").replace(" 7", " 0000").encode(),
        HEAD.replace("83.149.9.216", "a\u00a0b").encode(),  # Unicode whitespace in the host
        b"not an access log line",
        b"",
        None,
    ],
)
def test_hostile_records_are_the_rows_build_row_makes(
    value: bytes | None, native: NativeRows | None
) -> None:
    assert_same_rows([wrapped(LINE, stream="stdout"), value, wrapped(LINE)], native)


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_other_formats_are_the_rows_build_row_makes(fmt: str, native: NativeRows | None) -> None:
    values: list[bytes | None] = [b'{"level": "error", "n": 3}', b'{"a": 1, "a": 2}',
                                  b"{broken", b"caf\xe9", LINE.encode(), None]  # fmt: skip
    assert_same_rows(values, native, fmt)


def test_keys_are_kept_as_build_row_keeps_them(native: NativeRows | None) -> None:
    assert_same_rows([wrapped(LINE)] * 3, native, keys=[None, b"k", b"caf\xe9"])


def test_hours_and_offset_order_are_plan_hour_files(native: NativeRows | None) -> None:
    offsets = [5, 3, 4, 6, 9, 8]
    times = [T + HOUR, T, T + 10, T, T - 1, T + 5 * HOUR]
    values: list[bytes | None] = [wrapped(LINE)] * len(offsets)
    batch = build_record_batch(1, offsets, times, [None] * 6, values,
                               source_format="apache_combined", native=native)  # fmt: skip
    planned = plan_hour_tables(pa.Table.from_batches([batch]))
    rows = [Row(**row) for row in batch.to_pylist()]
    assert {h: t.column("offset").to_pylist() for h, t in planned.items()} == {
        h: [r.offset for r in part] for h, part in plan_hour_files(rows).items()
    }
    assert list(planned) == sorted(planned)
