"""CPU seconds per process tree, from /proc: where a benchmark's cycles go on this machine."""

from __future__ import annotations

import os
from pathlib import Path

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


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of `root` and its live descendants in the same session (servers the
    stack started run in sessions of their own and are counted by name, not here)."""
    own = _stat(root)
    parents = _all_parents(int(own[3])) if own else {}
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier.extend(children)
    total = 0
    for pid in tree:
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
