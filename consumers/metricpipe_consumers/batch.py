"""One window of a batch pipeline (`python -m metricpipe_consumers batch`), start to end.

Two clocks: a record's event time (in the record) decides its window; its Kafka time (when it
arrived) decides whether it came in time. The job for window [start, end) reads the records
with Kafka time in [start - max future skew, end + allowed lateness) with Spark's Kafka batch
source: a record may carry an event time up to the skew ahead of its Kafka time (a later one
is `future`), and may arrive up to `allowedLateness` after its window closed, as in stream
mode. Of those it counts the records whose event time lies in [start, end). Every other record
read belongs to exactly one run: the run whose window holds its Kafka time reports it —
dead letters (parse errors, `future`, and `late`: Kafka time at or after its own window's end
+ lateness, so no run counted it) and filtered records; a record its own window's run counts
is only tallied here as `outside_window`. Neighbouring runs' read ranges overlap; each record
is counted once or dead-lettered once.
Parsing, aggregation and the final documents are the stream consumer's (same parser, same
Spark plan, same document model and ids), so a window has one final document per group
whichever mode computed it. The finals are written with `index` (not create-only): re-running
a window replaces its documents, never duplicates them.
Dead letters go to `<topic>.dlq` with their reason, as in stream mode; a final document the
sink refuses for its content (e.g. a group value over Elasticsearch's keyword limit) sends the
window's records of that group there with reason `sink_rejected`. A rerun of a window (after a
crash, or on request) does not send its letters again: the run reads the newest letters back
first (`letters.decide_send`).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import pyarrow as pa
from confluent_kafka import Consumer, TopicPartition
from pyspark.sql import functions as sf

from .aggregate import PERCENTILES, Aggregate
from .config import ConsumerConfig
from .document import PipelineDocument
from .documents import build_final_doc
from .engine import GROUP_SEPARATOR, SCHEMA, SparkAggregator
from .finalize import Progress, load_progress, save_progress
from .kafka_access import KafkaAccess
from .letters import Mode, Stage
from .records import Filtered, RecordParser, Rejected
from .sink import MetricSink, Refusal

MARKS_CLOCK_MARGIN_MS = 300_000  # letters about a window's records: read from its start - this


def decide_last_closed_window(now_ms: int, window_ms: int, lateness_ms: int) -> int:
    """Pure: start of the newest window whose end + lateness has passed at `now_ms`."""
    return (now_ms - lateness_ms) // window_ms * window_ms - window_ms


def decide_due_windows(
    finalized_through: int | None, first_record_ms: int | None, now_ms: int, *, window_ms: int,
    lateness_ms: int, limit: int,
) -> list[int]:  # fmt: skip
    """Pure: the windows a run computes, oldest first: every closed window after the pipeline's
    progress (a missed or failed run is made up by the next), at most `limit` of them (the
    rest go to the next run). A new pipeline (no progress yet) starts at the oldest window
    its topic's oldest record (by Kafka time) can still count in — the window holding that
    time less the lateness; with an empty topic nothing is due."""
    if finalized_through is not None:
        first = finalized_through
    elif first_record_ms is not None:
        first = (first_record_ms - lateness_ms) // window_ms * window_ms
    else:
        return []
    last = decide_last_closed_window(now_ms, window_ms, lateness_ms)
    return list(range(first, last + 1, window_ms))[:limit]


def fetch_first_record_time(
    kafka: Mapping[str, str], topic: str, timeout: float = 10.0
) -> int | None:
    """Kafka time of the oldest record the topic still holds (over all partitions), or None.
    It reads without a group (assign, no commit): no group ACL is needed."""
    consumer = Consumer({**kafka, "group.id": "metricpipe-batch-probe",
                         "enable.auto.commit": False})  # fmt: skip
    try:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        starts = []
        for partition in partitions:
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout
            )
            if high > low:
                starts.append(TopicPartition(topic, partition, low))
        consumer.assign(starts)
        times: list[int] = []
        deadline = time.monotonic() + timeout
        while len(times) < len(starts) and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                times.append(message.timestamp()[1])
                consumer.incremental_unassign(
                    [TopicPartition(topic, message.partition() or 0)]
                )  # fmt: skip
        return min(times) if times else None
    finally:
        consumer.close()


@dataclass
class BatchReport:
    pipeline: str
    window_start_ms: int
    window_end_ms: int
    records_read: int = 0
    counted: int = 0
    filtered: int = 0
    outside_window: int = 0  # records read that their own window's run counts
    dead_letters: Counter[str] = field(default_factory=Counter)
    documents: int = 0
    seconds: float = 0.0
    trimmed: bool = False  # not computed: part of its records may be gone (cachebatch.py)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline, "window_start_ms": self.window_start_ms,
            "window_end_ms": self.window_end_ms, "records_read": self.records_read,
            "counted": self.counted, "filtered": self.filtered,
            "outside_window": self.outside_window, "dead_letters": dict(self.dead_letters),
            "documents": self.documents, "seconds": round(self.seconds, 3),
            **({"trimmed": True} if self.trimmed else {}),
        }  # fmt: skip


def build_run_summary(reports: list[BatchReport], parallelism: int) -> dict[str, Any]:
    """What one run reports to the ResourceManager (its pod's termination message, at most
    4 KiB): the windows it computed, the records it read and the seconds it spent on them, and
    the windows it could not compute because the cache had trimmed them. The run's wall time
    comes from the Job; the difference is its start-up."""
    computed = [r for r in reports if not r.trimmed]
    summary: dict[str, Any] = {
        "windows": len(computed),
        "records": sum(r.records_read for r in computed),
        "workSeconds": round(sum(r.seconds for r in computed), 3),
        "parallelism": parallelism,
    }
    trimmed = [r for r in reports if r.trimmed]
    if trimmed:
        summary["trimmedWindows"] = len(trimmed)
        summary["lastTrimmedWindowStartMs"] = trimmed[-1].window_start_ms
    if computed:
        summary["firstWindowStartMs"] = computed[0].window_start_ms
        summary["lastWindowEndMs"] = computed[-1].window_end_ms
    return summary


def decide_local_parallelism(spark_master: str) -> int:
    """The N of Spark's `local[N]` (1 for `local`, the machine's CPUs for `local[*]`)."""
    inside = spark_master.removeprefix("local").strip("[]")
    if not inside:
        return 1
    if inside == "*":
        return os.cpu_count() or 1
    return int(inside.split(",")[0])


class LetterWriter(Protocol):
    """What a run uses of its dead-letter writer (deadletters.DeadLetterWriter for a topic,
    cachebatch.CacheDeadLetters for the Redis cache)."""

    mode: Mode
    window_start_ms: int | None

    def ensure_marks(self, since_ms: int | None, source_topic: str) -> None: ...

    def send(
        self, value: bytes | None, key: bytes | None, source: str, reason: str, detail: str,
        *, stage: Stage = "scan", offset_base: int = 0,
    ) -> bool: ...  # fmt: skip

    def flush(self) -> None: ...


class BatchJob:
    """A run over the pipeline's topic; cachebatch.CacheBatchJob reads the Redis cache by
    overriding `first_record_ms`, `is_trimmed`, `read_rows` and `source_of`."""

    def __init__(
        self, doc: PipelineDocument, sink: MetricSink, engine: SparkAggregator,
        dead_letters: LetterWriter, kafka: KafkaAccess | None,
    ) -> None:  # fmt: skip
        self.doc = doc
        self.kafka = kafka
        self.sink = sink
        self.engine = engine
        self.dead_letters = dead_letters
        dead_letters.mode = "batch"  # letters say which mode sent them (duplicate suppression)
        config = ConsumerConfig()  # the record limits (METRICPIPE_MAX_*), as in stream mode
        self.parser = RecordParser(doc.spec, config.max_record_bytes, limits=config.record_limits())

    def run_due(
        self, now_ms: int, limit: int, on_report: Callable[[BatchReport], None] | None = None
    ) -> list[BatchReport]:
        """Every window due (see `decide_due_windows`), each followed by the progress record,
        so a run stopped half-way resumes at the first window it did not finish. `on_report`
        gets each window's report once its progress is saved (a run killed later has said
        which windows it finished)."""
        state_index = f"{self.doc.sink.index}-state"
        self.sink.ensure_indices()
        self.sink.refresh()
        progress = load_progress(self.sink, state_index).finalized_through
        first = self.first_record_ms() if progress is None else None
        due = decide_due_windows(
            progress, first, now_ms, window_ms=self.doc.window_ms,
            lateness_ms=self.doc.lateness_ms, limit=limit,
        )  # fmt: skip
        reports = []
        for start in due:
            end = start + self.doc.window_ms
            if self.is_trimmed(start):
                reports.append(BatchReport(self.doc.pipeline.key, start, end, trimmed=True))
            else:
                reports.append(self.run(start))
            save_progress(self.sink, state_index, self.doc.pipeline.key,
                          Progress(end, end + self.doc.lateness_ms))  # fmt: skip
            if on_report is not None:
                on_report(reports[-1])
        return reports

    def first_record_ms(self) -> int | None:
        """Kafka time of the topic's oldest record (where a new pipeline starts)."""
        assert self.kafka is not None
        return fetch_first_record_time(self.kafka.settings, self.doc.topic)

    def is_trimmed(self, window_start_ms: int) -> bool:
        """A topic's retention is the user's choice: a window is always computed."""
        return False

    def source_of(self, partition: int, offset: int) -> str:
        """A record's coordinates, as dead letters name them."""
        return f"{self.doc.topic}/{partition}/{offset}"

    def run(self, window_start_ms: int) -> BatchReport:
        started = time.monotonic()
        window_ms, lateness_ms = self.doc.window_ms, self.doc.lateness_ms
        if window_start_ms % window_ms:
            raise ValueError(f"{window_start_ms} is not the start of a {window_ms} ms window")
        end = window_start_ms + window_ms
        report = BatchReport(self.doc.pipeline.key, window_start_ms, end)
        self.dead_letters.window_start_ms = window_start_ms
        # what earlier runs (and the stream consumer) sent about this window's records
        self.dead_letters.ensure_marks(window_start_ms - MARKS_CLOCK_MARGIN_MS, self.doc.topic)
        skew_ms = self.parser.limits.max_future_skew_ms
        rows = self.read_rows(window_start_ms - skew_ms, end + lateness_ms)
        table = self._scan(rows, window_start_ms, end, report)
        metric = self.doc.spec.metric
        aggregates = self.engine.aggregate(
            table, window_ms, metric.aggregation in PERCENTILES, len(metric.group_by)
        )
        merged: dict[tuple[str, ...], Aggregate] = {}
        for (_partition, _start, group), aggregate in aggregates.items():
            merged[group] = merged[group].merge(aggregate) if group in merged else aggregate
        now_ms = int(time.time() * 1000)
        docs = [
            replace(build_final_doc(
                self.doc.sink.index, pipeline=self.doc.pipeline.key,
                aggregation=metric.aggregation, interpolation=metric.percentile_interpolation,
                group_by=metric.group_by,
                window=(window_start_ms, window_ms), group=group, agg=aggregate, now_ms=now_ms,
            ), create_only=False)  # a rerun replaces
            for group, aggregate in sorted(merged.items())
        ]  # fmt: skip
        self.dead_letters.flush()
        self.sink.ensure_indices()
        refused = self.sink.write(docs, allow_refusals=True).refused if docs else ()
        if refused:
            self._dead_letter_refused(refused, rows, table, report)
        report.documents = len(docs) - len(refused)
        report.seconds = time.monotonic() - started
        return report

    def _dead_letter_refused(
        self, refused: tuple[Refusal, ...], rows: pa.Table, table: pa.Table, report: BatchReport
    ) -> None:
        """A refused final stands for the window's records of its group: those go to the DLQ
        with the sink's reason (they are not counted; the other groups' finals are written)."""
        groups = {GROUP_SEPARATOR.join(str(v) for v in r.doc.body["group"].values()): r
                  for r in refused}  # fmt: skip
        wanted: dict[tuple[int, int], Refusal] = {}
        for partition, offset, gkey in zip(*(table.column(n).to_pylist()
                                             for n in ("partition", "offset", "gkey")),
                                           strict=True):  # fmt: skip
            if gkey in groups:
                wanted[(partition, offset)] = groups[gkey]
        names = ("partition", "offset", "key", "value")
        for partition, offset, key, raw in zip(*(rows.column(n).to_pylist() for n in names),
                                               strict=True):  # fmt: skip
            refusal = wanted.get((partition, offset))
            if refusal is None:
                continue
            report.counted -= 1
            report.dead_letters["sink_rejected"] += 1
            self.dead_letters.send(
                raw, key, self.source_of(partition, offset), "sink_rejected",
                f"HTTP {refusal.status}: {refusal.reason}", stage="sink",
            )  # fmt: skip
        self.dead_letters.flush()

    def read_rows(self, from_ms: int, until_ms: int) -> pa.Table:
        """(partition, offset, kafka_ms, key, value) of the records with Kafka time in
        [from_ms, until_ms)."""
        assert self.kafka is not None
        frame = (
            self.engine.session.read.format("kafka")
            .options(**self.kafka.spark_options)
            .option("subscribe", self.doc.topic)
            .option("startingTimestamp", str(from_ms))
            .option("endingTimestamp", str(until_ms))
            # a partition with nothing at or after the time: start at its end (nothing to read)
            .option("startingOffsetsByTimestampStrategy", "latest")
            .load()
            .select(
                "partition", "offset", sf.unix_millis("timestamp").alias("kafka_ms"), "key", "value"
            )
        )
        table: pa.Table = frame.toArrow()
        return table

    def _scan(self, rows: pa.Table, start: int, end: int, report: BatchReport) -> pa.Table:
        """The window's records, decided as the stream consumer decides them: `future`
        against the record's Kafka time (or now, if earlier), at most
        `max_groups_per_window` groups per partition, in offset order. Records of other
        windows: reported here when this window holds their Kafka time (see the module)."""
        columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
        parse = self.parser.parse
        cap = self.parser.limits.max_groups_per_window
        window_ms, lateness_ms = self.doc.window_ms, self.doc.lateness_ms
        groups: dict[int, set[tuple[str, ...]]] = {}  # partition -> groups admitted
        now_ms = int(time.time() * 1000)
        names = ("partition", "offset", "kafka_ms", "key", "value")
        partitions, offsets, stamps, keys, values = (rows.column(n).to_pylist() for n in names)
        report.records_read = len(values)
        for partition, offset, kafka_ms, key, raw in sorted(
            zip(partitions, offsets, stamps, keys, values, strict=True),
            key=lambda row: (row[0], row[1]),
        ):
            arrived_here = start <= kafka_ms < end  # this run reports it, if no run counts it
            parsed = parse(raw, min(kafka_ms, now_ms))
            if isinstance(parsed, Filtered | Rejected):
                if not arrived_here:  # the run whose window holds its Kafka time reports it
                    continue
                if isinstance(parsed, Rejected):
                    self._dead_letter(parsed, report, raw=raw, key=key, partition=partition,
                                      offset=offset)  # fmt: skip
                else:
                    report.filtered += 1
                continue
            event_ms, group, value = parsed
            if not start <= event_ms < end:
                closed = event_ms // window_ms * window_ms + window_ms + lateness_ms
                if arrived_here and kafka_ms >= closed:  # no run counts it: `late`, here
                    late = Rejected(
                        "late",
                        f"event time {event_ms} ms arrived at {kafka_ms} "
                        f"ms, after its window's end + allowedLateness",
                    )
                    self._dead_letter(late, report, raw=raw, key=key, partition=partition,
                                      offset=offset)  # fmt: skip
                else:
                    report.outside_window += 1  # its own window's run counts it
                continue
            admitted = groups.setdefault(partition, set())
            if group not in admitted:
                if len(admitted) >= cap:
                    detail = (f"more than {cap} groups in window {start} of partition "
                              f"{partition} (METRICPIPE_MAX_GROUPS_PER_WINDOW)")  # fmt: skip
                    rejected = Rejected("oversize_key", detail)
                    self._dead_letter(rejected, report, raw=raw, key=key,
                                      partition=partition, offset=offset)  # fmt: skip
                    continue
                admitted.add(group)
            columns["partition"].append(partition)
            columns["offset"].append(offset)
            columns["event_ms"].append(event_ms)
            columns["gkey"].append(GROUP_SEPARATOR.join(group))
            columns["value"].append(value)
        report.counted = len(columns["offset"])
        return pa.table(columns, schema=SCHEMA)

    def _dead_letter(
        self, rejected: Rejected, report: BatchReport, *, raw: bytes | None, key: bytes | None,
        partition: int, offset: int,
    ) -> None:  # fmt: skip
        report.dead_letters[rejected.reason] += 1
        source = self.source_of(partition, offset)
        self.dead_letters.send(raw, key, source, rejected.reason, rejected.detail)
