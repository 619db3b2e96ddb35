"""The consumer's record and window semantics in plain Python (no Spark, no sink), built on
the consumer's own parser.

Given the records of a topic in offset order per partition, it decides what the stream
consumer decides: which records count, which are dead-lettered and why (including `late`
against each partition's event-time watermark), and each window's exact value. Being built
on the product's parser it is not evidence on its own: `tests/unit/test_oracle.py` compares
it with the independent oracle (`tests/oracle.py`), which the integration tests use.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from metricpipe_contract.durations import parse_duration
from metricpipe_contract.model import MetricPipelineSpec

from .aggregate import PERCENTILES
from .records import DEFAULT_LIMITS, Filtered, Parsed, RecordLimits, RecordParser, Rejected
from .sketch import exact_quantile


@dataclass
class ReferenceWindow:
    values: list[float] = field(default_factory=list)
    count: int = 0

    def value(
        self, aggregation: str, window_seconds: float, interpolation: str = "linear"
    ) -> float | None:
        if aggregation in ("count", "rate"):
            return float(self.count) if aggregation == "count" else self.count / window_seconds
        if not self.values:
            return None
        if aggregation in PERCENTILES:
            return exact_quantile(self.values, PERCENTILES[aggregation], interpolation)
        if aggregation in ("avg", "ratio"):  # ratio: values are 1.0 (numerator) or 0.0
            return sum(self.values) / len(self.values)
        if aggregation == "sum":
            return sum(self.values)
        return min(self.values) if aggregation == "min" else max(self.values)


@dataclass
class ReferenceResult:
    windows: dict[tuple[int, tuple[str, ...]], ReferenceWindow]
    dead_letters: Counter[str]
    filtered: int


def compute_reference(
    spec: MetricPipelineSpec, records: Iterable[tuple[int, int, bytes | None]],
    now_ms: int | None = None, limits: RecordLimits = DEFAULT_LIMITS,
) -> ReferenceResult:  # fmt: skip
    """records: (partition, offset, value bytes), in offset order within each partition;
    `now_ms`: the time records are judged at for `future` (default: now)."""
    parser = RecordParser(spec, limits=limits)
    judged_at = int(time.time() * 1000) if now_ms is None else now_ms
    cap = parser.limits.max_groups_per_window
    window_ms = round(parse_duration(spec.metric.window) * 1000)
    lateness_ms = round(parse_duration(spec.metric.allowed_lateness) * 1000)
    watermarks: dict[int, int] = {}
    groups: dict[tuple[int, int], set[tuple[str, ...]]] = {}  # (partition, window) -> groups
    windows: dict[tuple[int, tuple[str, ...]], ReferenceWindow] = {}
    dead: Counter[str] = Counter()
    filtered = 0
    for partition, _offset, raw in records:
        parsed = parser.parse(raw, judged_at)
        if isinstance(parsed, Filtered):
            filtered += 1
            if parsed.event_ms is not None:  # read, not counted: advances the watermark
                watermarks[partition] = max(watermarks.get(partition, parsed.event_ms),
                                            parsed.event_ms)  # fmt: skip
            continue
        if isinstance(parsed, Rejected):
            dead[parsed.reason] += 1
            continue
        assert isinstance(parsed, Parsed)
        start = parsed.event_ms // window_ms * window_ms
        if start + window_ms + lateness_ms <= watermarks.get(partition, -(2**62)):
            dead["late"] += 1
            continue
        watermarks[partition] = max(watermarks.get(partition, parsed.event_ms), parsed.event_ms)
        admitted = groups.setdefault((partition, start), set())
        if parsed.group not in admitted and len(admitted) >= cap:
            dead["oversize_key"] += 1
            continue
        admitted.add(parsed.group)
        window = windows.setdefault((start, parsed.group), ReferenceWindow())
        window.count += 1
        if parsed.value is not None:
            window.values.append(parsed.value)
    return ReferenceResult(windows, dead, filtered)
