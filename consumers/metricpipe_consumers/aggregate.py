"""Mergeable aggregates of one (window, group, partition) and the metric value they give."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .sketch import QuantileSketch

PERCENTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}


@dataclass
class Aggregate:
    """count, sum, min, max, sum of squares, a quantile sketch, and the highest offset in it."""

    count: int = 0
    total: float = 0.0
    minimum: float | None = None
    maximum: float | None = None
    sum_squares: float = 0.0
    sketch: QuantileSketch | None = None
    max_offset: int = -1
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> highest offset

    def merge(self, other: Aggregate) -> Aggregate:
        offsets = dict(self.offsets)
        for partition, offset in other.offsets.items():
            offsets[partition] = max(offset, offsets.get(partition, -1))
        sketch = self.sketch
        if other.sketch is not None:
            sketch = other.sketch if sketch is None else sketch.merge(other.sketch)
        return Aggregate(
            count=self.count + other.count,
            total=self.total + other.total,
            minimum=_pick(min, self.minimum, other.minimum),
            maximum=_pick(max, self.maximum, other.maximum),
            sum_squares=self.sum_squares + other.sum_squares,
            sketch=sketch,
            max_offset=max(self.max_offset, other.max_offset),
            offsets=offsets,
        )

    def value(
        self, aggregation: str, window_seconds: float, interpolation: str = "linear"
    ) -> float | None:
        """The metric value these aggregates give (None when undefined, e.g. avg of nothing);
        percentiles by the spec's `percentileInterpolation`."""
        if aggregation in PERCENTILES:
            quantile = PERCENTILES[aggregation]
            return self.sketch.quantile(quantile, interpolation) if self.sketch else None
        simple: dict[str, Callable[[], float | None]] = {
            "count": lambda: float(self.count),
            "rate": lambda: self.count / window_seconds,
            "ratio": lambda: self.total / self.count if self.count else None,
            "sum": lambda: self.total,
            "avg": lambda: self.total / self.count if self.count else None,
            "min": lambda: self.minimum,
            "max": lambda: self.maximum,
        }
        if aggregation not in simple:
            raise ValueError(f"unknown aggregation {aggregation!r}")
        return simple[aggregation]()

    def to_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "count": self.count,
            "sum": self.total,
            "min": self.minimum,
            "max": self.maximum,
            "sum_squares": self.sum_squares,
            "max_offset": self.max_offset,
        }
        if self.sketch is not None:
            fields["sketch"] = self.sketch.to_dict()
        return fields

    @classmethod
    def from_fields(cls, source: dict[str, Any], partition: int | None = None) -> Aggregate:
        sketch = source.get("sketch")
        max_offset = int(source.get("max_offset", -1))
        offsets = {int(k): int(v) for k, v in (source.get("offsets") or {}).items()}
        if partition is not None:
            offsets[partition] = max_offset
        return cls(
            count=int(source.get("count", 0)),
            total=float(source.get("sum") or 0.0),
            minimum=source.get("min"),
            maximum=source.get("max"),
            sum_squares=float(source.get("sum_squares") or 0.0),
            sketch=QuantileSketch.from_dict(sketch) if sketch else None,
            max_offset=max_offset,
            offsets=offsets,
        )


def _pick(chooser: Any, a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return float(chooser(a, b))
