"""A consumer process that Kafka refuses, each refusal produced for real on the SASL_SSL
listener: a wrong password, a CA that did not sign the brokers' certificate, a user without
the ACLs. It stops within seconds, before Spark starts, with a termination message that starts
with the reason the operator shows (KafkaAuthFailed, TLSVerificationFailed, KafkaForbidden) and
says what to change; no secret is in it or in its log. (The consumers that do get in compute
the reference over SASL_SSL and mutual TLS in test_consumer_real_data.py and
test_batch_job.py; the operator's conditions and the recovery once the Secret is fixed are in
test_kafka_conditions.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from consumers import ConsumerProcesses, create_topics, make_pipeline
from kafka_users import (
    Tenant,
    create_scram_user,
    grant_consumer_acls,
    secured_endpoint,
    write_scram_secret,
)
from metricpipe_devstack.env import StackEnv

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
