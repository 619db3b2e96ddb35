"""Window finalisation: merge a window's partials into one final document per group, once every
partition's committed watermark passed window end + allowed lateness.

Only the replica that owns partition 0 finalizes (one writer); the others read how far it got.
Partitions caught up for longer than the idle timeout do not hold the watermark back with
their own marks: the pipeline watermark is the minimum over partitions still reading, bounded
by what those had reached one idle timeout ago, or the maximum when all are idle. Finals are
create-only, so a rerun after a crash writes nothing twice.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from .aggregate import Aggregate
from .document import PipelineDocument
from .documents import SinkDoc, build_final_doc, kafka_offset_held
from .faults import fault_point
from .metrics import ConsumerMetrics
from .sink import MetricSink

log = structlog.get_logger("metricpipe.finalize")
PAGE = 10_000


def split_idle_partitions(
    states: list[dict[str, Any]], partition_count: int, now_ms: int, idle_timeout_ms: int,
    log_end: Mapping[int, int] | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:  # fmt: skip
    """(holding, idle) partition states; None while a partition has no state yet.

    Idle: caught up (nothing to read) for longer than the idle timeout. With Kafka's log-end
    offsets (`log_end`), a partition is caught up only if its state holds the log end: a
    state written before new records arrived (consumers stopped a while, then restarted, or
    a mode switch) says "caught up" about a past that is gone.
    """
    by_partition = {int(s["partition"]): s for s in states}
    if any(p not in by_partition for p in range(partition_count)):
        return None

    def idle(state: dict[str, Any]) -> bool:
        since = state.get("idle_since_ms")
        current = log_end is None or kafka_offset_held(state) >= log_end.get(
            int(state["partition"]), 0
        )
        return (
            bool(state.get("caught_up"))
            and current
            and since is not None
            and (now_ms - int(since) >= idle_timeout_ms)
        )

    holding = [s for s in by_partition.values() if not idle(s)]
    return holding, [s for s in by_partition.values() if idle(s)]


def decide_holding_mark(holding: list[dict[str, Any]]) -> int | None:
    """The lowest watermark of the partitions still reading (None: none, or one has none)."""
    if not holding or any(s.get("watermark_ms") is None for s in holding):
        return None
    return min(int(s["watermark_ms"]) for s in holding)


def decide_pipeline_watermark(
    states: list[dict[str, Any]], partition_count: int, now_ms: int, idle_timeout_ms: int,
    log_end: Mapping[int, int] | None = None, *, settled_ms: int | None = None,
) -> int | None:  # fmt: skip
    """The event time up to which every partition's data is in the sink (None: unknown).

    Partitions still reading (not idle, see `split_idle_partitions`) hold the mark at their
    lowest watermark. An idle partition vouches only for event times that the others had
    reached one idle timeout ago (`settled_ms`, the holding mark sampled by the finalizer):
    records for it sent with those reached Kafka since, so they are in its (current) state —
    unless its producer delivers them more than an idle timeout behind the other partitions'.
    That covers a partition that never had a record and gets its first ones in a replay or a
    backfill after the others moved on. Without a sample that old, nothing is decided.
    When every partition is idle the mark is the highest `idle_watermark`: event time goes
    on at the wall clock's pace while nothing arrives, so the last window of a sparse metric
    closes too.
    """
    split = split_idle_partitions(states, partition_count, now_ms, idle_timeout_ms, log_end)
    if split is None:
        return None
    holding, idle = split
    if holding:
        low = decide_holding_mark(holding)
        if low is None or not idle:
            return low
        return None if settled_ms is None else min(low, settled_ms)
    marks = [
        idle_watermark(int(s["watermark_ms"]), int(s["idle_since_ms"]), now_ms, idle_timeout_ms)
        for s in idle
        if s.get("watermark_ms") is not None
    ]
    return max(marks) if marks else None


@dataclass(frozen=True)
class MarkSamples:
    """Holding marks sampled by wall time, oldest first: what the partitions still reading had
    reached at each finalisation round."""

    samples: tuple[tuple[int, int], ...] = ()

    def at(self, wall_ms: int) -> int | None:
        """The last mark sampled at or before `wall_ms`."""
        found = None
        for taken, mark in self.samples:
            if taken > wall_ms:
                break
            found = mark
        return found

    def add(self, wall_ms: int, mark: int, keep_from_ms: int) -> MarkSamples:
        """With a new sample; drops those older than the last one at or before `keep_from_ms`."""
        samples = (*self.samples, (wall_ms, mark))
        first = 0
        for index, (taken, _mark) in enumerate(samples):
            if taken <= keep_from_ms:
                first = index
        return MarkSamples(samples[first:])


@dataclass
class PipelineMark:
    """The pipeline watermark round by round, with the samples the idle rule needs. Kept in
    memory by the finalizing replica: a new owner starts empty and, while some partitions are
    idle, decides nothing for one idle timeout."""

    idle_timeout_ms: int
    marks: MarkSamples = MarkSamples()

    def observe(
        self, states: list[dict[str, Any]], partition_count: int, now_ms: int,
        log_end: Mapping[int, int] | None,
    ) -> int | None:  # fmt: skip
        settled_at = now_ms - self.idle_timeout_ms
        split = split_idle_partitions(states, partition_count, now_ms, self.idle_timeout_ms,
                                      log_end)  # fmt: skip
        holding = decide_holding_mark(split[0]) if split is not None else None
        if holding is not None:
            self.marks = self.marks.add(now_ms, holding, keep_from_ms=settled_at)
        return decide_pipeline_watermark(
            states, partition_count, now_ms, self.idle_timeout_ms, log_end,
            settled_ms=self.marks.at(settled_at),
        )  # fmt: skip


def idle_watermark(watermark_ms: int, idle_since_ms: int, now_ms: int, idle_timeout_ms: int) -> int:
    """An idle partition's watermark: its own, advanced by the wall-clock time it has been
    idle beyond the idle timeout, but never by the clock past `now - idle timeout`.

    Why slow records stay counted: a window closes only once the mark passes its end +
    allowed lateness, and the advanced mark is at most `now - idle timeout` with `now` read
    before Kafka's log ends (a record already in the log keeps its partition from being
    idle). So a record that reaches Kafka less than allowed lateness + idle timeout after
    its event time is never late because of the clock. A replay of old data that pauses
    for longer than the idle timeout goes on from where it stopped, not from today.
    """
    advanced = min(watermark_ms + now_ms - idle_since_ms, now_ms) - idle_timeout_ms
    return max(watermark_ms, advanced)


class Finalizer:
    def __init__(
        self, doc: PipelineDocument, sink: MetricSink, metrics: ConsumerMetrics,
        idle_timeout_seconds: float = 60.0, fault_exit_at: str | None = None,
    ) -> None:  # fmt: skip
        self.doc = doc
        self.fault_exit_at = fault_exit_at  # tests only (faults.FAULT_POINTS)
        self.idle_timeout_ms = round(idle_timeout_seconds * 1000)
        self.sink = sink
        self.metrics = metrics
        self.state_index = f"{doc.sink.index}-state"
        self.finalized_through = -(2**62)
        # After a switch from batch: records batch runs read (Kafka time before this) and
        # whose windows are final are skipped, not dead-lettered as late.
        self.batch_read_through: int | None = None
        self.pipeline_mark = PipelineMark(self.idle_timeout_ms)

    def load(self) -> None:
        progress = load_progress(self.sink, self.state_index)
        if progress.finalized_through is not None:  # never backwards: a round may be running
            self.finalized_through = max(self.finalized_through, progress.finalized_through)
        self.batch_read_through = progress.batch_read_through or self.batch_read_through

    def run(
        self, *, owns_leader_partition: bool, partition_count: int,
        log_end: Callable[[int], dict[int, int]] | None = None,
    ) -> None:  # fmt: skip
        """`log_end(partition_count)`: Kafka's log-end offset of every partition, read now."""
        if not owns_leader_partition:
            self.load()
            return
        # Order matters. The clock is read first, then the states, then the log ends. A record
        # that reaches Kafka before the log ends are read finds its partition not idle; one
        # that arrives later is younger than every state read (they were read before it
        # arrived) and than the clock (the idle rule's bound). Log ends read before the states
        # let a caught-up partition look idle while its new records arrived, during a slow
        # refresh, behind records of other partitions whose states then moved the mark on.
        now_ms = int(time.time() * 1000)
        self.sink.refresh()
        states = self.sink.search(self.state_index, {"term": {"kind": "partition"}})
        ends = log_end(partition_count) if log_end is not None else None
        watermark = self.pipeline_mark.observe(states, partition_count, now_ms, ends)
        if watermark is None:
            return
        self.metrics.pipeline_watermark.set(watermark / 1000)
        window = self.doc.window_ms
        through = (watermark - self.doc.lateness_ms) // window * window
        while through > self.finalized_through:
            done = self._finalize_page(through)
            if done is None:
                break
            self._save(done)

    def _finalize_page(self, through: int) -> int | None:
        """Finalize the next windows up to `through`; returns the window end reached."""
        partials = self.sink.search(
            self.doc.sink.index,
            {"bool": {"filter": [
                {"term": {"final": False}},
                {"range": {"window_end_ms": {"gt": self.finalized_through, "lte": through}}},
            ]}},
            size=PAGE,
            sort=[{"window_end_ms": "asc"}],
        )  # fmt: skip
        if not partials:
            return through
        ends = sorted({int(p["window_end_ms"]) for p in partials})
        if len(partials) >= PAGE:
            if len(ends) == 1:
                raise RuntimeError("more than 10,000 partial documents in one window")
            ends = ends[:-1]  # the last window may be incomplete in this page
        reached = ends[-1]
        series: dict[tuple[int, tuple[str, ...]], Aggregate] = defaultdict(Aggregate)
        for partial in partials:
            if int(partial["window_end_ms"]) > reached:
                continue
            key = (
                int(partial["window_start_ms"]),
                tuple(str(v) for v in partial["group"].values()),
            )
            series[key] = series[key].merge(
                Aggregate.from_fields(partial, int(partial["partition"]))
            )
        now_ms = int(time.time() * 1000)
        metric = self.doc.spec.metric
        docs: list[SinkDoc] = [
            build_final_doc(
                self.doc.sink.index,
                pipeline=self.doc.pipeline.key,
                aggregation=metric.aggregation,
                interpolation=metric.percentile_interpolation,
                group_by=metric.group_by,
                window=(start, self.doc.window_ms),
                group=group,
                agg=agg,
                now_ms=now_ms,
            )
            for (start, group), agg in sorted(series.items())
        ]
        result = self.sink.write(docs)
        fault_point(self.fault_exit_at, "mid_finalize")
        self.metrics.finals_rewritten.inc(result.conflicts)
        for start, _group in series:
            self.metrics.finalization_delay.observe((now_ms - start - self.doc.window_ms) / 1000)
        log.info("windows finalized", series=len(docs), written=result.written,
                 already_final=result.conflicts, through=reached)  # fmt: skip
        return reached

    def _save(self, through: int) -> None:
        self.finalized_through = through
        save_progress(self.sink, self.state_index, self.doc.pipeline.key,
                      Progress(through, self.batch_read_through))  # fmt: skip


@dataclass(frozen=True)
class Progress:
    """The pipeline's progress record in the state index, kept by both modes."""

    finalized_through: int | None = None  # end of the last window whose finals are written
    batch_read_through: int | None = None  # Kafka time up to which batch runs read records


def load_progress(sink: MetricSink, state_index: str) -> Progress:
    found = sink.search(state_index, {"term": {"kind": "pipeline"}}, size=1)
    if not found:
        return Progress()
    batch = found[0].get("batch_read_through_ms")
    return Progress(
        int(found[0]["finalized_through_ms"]), int(batch) if batch is not None else None
    )


def save_progress(sink: MetricSink, state_index: str, pipeline: str, progress: Progress) -> None:
    """Versioned by the time itself: progress never moves back (a stale write is refused)."""
    through = progress.finalized_through or 0
    body: dict[str, Any] = {"kind": "pipeline", "pipeline": pipeline,
                            "finalized_through_ms": through}  # fmt: skip
    if progress.batch_read_through is not None:
        body["batch_read_through_ms"] = progress.batch_read_through
    sink.write([SinkDoc(state_index, "pipeline", body, version=max(through, 0))])
