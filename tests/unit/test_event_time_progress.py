"""Every record advances time: filtered records move their partition's watermark, idle
partitions follow the wall clock, and the per-window group cap (virtual clock, no servers)."""

from __future__ import annotations

import json

import pytest

from metricpipe_consumers.aggregate import Aggregate
from metricpipe_consumers.finalize import decide_pipeline_watermark, idle_watermark
from metricpipe_consumers.records import RecordLimits
from metricpipe_consumers.reference import compute_reference
from metricpipe_consumers.state import PartitionState, load_partition_state
from metricpipe_operator.api.model import MetricPipelineSpec

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
    assert decide_pipeline_watermark(states, 2, 100_000, timeout, log_end={0: 11, 1: 10}) == 50_000


def test_an_idle_partition_without_any_record_holds_nothing_back() -> None:
    states = [_state(0, None, 0), _state(1, 70_000, None)]
    assert decide_pipeline_watermark(states, 2, 200_000, 30_000) == 70_000
    states = [_state(0, None, 0), _state(1, None, 0)]
    assert decide_pipeline_watermark(states, 2, 200_000, 30_000) is None


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
