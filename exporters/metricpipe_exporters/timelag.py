"""Lag in records and in seconds per partition (pure).

Exact time lag (DESIGN §3): now - the timestamp of the record at the committed offset, i.e. the
age of the oldest record the group has not yet processed; 0 when the group is caught up. The
exporter reads that one record (and caches its timestamp until the committed offset moves).

`estimate_time_lag_by_interpolation` is the method of kafka-lag-exporter-style tools, kept here
only so a test can show where it goes wrong (spikes, quiet topics); the exporter never uses it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    end_offset: int  # log-end offset (next offset to be written)
    committed: int | None  # the group's committed offset (next to process); None: never
    oldest_unprocessed_ms: int | None  # timestamp of the record at `position`, when behind
    start_offset: int | None = None  # log-start offset (the oldest record kept)

    @property
    def position(self) -> int | None:
        """The next offset the group will process: the committed one, or for a group that never
        committed the log start (the consumers start at the earliest record)."""
        return self.committed if self.committed is not None else self.start_offset

    @property
    def records(self) -> int | None:
        position = self.position
        if position is None:
            return None
        return max(0, self.end_offset - position)


def decide_time_lag_seconds(lag: PartitionLag, now_ms: int) -> float | None:
    """Seconds the oldest unprocessed record has waited; 0 when caught up; None when unknown
    (the record's timestamp is not read yet, or a group that never committed on a partition
    that holds nothing: there is no record to be late with). Never negative (a producer clock
    ahead of ours) and never NaN."""
    records = lag.records
    if records is None:
        return None
    if records == 0:
        return 0.0 if lag.committed is not None else None
    if lag.oldest_unprocessed_ms is None:
        return None
    return max(0.0, (now_ms - lag.oldest_unprocessed_ms) / 1000)


def estimate_time_lag_by_interpolation(
    history: Sequence[tuple[float, int]], committed: int, now: float
) -> float:
    """The interpolation estimate: from a table of (time, log-end offset) samples, the time at
    which the log end was at `committed`, linear between samples and extrapolated from the last
    two beyond them; lag = now - that time. NaN when the table cannot say (one sample, or a
    quiet topic where the offsets did not move)."""
    if len(history) < 2:
        return math.nan
    points = sorted(history)
    for (t0, o0), (t1, o1) in itertools.pairwise(points):
        if o0 <= committed <= o1:
            return now - _at(t0, o0, t1, o1, committed)
    (t0, o0), (t1, o1) = (points[0], points[1]) if committed < points[0][1] else points[-2:]
    return now - _at(t0, o0, t1, o1, committed)


def _at(t0: float, o0: int, t1: float, o1: int, offset: int) -> float:
    if o1 == o0:
        return math.nan  # no movement: the slope is undefined
    return t0 + (offset - o0) * (t1 - t0) / (o1 - o0)


def decide_archived_through_ms(lags: Sequence[PartitionLag], taken_at_ms: int) -> int | None:
    """An archive's group: the Kafka time before which every record is archived — the oldest
    record not yet archived over all partitions, a caught-up partition counting as `taken_at_ms`
    (all it held then is archived). None while any partition's position or record time is
    unknown (a partial answer would claim records that may not be there)."""
    through: list[int] = []
    for lag in lags:
        records = lag.records
        if records is None:
            return None
        if records == 0:
            through.append(taken_at_ms)
        elif lag.oldest_unprocessed_ms is None:
            return None
        else:
            through.append(lag.oldest_unprocessed_ms)
    return min(through) if through else None
