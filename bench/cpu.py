"""CPU seconds per process tree, from /proc: where a benchmark's cycles go on this machine."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from metricpipe_devstack.process import read_record

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields after "(comm)", from field 3 on


def _all_parents(session: int) -> dict[int, int]:
    """pid -> parent pid of the live processes in `session`."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if (
            entry.name.isdigit()
            and (fields := _stat(int(entry.name)))
            and int(fields[3]) == session
        ):
            parents[int(entry.name)] = int(fields[1])
    return parents


def tree_pids(root: int) -> set[int]:
    """`root` and its live descendants in the same session."""
    own = _stat(root)
    parents = _all_parents(int(own[3])) if own else {}
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    return tree


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of `root` and its live descendants in the same session (servers the
    stack started run in sessions of their own and are counted by name, not here)."""
    total = 0
    for pid in tree_pids(root):
        if fields := _stat(pid):
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


def snapshot(run_dir: Path, servers: tuple[str, ...]) -> dict[str, float]:
    """CPU seconds so far of this process (with its Spark JVM) and of the named servers."""
    seconds = {"consumer (python + spark jvm)": tree_cpu_seconds(os.getpid())}
    for name in servers:
        record = read_record(run_dir, name)
        if record is not None:
            seconds[name] = tree_cpu_seconds(record.pid)
    return seconds


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {name: round(after[name] - before.get(name, 0.0), 2) for name in after}


PR_SET_CHILD_SUBREAPER = 36


@dataclass(frozen=True)
class FinishedRun:
    returncode: int
    wall_seconds: float  # from the process's start to its exit
    cpu_seconds: float  # user + system of the process and every descendant, exactly
    descendants: int  # processes below it that were seen and reaped (the Spark JVM)


def run_to_exit(argv: list[str], env: dict[str, str], stdout: IO[bytes], log: IO[bytes],
                timeout: float) -> FinishedRun:  # fmt: skip
    """Runs a process to its end and counts the CPU of its whole tree exactly. A process that
    outlives its parent is lost to /proc sampling and to the parent's child times: PySpark
    never waits for its JVM (it ends when Python's end closes its stdin). So this process
    becomes a child subreaper: the orphaned JVM is re-parented here and reaped with wait4,
    whose times count its own children too; the Python process's wait4 counts those it
    reaped itself."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    seen: set[int] = set()
    began = time.monotonic()
    process = subprocess.Popen(argv, env=env, stdout=stdout, stderr=log)
    done = threading.Event()

    def watch() -> None:  # descendants, to know which orphans to reap later
        while not done.is_set():
            seen.update(tree_pids(process.pid))
            done.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    finished = _reap(process.pid, began + timeout)
    wall = time.monotonic() - began
    done.set()
    watcher.join()
    assert finished is not None
    process.returncode = os.waitstatus_to_exitcode(finished[0])  # Popen must not wait again
    seconds, reaped = finished[1], 0
    for pid in seen - {process.pid}:  # orphans now ours; those reaped by their parent are
        if (child := _reap(pid, time.monotonic() + 30)) is not None:  # in its times
            seconds += child[1]
            reaped += 1
    return FinishedRun(process.returncode, wall, seconds, reaped)


def _reap(pid: int, deadline: float) -> tuple[int, float] | None:
    """(wait status, user + system seconds) of a child of this process once it exits (killed
    at `deadline`); None when it is not a child of this process."""
    while True:
        try:
            found, status, usage = os.wait4(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if found:
            return status, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
