"""The stack stops exactly what it started: whole process groups, never a recycled pid."""

from __future__ import annotations

import json
import time
from pathlib import Path

from metricpipe_devstack import process


def _wait_alive(record: process.PidRecord) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and len(process.group_pids(record.pid)) < 2:
        time.sleep(0.05)


def test_stop_terminates_the_process_and_its_children(tmp_path: Path) -> None:
    # A launcher that starts a child and waits, like Elasticsearch's CLI launcher does.
    record = process.start_process(
        "parent", ["sh", "-c", "sleep 300 & wait"], run_dir=tmp_path, log_path=tmp_path / "p.log"
    )
    _wait_alive(record)
    assert len(process.group_pids(record.pid)) == 2
    assert process.is_alive(record)

    assert process.stop_process(tmp_path, "parent", grace_seconds=5) == "stopped"
    assert process.group_pids(record.pid) == []
    assert not (tmp_path / "parent.pid").exists()


def test_sigkill_after_grace_period(tmp_path: Path) -> None:
    record = process.start_process(
        "stubborn",
        ["sh", "-c", "trap '' TERM; sleep 300 & wait; sleep 300"],
        run_dir=tmp_path,
        log_path=tmp_path / "s.log",
    )
    _wait_alive(record)
    assert process.stop_process(tmp_path, "stubborn", grace_seconds=0.5) == (
        "killed after grace period"
    )
    assert process.group_pids(record.pid) == []


def test_a_recycled_pid_is_not_touched(tmp_path: Path) -> None:
    record = process.start_process(
        "victim", ["sleep", "300"], run_dir=tmp_path, log_path=tmp_path / "v.log"
    )
    # Pretend the pid file is from an older process that had the same pid.
    stale = {**record.__dict__, "start_ticks": record.start_ticks - 1}
    (tmp_path / "victim.pid").write_text(json.dumps(stale))
    assert not process.is_alive(process.PidRecord(**stale))
    assert process.stop_process(tmp_path, "victim", grace_seconds=1) == "already stopped"
    assert process.group_pids(record.pid) == [record.pid]  # untouched
    (tmp_path / "victim.pid").write_text(json.dumps(record.__dict__))
    assert process.stop_process(tmp_path, "victim", grace_seconds=2) == "stopped"
    assert process.group_pids(record.pid) == []


def test_stop_without_pid_file(tmp_path: Path) -> None:
    assert process.stop_process(tmp_path, "never-started") == "not started"
