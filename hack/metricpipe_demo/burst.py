"""Sizing the demo's burst from what the ResourceManager measures (pure).

One replica's capacity depends on this machine and on its load at the moment (JIT warm-up,
Spark's per-batch cost, two cores shared with every server), so a fixed burst either fits into
one replica — and then not scaling is the right answer — or buries four. The demo sizes the
burst at run time instead: a burst input of `overload` times one replica's measured capacity,
raised by `escalation` every `patience_seconds` that the burst runs without a scale-up, and
never lowered while it runs. BurstSizer turns the dials while the demo samples its pipelines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .replay import ReplayStats
from .report import Sample
from .schedule import BurstDial
from .settings import DemoSettings


@dataclass(frozen=True)
class BurstSizing:
    # burst input ÷ one replica's capacity. Replicas do not add up on 2 cores shared with every
    # server: 2.5 buried four replicas (a 400 rec/s burst; 4 x 63 rec/s measured under it)
    overload: float = 1.6
    patience_seconds: float = 30.0
    escalation: float = 1.5
    max_factor: int = 400


def decide_burst_factor(
    current: int,
    *,
    base_rate: float | None,
    capacity: float | None,
    burst_seconds: float,
    scaled_up: bool,
    sizing: BurstSizing = BurstSizing(),
) -> int:
    """The burst factor to use now.

    current:       the factor in use.
    base_rate:     the source's input rate without the burst, records/s (None: not known yet).
    capacity:      one replica's capacity as the ResourceManager reports it, records/s.
    burst_seconds: how long the burst has run (0 before it starts).
    scaled_up:     the pipeline already has more than one replica.
    """
    if scaled_up or not base_rate or not capacity or base_rate <= 0 or capacity <= 0:
        return current
    wanted = sizing.overload * capacity / base_rate
    wanted *= sizing.escalation ** int(max(burst_seconds, 0.0) // sizing.patience_seconds)
    return max(current, min(sizing.max_factor, math.ceil(wanted)))


class BurstSizer:
    """Turns the burst dials from the pipelines' measured capacity (see burst.py)."""

    def __init__(self, settings: DemoSettings, replay_started: float,
                 dials: dict[str, BurstDial], topics: dict[str, str]) -> None:  # fmt: skip
        self.dials, self.topics = dials, topics
        self.started = replay_started
        self.burst_start = replay_started + settings.burst_start_hours * 3600 / settings.speed
        self.burst_end = self.burst_start + settings.burst_hours * 3600 / settings.speed
        self.base_rates: dict[str, float] = {}
        self.scaled: set[str] = set()

    def update(self, samples: list[Sample], stats: ReplayStats, now: float) -> list[str]:
        if now >= self.burst_end:
            return []
        lines = []
        for sample in samples:
            dial = self.dials.get(sample.name)
            if dial is None:
                continue
            if sample.replicas > 1:
                self.scaled.add(sample.name)
            base = self._base_rate(sample.name, stats, now)
            factor = decide_burst_factor(
                dial.factor, base_rate=base, capacity=sample.capacity,
                burst_seconds=max(0.0, now - self.burst_start),
                scaled_up=sample.name in self.scaled,
            )  # fmt: skip
            if factor != dial.factor:
                dial.set(factor)
                lines.append(
                    f"burst for {sample.name}: {factor}x (input without it {base:.1f} rec/s, "
                    f"one replica measured at {sample.capacity:.0f} rec/s)"
                )
        return lines

    def _base_rate(self, name: str, stats: ReplayStats, now: float) -> float | None:
        """Records/s the source sends without the burst: measured until the burst starts."""
        if name in self.base_rates:
            return self.base_rates[name]
        until = min(now, self.burst_start)
        if until - self.started < 20:
            return None
        seconds = stats.sent_per_second.get(self.topics[name], {})
        rate = sum(c for t, c in list(seconds.items()) if t < until) / (until - self.started)
        if now >= self.burst_start:
            self.base_rates[name] = rate
        return rate
