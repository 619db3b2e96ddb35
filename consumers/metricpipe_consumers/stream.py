"""The stream consumer: one member of the pipeline's consumer group.

Per micro-batch: parse → dead-letter the bad and the late → Spark aggregates → merge into the
open windows → write partials (versioned) → write partition state → commit offsets. Offsets
are committed only after the sink acknowledged, and a replay skips what the sink already holds.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import structlog
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, OffsetSpec

from .config import ConsumerConfig
from .deadletters import DeadLetterWriter
from .document import PipelineDocument
from .documents import SinkDoc, build_partial_doc, build_partition_state
from .engine import GROUP_SEPARATOR, SCHEMA, SparkAggregator
from .faults import fault_point, fault_point_from_config
from .finalize import Finalizer
from .kafka_access import KafkaAccess
from .kafka_check import AUTHORIZATION_ERRORS, KafkaAnswer, KafkaRefusedError, is_refusal
from .letters import decide_marks_since, select_refused_rows
from .metrics import ConsumerMetrics
from .records import Filtered, RecordLimits, RecordParser, Rejected
from .sink import MetricSink, Refusal
from .state import PartitionState, load_partition_state

log = structlog.get_logger("metricpipe.consumer")

# The worker's Spark calls are many short py4j round trips, each of which must win the GIL
# back from the polling thread's parsing; at CPython's default 5 ms switch interval a batch's
# Spark phase took 3-4x longer than alone (measured: 0.8 s -> 3.0 s for 200k rows).
GIL_SWITCH_SECONDS = 0.0005
# Letters a replay may repeat were produced after the partition's last state write: the DLQ is
# read back from that time, less this much for clocks that disagree between replicas.
MARKS_CLOCK_MARGIN_MS = 300_000


class TopicRecreatedError(RuntimeError):
    """The topic's Kafka id changed under a running consumer (see `_check_topic_id`)."""


@dataclass(frozen=True)
class BatchProgress:
    resume: dict[int, int]  # partition -> next offset to read
    watermarks: dict[int, int | None]
    caught_up: dict[int, bool]
    idle_since: dict[int, int | None]
    worker_seconds: float = 0.0  # Spark + sink time of the batch, on the worker thread


class PhaseTimer:
    """Times the phases of a micro-batch into metricpipe_consumer_phase_seconds_total{phase}."""

    def __init__(self, metrics: ConsumerMetrics) -> None:
        self.metrics = metrics
        self.started = self.last = time.monotonic()

    def done(self, phase: str) -> None:
        now = time.monotonic()
        self.metrics.add_phase(phase, now - self.last)
        self.last = now

    def total(self) -> float:
        return self.last - self.started


@dataclass(frozen=True)
class StreamSettings:
    max_batch_records: int = 100_000
    max_batch_seconds: float = 2.0
    finalize_interval_seconds: float = 5.0
    session_timeout_ms: int = 30_000
    max_record_bytes: int = 1_048_576
    idle_timeout_seconds: float = 60.0
    group_instance_id: str | None = None
    # future skew, group-key bytes, groups per window (METRICPIPE_MAX_*), read once
    record_limits: RecordLimits = dataclasses.field(
        default_factory=lambda: ConsumerConfig().record_limits()
    )
    # Tests only: kill -9 this process at the named point (faults.FAULT_POINTS).
    fault_exit_at: str | None = dataclasses.field(default_factory=fault_point_from_config)


class StreamConsumer:
    def __init__(
        self, doc: PipelineDocument, sink: MetricSink, engine: SparkAggregator,
        metrics: ConsumerMetrics, kafka: KafkaAccess, *, settings: StreamSettings | None = None,
    ) -> None:  # fmt: skip
        self.doc = doc
        self.sink = sink
        self.engine = engine
        self.metrics = metrics
        self.settings = settings or StreamSettings()
        self.parser = RecordParser(
            doc.spec, self.settings.max_record_bytes, limits=self.settings.record_limits
        )
        self.partitions: dict[int, PartitionState] = {}
        self._committed: dict[int, int] = {}  # partition -> offset this process committed
        self._state_times: dict[int, int | None] = {}  # partition -> its state doc's updated_ms
        # partition -> (watermark, caught up) as the sink's latest state document says: the
        # watermark gauge publishes exactly this, so the consumers' freshness and the sink
        # prober's describe the same writes
        self._written_marks: dict[int, tuple[int | None, bool]] = {}
        self.stopping = False
        self.finalizer = Finalizer(
            doc, sink, metrics, self.settings.idle_timeout_seconds, self.settings.fault_exit_at
        )
        membership = (
            {"group.instance.id": self.settings.group_instance_id}
            if self.settings.group_instance_id
            else {}
        )
        self.consumer = Consumer({
            **membership,
            **kafka.settings,
            "group.id": doc.consumer_group,
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": self.settings.session_timeout_ms,
            "fetch.max.bytes": 52_428_800,
            "queued.max.messages.kbytes": 262_144,
            "error_cb": self._on_kafka_error,
        })  # fmt: skip
        # Log-end offsets and partition counts are asked on the AdminClient's own connections:
        # asked through the consumer they queue behind its fetch long-poll, 0.5 s per request
        # on a topic with nothing new — that made a tick take seconds once the input stopped,
        # and the backlog drained one small batch per tick (issue #4's stall).
        self.admin = AdminClient(dict(kafka.settings))
        self.dead_letters = DeadLetterWriter(
            kafka.settings, doc.dead_letter_topic, doc.pipeline.key
        )
        self._refusals: list[KafkaAnswer] = []  # from the error callback, served by consume()
        self._last_finalize = 0.0
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")
        self._pending: Future[BatchProgress] | None = None
        self._pending_scan_seconds = 0.0  # parse + dead-letter time of the batch in flight
        # Finalisation reads the sink (state documents, partials) and writes finals: it runs on
        # its own thread, one round at a time, while batches go on (on the polling thread it
        # stopped polling and the worker for seconds per round: 5.7 of 23 s in the profile).
        self._finalizing: Future[None] | None = None
        self._finalize_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finalize")

    # -- group membership ------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, assigned: list[TopicPartition]) -> None:
        self.drain()  # the batch in flight must be in the sink before we read it back
        topic_id = None
        if assigned:
            self.finalizer.load()  # how far windows are final, as of now
            # Searches see only refreshed segments: make the previous owner's last writes
            # visible, or this replica would restart a window's aggregate and overwrite it.
            self.sink.refresh()
            topic_id = self._fetch_topic_id()
        for tp in assigned:
            self.partitions[tp.partition] = self._load(tp.partition, topic_id)
        if assigned:
            # Letters a crashed owner sent after its last state write: not to be sent again.
            since = decide_marks_since(
                [self._state_times.get(tp.partition) for tp in assigned], MARKS_CLOCK_MARGIN_MS
            )
            self.dead_letters.load_marks(since, self.doc.topic)
        log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))
        self.metrics.assigned.set(len(self.partitions))

    def _on_revoke(self, consumer: Consumer, revoked: list[TopicPartition]) -> None:
        self.drain()  # write and commit what we have before the partitions move
        for tp in revoked:
            self.partitions.pop(tp.partition, None)
            self._committed.pop(tp.partition, None)
            self._written_marks.pop(tp.partition, None)
        log.info("partitions revoked", partitions=sorted(tp.partition for tp in revoked))
        self.metrics.assigned.set(len(self.partitions))

    def _fetch_topic_id(self) -> str | None:
        """Kafka's id of the topic now (None when Kafka does not say: the stored one stands)."""
        topic = self.doc.topic
        try:
            found = self.admin.describe_topics(TopicCollection([topic]), request_timeout=10)
            return str(found[topic].result(10).topic_id)
        except KafkaException as error:
            log.warning("the topic's id is unknown", topic=topic, error=str(error.args[0]))
            return None

    def _load(self, partition: int, topic_id: str | None) -> PartitionState:
        states = self.sink.search(self.sink_state_index, {"term": {"partition": partition}})
        # Every open window of the partition: a truncated page here would restart a window's
        # aggregate from zero and overwrite what the previous owner wrote.
        partials = self.sink.search_all(
            self.doc.sink.index,
            {"bool": {"filter": [
                {"term": {"partition": partition}}, {"term": {"final": False}},
                {"range": {"window_end_ms": {"gt": self.finalizer.finalized_through}}},
            ]}},
            sort=[{"window_start_ms": "asc"}, {"group_key": "asc"}],
        )  # fmt: skip
        stored = states[0] if states else None
        state = load_partition_state(partition, stored, partials, topic_id)
        if stored is not None and state.offset_base != int(stored.get("offset_base") or 0):
            log.warning(
                "the topic was created anew: its offsets continue after what the sink holds",
                partition=partition, topic_id=topic_id, previous_topic_id=stored.get("topic_id"),
                offset_base=state.offset_base,
            )  # fmt: skip
        updated = states[0].get("updated_ms") if states else None
        self._state_times[partition] = int(updated) if updated is not None else None
        state.forget_closed(self.finalizer.finalized_through, self.doc.window_ms)
        return state

    @property
    def sink_state_index(self) -> str:
        return f"{self.doc.sink.index}-state"

    # -- the loop --------------------------------------------------------------------------------
    def run(self, stop_requested: threading.Event | None = None) -> None:
        """Consume until SIGTERM/SIGINT (or `stop_requested`, set by a signal that came before
        these handlers were installed)."""
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        if stop_requested is not None and stop_requested.is_set():
            log.info("stop requested during start-up")
            self.stopping = True
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        self.sink.ensure_indices()
        self.finalizer.load()
        self.consumer.subscribe(
            [self.doc.topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )  # fmt: skip
        log.info("consuming", topic=self.doc.topic, group=self.doc.consumer_group)
        try:
            while not self.stopping:
                started, cpu = time.monotonic(), time.thread_time()
                messages = self.consumer.consume(
                    self.settings.max_batch_records, timeout=self.settings.max_batch_seconds
                )
                polled = time.monotonic()
                if self._refusals:  # credentials or a certificate refused on a reconnect
                    raise KafkaRefusedError(self._refusals)
                if messages:
                    # this thread's CPU time in consume() is the fetch's work (turning fetched
                    # records into messages); its wall time includes waiting for records
                    self.process_batch(messages, fetch_seconds=time.thread_time() - cpu)
                self.metrics.record_cycle(polled - started, time.monotonic() - polled)
                self.metrics.alive()
                if time.monotonic() - self._last_finalize > self.settings.finalize_interval_seconds:
                    self.tick()
                    # the interval counts from the tick's end: however long a tick takes,
                    # batches get the time in between
                    self._last_finalize = time.monotonic()
            self.drain()
            self._wait_finalizing()
        finally:
            log.info("leaving the consumer group")
            self._finalize_pool.shutdown(wait=True)
            self.consumer.close()
            self.dead_letters.close()  # every batch flushed its own already

    def _on_kafka_error(self, error: KafkaError) -> None:
        """librdkafka's global errors: it retries every one of them in the background, so a
        refusal no retry cures is kept for the loop to stop on."""
        if is_refusal(error.code(), error.str()):
            self._refusals.append((error.code(), error.str()))
        else:
            log.warning("kafka client error", error=error.str())

    @staticmethod
    def _on_message_error(error: KafkaError) -> None:
        """An error in place of a record: a refusal (an ACL taken away) stops the loop."""
        if is_refusal(error.code(), error.str()):
            raise KafkaRefusedError([(error.code(), error.str())])
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("kafka error", error=str(error))

    def _request_stop(self, signum: int, _frame: Any) -> None:
        log.info("stop requested; finishing the current batch", signal=signum)
        self.stopping = True

    def tick(self) -> None:
        """Periodic work: publish caught-up state, start a round of finalisation (in the
        background, when the last one is done) and forget windows that are final."""
        self.drain()
        started = time.monotonic()
        self._check_topic_id()
        self._commit_what_the_sink_holds()
        resume = {p: state.resume_offset for p, state in self.partitions.items()}
        progress = self._progress(resume)
        for partition, caught_up in progress.caught_up.items():
            self.partitions[partition].caught_up = caught_up
            self.partitions[partition].idle_since_ms = progress.idle_since[partition]
        docs = self._state_docs(progress)
        if docs:
            self.sink.write(docs)
            self._publish_marks(progress)
        if self._finalizing is not None and self._finalizing.done():
            self._wait_finalizing()  # re-raises a failed round (a sink error stops the process)
        if self._finalizing is None:
            self._finalizing = self._finalize_pool.submit(
                self.finalizer.run, owns_leader_partition=0 in self.partitions,
                partition_count=self._partition_count(), log_end=self._log_end_offsets,
            )  # fmt: skip
        for state in self.partitions.values():
            state.forget_closed(self.finalizer.finalized_through, self.doc.window_ms)
        self.metrics.record_busy(time.monotonic() - started)

    def _check_topic_id(self) -> None:
        """A topic created anew is taken up on (re)assignment (`_load`). Should Kafka hand this
        consumer the new topic's records without one, stop: the restart assigns afresh."""
        current = self._fetch_topic_id()
        known = {state.topic_id for state in self.partitions.values()} - {None}
        if current is not None and known and known != {current}:
            raise TopicRecreatedError(
                f"topic {self.doc.topic} was created anew (id {current}, was "
                f"{', '.join(sorted(str(k) for k in known))}) while this consumer read it; "
                "restarting resumes on the new topic after what the sink holds"
            )

    def _wait_finalizing(self) -> None:
        finalizing, self._finalizing = self._finalizing, None
        if finalizing is not None:
            finalizing.result()

    def _log_end_offsets(self, partition_count: int) -> dict[int, int]:
        """Log-end offset of every partition of the topic, from the brokers (one request)."""
        request = {
            TopicPartition(self.doc.topic, p): OffsetSpec.latest() for p in range(partition_count)
        }
        answers = self.admin.list_offsets(request, request_timeout=10)
        return {tp.partition: int(answer.result().offset) for tp, answer in answers.items()}

    def _partition_count(self) -> int:
        metadata = self.admin.list_topics(self.doc.topic, timeout=10)
        return len(metadata.topics[self.doc.topic].partitions)

    # -- one micro-batch ---------------------------------------------------------------------
    def _scan(
        self, messages: list[Message]
    ) -> tuple[dict[str, list[Any]], dict[int, int], list[tuple[Message, str, str]]]:
        """Parse a batch: rows to aggregate, highest offset per partition, dead letters."""
        window_ms, lateness_ms, finalized_through = (self.doc.window_ms, self.doc.lateness_ms,
                                                     self.finalizer.finalized_through)  # fmt: skip
        batch_read_through = self.finalizer.batch_read_through or -(2**62)
        columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
        # bound appends: this loop runs once per record on the polling thread
        add_partition, add_offset, add_time, add_group, add_value = (
            columns[name].append for name in SCHEMA.names
        )
        highest: dict[int, int] = {}
        dead: list[tuple[Message, str, str]] = []
        parse, join = self.parser.parse, GROUP_SEPARATOR.join
        # `future` is judged against the record's Kafka timestamp when that is earlier than
        # the wall clock: a replay, or a batch run hours later, decides as the first pass did.
        cap, now_ms = self.parser.limits.max_groups_per_window, int(time.time() * 1000)
        for message in messages:
            if (error := message.error()) is not None:
                self._on_message_error(error)
                continue
            state = self.partitions.get(partition := int(message.partition() or 0))
            # not ours any more, or fully processed before a crash (the sink's offsets)
            if state is None or self._done_before(
                state, offset := int(message.offset() or 0) + state.offset_base
            ):
                continue
            highest[partition] = offset
            stamp = message.timestamp()[1]
            parsed = parse(message.value(), stamp if 0 < stamp < now_ms else now_ms)
            if isinstance(parsed, Filtered):
                self.metrics.filtered.inc()
                state.accept(parsed.event_ms)  # read, not counted: time still moves on
                continue
            if isinstance(parsed, Rejected):
                if stamp < batch_read_through - lateness_ms:  # runs own their windows' rejects
                    self.metrics.skipped.inc()  # a batch run dead-lettered it (mode switch)
                    continue
                dead.append((message, parsed.reason, parsed.detail))
                continue
            event_ms, group, value = parsed
            start = event_ms // window_ms * window_ms
            if start + window_ms <= finalized_through and stamp < batch_read_through:
                self.metrics.skipped.inc()  # a batch run read and counted it (mode switch)
                continue
            if state.is_late(start, window_ms, lateness_ms) or (
                start + window_ms <= finalized_through
            ):
                dead.append((message, "late", f"event time {event_ms} ms"))
                continue
            state.accept(event_ms)
            if not state.admit(start, group, cap):
                dead.append((message, "oversize_key",
                             f"more than {cap} groups in window {start} of partition "
                             f"{partition} (METRICPIPE_MAX_GROUPS_PER_WINDOW)"))  # fmt: skip
                continue
            if state.included((start, group), offset):
                self.metrics.skipped.inc()
                continue
            add_partition(partition)
            add_offset(offset)
            add_time(event_ms)
            add_group(join(group))
            add_value(value)
        return columns, highest, dead

    def _done_before(self, state: PartitionState, offset: int) -> bool:
        """Below the resume offset the sink's state holds: processed before a crash (partials,
        dead letters, state written; the offset commit lost). Counted as replay-skipped."""
        if offset < state.resume_offset:
            self.metrics.skipped.inc()
            return True
        return False

    def process_batch(self, messages: list[Message], fetch_seconds: float = 0.0) -> None:
        """Scan this batch here; aggregate, write and commit it on the worker thread while the
        next batch is polled and scanned (Spark works in the JVM, so the two overlap)."""
        phase = PhaseTimer(self.metrics)
        columns, highest, dead = self._scan(messages)
        phase.done("parse")
        # Batches complete in order, and so do their dead letters: the previous batch's
        # sink refusals are in the DLQ before this batch's rejects (the order `letters.py`'s
        # duplicate suppression relies on).
        parse_seconds = phase.total()
        self.drain()
        dead_started = time.monotonic()
        self._dead_letter(dead)
        dead_seconds = time.monotonic() - dead_started
        self.metrics.add_phase("dead_letter", dead_seconds)
        scanned = fetch_seconds + parse_seconds + dead_seconds
        progress = self._progress({p: o + 1 for p, o in highest.items()})
        self._pending = self._worker.submit(
            self._complete, columns, progress, len(messages), messages
        )
        self._pending_scan_seconds = scanned

    def drain(self) -> None:
        """Wait for the batch in flight (re-raising its failure), then commit its offsets.

        The commit runs here, on the polling thread: a synchronous commit from the worker
        while this thread sits in a rebalance callback would deadlock."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        progress = pending.result()
        for partition, resume in progress.resume.items():
            state = self.partitions.get(partition)
            if state is not None:
                state.resume_offset = resume
                state.caught_up = progress.caught_up[partition]
                state.idle_since_ms = progress.idle_since[partition]
        self._publish_marks(progress)
        committing = time.monotonic()
        self._commit(progress.resume)
        # A batch occupies the pipeline for its slower stage (the two overlap) plus the
        # synchronous commit, which neither overlaps (capacity = records / busy time, the
        # ResourceManager's view; without the commit, small batches looked 60 % idle while
        # their replicas fell behind).
        stages = max(self._pending_scan_seconds, progress.worker_seconds)
        self.metrics.record_busy(stages + time.monotonic() - committing)

    def _publish_marks(self, progress: BatchProgress) -> None:
        """After a state write: the watermark gauge says what the sink now holds."""
        for partition in progress.resume:
            if partition in self.partitions:
                self._written_marks[partition] = (
                    progress.watermarks.get(partition),
                    progress.caught_up[partition],
                )
        self.metrics.observe_watermarks(self._written_marks)

    def _complete(
        self, columns: dict[str, list[Any]], progress: BatchProgress, count: int,
        messages: list[Message],
    ) -> BatchProgress:  # fmt: skip
        """On the worker: no call into the Kafka consumer here (it may be inside a rebalance
        callback on the polling thread, holding librdkafka's locks). Documents the sink refuses
        for their content are dead-lettered (the records of this batch they stand for) before
        the state write, so the batch commits past them."""
        phase = PhaseTimer(self.metrics)
        table = pa.table(columns, schema=SCHEMA)
        deltas = self.engine.aggregate(
            table, self.doc.window_ms, with_sketch=self._needs_sketch(),
            group_fields=len(self.doc.spec.metric.group_by),
        )  # fmt: skip
        phase.done("spark")
        refused = self._write_partials(deltas)
        rejected = self._dead_letter_refused(refused, columns, messages) if refused else 0
        fault_point(self.settings.fault_exit_at, "after_partials_write")
        self.sink.write(self._state_docs(progress))
        fault_point(self.settings.fault_exit_at, "after_state_write")
        phase.done("sink")
        self.metrics.consumed.inc(count)
        self.metrics.written.inc(table.num_rows - rejected)
        self.metrics.batch_records.observe(count)
        elapsed = phase.total()
        if elapsed > 0:
            self.metrics.processing_rate.set(count / elapsed)
        return dataclasses.replace(progress, worker_seconds=elapsed)

    def _needs_sketch(self) -> bool:
        return self.doc.spec.metric.aggregation in ("p50", "p90", "p95", "p99")

    def _dead_letter(self, dead: list[tuple[Message, str, str]]) -> None:
        """Send the scan's dead letters, except those a crashed run sent already (marks)."""
        sent = 0
        for message, reason, detail in dead:
            source = f"{message.topic()}/{message.partition()}/{message.offset()}"
            base = self._base(int(message.partition() or 0))
            if self.dead_letters.send(message.value(), message.key(), source, reason, detail,
                                      offset_base=base):  # fmt: skip
                self.metrics.dead_letter(reason)
                sent += 1
            else:
                self.metrics.skipped.inc()
        if sent:
            self.dead_letters.flush()
            fault_point(self.settings.fault_exit_at, "after_dead_letter_flush")

    def _dead_letter_refused(
        self, refused: dict[tuple[int, int, str], Refusal], columns: dict[str, list[Any]],
        messages: list[Message],
    ) -> int:  # fmt: skip
        """Dead-letter the records behind refused partials: a partial is cumulative, but what
        this write added to it are this batch's records of its (partition, window, group) —
        earlier records are in the version the sink holds. Returns the records rejected."""
        wanted = select_refused_rows(columns, self.doc.window_ms, refused.keys())
        sent = 0
        for message in messages:
            partition = int(message.partition() or 0)
            state = self.partitions.get(partition)
            base = state.offset_base if state is not None else 0
            coords = (partition, int(message.offset() or 0) + base)
            if coords not in wanted:
                continue
            refusal = refused[wanted[coords]]
            source = f"{message.topic()}/{coords[0]}/{coords[1]}"
            detail = f"HTTP {refusal.status}: {refusal.reason}"
            if self.dead_letters.send(
                message.value(),
                message.key(),
                source,
                "sink_rejected",
                detail,
                stage="sink",
                offset_base=base,
            ):
                self.metrics.dead_letter("sink_rejected")
                sent += 1
        if sent:
            self.dead_letters.flush()
            fault_point(self.settings.fault_exit_at, "after_sink_dead_letter_flush")
        return len(wanted)

    def _write_partials(
        self, deltas: dict[tuple[int, int, tuple[str, ...]], Any]
    ) -> dict[tuple[int, int, str], Refusal]:
        """Write the touched series' cumulative partials; returns the refused ones by
        (partition, window start, joined group) — those keep their previous aggregate."""
        now_ms = int(time.time() * 1000)
        spec = self.doc.spec.metric
        docs, merged = [], {}
        for (partition, start, group), delta in deltas.items():
            state = self.partitions[partition]
            current = state.series.get((start, group))
            total = delta if current is None else current.merge(delta)
            merged[(partition, start, group)] = total
            docs.append(build_partial_doc(
                self.doc.sink.index, pipeline=self.doc.pipeline.key, aggregation=spec.aggregation,
                interpolation=spec.percentile_interpolation,
                group_by=spec.group_by, window=(start, self.doc.window_ms), group=group,
                partition=partition, agg=total, now_ms=now_ms,
            ))  # fmt: skip
        refused: dict[tuple[int, int, str], Refusal] = {}
        if docs:
            result = self.sink.write(docs, allow_refusals=True)
            ids = {doc.doc_id: key for doc, key in zip(docs, merged, strict=True)}
            for refusal in result.refused:
                partition, start, group = ids[refusal.doc.doc_id]
                refused[(partition, start, GROUP_SEPARATOR.join(group))] = refusal
                del merged[(partition, start, group)]
        for (partition, start, group), total in merged.items():
            self.partitions[partition].remember((start, group), total)
        return refused

    def _progress(self, resume: dict[int, int]) -> BatchProgress:
        """Snapshot, on the polling thread, of what the state documents must say once the
        batch is written: the next offsets, the watermarks as of the scan, caught-up flags."""
        watermarks: dict[int, int | None] = {}
        caught_up: dict[int, bool] = {}
        idle_since: dict[int, int | None] = {}
        now_ms = int(time.time() * 1000)
        for partition, next_offset in resume.items():
            state = self.partitions.get(partition)
            watermarks[partition] = state.watermark_ms if state else None
            _, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.doc.topic, partition), cached=True
            ) or (0, -1)
            base = state.offset_base if state else 0
            caught_up[partition] = high >= 0 and next_offset - base >= high
            moved = state is None or next_offset != state.resume_offset
            previous = None if state is None or moved else state.idle_since_ms
            idle_since[partition] = (previous or now_ms) if caught_up[partition] else None
        return BatchProgress(resume, watermarks, caught_up, idle_since)

    def _state_docs(self, progress: BatchProgress) -> list[SinkDoc]:
        now_ms = int(time.time() * 1000)
        return [
            build_partition_state(
                self.sink_state_index,
                pipeline=self.doc.pipeline.key,
                partition=partition,
                watermark_ms=progress.watermarks[partition],
                committed_offset=resume,
                caught_up=progress.caught_up[partition],
                idle_since_ms=progress.idle_since[partition],
                now_ms=now_ms,
                offset_base=self._base(partition),
                topic_id=self._topic_of(partition),
            )
            for partition, resume in sorted(progress.resume.items())
        ]

    def _base(self, partition: int) -> int:
        state = self.partitions.get(partition)
        return state.offset_base if state is not None else 0

    def _topic_of(self, partition: int) -> str | None:
        state = self.partitions.get(partition)
        return state.topic_id if state is not None else None

    def _commit_what_the_sink_holds(self) -> None:
        """Commit resume offsets that the sink holds but this process has not committed.

        A replica killed between its sink write and its offset commit leaves Kafka's committed
        offset behind the sink's. The next owner skips those records (they are in the sink),
        so no batch of its own moves the commit; without this, a partition that receives
        nothing new would show lag for ever. Kafka's offset never passes the sink's (the
        commit follows the write), so this only moves it forward."""
        behind = {
            partition: state.resume_offset
            for partition, state in self.partitions.items()
            if state.resume_offset > self._committed.get(partition, 0)
        }
        self._commit(behind)

    def _commit(self, resume: dict[int, int]) -> None:
        """Commit the sink's resume offsets, as Kafka's (less each partition's offset base)."""
        resume = {p: o for p, o in resume.items() if p in self.partitions}
        if not resume:
            return
        offsets = [TopicPartition(self.doc.topic, p, o - self._base(p))
                   for p, o in sorted(resume.items())]  # fmt: skip
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
            for partition, offset in resume.items():
                if partition in self.partitions:
                    self._committed[partition] = offset
        except KafkaException as error:
            kafka_error = error.args[0]
            if kafka_error.fatal() or kafka_error.code() in AUTHORIZATION_ERRORS:
                raise  # the process says why (__main__.py), the sink holds what was done
            # A rebalance took the partitions meanwhile. Harmless: the sink already holds the
            # batch and its resume offsets, so the next owner skips what was done.
            log.warning("offset commit refused", error=str(kafka_error))
            self.metrics.commit_failures.inc()
