"""The archiver's consume loop (I/O): Kafka in, committed batches on HDFS out.

HDFS holds the truth of what is archived (store.py); Kafka's committed offsets follow it, for
lag only. A partition's records wait in memory until its batch rolls; on assignment the
partition is recovered on HDFS and read from the offset HDFS says; on revocation its waiting
records are dropped (the next owner reads them again from that same offset), so no batch is
ever written by two members.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import structlog
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from .columnar import build_record_batch, measure_batch, plan_hour_tables
from .document import ArchiveDocument, ArchiverConfig
from .index import LogIndexer
from .metrics import ArchiverMetrics
from .native import load_native_rows
from .parquet import encode_table
from .plan import decide_closed_hours, decide_flush
from .store import ArchiveStore

log = structlog.get_logger("metricpipe.archive")


@dataclass
class Pending:
    """One partition's records read but not yet committed (a record batch per consume)."""

    batches: list[pa.RecordBatch] = field(default_factory=list)
    records: int = 0
    size: int = 0  # characters of raw and fields
    since: float = 0.0  # monotonic time of the oldest
    first: int = 0  # offsets of the first and the last record read
    last: int = 0


@dataclass
class Consumed:
    """One partition's records of one consume call, as the loop gathers them."""

    offsets: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)


@dataclass
class ArchiverStats:
    records: int = 0
    batches: int = 0
    files: int = 0
    bytes: int = 0
    compacted: int = 0


class Archiver:
    def __init__(
        self, document: ArchiveDocument, config: ArchiverConfig, store: ArchiveStore, *,
        consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer,
        kafka_settings: dict[str, str] | None = None, metrics: ArchiverMetrics | None = None,
        indexer: LogIndexer | None = None,
    ) -> None:  # fmt: skip
        self.document = document
        self.config = config
        self.store = store
        self.indexer = indexer  # spec.index: each batch indexed before its HDFS commit
        self.pending: dict[int, Pending] = {}
        self.touched: dict[int, set[str]] = {}  # partition -> hours written since assignment
        self.newest: dict[int, int] = {}  # partition -> newest time_ms written
        self.stats = ArchiverStats()
        self.metrics = metrics or ArchiverMetrics(document.key)
        self.next_expiry = 0.0  # monotonic time of the next retention pass
        self.admin = AdminClient(dict(kafka_settings or {}))
        self.native = load_native_rows(config.archive_native_lib)
        log.info("rows made", way="native" if self.native else "python",
                 library=str(config.archive_native_lib or ""))  # fmt: skip
        self.consumer = consumer_factory({
            **(kafka_settings or {}),
            "group.id": document.consumer_group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "session.timeout.ms": config.session_timeout_ms,
        })  # fmt: skip

    # -- rebalance ------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        topic_id = self._fetch_topic_id() if partitions else None
        if topic_id is not None:
            self.store.check_topic(topic_id)
        hours = set(self.store.list_hours()) if partitions else set()
        for tp in partitions:
            following = self.store.recover(tp.partition)
            tp.offset = OFFSET_BEGINNING if following is None else following
            self.metrics.assigned(tp.partition, following)
            self.touched[tp.partition] = set(hours)  # compacted once closed, as written ones
            log.info("partition assigned", partition=tp.partition, offset=following)
        consumer.assign(partitions)

    def _fetch_topic_id(self) -> str | None:
        """Kafka's id of the topic (None when Kafka does not say: the check waits for the
        next assignment)."""
        topic = self.document.topic
        try:
            found = self.admin.describe_topics(TopicCollection([topic]), request_timeout=10)
            return str(found[topic].result(10).topic_id)
        except KafkaException as error:
            log.warning("the topic's id is unknown", topic=topic, error=str(error.args[0]))
            return None

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            dropped = self.pending.pop(tp.partition, Pending())
            self.touched.pop(tp.partition, None)
            log.info("partition revoked", partition=tp.partition, dropped=dropped.records)
        consumer.unassign()

    # -- the loop -------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> ArchiverStats:
        self.consumer.subscribe([self.document.topic], on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_revoke)  # fmt: skip
        try:
            while not stop.is_set():
                messages = self.consumer.consume(2000, timeout=0.5)
                began = time.monotonic()
                self._read(messages)
                self.metrics.alive()
                self._flush_due(force=False)
                self._expire_due()
                self.metrics.busy.inc(time.monotonic() - began)  # the scaling's busy fraction
            self._flush_due(force=True)  # a graceful stop writes what it holds
        finally:
            self.consumer.close()
        return self.stats

    def _expire_due(self) -> None:
        """The member holding partition 0 enforces the retention (at its first chance, then
        every interval): one deleter, and a day is deleted whole."""
        now = time.monotonic()
        if 0 not in self.touched or now < self.next_expiry:
            return
        self.next_expiry = now + self.config.archive_retention_interval_seconds
        self.store.expire(int(time.time() * 1000), self.document.retention_days)
        if self.indexer is not None and self.document.index is not None:
            self.indexer.expire(int(time.time() * 1000), self.document.index.retention_days)

    def _read(self, messages: list[Any]) -> None:
        now = time.monotonic()
        consumed: dict[int, Consumed] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(error)
            partition = message.partition()
            into = consumed.get(partition)
            if into is None:
                into = consumed[partition] = Consumed()
            into.offsets.append(message.offset())
            into.times.append(message.timestamp()[1])
            into.keys.append(message.key())
            into.values.append(message.value())
        for partition, into in consumed.items():
            batch = build_record_batch(partition, into.offsets, into.times, into.keys,
                                       into.values, source_format=self.document.format,
                                       native=self.native)  # fmt: skip
            pending = self.pending.setdefault(partition, Pending(since=now))
            if not pending.records:
                pending.since, pending.first = now, into.offsets[0]
            pending.batches.append(batch)
            pending.records += batch.num_rows
            pending.size += measure_batch(batch)
            pending.last = into.offsets[-1]

    def _flush_due(self, *, force: bool) -> None:
        now = time.monotonic()
        for partition, pending in list(self.pending.items()):
            due = decide_flush(pending.size, now - pending.since, self.config.archive_roll_bytes,
                               self.config.archive_roll_seconds)  # fmt: skip
            if pending.records and (due or force):
                self._commit(partition, self.pending.pop(partition))

    def _commit(self, partition: int, pending: Pending) -> None:
        started = time.monotonic()
        table = pa.Table.from_batches(pending.batches)
        hours = plan_hour_tables(table)
        files = {hour: encode_table(rows) for hour, rows in hours.items()}
        first, last = pending.first, pending.last
        if self.indexer is not None:  # first: a crash before the commit re-indexes the same ids
            _, refused = self.indexer.index(table)
            self.metrics.index_refused.inc(refused)
        self.store.commit(partition, first, last, files)
        newest = int(pc.max(table.column("time_ms")).as_py())
        self.metrics.committed(partition, records=pending.records,
                               size=sum(len(d) for d in files.values()), files=len(files),
                               seconds=time.monotonic() - started, next_offset=last + 1,
                               newest_ms=newest)  # fmt: skip
        self.stats.records += pending.records
        self.stats.batches += 1
        self.stats.files += len(files)
        self.stats.bytes += sum(len(data) for data in files.values())
        log.info("batch archived", partition=partition, first=first, last=last,
                 hours=len(files), seconds=round(time.monotonic() - started, 3))  # fmt: skip
        try:  # Kafka's offset follows HDFS's, for lag; HDFS says where to resume
            self.consumer.commit(offsets=[TopicPartition(self.document.topic, partition, last + 1)],
                                 asynchronous=False)  # fmt: skip
        except KafkaException as error:
            log.warning("kafka offset commit failed (lag only)", error=str(error))
        self.touched.setdefault(partition, set()).update(hours)
        self.newest[partition] = max(self.newest.get(partition, 0), newest)
        self._compact(partition)

    def _compact(self, partition: int) -> None:
        grace_ms = int(self.config.archive_compact_grace_seconds * 1000)
        closed = decide_closed_hours(self.touched.get(partition, set()),
                                     self.newest.get(partition, 0), grace_ms)  # fmt: skip
        for hour in closed:
            removed = self.store.compact(partition, hour)
            self.stats.compacted += removed
            self.metrics.compacted.inc(removed)
            self.touched[partition].discard(hour)
