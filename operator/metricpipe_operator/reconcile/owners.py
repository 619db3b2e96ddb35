"""Which pipeline owns which Kafka topic: pure decisions, and the registry that records them.

Kafka's topic configs cannot hold custom keys, so the ownership mark lives beside the topics:
a compacted one-partition topic (`__metricpipe_topic_owners` by default) whose key is a topic's
name and whose value says which pipeline (`namespace/name`) created or adopted it and the
topic's id (Kafka's UUID, new for every creation). The operator writes a claim *before* it
creates a topic and the topic's id right after, so a crash in between leaves a claim the next
run completes, and a topic deleted and created again outside metricpipe (a new id) is not
mistaken for the one the pipeline created. A tombstone releases a topic the operator deleted.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from metricpipe_contract.refs import PipelineRef

from ..config import OperatorConfig
from ..errors import KafkaUnavailableError, TopicChangeRefusedError, TopicConflictError
from .topic import (
    TopicPlan,
    TopicResult,
    apply_topic_changes,
    decide_topic_changes,
    delete_topic,
    fetch_broker_count,
    fetch_topic_id,
    fetch_topic_state,
)


@dataclass(frozen=True)
class TopicOwner:
    """The registry's value for one topic."""

    pipeline: str  # namespace/name
    uid: str = ""  # of the MetricPipeline that wrote the record (for the curious)
    topic_id: str | None = None  # None: claimed, creation not confirmed yet
    adopted: bool = False  # it existed before; never deleted by the operator

    def encode(self) -> bytes:
        body = {"pipeline": self.pipeline, "uid": self.uid, "topicId": self.topic_id,
                "adopted": self.adopted}  # fmt: skip
        return json.dumps(body, sort_keys=True).encode()

    @classmethod
    def decode(cls, value: bytes | None) -> TopicOwner | None:
        if not value:
            return None  # a tombstone: released
        body = json.loads(value)
        return cls(str(body["pipeline"]), str(body.get("uid") or ""), body.get("topicId"),
                   bool(body.get("adopted")))  # fmt: skip


@dataclass(frozen=True)
class Claim:
    """What the ownership check decided for one topic: a conflict (nothing may happen), or the
    record to write before the topic is touched (None: the registry is already right)."""

    conflict: str | None = None
    record: TopicOwner | None = None


def decide_topic_claim(  # noqa: PLR0911 - one return per row of the ownership table
    topic: str,
    ref: PipelineRef,
    record: TopicOwner | None,
    topic_id: str | None,
    *,
    exists: bool,
    may_adopt: bool,
    registry_topic: str,
) -> Claim:
    """May this pipeline create or change `topic`? (pure)

    Yes when the registry says this pipeline (same namespace/name: a pipeline deleted with
    Retain and created again gets its topic back) created it and it is still that topic, or when
    neither a record nor the topic exists (a claim is written first). An existing topic without
    a record, or one deleted and created again outside metricpipe, only when the operator's
    configuration allows adopting it. Never an internal topic, never another pipeline's."""
    if topic.startswith("__") or topic == registry_topic:
        return Claim(conflict=f"topic {topic} is internal to Kafka or metricpipe; choose another "
                              "spec.topic.name")  # fmt: skip
    if record is not None and record.pipeline != ref.key:
        return Claim(conflict=f"topic {topic} is owned by pipeline {record.pipeline}; choose "
                              "another spec.topic.name")  # fmt: skip
    mine = TopicOwner(ref.key, ref.uid)
    adoption = "it may be adopted only when the operator's METRICPIPE_ADOPT_TOPICS matches it"
    if not exists:
        if record is not None and record.topic_id is None and not record.adopted:
            return Claim()  # our claim stands: create it
        return Claim(record=mine)  # claim it, then create it
    if record is None:
        if may_adopt:
            return Claim(record=replace(mine, topic_id=topic_id, adopted=True))
        return Claim(conflict=f"topic {topic} already exists and no pipeline created it; "
                              f"metricpipe changes only topics it created ({adoption}); choose "
                              "another spec.topic.name or omit it")  # fmt: skip
    if record.topic_id is None:
        return Claim(record=replace(record, topic_id=topic_id))  # created before a crash
    if record.topic_id == topic_id:
        return Claim()
    if may_adopt:
        return Claim(record=replace(mine, topic_id=topic_id, adopted=True))
    return Claim(conflict=f"topic {topic} was deleted and created again outside metricpipe "
                          f"after pipeline {record.pipeline} created it ({adoption})")  # fmt: skip


def decide_topic_deletion(
    ref: PipelineRef, record: TopicOwner | None, topic_id: str | None
) -> str | None:
    """None when this pipeline may delete the topic (it created it and it is still that topic;
    a claim whose id was never recorded counts as created, as in `decide_topic_claim`);
    otherwise why the topic is kept. Adopted topics are never deleted."""
    if record is None:
        return "no pipeline created it"
    if record.pipeline != ref.key:
        return f"pipeline {record.pipeline} owns it"
    if record.adopted:
        return "it was adopted, not created, by this pipeline"
    if topic_id is None or record.topic_id not in (None, topic_id):
        return "it is not the topic this pipeline created"
    return None


@dataclass(frozen=True)
class Removal:
    topic: str
    delete: bool  # delete the topic
    release: bool  # tombstone its registry record
    kept: str | None = None  # why an existing topic stays


def decide_topic_removals(
    ref: PipelineRef, found: list[tuple[str, TopicOwner | None, str | None]]
) -> list[Removal]:
    """(topic, record, current id) of the pipeline's topic first, then its dead-letter topic →
    what deletionPolicy Delete does to each (pure). The dead-letter topic of a topic this
    pipeline did not create stays, even when the pipeline created the dead-letter topic."""
    main, main_record, _ = found[0]
    main_ours = main_record is not None and main_record.pipeline == ref.key
    main_ours = main_ours and not (main_record is not None and main_record.adopted)
    removals = []
    for position, (topic, record, topic_id) in enumerate(found):
        mine = record is not None and record.pipeline == ref.key
        if topic_id is None:  # gone already: only the mark is left to release
            removals.append(Removal(topic, delete=False, release=mine))
            continue
        why = decide_topic_deletion(ref, record, topic_id)
        if why is None and position > 0 and not main_ours:
            why = f"it is the dead-letter topic of {main}, which this pipeline did not create"
        removals.append(Removal(topic, delete=why is None, release=why is None, kept=why))
    return removals


class TopicRegistry:
    """The compacted registry topic, read to its end before each decision (under `lock`).

    One per operator process; reads continue from where the last one stopped."""

    def __init__(
        self, admin: AdminClient, kafka: Mapping[str, str], topic: str, timeout: float
    ) -> None:
        """kafka: the operator's librdkafka settings (build_librdkafka_settings)."""
        self.lock = threading.RLock()
        self.topic = topic
        self._admin, self._kafka, self._timeout = admin, dict(kafka), timeout
        self._bootstrap = kafka["bootstrap.servers"]
        self._owners: dict[str, TopicOwner] = {}
        self._position = 0
        self._consumer: Consumer | None = None
        self._producer = Producer({**self._kafka, "acks": "all",
                                   "enable.idempotence": True, "linger.ms": 0})  # fmt: skip

    def _fail(self, action: str, error: object) -> KafkaUnavailableError:
        return KafkaUnavailableError(
            f"{action} the topic registry {self.topic} failed against Kafka at "
            f"{self._bootstrap}: {error}"
        )

    def _open(self) -> Consumer:
        if self._consumer is not None:
            return self._consumer
        try:
            metadata = self._admin.list_topics(timeout=self._timeout)
            if self.topic not in metadata.topics or metadata.topics[self.topic].error:
                replicas = min(3, max(1, len(metadata.brokers)))
                config = {"cleanup.policy": "compact", "min.insync.replicas": "1"}
                new = NewTopic(self.topic, 1, replicas, config=config)
                future = self._admin.create_topics([new], request_timeout=self._timeout)
                try:
                    future[self.topic].result(self._timeout)
                except KafkaException as error:
                    if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                        raise
        except KafkaException as error:
            raise self._fail("creating", error) from error
        consumer = Consumer({
            **self._kafka, "group.id": "metricpipe-operator",
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
        })  # fmt: skip
        consumer.assign([TopicPartition(self.topic, 0, OFFSET_BEGINNING)])
        self._consumer = consumer
        return consumer

    def refresh(self) -> None:
        """Read every record written since the last read."""
        with self.lock:
            consumer = self._open()
            deadline = time.monotonic() + self._timeout
            try:
                _, high = consumer.get_watermark_offsets(
                    TopicPartition(self.topic, 0), timeout=self._timeout, cached=False
                )
            except KafkaException as error:
                raise self._fail("reading", error) from error
            while self._position < high:
                if time.monotonic() > deadline:
                    raise self._fail("reading", f"no record past offset {self._position}")
                for message in consumer.consume(num_messages=500, timeout=0.5):
                    failure = message.error()
                    if failure is not None:
                        if failure.code() == KafkaError._PARTITION_EOF:
                            continue
                        raise self._fail("reading", failure)
                    key = (message.key() or b"").decode()
                    owner = TopicOwner.decode(message.value())
                    if owner is None:
                        self._owners.pop(key, None)
                    else:
                        self._owners[key] = owner
                    self._position = max(self._position, int(message.offset() or 0) + 1)

    def lookup(self, topic: str) -> TopicOwner | None:
        return self._owners.get(topic)

    def write(self, topic: str, owner: TopicOwner | None) -> None:
        """Record (or, with None, release) a topic's owner; returns once Kafka has it."""
        failures: list[object] = []

        def delivered(error: object, _message: object) -> None:
            if error is not None:
                failures.append(error)

        with self.lock:
            value = owner.encode() if owner is not None else None
            self._producer.produce(self.topic, key=topic.encode(), value=value,
                                   on_delivery=delivered)  # fmt: skip
            if self._producer.flush(self._timeout) > 0 or failures:
                raise self._fail("writing", failures[0] if failures else "flush timed out")
            if owner is None:
                self._owners.pop(topic, None)
            else:
                self._owners[topic] = owner


def ensure_owned_topics(
    admin: AdminClient, registry: TopicRegistry, ref: PipelineRef, plans: list[TopicPlan],
    config: OperatorConfig,
) -> list[TopicResult]:  # fmt: skip
    """Make the pipeline's topics (its topic, then its dead-letter topic) match their plans.

    Everything is decided before anything is done: a conflict (TopicConflictError) or a refused
    change (TopicChangeRefusedError: replication factor above the broker count, partition
    decrease) leaves Kafka and the registry untouched."""
    bootstrap, timeout = config.kafka_bootstrap, config.kafka_timeout_seconds
    with registry.lock:
        registry.refresh()
        brokers = fetch_broker_count(admin, bootstrap, timeout)
        states = [fetch_topic_state(admin, plan, bootstrap, timeout) for plan in plans]
        records = [registry.lookup(plan.name) for plan in plans]
        claims = [
            decide_topic_claim(
                plan.name, ref, record, state.topic_id if state else None,
                exists=state is not None, may_adopt=config.may_adopt(plan.name),
                registry_topic=registry.topic,
            )
            for plan, state, record in zip(plans, states, records, strict=True)
        ]  # fmt: skip
        changes = [decide_topic_changes(p, s, brokers) for p, s in zip(plans, states, strict=True)]
        for claim in claims:
            if claim.conflict:
                raise TopicConflictError(claim.conflict)
        for change in changes:
            if change.refused:
                raise TopicChangeRefusedError(change.refused, change.refused_reason)
        results = []
        rows = zip(plans, states, records, claims, changes, strict=True)
        for plan, state, record, claim, change in rows:
            if claim.record is not None:
                registry.write(plan.name, claim.record)
            results.append(
                apply_topic_changes(
                    admin, plan, state, change, bootstrap=bootstrap, timeout=timeout
                )
            )
            if change.create:  # the mark: this pipeline created this incarnation of the topic
                topic_id = wait_for_topic_id(admin, plan.name, bootstrap, timeout)
                registry.write(plan.name, TopicOwner(ref.key, ref.uid, topic_id))
                results[-1].changes.extend(build_recreation_warning(plan.name, record))
        return results


def build_recreation_warning(topic: str, record: TopicOwner | None) -> list[tuple[str, str]]:
    """A topic this pipeline created or adopted (its id recorded) is gone and is created anew:
    the records it held are lost, and the Event says so (a Warning, repair.py)."""
    if record is None or record.topic_id is None:
        return []
    return [("TopicRecreated", f"topic {topic} (id {record.topic_id}) was deleted outside "
                               "metricpipe and is created anew, empty: the records it held that "
                               "were not yet consumed are lost")]  # fmt: skip


def wait_for_topic_id(admin: AdminClient, name: str, bootstrap: str, timeout: float) -> str | None:
    """The id of a topic just created (metadata reaches every broker a moment later); None when
    it does not show within the timeout: the claim stays, and the next run records the id."""
    deadline = time.monotonic() + timeout
    while True:
        topic_id = fetch_topic_id(admin, name, bootstrap, timeout)
        if topic_id is not None or time.monotonic() > deadline:
            return topic_id
        time.sleep(0.1)


def delete_owned_topics(
    admin: AdminClient, registry: TopicRegistry, ref: PipelineRef, topics: list[str],
    *, config: OperatorConfig,
) -> list[tuple[str, str]]:  # fmt: skip
    """deletionPolicy Delete: delete the pipeline's topic and its dead-letter topic (`topics`,
    in that order) only where this pipeline created them. Returns Events."""
    bootstrap, timeout = config.kafka_bootstrap, config.kafka_timeout_seconds
    events: list[tuple[str, str]] = []
    with registry.lock:
        registry.refresh()
        found = [(t, registry.lookup(t), fetch_topic_id(admin, t, bootstrap, timeout))
                 for t in topics]  # fmt: skip
        for removal in decide_topic_removals(ref, found):
            if removal.kept:
                events.append(("TopicRetained", f"kept topic {removal.topic}: {removal.kept}"))
            if removal.delete and delete_topic(admin, removal.topic, bootstrap, timeout):
                events.append(("TopicDeleted", f"deleted topic {removal.topic} "
                                               "(deletionPolicy Delete)"))  # fmt: skip
            if removal.release:
                registry.write(removal.topic, None)
    return events
