"""A consumer process that Kafka refuses, each refusal produced for real on the SASL_SSL
listener: a wrong password, a CA that did not sign the brokers' certificate, a user without
the ACLs. It stops within seconds, before Spark starts, with a termination message that starts
with the reason the operator shows (KafkaAuthFailed, TLSVerificationFailed, KafkaForbidden) and
says what to change; no secret is in it or in its log. (The consumers that do get in compute
the reference over SASL_SSL and mutual TLS in test_consumer_real_data.py and
test_batch_job.py; the operator's conditions and the recovery once the Secret is fixed are in
test_kafka_conditions.py.) A consumer refused while it runs (its Read ACL taken away) stops
the same way and, once the ACL is back, loses nothing."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from functools import partial
from pathlib import Path

import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from consumers import ConsumerProcesses, create_topics, make_pipeline
from helpers import wait_for
from kafka_users import (
    Tenant,
    create_scram_user,
    grant_consumer_acls,
    revoke_topic_read,
    secured_endpoint,
    write_scram_secret,
)
from metricpipe_devstack.env import StackEnv
from refusals import MINUTE, build_records, expected_counts, finals_are, produce

SPEC = {
    "source": {"tag": "web", "format": "apache_combined"},
    "metric": {"aggregation": "count", "eventTime": {"field": "time", "format": "clf"}},
}


def write_other_ca(directory: Path) -> Path:
    """A CA that signed nothing of the stack's."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=not-the-ca",
         "-days", "1", "-keyout", str(directory / "other.key"), "-out", str(directory / "ca.crt")],
        check=True, capture_output=True,
    )  # fmt: skip
    return directory / "ca.crt"


@pytest.mark.parametrize(
    ("fault", "reason", "says"),
    [
        ("password", "KafkaAuthFailed", "Check the user and password"),
        ("ca", "TLSVerificationFailed", "Put the CA that signed the brokers' certificates"),
        ("acl", "KafkaForbidden", "grant it Read"),
    ],
)
def test_a_refused_consumer_stops_before_spark_saying_what_to_change(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, unique_name: str,
    fault: str, reason: str, says: str,
) -> None:  # fmt: skip
    topic = f"{unique_name}-access"
    create_topics(stack, topic, 1)
    user = f"{unique_name}-consumer"
    password = create_scram_user(stack, user)
    name = f"{unique_name}-requests"
    if fault != "acl":
        tenant = Tenant(topic, "", f"{topic}.dlq", f"metricpipe.it.{name}")
        grant_consumer_acls(stack, f"User:{user}", tenant)
    secret = tmp_path / "kafka-secret"
    given = SecretStr("not-the-password") if fault == "password" else password
    write_scram_secret(secret, stack, user, given)
    if fault == "ca":
        shutil.copy(write_other_ca(tmp_path / "other-ca"), secret / "ca.crt")
    pipeline = make_pipeline(stack, tmp_path, name, topic, SPEC, "elasticsearch")
    pipeline.document["kafka"] = secured_endpoint(stack.kafka_sasl_bootstrap, "SASL_SSL", secret)
    pipeline.document_path.write_text(json.dumps(pipeline.document))
    words_file = tmp_path / "termination-log"
    started = time.monotonic()
    process = processes.start(pipeline, METRICPIPE_TERMINATION_MESSAGE_PATH=str(words_file))
    code = process.wait(timeout=120)
    took = time.monotonic() - started
    log = processes.running.pop()[1].read_text(errors="replace")  # an expected exit
    assert code == 4, log[-3000:]
    words = words_file.read_text()
    assert words.startswith(f"{reason}: "), words
    assert says in words, words
    assert "spark ready" not in log, "it started Spark before asking Kafka"
    for value in {password.get_secret_value(), given.get_secret_value()}:
        assert value not in words
        assert value not in log
    print(f"{fault}: exit 4 after {took:.1f} s: {words}")


HOSTS_SPEC = {
    "source": {"tag": "app"},
    "metric": {"aggregation": "count", "groupBy": ["host"], "window": "1m",
               "allowedLateness": "10s", "eventTime": {"field": "ts", "format": "epoch_millis"}},
}  # fmt: skip


def committed_offset(stack: StackEnv, group: str, topic: str) -> int:
    """The group's committed offset on the topic's partition 0, read as the super user."""
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])]
    for future in admin.list_consumer_group_offsets(request).values():
        (partition,) = future.result(timeout=10).topic_partitions
        return max(int(partition.offset), 0)
    return 0


def test_a_running_consumer_whose_read_acl_is_revoked_says_why_and_loses_nothing(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, unique_name: str
) -> None:
    """While the consumer runs, its user's Read on the topic is taken away: its next fetch is
    refused and it stops within seconds (exit code 4) with KafkaForbidden and the ACL to grant,
    as the start-up check would say it, instead of retrying for ever. Once the ACL is back, a
    new process finishes the job: every final document equals the counts computed here from
    what was produced before and after, none counted twice."""
    topic = f"{unique_name}-app"
    create_topics(stack, topic, 1)
    user = f"{unique_name}-consumer"
    password = create_scram_user(stack, user)
    name = f"{unique_name}-hosts"
    group = f"metricpipe.it.{name}"
    tenant = Tenant(topic, "", f"{topic}.dlq", group)
    grant_consumer_acls(stack, f"User:{user}", tenant)
    secret = write_scram_secret(tmp_path / "kafka-secret", stack, user, password)
    pipeline = make_pipeline(stack, tmp_path, name, topic, HOSTS_SPEC, "elasticsearch")
    assert pipeline.document["consumerGroup"] == group
    pipeline.document["kafka"] = secured_endpoint(stack.kafka_sasl_bootstrap, "SASL_SSL", secret)
    pipeline.document_path.write_text(json.dumps(pipeline.document))
    records = build_records((int(time.time() * 1000) - 30 * MINUTE) // MINUTE * MINUTE)
    before, after = records[: len(records) // 2], records[len(records) // 2 :]
    produce(stack, topic, before)
    words_file = tmp_path / "termination-log"
    process = processes.start(pipeline, METRICPIPE_TERMINATION_MESSAGE_PATH=str(words_file))
    wait_for(lambda: committed_offset(stack, group, topic) >= len(before), 150,
             "the first half consumed and committed")  # fmt: skip
    assert process.poll() is None
    revoke_topic_read(stack, f"User:{user}", topic)
    revoked = time.monotonic()
    produce(stack, topic, after)
    code = process.wait(timeout=60)
    took = time.monotonic() - revoked
    log = processes.running.pop()[1].read_text(errors="replace")  # an expected exit
    assert code == 4, log[-3000:]
    words = words_file.read_text()
    assert words.startswith("KafkaForbidden: "), words
    assert f"may not read topic {topic!r}: grant it Read" in words, words
    assert "Traceback" not in log, log[-3000:]
    assert password.get_secret_value() not in log + words
    print(f"stopped {took:.1f} s after the revocation: {words}")

    grant_consumer_acls(stack, f"User:{user}", tenant)  # the fix
    processes.start(pipeline)
    index = pipeline.document["sink"]["index"]
    wait_for(partial(finals_are, stack, index, expected_counts(records)), 180,
             "every window final, each record counted once", 3)  # fmt: skip
