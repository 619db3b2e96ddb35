"""The pipeline's Kafka topic: pure planning, and an idempotent ensure step (AdminClient)."""

from __future__ import annotations

from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from ..api.durations import parse_duration
from ..api.model import MetricPipelineSpec
from ..errors import KafkaUnavailableError, TopicChangeRefusedError

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


@dataclass(frozen=True)
class TopicChanges:
    create: bool = False
    add_partitions: int | None = None  # the new total
    config_updates: dict[str, str] = field(default_factory=dict)
    refused: str | None = None  # why nothing may change

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


def build_dead_letter_plan(plan: TopicPlan) -> TopicPlan:
    """`<topic>.dlq`: malformed and late records with their reason (one partition, 14 days)."""
    return TopicPlan(
        name=f"{plan.name}.dlq",
        partitions=1,
        replication_factor=plan.replication_factor,
        config={**MANAGED_DEFAULTS, "retention.ms": str(DEAD_LETTER_RETENTION_MS)},
    )


def decide_topic_changes(plan: TopicPlan, current: TopicState | None) -> TopicChanges:
    """What must change in Kafka so that the topic matches the plan (pure)."""
    if current is None:
        return TopicChanges(create=True)
    if plan.partitions < current.partitions:
        return TopicChanges(
            refused=(
                f"topic {plan.name} has {current.partitions} partitions and Kafka cannot "
                f"reduce them; set spec.topic.partitions to {current.partitions} or more "
                "(or create a new pipeline with a new topic)"
            )
        )
    updates = {k: v for k, v in plan.config.items() if current.config.get(k) != v}
    grow = plan.partitions if plan.partitions > current.partitions else None
    return TopicChanges(add_partitions=grow, config_updates=updates)


def _wrap(action: str, bootstrap: str, error: BaseException) -> KafkaUnavailableError:
    return KafkaUnavailableError(f"{action} failed against Kafka at {bootstrap}: {error}")


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
    return TopicState(partitions=len(topic.partitions), config=config)


@dataclass(frozen=True)
class TopicResult:
    partitions: int
    changes: list[tuple[str, str]]  # (Event reason, message)


def ensure_topic(
    admin: AdminClient, plan: TopicPlan, bootstrap: str, timeout: float
) -> TopicResult:
    """Make the topic match the plan. Returns the partition count and what changed (Events).

    Raises KafkaUnavailableError (retry later) or TopicChangeRefusedError (needs a spec change).
    """
    current = fetch_topic_state(admin, plan, bootstrap, timeout)
    changes = decide_topic_changes(plan, current)
    if changes.refused:
        raise TopicChangeRefusedError(changes.refused)
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
                # Created concurrently (or by an earlier run): converge on the next pass.
                return ensure_topic(admin, plan, bootstrap, timeout)
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
