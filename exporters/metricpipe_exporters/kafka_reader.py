"""Reads from Kafka what the lag series need: committed offsets, log-end offsets, members, and
the timestamp of the record at each committed offset (cached until the offset moves).

Topics, log-end offsets and members are asked in batches of concurrent AdminClient requests;
committed offsets one request per group (see fetch_groups), each with a timeout.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

TopicPartitionKey = tuple[str, int]


@dataclass
class GroupOffsets:
    committed: dict[TopicPartitionKey, int] = field(default_factory=dict)
    members: int = 0


class KafkaReader:
    def __init__(self, kafka: Mapping[str, str], timeout: float = 5.0) -> None:
        """kafka: librdkafka settings with bootstrap.servers (build_librdkafka_settings)."""
        self.kafka = dict(kafka)
        self.timeout = timeout
        self.admin = AdminClient(dict(self.kafka))
        self._timestamps: dict[tuple[str, int, int], int] = {}  # (topic, partition, offset) -> ms
        self.lookups = {"hit": 0, "read": 0, "missing": 0}
        self._readers: dict[str, Consumer] = {}  # group -> a consumer that only reads offsets

    def fetch_partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        metadata = self.admin.list_topics(timeout=self.timeout)
        return {
            topic: len(metadata.topics[topic].partitions)
            for topic in topics
            if topic in metadata.topics and metadata.topics[topic].error is None
        }

    def fetch_end_offsets(
        self, partitions: Iterable[TopicPartitionKey]
    ) -> dict[TopicPartitionKey, int]:
        request = {TopicPartition(t, p): OffsetSpec.latest() for t, p in partitions}
        if not request:
            return {}
        futures = self.admin.list_offsets(request, request_timeout=self.timeout)
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    def fetch_start_offsets(
        self, partitions: Iterable[TopicPartitionKey]
    ) -> dict[TopicPartitionKey, int]:
        """Log-start offsets (the oldest record kept), one batched request."""
        request = {TopicPartition(t, p): OffsetSpec.earliest() for t, p in partitions}
        if not request:
            return {}
        futures = self.admin.list_offsets(request, request_timeout=self.timeout)
        return {(tp.topic, tp.partition): f.result().offset for tp, f in futures.items()}

    def fetch_groups(
        self, groups: Mapping[str, Iterable[TopicPartitionKey]]
    ) -> dict[str, GroupOffsets]:
        """Committed offsets and member counts of each group, for the given partitions.

        Committed offsets are read through a consumer that carries the group's id (never
        joining it): librdkafka's AdminClient OffsetFetch dereferences a missing group handle
        when the coordinator answers NOT_COORDINATOR — the exporter died by SIGSEGV on a
        freshly started broker (confluent-kafka-python #1982). Through a consumer that answer
        is an ordinary retriable error; the cycle then keeps its last snapshot."""
        names = sorted(groups)
        if not names:
            return {}
        described = self.admin.describe_consumer_groups(names, request_timeout=self.timeout)
        result = {}
        for group in names:
            entry = GroupOffsets()
            partitions = [TopicPartition(t, p) for t, p in groups[group]]
            if partitions:
                for tp in self._group_reader(group).committed(partitions, timeout=self.timeout):
                    if tp.offset >= 0:
                        entry.committed[(tp.topic, tp.partition)] = tp.offset
            entry.members = len(described[group].result().members or [])
            result[group] = entry
        return result

    def _group_reader(self, group: str) -> Consumer:
        reader = self._readers.get(group)
        if reader is None:
            reader = Consumer({**self.kafka, "group.id": group,
                               "enable.auto.commit": False})  # fmt: skip
            self._readers[group] = reader
        return reader

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()

    def fetch_timestamps(
        self, wanted: Iterable[tuple[str, int, int]], budget_seconds: float
    ) -> dict[tuple[str, int, int], int]:
        """Timestamp (ms) of the first record at or after each (topic, partition, offset):
        from the cache, or read with one short-lived consumer assigned to exactly those
        offsets. Offsets not read inside the budget are left out (asked again next cycle)."""
        wanted = set(wanted)
        found = {key: self._timestamps[key] for key in wanted if key in self._timestamps}
        self.lookups["hit"] += len(found)
        missing = wanted - found.keys()
        if missing:
            found.update(self._read(missing, budget_seconds))
        self._timestamps = {key: found[key] for key in wanted if key in found}  # forget moved
        return found

    def _read(
        self, missing: set[tuple[str, int, int]], budget: float
    ) -> dict[tuple[str, int, int], int]:
        reader = Consumer({
            **self.kafka, "group.id": f"metricpipe-exporter-{uuid.uuid4()}",
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "max.partition.fetch.bytes": 65_536, "fetch.wait.max.ms": 50,
        })  # fmt: skip
        by_partition = {(t, p): o for t, p, o in missing}
        read: dict[tuple[str, int, int], int] = {}
        try:
            reader.assign([TopicPartition(t, p, o) for (t, p), o in by_partition.items()])
            deadline = time.monotonic() + budget
            while by_partition and time.monotonic() < deadline:
                for message in reader.consume(len(by_partition) * 4, timeout=0.2):
                    if message.error() is not None:
                        continue
                    key = (message.topic() or "", message.partition() or 0)
                    offset = by_partition.pop(key, None)
                    if offset is None:
                        continue
                    _, stamp = message.timestamp()
                    read[(key[0], key[1], offset)] = stamp
                    reader.incremental_unassign([TopicPartition(key[0], key[1])])
        except KafkaException:
            pass  # what was read is kept; the rest is asked again next cycle
        finally:
            reader.close()
        self.lookups["read"] += len(read)
        self.lookups["missing"] += len(by_partition)
        return read
