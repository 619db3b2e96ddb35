"""What the demo shows: its samples of each pipeline's status, the summary and the plot (pure,
but for the PNG file). The table is the API server's own (`kubectl get mp -o wide`, demo.py)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
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


def write_plot(
    path: Path, samples: Sequence[Sample], input_series: Mapping[str, Sequence[tuple[float, int]]],
    targets: Mapping[str, float],
) -> None:  # fmt: skip
    import matplotlib  # noqa: PLC0415 - only the end of the demo needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    names = sorted({s.name for s in samples})
    figure, axes = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
    for name in names:
        series = input_series.get(name, [])
        axes[0].plot([t for t, _ in series], [c for _, c in series], label=name, linewidth=0.8)
        mine = [s for s in samples if s.name == name]
        axes[1].step([s.at for s in mine], [s.replicas for s in mine], where="post", label=name)
        fresh = [s for s in mine if s.freshness is not None]
        line = axes[2].plot([s.at for s in fresh], [s.freshness for s in fresh], label=name)
        axes[2].axhline(targets[name], linestyle="--", linewidth=0.8, color=line[0].get_color())
    axes[0].set_ylabel("input (records/s)")
    axes[1].set_ylabel("consumer replicas")
    axes[2].set_ylabel("freshness (s)\n(dashed: target)")
    axes[2].set_xlabel("seconds since the demo started")
    for axis in axes:
        axis.legend(loc="upper right", fontsize="small")
        axis.grid(alpha=0.3)
    figure.suptitle("metricpipe demo: input, replicas and freshness")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def describe_final(document: dict[str, Any]) -> str:
    """One final window as the demo prints it; a ratio with its two counts."""
    group = document.get("group_key") or "(all records)"
    line = f"{document['window_start']} {group}: {document['metric']} = {document['value']}"
    if document["metric"] == "ratio":
        line += f" ({document.get('numerator')} of {document.get('denominator')})"
    return line
