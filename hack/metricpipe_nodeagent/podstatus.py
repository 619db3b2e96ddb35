"""Pod status as a kubelet reports it (pure): phase, conditions, container states, restarts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .node import rfc3339

BACKOFF_FIRST_SECONDS = 10.0  # the kubelet's crash-loop back-off: 10 s, doubling, at most 5 min
BACKOFF_MAX_SECONDS = 300.0
BACKOFF_RESET_SECONDS = 600.0  # ... and forgotten after 10 minutes of running well


@dataclass(frozen=True)
class Terminated:
    exit_code: int
    reason: str  # Completed | Error | OOMKilled-like names are not guessed: Completed or Error
    started_at: datetime
    finished_at: datetime
    signal: int | None = None
    message: str = ""  # the container's termination message (at most 4 KiB, as the kubelet)


@dataclass(frozen=True)
class ContainerView:
    """One container's state at one moment (the shell keeps the live version)."""

    name: str
    image: str
    pid: int | None  # running process, if any
    started_at: datetime | None
    ready: bool
    restart_count: int
    terminated: Terminated | None = None  # the current state, when terminated for good
    last_terminated: Terminated | None = None
    waiting_reason: str | None = None  # when neither running nor terminated
    waiting_message: str = ""
    started: bool = False  # running and past its startup probe (if it has one)


def decide_restart(restart_policy: str, exit_code: int) -> bool:
    return restart_policy == "Always" or (restart_policy == "OnFailure" and exit_code != 0)


def decide_backoff(restarts: int, ran_seconds: float) -> float:
    """Seconds to wait before the next start of a container that exited."""
    if ran_seconds >= BACKOFF_RESET_SECONDS:
        return 0.0
    if restarts <= 0:
        return 0.0
    return float(min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2.0 ** (restarts - 1)))


def decide_phase(views: Sequence[ContainerView]) -> str:
    if any(v.pid is not None for v in views):
        return "Running"
    if views and all(v.terminated is not None for v in views):
        clean = all(v.terminated is not None and v.terminated.exit_code == 0 for v in views)
        return "Succeeded" if clean else "Failed"
    if any(v.restart_count > 0 or v.last_terminated for v in views):
        return "Running"  # restarting: a crash-looping pod stays Running
    return "Pending"


def build_pod_status(
    views: Sequence[ContainerView], scheduled: Mapping[str, Any] | None, started: datetime,
    now: datetime,
) -> dict[str, Any]:  # fmt: skip
    phase = decide_phase(views)
    ready = bool(views) and all(v.ready for v in views) and phase == "Running"

    def condition(kind: str, ok: bool, reason: str = "") -> dict[str, Any]:
        item: dict[str, Any] = {
            "type": kind, "status": "True" if ok else "False", "lastProbeTime": None,
            "lastTransitionTime": rfc3339(now),
        }  # fmt: skip
        if reason and not ok:
            item["reason"] = reason
        return item

    conditions = [dict(scheduled)] if scheduled else []
    conditions += [
        condition("Initialized", True),
        condition("ContainersReady", ready, "ContainersNotReady"),
        condition("Ready", ready, "ContainersNotReady"),
    ]
    return {
        "phase": phase,
        "conditions": conditions,
        "hostIP": "127.0.0.1",
        "podIP": "127.0.0.1",
        "podIPs": [{"ip": "127.0.0.1"}],
        "startTime": rfc3339(started),
        "containerStatuses": [_container_status(v) for v in views],
    }


def _container_status(view: ContainerView) -> dict[str, Any]:
    state: dict[str, Any]
    if view.pid is not None and view.started_at is not None:
        state = {"running": {"startedAt": rfc3339(view.started_at)}}
    elif view.terminated is not None:
        state = {"terminated": _terminated(view.terminated)}
    else:
        state = {"waiting": {"reason": view.waiting_reason or "ContainerCreating",
                             "message": view.waiting_message}}  # fmt: skip
    status: dict[str, Any] = {
        "name": view.name,
        "image": view.image,
        "imageID": f"local://{view.image}",
        "containerID": f"local-process://{view.pid}" if view.pid else "",
        "ready": view.ready,
        "started": view.pid is not None and view.started,
        "restartCount": view.restart_count,
        "state": state,
        "lastState": {"terminated": _terminated(view.last_terminated)}
        if view.last_terminated
        else {},
    }
    return status


def _terminated(t: Terminated) -> dict[str, Any]:
    item: dict[str, Any] = {
        "exitCode": t.exit_code, "reason": t.reason, "startedAt": rfc3339(t.started_at),
        "finishedAt": rfc3339(t.finished_at),
    }  # fmt: skip
    if t.signal is not None:
        item["signal"] = t.signal
    if t.message:
        item["message"] = t.message
    return item


def carry_transition_times(
    before: Mapping[str, Any] | None, status: dict[str, Any]
) -> dict[str, Any]:
    """A condition's lastTransitionTime moves only when its status changes."""
    old = {c["type"]: c for c in (before or {}).get("conditions", [])}
    for condition in status["conditions"]:
        previous = old.get(condition["type"])
        if previous is not None and previous.get("status") == condition.get("status"):
            condition["lastTransitionTime"] = previous.get("lastTransitionTime")
    return status
