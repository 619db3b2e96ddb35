"""The native row maker (consumers/native/archive_rows.c) against plan.build_row on generated
records: random edits of real access-log lines and of their JSON wrappers, seeded. For every
record the native side takes, raw and fields equal build_row's; the ones it declines are
made in Python (tests/unit/test_archive_columnar.py covers the merge). The test also checks
that the native side takes the records it is for, so declining everything cannot pass."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pytest

from metricpipe_consumers.archive import native as native_module
from metricpipe_consumers.archive.columnar import build_record_batch
from metricpipe_consumers.archive.native import NativeRows, NativeRowsError, load_native_rows
from metricpipe_consumers.archive.plan import build_row
from shared_data import access_log_lines

# the characters that steer the grammar, JSON escapes, and text it must decline
PIECES = [" ", '"', "\\", "[", "]", "-", "0", "7", "A", "Z", "a", "/", ".", ":", "{", "}", ",",
          " HTTP/1.1", "HTTP/", ' "', '" ', "\n", "\t", "\x1f", "\x7f", "\x00", "é", "\u00a0",
          "\\u0041", "\\n", '\\"', ' HTTP/"', " HTTP/1.0 ", "00"]  # fmt: skip
WRAPPER_MEMBERS: list[dict[str, object]] = [
    {}, {"stream": "stdout"}, {"stream": 'say "x"\n\t\x01'}, {"log": "a"},
    {"kubernetes": "pod/a", "stream": "stderr"}, {"host": "node-1"}, {"n": 3}, {"é": "é"},
]  # fmt: skip


def mutate(line: str, rng: random.Random) -> str:
    chars = list(line)
    for _ in range(rng.choice([1, 1, 2, 3])):
        at = rng.randrange(len(chars) + 1)
        kind = rng.random()
        if kind < 0.4 and chars:
            del chars[min(at, len(chars) - 1)]
        elif kind < 0.8:
            chars.insert(at, rng.choice(PIECES))
        elif chars:
            chars[min(at, len(chars) - 1)] = rng.choice(PIECES)
    return "".join(chars)


def wrap(line: str, rng: random.Random) -> bytes:
    members = dict(rng.choice(WRAPPER_MEMBERS))
    shape = rng.random()
    if shape < 0.15:
        return line.encode("utf-8", "surrogatepass")
    if shape < 0.3:  # message not first, escaped slashes, JSON whitespace around members
        text = json.dumps({**members, "message": line}, ensure_ascii=rng.random() < 0.5)
        return text.replace("/", "\\/").replace(": ", " :\n ").encode()
    if shape < 0.35:  # other JSON text after the object
        return (json.dumps({"message": line, **members}) + rng.choice([" ", "x", ', "a"'])).encode()
    if shape < 0.4:  # a key twice
        return (json.dumps({"s": "a", "message": line})[:-1] + ', "s": "b"}').encode()
    return json.dumps({"message": line, **members}, ensure_ascii=rng.random() < 0.7).encode()


@pytest.fixture(scope="module")
def native(native_rows_path: Path) -> NativeRows:
    return NativeRows(native_rows_path)


def compare(native: NativeRows, values: list[bytes]) -> tuple[int, int]:
    """(records taken, records compared); fails on the first difference."""
    made = native.build_columns(pa.array(values, pa.binary()))
    assert made is not None
    raws, fields = made.raw.to_pylist(), made.fields.to_pylist()
    taken = 0
    for i, value in enumerate(values):
        if not made.made[i]:
            assert raws[i] == "", "a declined record wrote text"
            assert fields[i] == "", "a declined record wrote text"
            continue
        taken += 1
        want = build_row(0, i, 0, None, value, source_format="apache_combined")
        assert (raws[i], fields[i]) == (want.raw, want.fields), value
    return taken, len(values)


def test_the_real_log_is_made_natively_and_equal(data_dir: Path, native: NativeRows) -> None:
    lines = access_log_lines(data_dir)
    values = [json.dumps({"message": line, "stream": "stdout"}).encode() for line in lines]
    taken, total = compare(native, values)
    assert taken >= 0.99 * total  # its lines are plain ASCII; the few with a backslash decline


@pytest.mark.parametrize("seed", range(6))
def test_random_edits_are_made_as_build_row_makes_them(
    seed: int, data_dir: Path, native: NativeRows
) -> None:
    rng = random.Random(seed)
    lines = access_log_lines(data_dir)
    values = [wrap(mutate(rng.choice(lines), rng), rng) for _ in range(4000)]
    taken, total = compare(native, values)
    assert 0.1 * total < taken < 0.95 * total  # both ways are exercised


def test_a_batch_with_nulls_and_empties_declines_them(native: NativeRows) -> None:
    line = '1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 7 "-" "c"'
    made = native.build_columns(pa.array([None, b"", line.encode(), None], pa.binary()))
    assert made is not None
    assert made.made.tolist() == [False, False, True, False]
    assert made.raw.to_pylist()[2] == line


def test_a_configured_library_that_cannot_load_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "librows.so"
    broken.write_text("not a library")
    with pytest.raises(NativeRowsError, match="make native"):
        load_native_rows(broken)
    assert load_native_rows(None) is None


def test_a_batch_too_big_for_int32_offsets_is_made_in_python(
    native: NativeRows, monkeypatch: pytest.MonkeyPatch
) -> None:
    line = '1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 7 "-" "c"'
    values: list[bytes | None] = [json.dumps({"message": line}).encode()] * 3
    monkeypatch.setattr(native_module, "MAX_COLUMN", 200)  # two records' fields fill it
    assert native.build_columns(pa.array(values, pa.binary())) is None
    batch = build_record_batch(0, [0, 1, 2], [0, 0, 0], [None] * 3, values,
                               source_format="apache_combined", native=native)  # fmt: skip
    want = build_row(0, 0, 0, None, values[0], source_format="apache_combined")
    assert batch.column("fields").to_pylist() == [want.fields] * 3
