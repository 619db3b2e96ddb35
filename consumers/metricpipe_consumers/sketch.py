"""A mergeable quantile sketch with a relative-error guarantee (logarithmic buckets).

Every value v > 0 falls into bucket i = ceil(log_gamma(v)) with gamma = (1 + a) / (1 - a); the
bucket's representative 2 * gamma^i / (gamma + 1) is within relative error `a` of every value in
the bucket. Negative values use mirrored buckets; zero has its own count. Merging adds counts,
so partial sketches of partitions merge exactly into the window's sketch. With a = 0.01 the
estimate of every rank is within 1 % of the exact value at that rank.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

DEFAULT_RELATIVE_ACCURACY = 0.01


@dataclass
class QuantileSketch:
    alpha: float = DEFAULT_RELATIVE_ACCURACY
    positive: Counter[int] = field(default_factory=Counter)
    negative: Counter[int] = field(default_factory=Counter)
    zero: int = 0

    @property
    def gamma(self) -> float:
        return (1 + self.alpha) / (1 - self.alpha)

    @property
    def count(self) -> int:
        return self.zero + sum(self.positive.values()) + sum(self.negative.values())

    def add(self, value: float, count: int = 1) -> None:
        if value > 0:
            self.positive[bucket_index(value, self.gamma)] += count
        elif value < 0:
            self.negative[bucket_index(-value, self.gamma)] += count
        else:
            self.zero += count

    def merge(self, other: QuantileSketch) -> QuantileSketch:
        if other.alpha != self.alpha:
            raise ValueError("cannot merge sketches of different accuracy")
        return QuantileSketch(
            self.alpha, self.positive + other.positive, self.negative + other.negative,
            self.zero + other.zero,
        )  # fmt: skip

    def quantile(self, q: float, method: str = "linear") -> float | None:
        """Estimate of quantile q at position h = q * (count - 1) between 0-based ranks, as
        numpy names the methods: `lower` the element at floor(h), `higher` at ceil(h),
        `nearest` at h rounded half to even, `linear` the two interpolated. Each element is
        estimated within the relative accuracy; `linear` interpolates the two estimates, so
        it is within it too when both neighbours have the same sign (within the accuracy
        times the larger neighbour's magnitude when they straddle zero)."""
        total = self.count
        if total == 0:
            return None
        return interpolate(self.value_at_rank, total, q, method)

    def value_at_rank(self, rank: int) -> float:
        """Estimate of the element at this 0-based rank (ascending)."""
        seen = 0
        for index in sorted(self.negative, reverse=True):  # most negative first
            seen += self.negative[index]
            if seen > rank:
                return -self._representative(index)
        seen += self.zero
        if seen > rank:
            return 0.0
        for index in sorted(self.positive):
            seen += self.positive[index]
            if seen > rank:
                return self._representative(index)
        raise AssertionError("rank beyond count")  # pragma: no cover

    def _representative(self, index: int) -> float:
        return 2 * self.gamma**index / (self.gamma + 1)

    def to_dict(self) -> dict[str, object]:
        return {
            "alpha": self.alpha,
            "zero": self.zero,
            "positive": {str(k): v for k, v in sorted(self.positive.items())},
            "negative": {str(k): v for k, v in sorted(self.negative.items())},
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> QuantileSketch:
        def counts(raw: object) -> Counter[int]:
            return Counter({int(k): int(v) for k, v in dict(raw or {}).items()})  # type: ignore[call-overload]

        return cls(
            float(data.get("alpha", DEFAULT_RELATIVE_ACCURACY)),  # type: ignore[arg-type]
            counts(data.get("positive")), counts(data.get("negative")),
            int(data.get("zero", 0)),  # type: ignore[call-overload]
        )  # fmt: skip


def bucket_index(magnitude: float, gamma: float) -> int:
    return math.ceil(math.log(magnitude) / math.log(gamma))


def interpolate(at_rank: Callable[[int], float], count: int, q: float, method: str) -> float:
    """Quantile q of `count` ascending elements read through `at_rank` (see `quantile`)."""
    position = q * (count - 1)
    below = math.floor(position)
    if method == "lower":
        return at_rank(below)
    if method == "higher":
        return at_rank(math.ceil(position))
    if method == "nearest":
        return at_rank(round(position))  # half to even, as numpy
    if method != "linear":
        raise ValueError(f"unknown percentile interpolation {method!r}")
    low = at_rank(below)
    if position == below:
        return low
    return low + (position - below) * (at_rank(below + 1) - low)


def exact_quantile(values: Iterable[float], q: float, method: str = "linear") -> float | None:
    """The exact quantile the sketch estimates, by the same method."""
    ordered = sorted(values)
    if not ordered:
        return None
    return interpolate(ordered.__getitem__, len(ordered), q, method)
