"""One collection cycle for all pipelines and archives, and the Prometheus view of its latest
result.

A background loop runs `Collector.collect_cycle` every interval: a constant number of batched
Kafka requests for all groups, the timestamp lookups (cached, inside a time budget), and the
sink probes. A scrape only renders the latest snapshot, so its cost does not grow with the
number of partitions; time lag is computed at scrape time (now - cached record timestamp),
so it stays exact between cycles as long as the committed offset has not moved.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector as PromCollector

from metricpipe_consumers.sink import MetricSink
from metricpipe_contract import names

from .kafka_reader import KafkaReader
from .sinkprobe import SinkProbe, fetch_sink_probe
from .targets import PipelineTarget
from .timelag import PartitionLag, decide_archived_through_ms, decide_time_lag_seconds

log = structlog.get_logger("metricpipe.exporter")


@dataclass
class Snapshot:
    taken_at: float = 0.0
    lags: dict[str, list[PartitionLag]] = field(default_factory=dict)  # target key -> partitions
    members: dict[str, int] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)
    probes: dict[str, SinkProbe] = field(default_factory=dict)
    targets: list[PipelineTarget] = field(default_factory=list)
    cycle_seconds: float = 0.0


class Collector(PromCollector):
    def __init__(
        self, reader: KafkaReader, fetch_targets: Callable[[], list[PipelineTarget]],
        sink_for: Callable[[PipelineTarget], MetricSink] | None, lookup_budget: float,
    ) -> None:  # fmt: skip
        self.reader = reader
        self.fetch_targets = fetch_targets
        self.sink_for = sink_for
        self.lookup_budget = lookup_budget
        self.snapshot = Snapshot()
        self.errors: dict[str, int] = {"targets": 0, "kafka": 0, "sink": 0}

    # -- the cycle ----------------------------------------------------------------------------
    def collect_cycle(self) -> Snapshot:
        started = time.monotonic()
        try:
            targets = self.fetch_targets()
        except Exception as error:  # a cycle never dies: count, log, keep the last snapshot
            self._failed("targets", error)
            return self.snapshot
        snapshot = Snapshot(taken_at=time.time(), targets=targets)
        try:
            self._collect_kafka(targets, snapshot)
        except Exception as error:
            self._failed("kafka", error)
            return self.snapshot
        if self.sink_for is not None:
            for target in (t for t in targets if t.kind == "pipeline"):
                try:
                    sink = self.sink_for(target)
                    count = snapshot.partitions.get(target.key)
                    ends = {p.partition: p.end_offset for p in snapshot.lags.get(target.key, [])}
                    snapshot.probes[target.key] = fetch_sink_probe(
                        sink, target.index, count, ends, int(snapshot.taken_at * 1000)
                    )
                except Exception as error:
                    self._failed("sink", error, pipeline=target.pipeline)
        snapshot.cycle_seconds = time.monotonic() - started
        self.snapshot = snapshot
        return snapshot

    def _collect_kafka(self, targets: list[PipelineTarget], snapshot: Snapshot) -> None:
        counts = self.reader.fetch_partition_counts({t.topic for t in targets})
        present = [t for t in targets if t.topic in counts]
        wanted_groups: dict[str, list[tuple[str, int]]] = {t.consumer_group: [] for t in targets}
        for t in present:
            wanted_groups[t.consumer_group] += [(t.topic, p) for p in range(counts[t.topic])]
        groups = self.reader.fetch_groups(wanted_groups)
        partitions = [(t.topic, p) for t in present for p in range(counts[t.topic])]
        ends = self.reader.fetch_end_offsets(partitions)
        # A group that never committed on a partition starts at its oldest record: its lag is
        # counted from there, consumer running or not (a new pipeline facing a backlog).
        uncommitted = [
            (t.topic, p) for t in present for p in range(counts[t.topic])
            if (t.topic, p) not in groups[t.consumer_group].committed
        ]  # fmt: skip
        starts = self.reader.fetch_start_offsets(uncommitted)
        lags: dict[str, list[PartitionLag]] = {}
        for target in present:
            committed = groups[target.consumer_group].committed
            lags[target.key] = [
                PartitionLag(target.topic, p, ends[(target.topic, p)],
                             committed.get((target.topic, p)), None,
                             starts.get((target.topic, p)))
                for p in range(counts[target.topic])
            ]  # fmt: skip
        wanted = [
            (lag.topic, lag.partition, lag.position)
            for pipeline_lags in lags.values() for lag in pipeline_lags
            if lag.position is not None and lag.position < lag.end_offset
        ]  # fmt: skip
        stamps = self.reader.fetch_timestamps(wanted, self.lookup_budget)
        for target in present:
            snapshot.partitions[target.key] = counts[target.topic]
            snapshot.members[target.key] = groups[target.consumer_group].members
            snapshot.lags[target.key] = [
                replace(lag, oldest_unprocessed_ms=stamps.get(
                    (lag.topic, lag.partition, lag.position if lag.position is not None else -1)))
                for lag in lags[target.key]
            ]  # fmt: skip

    def _failed(self, source: str, error: Exception, **context: str) -> None:
        self.errors[source] += 1
        log.warning("collection failed", source=source, error=str(error)[:300], **context)

    # -- the scrape ---------------------------------------------------------------------------
    @staticmethod
    def _archive_families(snap: Snapshot) -> Iterator[Metric]:
        """The archives' groups: lag, end offsets, partitions and the archived-through time."""
        lag = GaugeMetricFamily(names.ARCHIVE_LAG, "Records on the topic not yet on HDFS.",
                                labels=["archive", "partition"])  # fmt: skip
        end = GaugeMetricFamily(names.ARCHIVE_TOPIC_OFFSET, "Log-end offset of the topic.",
                                labels=["archive", "partition"])  # fmt: skip
        count = GaugeMetricFamily(names.ARCHIVE_TOPIC_PARTITIONS, "Partitions of the topic.",
                                  labels=["archive"])  # fmt: skip
        through = GaugeMetricFamily(
            names.ARCHIVE_THROUGH,
            "Every record whose Kafka time is before this (Unix s) is on HDFS.",
            labels=["archive"],
        )
        for target in (t for t in snap.targets if t.kind == "archive"):
            key, parts = target.pipeline, snap.lags.get(target.key, [])
            if target.key in snap.partitions:
                count.add_metric([key], snap.partitions[target.key])
            for part in parts:
                end.add_metric([key, str(part.partition)], part.end_offset)
                if part.records is not None:
                    lag.add_metric([key, str(part.partition)], part.records)
            mark = decide_archived_through_ms(parts, int(snap.taken_at * 1000)) if parts else None
            if mark is not None:
                through.add_metric([key], mark / 1000)
        yield from (lag, end, count, through)

    def collect(self) -> Iterator[Metric]:
        snap, now = self.snapshot, time.time()
        now_ms = int(now * 1000)
        group_labels = ["pipeline", "consumergroup", "topic", "partition"]
        current = GaugeMetricFamily(
            names.GROUP_CURRENT_OFFSET, "Committed offset of the group.", labels=group_labels
        )
        lag = GaugeMetricFamily(
            names.GROUP_LAG, "Records not yet processed by the group.", labels=group_labels
        )
        time_lag = GaugeMetricFamily(
            names.GROUP_TIME_LAG,
            "Exact time lag: now minus the timestamp of the record at the committed offset "
            "(0 when caught up).",
            labels=group_labels,
        )
        end = GaugeMetricFamily(
            names.TOPIC_PARTITION_OFFSET,
            "Log-end offset.",
            labels=["pipeline", "topic", "partition"],
        )
        count = GaugeMetricFamily(
            names.TOPIC_PARTITIONS, "Partitions of the topic.", labels=["pipeline", "topic"]
        )
        members = GaugeMetricFamily(
            names.GROUP_MEMBERS, "Members of the group.", labels=["pipeline", "consumergroup"]
        )
        target_g = GaugeMetricFamily(
            names.PIPELINE_FRESHNESS_TARGET, "spec.freshness.target.", labels=["pipeline"]
        )
        sink_mark = GaugeMetricFamily(
            names.SINK_WATERMARK,
            "Min partition watermark in the sink (Unix s).",
            labels=["pipeline"],
        )
        sink_fresh = GaugeMetricFamily(
            names.SINK_FRESHNESS, "Now minus the sink watermark.", labels=["pipeline"]
        )
        final_end = GaugeMetricFamily(
            names.SINK_FINAL_WINDOW_END,
            "End of the newest final window (Unix s).",
            labels=["pipeline"],
        )
        replicas = GaugeMetricFamily(
            names.PIPELINE_REPLICAS, "status.replicas: consumer replicas.", labels=["pipeline"]
        )
        desired = GaugeMetricFamily(
            names.PIPELINE_DESIRED_REPLICAS,
            "status.desiredReplicas: consumer replicas the operator wants.",
            labels=["pipeline"],
        )
        for target in (t for t in snap.targets if t.kind == "pipeline"):
            key = target.pipeline
            target_g.add_metric([key], target.freshness_target_seconds)
            if target.replicas is not None:
                replicas.add_metric([key], target.replicas)
            if target.desired_replicas is not None:
                desired.add_metric([key], target.desired_replicas)
            if key in snap.partitions:
                count.add_metric([key, target.topic], snap.partitions[key])
                members.add_metric([key, target.consumer_group], snap.members.get(key, 0))
            for part in snap.lags.get(key, []):
                labels = [key, target.consumer_group, part.topic, str(part.partition)]
                end.add_metric([key, part.topic, str(part.partition)], part.end_offset)
                if part.records is None:
                    continue
                lag.add_metric(labels, part.records or 0)
                if part.committed is not None:
                    current.add_metric(labels, part.committed)
                seconds = decide_time_lag_seconds(part, now_ms)
                if seconds is not None:
                    time_lag.add_metric(labels, seconds)
            probe = snap.probes.get(key)
            if probe is not None and probe.watermark_ms is not None:
                sink_mark.add_metric([key], probe.watermark_ms / 1000)
                sink_fresh.add_metric([key], max(0.0, now - probe.watermark_ms / 1000))
            if probe is not None and probe.final_window_end_ms is not None:
                final_end.add_metric([key], probe.final_window_end_ms / 1000)
        yield from (
            current,
            lag,
            time_lag,
            end,
            count,
            members,
            target_g,
            replicas,
            desired,
            sink_mark,
            sink_fresh,
            final_end,
        )
        yield from self._archive_families(snap)
        yield GaugeMetricFamily(
            names.SCRAPE_SECONDS, "Duration of the last collection cycle.", value=snap.cycle_seconds
        )
        errors = CounterMetricFamily(
            names.SCRAPE_ERRORS, "Failed collection steps.", labels=["source"]
        )
        for source, value in sorted(self.errors.items()):
            errors.add_metric([source], value)
        yield errors
        lookups = CounterMetricFamily(
            names.TIMESTAMP_LOOKUPS, "Record-timestamp lookups.", labels=["result"]
        )
        for result, value in sorted(self.reader.lookups.items()):
            lookups.add_metric([result], value)
        yield lookups
