"""The consumer's Kafka clients' settings, made once per process from pipeline.json's `kafka`
and the mounted credentials Secret (metricpipe_contract.kafka builds them)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from metricpipe_contract.kafka import (
    KafkaEndpoint,
    build_librdkafka_settings,
    build_pem_keystore,
    build_spark_kafka_options,
    load_kafka_connection,
)

KEYSTORE_FILE = "kafka-client-keystore.pem"


@dataclass(frozen=True)
class KafkaAccess:
    """settings: what every confluent-kafka client of the process starts from (with
    `bootstrap.servers`); spark_options: Spark's Kafka source options (batch runs);
    described: the connection for logs and messages, without secrets."""

    settings: Mapping[str, str]
    spark_options: Mapping[str, str] = field(default_factory=dict)
    described: str = ""

    @property
    def bootstrap(self) -> str:
        return self.settings["bootstrap.servers"]


def build_plaintext_access(bootstrap: str) -> KafkaAccess:
    """An unauthenticated connection (the development stack's plaintext listener)."""
    return ensure_kafka_access(KafkaEndpoint(bootstrap=bootstrap), keystore_dir=None)


def ensure_kafka_access(endpoint: KafkaEndpoint, *, keystore_dir: Path | None) -> KafkaAccess:
    """Read the credentials and build every client's settings. With a client certificate and a
    keystore_dir (batch runs), also the Java client's PEM keystore there (owner-only), which
    Spark's Kafka source needs. Raises KafkaConnectionError with what to change."""
    connection = load_kafka_connection(endpoint)
    keystore = None
    if keystore_dir is not None and connection.certificate_file and connection.key_file:
        keystore = keystore_dir / KEYSTORE_FILE
        keystore.touch(mode=0o600)
        keystore.write_text(build_pem_keystore(
            connection.key_file.read_text(), connection.certificate_file.read_text()
        ))  # fmt: skip
    spark = (
        build_spark_kafka_options(connection, keystore_file=keystore)
        if keystore is not None or connection.certificate_file is None
        else {}
    )
    return KafkaAccess(build_librdkafka_settings(connection), spark, connection.describe())
