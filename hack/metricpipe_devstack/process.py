"""Start, identify and stop the stack's processes by pid file.

Each server runs in its own session (process group led by the pid we record), so stopping it
also stops the children it spawned (Elasticsearch's launcher starts a second JVM), and nothing
else. A pid file stores the pid and the process start time, so a recycled pid is never killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PidRecord:
    name: str
    pid: int
    start_ticks: int
    log: str


def _start_ticks(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (field 22 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # zombie: exited, not yet reaped
        return None
    return int(fields[19])


def start_process(
    name: str,
    argv: Sequence[str],
    *,
    run_dir: Path,
    log_path: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> PidRecord:
    """Start argv detached in its own session, logging to log_path; record it in run_dir."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=cwd,
            start_new_session=True,
            user=user,
        )
    ticks = _start_ticks(proc.pid) or 0
    record = PidRecord(name=name, pid=proc.pid, start_ticks=ticks, log=str(log_path))
    (run_dir / f"{name}.pid").write_text(json.dumps(record.__dict__))
    return record


def read_record(run_dir: Path, name: str) -> PidRecord | None:
    path = run_dir / f"{name}.pid"
    if not path.exists():
        return None
    return PidRecord(**json.loads(path.read_text()))


def is_alive(record: PidRecord) -> bool:
    """True when the recorded process still runs (same pid and the same start time)."""
    ticks = _start_ticks(record.pid)
    return ticks is not None and record.start_ticks in (0, ticks)


def stop_process(run_dir: Path, name: str, grace_seconds: float = 20.0) -> str:
    """SIGTERM the recorded process group, SIGKILL after the grace period; remove the pid file."""
    record = read_record(run_dir, name)
    if record is None:
        return "not started"
    outcome = "already stopped"
    if is_alive(record):
        _signal_group(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while time.monotonic() < deadline and _group_alive(record.pid):
            time.sleep(0.2)
        outcome = "stopped"
        if _group_alive(record.pid):
            _signal_group(record.pid, signal.SIGKILL)
            outcome = "killed after grace period"
            _wait_gone(record.pid, 5.0)  # SIGKILL is delivered asynchronously
    elif _start_ticks(record.pid) is None and _group_alive(record.pid):
        # The leader is gone but children of its group remain. The kernel never reuses a pid
        # while a group of that id has members, so these are ours.
        _signal_group(record.pid, signal.SIGKILL)
        outcome = "stopped orphaned children"
        _wait_gone(record.pid, 5.0)
    # Otherwise the pid now belongs to an unrelated process: leave it alone.
    (run_dir / f"{name}.pid").unlink(missing_ok=True)
    return outcome


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _wait_gone(pgid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _group_alive(pgid):
        time.sleep(0.05)


def _group_alive(pgid: int) -> bool:
    return bool(group_pids(pgid))


def group_pids(pgid: int) -> list[int]:
    """All live pids in the process group led by pgid (for status output)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(entry.name))
    return sorted(pids)
