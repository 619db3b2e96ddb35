"""The autoscaling simulator's trace reader (bench/sim_trace.py) on files that cannot be traces:
each is refused with the file and line to change, and the command exits with code 2 and no
traceback. Files it reads with a note: repeated timestamps (summed) and gaps (their length).

The expected messages, lines and sums are read off the files below."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from sim_trace import TraceError, read_trace

BENCH = Path(__file__).resolve().parents[2] / "bench"

HEADER = "timestamp,count\n"
GOOD = "2014-04-10 00:00:00,5\n2014-04-10 00:01:00,7\n"  # lines 2 and 3 after the header

REFUSED: list[tuple[str, bytes, str]] = [
    ("empty file", b"", ": empty; expected a header row"),
    ("header only", HEADER.encode(), ": 0 data row(s); a trace needs at least two"),
    ("one row", (HEADER + "2014-04-10 00:00:00,5\n").encode(), ": 1 data row(s)"),
    ("no header", GOOD.encode(), ":1: no header row: the first row is data"),
    ("header of one column", b"timestamp\n" + GOOD.encode(), ":1: expected a header row of two"),
    ("a row without its count", (HEADER + GOOD + "2014-04-10 00:02:00\n").encode(),
     ":4: expected two columns `timestamp,count`"),
    ("an empty count", (HEADER + GOOD + "2014-04-10 00:02:00,\n").encode(),
     ":4: expected two columns"),
    ("count nan", (HEADER + "2014-04-10 00:00:00,nan\n" + GOOD).encode(),
     ":2: count 'nan' must be a finite number >= 0"),
    ("count inf", (HEADER + GOOD + "2014-04-10 00:02:00,inf\n").encode(),
     ":4: count 'inf' must be a finite number >= 0"),
    ("count negative", (HEADER + GOOD + "2014-04-10 00:02:00,-5\n").encode(),
     ":4: count '-5' must be a finite number >= 0"),
    ("count not a number", (HEADER + GOOD + "2014-04-10 00:02:00,ten\n").encode(),
     ":4: count 'ten' is not a number"),
    ("timestamp not a time", (HEADER + GOOD + "yesterday,3\n").encode(),
     ":4: timestamp 'yesterday' is neither ISO 8601 nor epoch seconds"),
    ("timestamp nan", (HEADER + GOOD + "nan,3\n").encode(),
     ":4: timestamp 'nan' is not a finite number"),
    ("a single distinct timestamp", (HEADER + "1400000000,3\n" * 3).encode(),
     ": all 3 rows have the same timestamp: no bucket length"),
    ("all-zero counts", (HEADER + "1400000000,0\n1400000060,0\n1400000120,0\n").encode(),
     ": every count is 0: no records to simulate"),
    ("not text", HEADER.encode() + GOOD.encode() + b"\xff\xfe\x00\x01,\x80\n",
     ":4: not a UTF-8 text file (byte 60)"),  # 16 + 22 + 22 bytes before it
    ("a NUL byte", (HEADER + GOOD + "2014-04-10 00:02:00,\x003\n").encode(),
     ":4: count '\\x003' is not a number"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "message"), [(c, m) for _, c, m in REFUSED],
                         ids=[name for name, _, _ in REFUSED])  # fmt: skip
def test_a_file_that_cannot_be_a_trace_is_refused_with_file_and_line(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "trace.csv"
    path.write_bytes(content)
    with pytest.raises(TraceError) as refused:
        read_trace(path)
    assert str(refused.value).startswith(f"{path}{message}"), str(refused.value)


def test_the_command_exits_2_naming_file_and_line_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "spiky.csv"
    path.write_text(HEADER + GOOD + "2014-04-10 00:02:00,-1\n")
    done = subprocess.run(
        [sys.executable, str(BENCH / "autoscale_sim.py"), "--trace", str(path), "--no-plots",
         "--no-robustness", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.strip() == f"error: {path}:4: count '-1' must be a finite number >= 0"
    assert "Traceback" not in done.stdout + done.stderr
    assert not list(tmp_path.glob("autoscale-*")), "no results for a refused trace"


def test_repeated_timestamps_are_summed_and_said(tmp_path: Path) -> None:
    path = tmp_path / "overlap.csv"
    path.write_text(HEADER + "1400000000,5\n1400000060,7\n1400000000,2\n1400000120,1\n"
                    "1400000060,3\n")  # fmt: skip
    trace = read_trace(path)
    assert trace.counts.tolist() == [5 + 2, 7 + 3, 1]
    assert trace.offsets.tolist() == [0, 60, 120]
    assert trace.notes == ("2 row(s) repeat an earlier timestamp (first: line 4, as line 2): "
                           "their counts are summed into one bucket",)  # fmt: skip


def test_gaps_are_reported_with_their_total_length(tmp_path: Path) -> None:
    minutes = [0, 1, 2, 12, 13, 14, 18, 19]  # 3-11 missing (9 min), 15-17 missing (3 min)
    path = tmp_path / "holes.csv"
    path.write_text(HEADER + "".join(f"{1400000000 + 60 * m},4\n" for m in minutes))
    trace = read_trace(path)
    assert trace.bucket_seconds == 60
    assert trace.total == 4 * len(minutes)
    assert trace.notes == (
        "2 gap(s) without rows, 12m00s in all (longest 9m00s): no arrivals there",
    )


def test_the_shared_traces_read_without_notes_or_with_their_gaps_named() -> None:
    """The real traces still read (when present here): the checks refuse nothing they hold."""
    folder = Path(__file__).resolve().parents[3] / "shared" / "data" / "arrival_rates"
    files = sorted(folder.glob("*.csv"))
    if not files:
        pytest.skip(f"no shared traces in {folder}")
    for path in files:
        trace = read_trace(path)
        assert len(trace.counts) > 1000, path
        assert trace.total > 0, path
        assert all("repeat" not in note for note in trace.notes), trace.notes
