"""When to run a container's probes and what their results mean, as a kubelet does (pure).

- The startup probe runs alone from the container's start: liveness and readiness are not run
  until it has succeeded once, and after that it is never run again. `failureThreshold`
  consecutive failures kill the container (restarted per its restartPolicy), so
  `initialDelaySeconds + failureThreshold * periodSeconds` bounds how long a start may take.
- Without a startup probe the container counts as started as soon as it runs.
- Liveness: `failureThreshold` consecutive failures kill the container.
- Readiness: not ready until it succeeds (`successThreshold` times in a row); not ready again
  after `failureThreshold` consecutive failures.
- Every probe waits `initialDelaySeconds` from the container's start, then runs every
  `periodSeconds`; a probe still running is not started again.

Times are monotonic seconds; the shell (runtime.py) runs the probes and feeds results back.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from .podplan import ContainerPlan, Probe

ProbeKind = Literal["startup", "liveness", "readiness"]


@dataclass(frozen=True)
class ProbeTrack:
    probe: Probe
    due: float  # when it runs next
    failures: int = 0  # consecutive
    successes: int = 0  # consecutive


@dataclass(frozen=True)
class ProbeState:
    started: bool  # the startup probe has succeeded (at once without one)
    ready: bool
    startup: ProbeTrack | None
    liveness: ProbeTrack | None
    readiness: ProbeTrack | None


@dataclass(frozen=True)
class ProbeVerdict:
    state: ProbeState
    kill: str | None = None  # why the container must be killed, when it must


def plan_probes(container: ContainerPlan, started_at: float) -> ProbeState:
    """The probe state of a container that (re)started at `started_at`."""

    def track(probe: Probe | None) -> ProbeTrack | None:
        return None if probe is None else ProbeTrack(probe, started_at + probe.initial_delay)

    return ProbeState(
        started=container.startup is None,
        # without a readiness probe a container is ready once it has started
        ready=container.readiness is None and container.startup is None,
        startup=track(container.startup),
        liveness=track(container.liveness),
        readiness=track(container.readiness),
    )


def _track(state: ProbeState, kind: ProbeKind) -> ProbeTrack | None:
    track: ProbeTrack | None = getattr(state, kind)
    return track


def _with(state: ProbeState, kind: ProbeKind, track: ProbeTrack) -> ProbeState:
    if kind == "startup":
        return replace(state, startup=track)
    if kind == "liveness":
        return replace(state, liveness=track)
    return replace(state, readiness=track)


def decide_due_probes(
    state: ProbeState, now: float, running: frozenset[ProbeKind] = frozenset()
) -> tuple[tuple[ProbeKind, ...], ProbeState]:
    """The probes to run now (not those still `running`), and the state with their next run
    scheduled one period later."""
    kinds: tuple[ProbeKind, ...] = ("startup",) if not state.started else ("liveness", "readiness")
    due: list[ProbeKind] = []
    for kind in kinds:
        track = _track(state, kind)
        if track is None or kind in running or now < track.due:
            continue
        due.append(kind)
        state = _with(state, kind, replace(track, due=now + track.probe.period))
    return tuple(due), state


def decide_probe_result(state: ProbeState, kind: ProbeKind, ok: bool, now: float) -> ProbeVerdict:
    """Fold one probe result into the state; say when the container must be killed."""
    track = _track(state, kind)
    if track is None or (kind == "startup") == state.started:
        return ProbeVerdict(state)  # a result that no longer applies (e.g. after start-up)
    counted = replace(
        track,
        failures=0 if ok else track.failures + 1,
        successes=track.successes + 1 if ok else 0,
    )
    state = _with(state, kind, counted)
    if kind == "readiness":
        return ProbeVerdict(replace(state, ready=_readiness(state.ready, counted)))
    if kind == "startup" and ok:
        # liveness and readiness begin now; without a readiness probe it is ready now
        begun = _begin(state, now)
        return ProbeVerdict(replace(begun, started=True, ready=state.readiness is None))
    failed = counted.failures >= track.probe.failure_threshold
    return ProbeVerdict(state, f"{kind} probe failed {counted.failures} times" if failed else None)


def _readiness(ready: bool, track: ProbeTrack) -> bool:
    if track.successes >= track.probe.success_threshold:
        return True
    if track.failures >= track.probe.failure_threshold:
        return False
    return ready


def _begin(state: ProbeState, now: float) -> ProbeState:
    """Liveness and readiness due no earlier than now (their initial delays count from the
    container's start, as the kubelet counts them)."""
    kinds: tuple[ProbeKind, ...] = ("liveness", "readiness")
    for kind in kinds:
        track = _track(state, kind)
        if track is not None:
            state = _with(state, kind, replace(track, due=max(now, track.due)))
    return state
