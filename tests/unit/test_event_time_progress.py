"""Every record advances time: filtered records move their partition's watermark, idle
partitions follow the wall clock, and the per-window group cap (virtual clock, no servers)."""

from __future__ import annotations

import json

import pytest

from metricpipe_consumers.aggregate import Aggregate
from metricpipe_consumers.finalize import (
    MarkSamples,
    PipelineMark,
    decide_pipeline_watermark,
    idle_watermark,
)
from metricpipe_consumers.records import RecordLimits
from metricpipe_consumers.reference import compute_reference
from metricpipe_consumers.state import PartitionState, load_partition_state
from metricpipe_contract.model import MetricPipelineSpec

MIN = 60_000
SPARSE = MetricPipelineSpec.model_validate({
    "source": {"tag": "a", "filters": [{"field": "status", "matches": "^5"}]},
    "metric": {"aggregation": "count", "window": "1m", "allowedLateness": "10s",
               "eventTime": {"field": "ts", "format": "epoch_millis"}},
})  # fmt: skip


def rec(ts: int, status: int) -> bytes:
    return json.dumps({"ts": ts, "status": status}).encode()


def test_filtered_records_move_the_watermark_so_late_is_decided_by_all_records() -> None:
    """A 5xx at 0:05 counts; 200s up to 1:20 are filtered but move the watermark past the
    first window's end + lateness, so a 5xx for it arriving afterwards is late."""
    records = [(0, 0, rec(5_000, 500)), (0, 1, rec(80_000, 200)), (0, 2, rec(30_000, 503))]
    result = compute_reference(SPARSE, records, now_ms=10 * MIN)
    assert result.filtered == 1
    assert result.dead_letters == {"late": 1}
    assert result.windows[(0, ())].count == 1


def test_filtered_records_from_the_future_do_not_move_it() -> None:
    records = [(0, 0, rec(5_000, 500)), (0, 1, rec(10**13, 200)), (0, 2, rec(30_000, 503))]
    result = compute_reference(SPARSE, records, now_ms=10 * MIN)
    assert result.dead_letters == {}
    assert result.windows[(0, ())].count == 2


@pytest.mark.parametrize(
    ("watermark", "idle_since", "now", "timeout", "expected"),
    [
        # live data: the mark is where the clock was when the partition went quiet
        (100_000, 100_000, 100_000 + 5_000, 5_000, 100_000),  # just idle: no advance yet
        (100_000, 100_000, 100_000 + 65_000, 5_000, 160_000),  # then at the clock's pace
        # old data (a replay of 2016 logs today): goes on from its own time, not from today
        (1_000, 100_000, 100_000 + 65_000, 5_000, 61_000),
        # a mark ahead of the clock (within the future skew) is never pulled further
        (200_000, 100_000, 100_000 + 65_000, 5_000, 200_000),
        (180_000, 100_000, 100_000 + 65_000, 5_000, 180_000),
        # never past now - timeout by the clock
        (99_000, 100_000, 100_000 + 65_000, 5_000, 159_000),
    ],
)
def test_idle_watermark(watermark: int, idle_since: int, now: int, timeout: int,
                        expected: int) -> None:  # fmt: skip
    assert idle_watermark(watermark, idle_since, now, timeout) == expected


def _state(partition: int, watermark: int | None, idle_since: int | None) -> dict[str, object]:
    return {"partition": partition, "watermark_ms": watermark, "caught_up": idle_since is not None,
            "idle_since_ms": idle_since, "committed_offset": 10}  # fmt: skip


def test_a_sparse_metric_s_last_window_closes_once_every_partition_is_idle() -> None:
    """Window [0, 60 s), lateness 10 s, idle timeout 30 s; records stopped at event time 50 s,
    read at wall time 50 s. The window may close once the pipeline mark reaches 70 s: at wall
    time 50 + 30 (idle) + 20 = 100 s = window end + lateness + idle timeout."""
    timeout = 30_000
    states = [_state(0, 50_000, 50_000), _state(1, 42_000, 50_000)]

    def mark(now: int) -> int | None:
        return decide_pipeline_watermark(states, 2, now, timeout, log_end={0: 10, 1: 10})

    assert mark(79_000) == 42_000  # not idle long enough: both still hold it back
    assert mark(80_000) == 50_000
    assert mark(99_999) == 69_999
    assert mark(100_000) == 70_000  # 60 s window end + 10 s lateness: the window closes
    # a record that arrived meanwhile (log end 11 > committed 10) stops the clock's part
    arrived = {0: 11, 1: 10}
    found = decide_pipeline_watermark(states, 2, 100_000, timeout, arrived, settled_ms=60_000)
    assert found == 50_000
    # and p1, idle, vouches no further than p0's mark one idle timeout ago
    found = decide_pipeline_watermark(states, 2, 100_000, timeout, arrived, settled_ms=45_000)
    assert found == 45_000


def test_an_idle_partition_without_any_record_holds_the_others_one_idle_timeout_back() -> None:
    states = [_state(0, None, 0), _state(1, 70_000, None)]
    assert decide_pipeline_watermark(states, 2, 200_000, 30_000, settled_ms=40_000) == 40_000
    assert decide_pipeline_watermark(states, 2, 200_000, 30_000, settled_ms=None) is None
    states = [_state(0, None, 0), _state(1, None, 0)]
    assert decide_pipeline_watermark(states, 2, 200_000, 30_000) is None


@pytest.mark.parametrize(
    ("samples", "wall", "expected"),
    [
        ((), 10, None),
        (((5, 100),), 4, None),
        (((5, 100),), 5, 100),
        (((5, 100), (8, 300), (12, 200)), 11, 300),  # the last one taken by then
        (((5, 100), (8, 300), (12, 200)), 99, 200),
    ],
)  # fmt: skip
def test_mark_samples_at(samples: tuple[tuple[int, int], ...], wall: int,
                         expected: int | None) -> None:  # fmt: skip
    assert MarkSamples(samples).at(wall) == expected


def test_mark_samples_keep_the_last_one_before_the_bound_and_all_after() -> None:
    marks = MarkSamples(((1, 10), (2, 20), (3, 30)))
    assert marks.add(4, 40, keep_from_ms=2).samples == ((2, 20), (3, 30), (4, 40))
    assert marks.add(4, 40, keep_from_ms=0).samples == ((1, 10), (2, 20), (3, 30), (4, 40))
    assert marks.add(9, 90, keep_from_ms=9).samples == ((9, 90),)


@pytest.mark.parametrize("skew_ms", [0, 1_000, 4_500])
def test_a_replay_reaching_an_empty_partition_late_is_not_finalized_past(skew_ms: int) -> None:
    """A replay at 100x: partition 0 reads on from event time 0, partition 1 had no record
    and is idle. Partition 1's first record, event time 1,000 s, is sent together with
    partition 0's but reaches Kafka `skew_ms` later (under the 5 s idle timeout), and its
    consumer reads it 500 ms after that. Rounds every 250 ms of wall time. The pipeline mark
    must stay below 1,000 s until partition 1's state holds that record, and go on after."""
    timeout, first = 5_000, 1_000_000
    sent_at = 20_000 + first // 100  # wall time at which partition 0 reached it
    delivered, read = sent_at + skew_ms, sent_at + skew_ms + 500
    mark = PipelineMark(timeout)
    reached = []
    for wall in range(20_000, 60_000, 250):
        p0 = {"partition": 0, "watermark_ms": (wall - 20_000) * 100, "caught_up": False,
              "idle_since_ms": None, "committed_offset": wall}  # fmt: skip
        p1 = _state(1, None, 0) if wall < read else _state(1, first, read)
        p1["committed_offset"] = 0 if wall < read else 1
        ends = {0: wall, 1: 0 if wall < delivered else 1}
        found = mark.observe([p0, p1], 2, wall, ends)
        if wall < read:
            assert found is None or found < first, (wall, found)
        reached.append(found or 0)
    assert max(reached) >= 3_000_000  # it went on once the record was read


def test_group_cap_per_window_and_partition() -> None:
    state = PartitionState(0)
    assert [state.admit(0, (g,), 2) for g in ("a", "b", "c", "a", "b", "c")] == [
        True, True, False, True, True, False,
    ]  # fmt: skip
    assert state.admit(MIN, ("c",), 2)  # another window has its own cap
    state.forget_closed(MIN, MIN)  # window 0 final: its groups are forgotten with it
    assert set(state.groups) == {MIN}


def test_group_cap_decides_the_same_on_replay() -> None:
    """The groups loaded with a partition's open partials are the ones admitted before: a
    replay refuses the same group again."""
    first = PartitionState(0)
    verdicts = [first.admit(0, (g,), 2) for g in ("a", "b", "c")]
    partials = [
        {"window_start_ms": 0, "group": {"k": g}, "count": 1, "max_offset": offset}
        for offset, g in enumerate(("a", "b"))
    ]
    replay = load_partition_state(0, {"committed_offset": 0}, partials)
    assert [replay.admit(0, (g,), 2) for g in ("a", "b", "c")] == verdicts
    assert replay.series[(0, ("a",))] == Aggregate.from_fields(partials[0], 0)


def test_reference_applies_the_group_cap_per_partition() -> None:
    spec = MetricPipelineSpec.model_validate({
        "source": {"tag": "a"},
        "metric": {"aggregation": "count", "groupBy": ["k"], "window": "1m",
                   "eventTime": {"field": "ts", "format": "epoch_millis"}},
    })  # fmt: skip
    records = [(p, i, json.dumps({"ts": 1000 + i, "k": f"g{i % 3}"}).encode())
               for p in (0, 1) for i in range(6)]  # fmt: skip
    limits = RecordLimits(max_groups_per_window=2)
    result = compute_reference(spec, records, now_ms=MIN, limits=limits)
    assert result.dead_letters == {"oversize_key": 4}  # g2 twice in each partition
    assert {key: w.count for key, w in result.windows.items()} == {(0, ("g0",)): 4,
                                                                  (0, ("g1",)): 4}  # fmt: skip
