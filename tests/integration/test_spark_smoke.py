"""Spark is real: a local-mode job, and a batch read of a Kafka topic through the connector."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pyspark.sql import SparkSession
from pyspark.sql import functions as sf

from metricpipe_devstack.env import StackEnv

RECORDS = 3_000


@pytest.fixture(scope="module")
def spark(stack: StackEnv) -> Iterator[SparkSession]:
    session = (
        SparkSession.builder.master("local[2]")
        .appName("metricpipe-smoke")
        .config("spark.jars", ",".join(stack.spark_kafka_jars))
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    yield session
    session.stop()


def test_local_job_matches_python(spark: SparkSession) -> None:
    rows = [(f"p{i % 5}", float(i)) for i in range(1_000)]
    frame = spark.createDataFrame(rows, ["probe", "rtt"])
    got = {
        r["probe"]: (r["n"], r["avg"])
        for r in frame.groupBy("probe")
        .agg(sf.count("*").alias("n"), sf.avg("rtt").alias("avg"))
        .collect()
    }
    for probe in {p for p, _ in rows}:
        values = [v for p, v in rows if p == probe]
        assert got[probe][0] == len(values)
        assert got[probe][1] == pytest.approx(sum(values) / len(values))


def test_batch_read_of_a_kafka_topic(
    spark: SparkSession, stack: StackEnv, unique_name: str
) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(unique_name, num_partitions=2, replication_factor=1)])[
        unique_name
    ].result(timeout=30)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    for i in range(RECORDS):
        producer.produce(unique_name, value=json.dumps({"status": 200 + (i % 3) * 100}).encode())
    assert producer.flush(30) == 0

    frame = (
        spark.read.format("kafka")
        .option("kafka.bootstrap.servers", stack.kafka_bootstrap)
        .option("subscribe", unique_name)
        .option("startingOffsets", "earliest")
        .option("endingOffsets", "latest")
        .load()
    )
    parsed = frame.select(
        sf.get_json_object(sf.col("value").cast("string"), "$.status").cast("int").alias("status")
    )
    counts = {r["status"]: r["count"] for r in parsed.groupBy("status").count().collect()}
    assert counts == {200: 1_000, 300: 1_000, 400: 1_000}
