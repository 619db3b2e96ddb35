"""The pipeline's Kafka topic: pure planning, and an idempotent ensure step (AdminClient)."""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from metricpipe_contract.durations import parse_duration
from metricpipe_contract.model import MetricPipelineSpec

from ..errors import KafkaUnavailableError

MANAGED_DEFAULTS = {"cleanup.policy": "delete"}


@dataclass(frozen=True)
class TopicPlan:
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str]


@dataclass(frozen=True)
class TopicState:
    """What Kafka reports for an existing topic (only the keys the plan manages)."""

    partitions: int
    config: dict[str, str]
    topic_id: str | None = None  # Kafka's UUID of this incarnation of the topic


@dataclass(frozen=True)
class TopicChanges:
    create: bool = False
    add_partitions: int | None = None  # the new total
    config_updates: dict[str, str] = field(default_factory=dict)
    refused: str | None = None  # why nothing may change
    refused_reason: str = ""  # the condition's reason when refused

    @property
    def empty(self) -> bool:
        return not (self.create or self.add_partitions or self.config_updates)


def build_topic_plan(spec: MetricPipelineSpec, namespace: str, name: str) -> TopicPlan:
    retention_ms = int(parse_duration(spec.topic.retention) * 1000)
    config = {**MANAGED_DEFAULTS, **spec.topic.config, "retention.ms": str(retention_ms)}
    return TopicPlan(
        name=spec.topic_name(namespace, name),
        partitions=spec.topic.partitions,
        replication_factor=spec.topic.replication_factor,
        config=config,
    )


DEAD_LETTER_RETENTION_MS = 14 * 24 * 3600 * 1000
KAFKA_DEFAULT_MAX_MESSAGE_BYTES = 1_048_588
# A dead letter is the input record plus headers (reason, detail of at most 500 characters,
# source, pipeline, mode, stage, window): 64 KiB more than the input takes holds any of them.
DEAD_LETTER_HEADER_ALLOWANCE = 65_536


def build_dead_letter_plan(plan: TopicPlan) -> TopicPlan:
    """`<topic>.dlq`, configured with the input topic it serves (14 days' retention).

    As many partitions as the input (letters of input partition p go to DLQ partition p, which
    the consumer reads back after a crash to send no letter twice; it grows with the input),
    and room for any record the input accepts plus the letter's headers: `max.message.bytes`
    is the input's (its `topic.config` value, else Kafka's default) + 64 KiB."""
    given = plan.config.get("max.message.bytes", "")
    # not a number: Kafka refuses it on the input topic, with its own message
    accepted = int(given) if given.isdigit() else KAFKA_DEFAULT_MAX_MESSAGE_BYTES
    return TopicPlan(
        name=f"{plan.name}.dlq",
        partitions=plan.partitions,
        replication_factor=plan.replication_factor,
        config={
            **MANAGED_DEFAULTS,
            "retention.ms": str(DEAD_LETTER_RETENTION_MS),
            "max.message.bytes": str(accepted + DEAD_LETTER_HEADER_ALLOWANCE),
        },
    )


def decide_topic_changes(
    plan: TopicPlan, current: TopicState | None, brokers: int | None = None
) -> TopicChanges:
    """What must change in Kafka so that the topic matches the plan (pure). `brokers`: how many
    brokers the cluster has (None: not known), checked before a topic is created."""
    if current is None:
        if brokers is not None and plan.replication_factor > brokers:
            return TopicChanges(
                refused=(
                    f"spec.topic.replicationFactor is {plan.replication_factor} but the Kafka "
                    f"cluster has {brokers} broker{'s' if brokers != 1 else ''}; nothing was "
                    f"created. Re-create the pipeline with {brokers} or less (the field cannot "
                    "change), or add brokers (checked again every few minutes)"
                ),
                refused_reason="ReplicationFactorTooHigh",
            )
        return TopicChanges(create=True)
    if plan.partitions < current.partitions:
        return TopicChanges(
            refused=(
                f"topic {plan.name} has {current.partitions} partitions and Kafka cannot "
                f"reduce them; set spec.topic.partitions to {current.partitions} or more "
                "(or create a new pipeline with a new topic); nothing else was changed"
            ),
            refused_reason="PartitionDecreaseRefused",
        )
    updates = {k: v for k, v in plan.config.items() if current.config.get(k) != v}
    grow = plan.partitions if plan.partitions > current.partitions else None
    return TopicChanges(add_partitions=grow, config_updates=updates)


def _wrap(action: str, bootstrap: str, error: BaseException) -> KafkaUnavailableError:
    return KafkaUnavailableError(f"{action} failed against Kafka at {bootstrap}: {error}")


def fetch_broker_count(admin: AdminClient, bootstrap: str, timeout: float) -> int:
    try:
        return len(admin.list_topics(timeout=timeout).brokers)
    except KafkaException as error:
        raise _wrap("listing brokers", bootstrap, error) from error


def fetch_topic_id(admin: AdminClient, name: str, bootstrap: str, timeout: float) -> str | None:
    """Kafka's UUID of the topic as it exists now (None: it does not exist)."""
    try:
        found = admin.describe_topics(TopicCollection([name]), request_timeout=timeout)
        return str(found[name].result(timeout).topic_id)
    except KafkaException as error:
        if error.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return None
        raise _wrap(f"describing topic {name}", bootstrap, error) from error


def fetch_topic_state(
    admin: AdminClient, plan: TopicPlan, bootstrap: str, timeout: float
) -> TopicState | None:
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as error:
        raise _wrap("listing topics", bootstrap, error) from error
    topic = metadata.topics.get(plan.name)
    if topic is None or (topic.error and topic.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
        return None
    resource = ConfigResource(ConfigResource.Type.TOPIC, plan.name)
    try:
        entries = admin.describe_configs([resource])[resource].result(timeout=timeout)
    except KafkaException as error:
        raise _wrap(f"describing topic {plan.name}", bootstrap, error) from error
    config = {key: entries[key].value for key in plan.config if key in entries}
    topic_id = fetch_topic_id(admin, plan.name, bootstrap, timeout)
    if topic_id is None:  # listed by one broker, unknown to another: metadata still spreading
        raise KafkaUnavailableError(f"topic {plan.name} is not known to every broker yet")
    return TopicState(partitions=len(topic.partitions), config=config, topic_id=topic_id)


@dataclass(frozen=True)
class TopicResult:
    partitions: int
    changes: list[tuple[str, str]]  # (Event reason, message)


def apply_topic_changes(
    admin: AdminClient, plan: TopicPlan, current: TopicState | None, changes: TopicChanges,
    *, bootstrap: str, timeout: float,
) -> TopicResult:  # fmt: skip
    """Make the topic match the plan, as decided. Returns the partition count and what changed
    (Events). Raises KafkaUnavailableError (retry later)."""
    done: list[tuple[str, str]] = []
    try:
        if changes.create:
            new = NewTopic(plan.name, plan.partitions, plan.replication_factor, config=plan.config)
            try:
                admin.create_topics([new], request_timeout=timeout)[plan.name].result(timeout)
                done.append(
                    ("TopicCreated", f"created topic {plan.name} ({plan.partitions} partitions)")
                )
            except KafkaException as error:
                if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
                # Created by a request that timed out, or by someone else meanwhile: decide
                # again, ownership included, on the next pass.
                raise KafkaUnavailableError(
                    f"topic {plan.name} appeared while it was being created; checking again"
                ) from error
        if changes.add_partitions:
            request = NewPartitions(plan.name, changes.add_partitions)
            admin.create_partitions([request], request_timeout=timeout)[plan.name].result(timeout)
            done.append(
                (
                    "TopicPartitionsRaised",
                    f"raised {plan.name} to {changes.add_partitions} partitions",
                )
            )
        if changes.config_updates:
            resource = ConfigResource(
                ConfigResource.Type.TOPIC,
                plan.name,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                    for k, v in sorted(changes.config_updates.items())
                ],
            )
            admin.incremental_alter_configs([resource])[resource].result(timeout)
            settings = ", ".join(f"{k}={v}" for k, v in sorted(changes.config_updates.items()))
            done.append(("TopicConfigUpdated", f"set {settings} on {plan.name}"))
    except KafkaException as error:
        raise _wrap(f"changing topic {plan.name}", bootstrap, error) from error
    partitions = changes.add_partitions or (current.partitions if current else plan.partitions)
    return TopicResult(partitions=partitions, changes=done)


def delete_topic(admin: AdminClient, name: str, bootstrap: str, timeout: float) -> bool:
    """Delete the topic; False when it did not exist."""
    try:
        admin.delete_topics([name], request_timeout=timeout)[name].result(timeout)
    except KafkaException as error:
        if error.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            return False
        raise _wrap(f"deleting topic {name}", bootstrap, error) from error
    return True
