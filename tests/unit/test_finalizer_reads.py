"""The finalizer reads the partition states before Kafka's log ends.

The world here: partition 0 has been caught up and idle for long (its probe had no records
yet); partition 1 is reading. While the finalizer reads the states (a sink refresh that takes
its time), new records land in partition 0 and partition 1's state moves on past them. Had the
log ends been read before the states, partition 0 would look idle and current, the mark would
follow partition 1 alone, and the windows of partition 0's new records would be finalized
without them.
"""

from __future__ import annotations

import time
from typing import Any

from metricpipe_consumers.document import PipelineDocument
from metricpipe_consumers.documents import SinkDoc
from metricpipe_consumers.finalize import Finalizer
from metricpipe_consumers.metrics import ConsumerMetrics
from metricpipe_consumers.sink import WriteResult

HOUR = 3_600_000
NOW = int(time.time() * 1000)


class World:
    """Kafka's log ends and the sink's partition states, as the finalizer sees them."""

    def __init__(self) -> None:
        self.log_end = {0: 0, 1: 500}
        self.states = {
            0: {"kind": "partition", "partition": 0, "watermark_ms": None, "caught_up": True,
                "idle_since_ms": NOW - 10 * HOUR, "committed_offset": 0},
            1: {"kind": "partition", "partition": 1, "watermark_ms": 10 * HOUR,
                "caught_up": False, "idle_since_ms": None, "committed_offset": 400},
        }  # fmt: skip
        self.finals: list[SinkDoc] = []

    def records_arrive_during_the_read(self) -> None:
        self.log_end[0] = 30  # partition 0's first records: event times from hour 2 on
        self.states[1].update(watermark_ms=40 * HOUR, committed_offset=500)


class SlowSink:
    """The state search is where the world moves on (a refresh under load)."""

    def __init__(self, world: World) -> None:
        self.world = world

    def ensure_indices(self) -> None:
        pass

    def refresh(self) -> None:
        pass

    def search(self, index: str, query: dict[str, Any], size: int = 10_000,
               sort: list[Any] | None = None) -> list[dict[str, Any]]:  # fmt: skip
        if query == {"term": {"kind": "partition"}}:
            states = [dict(s) for s in self.world.states.values()]
            self.world.records_arrive_during_the_read()
            return states
        if query == {"term": {"kind": "pipeline"}}:
            return []
        # partials of the windows asked for: partition 1 wrote hours 0..39
        bounds = query["bool"]["filter"][1]["range"]["window_end_ms"]
        return [
            {"window_start_ms": h * HOUR, "window_end_ms": (h + 1) * HOUR, "partition": 1,
             "group": {"probe": "q"}, "count": 1, "sum": 1.0, "min": 1.0, "max": 1.0}
            for h in range(40)
            if bounds["gt"] < (h + 1) * HOUR <= bounds["lte"]
        ]  # fmt: skip

    def search_all(self, index: str, query: dict[str, Any],
                   sort: list[Any]) -> list[dict[str, Any]]:  # fmt: skip
        return self.search(index, query)

    def write(self, docs: list[SinkDoc], *, allow_refusals: bool = False) -> WriteResult:
        self.world.finals += [d for d in docs if d.body.get("kind") != "pipeline"]
        return WriteResult(written=len(docs), conflicts=0)


def _document() -> PipelineDocument:
    return PipelineDocument.model_validate({
        "pipeline": {"namespace": "ns", "name": "p"}, "topic": "in", "consumerGroup": "g",
        "deadLetterTopic": "in.dlq", "kafka": {"bootstrap": "k:9092"},
        "sink": {"backend": "elasticsearch", "endpoint": "http://es", "index": "idx"},
        "spec": {"source": {"tag": "t"},
                 "metric": {"aggregation": "count", "groupBy": ["probe"], "window": "1h",
                            "allowedLateness": "5m"}},
    })  # fmt: skip


def test_records_that_land_while_the_states_are_read_keep_their_partition_from_being_idle() -> None:
    world = World()
    finalizer = Finalizer(_document(), SlowSink(world), ConsumerMetrics("ns/p"),
                          idle_timeout_seconds=60)  # fmt: skip
    finalizer.run(owns_leader_partition=True, partition_count=2,
                  log_end=lambda count: {p: world.log_end[p] for p in range(count)})  # fmt: skip
    # partition 0 now has records and no watermark yet: nothing may be finalized
    assert world.finals == []
    assert finalizer.finalized_through < 0


def test_once_both_partitions_report_the_mark_follows_the_slower() -> None:
    world = World()
    world.records_arrive_during_the_read()
    world.states[0].update(watermark_ms=5 * HOUR, caught_up=True, idle_since_ms=NOW,
                           committed_offset=30)  # fmt: skip
    finalizer = Finalizer(_document(), SlowSink(world), ConsumerMetrics("ns/p"),
                          idle_timeout_seconds=60)  # fmt: skip
    finalizer.run(owns_leader_partition=True, partition_count=2,
                  log_end=lambda count: {p: world.log_end[p] for p in range(count)})  # fmt: skip
    # partition 0 caught up only just now (not idle): hours 0..3 close, hour 4 waits for
    # 5 h + 5 min of lateness
    assert finalizer.finalized_through == 4 * HOUR
    assert sorted(d.body["window_start_ms"] for d in world.finals) == [h * HOUR for h in range(4)]
