"""Kafka is real: topics, 10,000 records through a consumer group, committed offsets."""

from __future__ import annotations

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from metricpipe_devstack.env import StackEnv

RECORDS = 10_000
PARTITIONS = 3


def create_topic(admin: AdminClient, name: str, partitions: int) -> None:
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=30)


def test_produce_consume_and_committed_offsets(stack: StackEnv, unique_name: str) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    create_topic(admin, unique_name, PARTITIONS)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 5})
    for i in range(RECORDS):
        producer.produce(unique_name, key=str(i).encode(), value=f'{{"n": {i}}}'.encode())
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0

    group = f"{unique_name}-group"
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "partition.assignment.strategy": "cooperative-sticky",
        }
    )
    consumer.subscribe([unique_name])
    seen: list[int] = []
    try:
        while len(seen) < RECORDS:
            batch = consumer.consume(num_messages=1000, timeout=10)
            assert batch, f"no records within 10s after {len(seen)}"
            for message in batch:
                assert message.error() is None
                key = message.key()
                assert key is not None
                seen.append(int(key))
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    assert sorted(seen) == list(range(RECORDS))

    result = admin.list_consumer_group_offsets([_group_request(group, unique_name)])[group].result(
        timeout=30
    )
    committed = {tp.partition: tp.offset for tp in result.topic_partitions}
    assert len(committed) == PARTITIONS
    assert sum(committed.values()) == RECORDS
    for partition, offset in committed.items():
        low, high = _watermarks(stack, unique_name, partition)
        assert (low, offset) == (0, high)


def test_topic_auto_creation_is_off(stack: StackEnv, unique_name: str) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": unique_name,
            "allow.auto.create.topics": True,
        }
    )
    try:
        consumer.list_topics(unique_name, timeout=5)
    finally:
        consumer.close()
    assert unique_name not in admin.list_topics(timeout=10).topics


def _group_request(group: str, topic: str) -> ConsumerGroupTopicPartitions:
    return ConsumerGroupTopicPartitions(
        group, [TopicPartition(topic, p) for p in range(PARTITIONS)]
    )


def _watermarks(stack: StackEnv, topic: str, partition: int) -> tuple[int, int]:
    probe = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": f"{topic}-probe"})
    try:
        low, high = probe.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
    except KafkaException as error:
        raise AssertionError(f"watermarks of {topic}/{partition}: {error}") from error
    finally:
        probe.close()
    return int(low), int(high)
