"""LogMark: only the complete lines written after the mark, log by log."""

from __future__ import annotations

from pathlib import Path

from metricpipe_devstack.logmark import LogMark


def test_only_complete_lines_written_since_the_mark(tmp_path: Path) -> None:
    old, new, absent = tmp_path / "a.log", tmp_path / "b.log", tmp_path / "never.log"
    old.write_bytes(b'{"n": 0}\n')
    mark = LogMark.take((old, new, absent))
    with old.open("ab") as log:
        log.write(b'{"n": 1}\nTraceback (most recent call last):\n{"n": 2, "partial"')
    new.write_bytes(b'{"n": 3}\n')
    assert mark.lines() == [b'{"n": 1}', b"Traceback (most recent call last):", b'{"n": 3}']
    assert mark.json_records() == [{"n": 1}, {"n": 3}]
