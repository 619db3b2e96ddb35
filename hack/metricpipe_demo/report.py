"""What the demo shows: its samples of each pipeline's status and the summary (pure). The table
is the API server's own (`kubectl get mp -o wide`, demo.py); the plot is the Grafana
dashboard's panels (dashboard_plot.py)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sample:
    """One pipeline's status at one moment (seconds since the demo started)."""

    at: float
    name: str
    replicas: int
    lag: int | None
    freshness: float | None
    input_rate: float | None
    capacity: float | None
    status: Mapping[str, Any]


def build_sample(at: float, pipeline: Mapping[str, Any]) -> Sample:
    status = pipeline.get("status") or {}
    return Sample(
        at=at, name=pipeline["metadata"]["name"],
        # the consumers that exist (status), not those asked for (spec) while they start
        replicas=int(status.get("replicas", pipeline["spec"].get("replicas", 0))),
        lag=status.get("lag"), freshness=status.get("freshnessSeconds"),
        input_rate=status.get("inputRate"), capacity=status.get("capacityPerReplica"),
        status=status,
    )  # fmt: skip


def build_summary(
    samples: Sequence[Sample], targets: Mapping[str, float], events: Sequence[str],
    sent: int, replay_seconds: float,
) -> list[str]:  # fmt: skip
    lines = [f"replayed {sent:,} records in {replay_seconds:.0f} s"]
    for name in sorted({s.name for s in samples}):
        mine = [s for s in samples if s.name == name]
        fresh = [s.freshness for s in mine if s.freshness is not None]
        target = targets[name]
        met = sum(1 for f in fresh if f <= target)
        replica_seconds = sum(a.replicas * (b.at - a.at) for a, b in itertools.pairwise(mine))
        lines.append(
            f"{name}: replicas {min(s.replicas for s in mine)}..{max(s.replicas for s in mine)}, "
            f"max freshness {max(fresh, default=0):.0f} s (target {target:.0f} s), "
            f"freshness met in {met}/{len(fresh)} samples, "
            f"{replica_seconds / 60:.1f} replica-minutes"
        )
    lines.append(f"scaling events: {len(events)}")
    lines.extend(f"  {e}" for e in events)
    return lines


def describe_final(document: dict[str, Any]) -> str:
    """One final window as the demo prints it; a ratio with its two counts."""
    group = document.get("group_key") or "(all records)"
    line = f"{document['window_start']} {group}: {document['metric']} = {document['value']}"
    if document["metric"] == "ratio":
        line += f" ({document.get('numerator')} of {document.get('denominator')})"
    return line
