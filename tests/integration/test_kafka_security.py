"""The secured Kafka listeners of the local stack, reached with the settings metricpipe's
connection contract builds (metricpipe_contract.kafka): SCRAM users over SASL_SSL and
client certificates over mutual TLS, each limited by real ACLs that the broker enforces.
Expected values are what the test itself produced and the error codes Kafka defines."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from pydantic import SecretStr
from pyspark.sql import SparkSession

from kafka_users import (
    Tenant,
    create_scram_user,
    grant_consumer_acls,
    issue_client_certificate,
    write_unacceptable_certificate_secret,
)
from metricpipe_consumers.kafka_check import (
    KafkaAccessFacts,
    decide_kafka_failure,
    fetch_kafka_answers,
)
from metricpipe_contract.kafka import (
    KafkaConnection,
    SaslMechanism,
    build_librdkafka_settings,
    build_pem_keystore,
    build_spark_kafka_options,
)
from metricpipe_devstack.env import StackEnv

RECORDS = 200


@pytest.fixture
def tenant(stack: StackEnv, unique_name: str) -> Iterator[Tenant]:
    """Topics made and filled over the plaintext listener (a super user's, like an operator)."""
    tenant = Tenant(f"{unique_name}-own", f"{unique_name}-other", f"{unique_name}-own.dlq",
                    f"{unique_name}-group")  # fmt: skip
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    topics = [NewTopic(t, num_partitions=2, replication_factor=1)
              for t in (tenant.own, tenant.other, tenant.dlq)]  # fmt: skip
    for future in admin.create_topics(topics).values():
        future.result(timeout=30)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    for topic in (tenant.own, tenant.other):
        for i in range(RECORDS):
            producer.produce(topic, value=f'{{"n": {i}}}'.encode())
    assert producer.flush(30) == 0
    yield tenant
    for future in admin.delete_topics([tenant.own, tenant.other, tenant.dlq]).values():
        future.result(timeout=30)


def _read_all(settings: dict[str, str], topic: str, group: str) -> tuple[int, KafkaError | None]:
    """Records read from the start of topic (until 5 s bring nothing more), or the first
    error Kafka returns."""
    consumer = Consumer({**settings, "group.id": group, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([topic])
    count, idle = 0, 0
    try:
        while idle < 5:
            batch = consumer.consume(num_messages=500, timeout=1)
            idle = 0 if batch else idle + 1
            for message in batch:
                error = message.error()
                if error is not None:
                    return count, error
                count += 1
    finally:
        consumer.close()
    return count, None


def _write(settings: dict[str, str], topic: str) -> KafkaError | None:
    """The delivery error of one record written to topic, None when it was written."""
    outcome: list[KafkaError | None] = []
    producer = Producer({**settings, "message.timeout.ms": 15_000})
    producer.produce(topic, value=b'{"letter": 1}',
                     on_delivery=lambda error, _message: outcome.append(error))  # fmt: skip
    producer.flush(20)
    assert outcome, "the delivery report never came"
    return outcome[0]


def _connection_errors(settings: dict[str, str]) -> tuple[bool, list[KafkaError]]:
    """(whether metadata could be read, the errors the client reported on the way)."""
    errors: list[KafkaError] = []
    admin = AdminClient({**settings, "error_cb": errors.append})  # type: ignore[dict-item]
    try:
        admin.list_topics(timeout=8)
        connected = True
    except KafkaException:
        connected = False
    admin.poll(1)  # serves the error callbacks
    return connected, errors


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "SCRAM-SHA-256"])
def test_a_scram_user_reads_its_topic_and_writes_its_dead_letters_only(
    stack: StackEnv, tenant: Tenant, unique_name: str, mechanism: SaslMechanism
) -> None:
    user = f"{unique_name}-user"
    password = create_scram_user(stack, user, mechanism)
    grant_consumer_acls(stack, f"User:{user}", tenant)
    settings = build_librdkafka_settings(KafkaConnection(
        bootstrap=stack.kafka_sasl_bootstrap, security_protocol="SASL_SSL",
        sasl_mechanism=mechanism, username=user, password=password, ca_file=stack.ca_file,
    ))  # fmt: skip

    assert _read_all(settings, tenant.own, tenant.group) == (RECORDS, None)
    assert _write(settings, tenant.dlq) is None

    _, error = _read_all(settings, tenant.other, tenant.group)
    assert error is not None
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    _, error = _read_all(settings, tenant.own, f"{tenant.group}-not-granted")
    assert error is not None
    assert error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED
    error = _write(settings, tenant.own)
    assert error is not None
    assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_wrong_password_is_an_authentication_failure(stack: StackEnv, unique_name: str) -> None:
    user = f"{unique_name}-user"
    create_scram_user(stack, user, "SCRAM-SHA-512")
    settings = build_librdkafka_settings(KafkaConnection(
        bootstrap=stack.kafka_sasl_bootstrap, security_protocol="SASL_SSL", username=user,
        password=SecretStr("not-the-password"), ca_file=stack.ca_file,
    ))  # fmt: skip
    connected, errors = _connection_errors(settings)
    assert not connected
    assert KafkaError._AUTHENTICATION in {e.code() for e in errors}, errors


def test_a_client_certificate_is_the_user_on_the_mutual_tls_listener(
    stack: StackEnv, tenant: Tenant, unique_name: str
) -> None:
    user = f"{unique_name}-cert"
    crt, key = issue_client_certificate(stack, user)
    grant_consumer_acls(stack, f"User:{user}", tenant)
    settings = build_librdkafka_settings(KafkaConnection(
        bootstrap=stack.kafka_mtls_bootstrap, security_protocol="SSL", ca_file=stack.ca_file,
        certificate_file=crt, key_file=key,
    ))  # fmt: skip
    try:
        assert _read_all(settings, tenant.own, tenant.group) == (RECORDS, None)
        _, error = _read_all(settings, tenant.other, tenant.group)
        assert error is not None
        assert error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED

        no_certificate = build_librdkafka_settings(KafkaConnection(
            bootstrap=stack.kafka_mtls_bootstrap, security_protocol="SSL", ca_file=stack.ca_file,
        ))  # fmt: skip
        connected, errors = _connection_errors(no_certificate)
        assert not connected
        assert errors, "the broker let a client without a certificate in"
    finally:
        crt.unlink()
        key.unlink()


def test_a_broker_certificate_from_an_unknown_ca_is_refused(
    stack: StackEnv, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=not-the-ca",
         "-days", "1", "-keyout", str(tmp_path / "other-ca.key"), "-out", str(other_ca)],
        check=True, capture_output=True,
    )  # fmt: skip
    settings = build_librdkafka_settings(KafkaConnection(
        bootstrap=stack.kafka_sasl_bootstrap, security_protocol="SASL_SSL",
        username=stack.kafka_scram_admin,
        password=SecretStr(stack.kafka_scram_admin_password_file.read_text().strip()),
        ca_file=other_ca,
    ))  # fmt: skip
    connected, errors = _connection_errors(settings)
    assert not connected
    assert KafkaError._SSL in {e.code() for e in errors}, errors
    assert any("certificate verify failed" in e.str() for e in errors), errors


@pytest.fixture(scope="module")
def spark(stack: StackEnv) -> Iterator[SparkSession]:
    session = (
        SparkSession.builder.master("local[1]")
        .appName("metricpipe-kafka-security")
        .config("spark.jars", ",".join(stack.spark_kafka_jars))
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    yield session
    session.stop()


def _spark_count(spark: SparkSession, options: dict[str, str], topic: str) -> int:
    return int(
        spark.read.format("kafka").options(**options)
        .option("subscribe", topic).option("startingOffsets", "earliest")
        .option("endingOffsets", "latest").load().count()
    )  # fmt: skip


def test_spark_reads_over_scram_and_mutual_tls_with_the_built_options(
    spark: SparkSession, stack: StackEnv, tenant: Tenant, unique_name: str, tmp_path: Path
) -> None:
    """Batch runs read through Spark's Kafka source (the Java client): the options built for
    it authenticate, and the ACLs bind it as they bind librdkafka."""
    user = f"{unique_name}-spark"
    password = create_scram_user(stack, user, "SCRAM-SHA-512")
    grant_consumer_acls(stack, f"User:{user}", tenant)
    scram = build_spark_kafka_options(KafkaConnection(
        bootstrap=stack.kafka_sasl_bootstrap, security_protocol="SASL_SSL", username=user,
        password=password, ca_file=stack.ca_file,
    ))  # fmt: skip
    assert _spark_count(spark, scram, tenant.own) == RECORDS
    with pytest.raises(Exception, match=r"TopicAuthorizationException|Not authorized"):
        _spark_count(spark, scram, tenant.other)

    crt, key = issue_client_certificate(stack, user)
    try:
        keystore = tmp_path / "keystore.pem"
        keystore.write_text(build_pem_keystore(key.read_text(), crt.read_text()))
        mtls = build_spark_kafka_options(KafkaConnection(
            bootstrap=stack.kafka_mtls_bootstrap, security_protocol="SSL",
            ca_file=stack.ca_file, certificate_file=crt, key_file=key,
        ), keystore_file=keystore)  # fmt: skip
        assert _spark_count(spark, mtls, tenant.own) == RECORDS
    finally:
        crt.unlink()
        key.unlink()


@pytest.mark.parametrize("fault", ["expired", "foreign"])
def test_an_expired_or_foreign_client_certificate_is_refused_with_its_reason(
    stack: StackEnv, tenant: Tenant, tmp_path: Path, unique_name: str, fault: str
) -> None:
    """On the mutual-TLS listener, a client certificate the brokers cannot accept (expired,
    or signed by a CA they do not trust) is refused in the handshake, and the consumer's
    start-up check names it: KafkaAuthFailed, with what to renew or re-issue."""
    secret = write_unacceptable_certificate_secret(tmp_path / "tls", stack,
                                                   f"{unique_name}-{fault}", fault)  # fmt: skip
    crt, key = secret / "tls.crt", secret / "tls.key"
    connection = KafkaConnection(
        bootstrap=stack.kafka_mtls_bootstrap,
        security_protocol="SSL",
        ca_file=stack.ca_file,
        certificate_file=crt,
        key_file=key,
    )
    started = time.monotonic()
    answers = fetch_kafka_answers(build_librdkafka_settings(connection), tenant.own, None)
    assert time.monotonic() - started < 10, "a refused certificate is known in seconds"
    failure = decide_kafka_failure(
        answers, KafkaAccessFacts(connection.describe(), tenant.own, tenant.group, "tls-user")
    )
    assert failure is not None, answers
    assert failure.reason == "KafkaAuthFailed", failure
    assert "signed by a CA the brokers trust and not expired" in failure.message
    assert "'tls-user'" in failure.message  # the Secret to fix
