"""Sizing the demo's burst from what the ResourceManager measures (pure).

One replica's capacity depends on this machine and on its load at the moment (JIT warm-up,
Spark's per-batch cost, two cores shared with every server), so a fixed burst either fits into
one replica — and then not scaling is the right answer — or buries four. The demo sizes the
burst at run time instead: a burst input of `overload` times one replica's measured capacity,
raised by `escalation` every `patience_seconds` that the burst runs without a scale-up, and
never lowered while it runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


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
