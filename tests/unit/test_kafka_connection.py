"""The Kafka connection contract: which combinations are refused (with what to change), and the
client settings built for librdkafka and for Spark's Kafka source, as tables written by hand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from metricpipe_contract.kafka import (
    KafkaConnection,
    KafkaConnectionError,
    KafkaEndpoint,
    build_jaas_config,
    build_librdkafka_settings,
    build_pem_keystore,
    build_spark_kafka_options,
    find_connection_problem,
    load_kafka_connection,
)

CA, CERT, KEY = Path("/k/ca.crt"), Path("/k/tls.crt"), Path("/k/tls.key")


@pytest.mark.parametrize(
    ("fields", "problem_part"),
    [
        ({}, None),
        ({"security_protocol": "SSL"}, None),
        ({"security_protocol": "SSL", "ca_file": CA}, None),
        ({"security_protocol": "SSL", "ca_file": CA, "certificate_file": CERT, "key_file": KEY},
         None),
        ({"security_protocol": "SASL_SSL", "username": "u", "password": SecretStr("p")}, None),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256", "username": "u",
          "password": SecretStr("p"), "ca_file": CA}, None),
        ({"bootstrap": " "}, "bootstrap servers are empty"),
        ({"security_protocol": "SSL", "certificate_file": CERT}, "set both the certificate"),
        ({"security_protocol": "SSL", "key_file": KEY}, "set both the certificate"),
        ({"ca_file": CA}, "PLAINTEXT takes no CA"),
        ({"username": "u", "password": SecretStr("p")}, "PLAINTEXT takes no username, password"),
        ({"security_protocol": "SASL_SSL"}, "needs a username and a password"),
        ({"security_protocol": "SASL_SSL", "username": "u"}, "needs a username and a password"),
        ({"security_protocol": "SASL_SSL", "password": SecretStr("p")}, "needs a username"),
        ({"security_protocol": "SSL", "username": "u"}, "use SASL_SSL for SCRAM users"),
    ],
)  # fmt: skip
def test_which_combinations_are_refused(fields: dict[str, Any], problem_part: str | None) -> None:
    candidate = KafkaConnection.model_construct(**{"bootstrap": "b:9093", **fields})
    problem = find_connection_problem(candidate)
    if problem_part is None:
        assert problem is None
        KafkaConnection(**{"bootstrap": "b:9093", **fields})
    else:
        assert problem is not None
        assert problem_part in problem
        with pytest.raises(ValidationError, match=problem_part):
            KafkaConnection(**{"bootstrap": "b:9093", **fields})


def test_librdkafka_settings_per_mode() -> None:
    assert build_librdkafka_settings(KafkaConnection(bootstrap="b:9092")) == {
        "bootstrap.servers": "b:9092", "security.protocol": "plaintext",
    }  # fmt: skip
    mtls = KafkaConnection(
        bootstrap="b:9094", security_protocol="SSL", ca_file=CA, certificate_file=CERT,
        key_file=KEY,
    )  # fmt: skip
    assert build_librdkafka_settings(mtls) == {
        "bootstrap.servers": "b:9094",
        "security.protocol": "ssl",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": "/k/ca.crt",
        "ssl.certificate.location": "/k/tls.crt",
        "ssl.key.location": "/k/tls.key",
    }
    scram = KafkaConnection(
        bootstrap="b:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256",
        username="tenant-a", password=SecretStr("s3cret"),
    )  # fmt: skip
    assert build_librdkafka_settings(scram) == {
        "bootstrap.servers": "b:9093",
        "security.protocol": "sasl_ssl",
        "ssl.endpoint.identification.algorithm": "https",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": "tenant-a",
        "sasl.password": "s3cret",
    }


def test_spark_options_per_mode() -> None:
    assert build_spark_kafka_options(KafkaConnection(bootstrap="b:9092")) == {
        "kafka.bootstrap.servers": "b:9092", "kafka.security.protocol": "PLAINTEXT",
    }  # fmt: skip
    scram = KafkaConnection(
        bootstrap="b:9093", security_protocol="SASL_SSL", username="tenant-a",
        password=SecretStr('pa"ss\\word'), ca_file=CA,
    )  # fmt: skip
    assert build_spark_kafka_options(scram) == {
        "kafka.bootstrap.servers": "b:9093",
        "kafka.security.protocol": "SASL_SSL",
        "kafka.ssl.endpoint.identification.algorithm": "https",
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": "/k/ca.crt",
        "kafka.sasl.mechanism": "SCRAM-SHA-512",
        "kafka.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            'username="tenant-a" password="pa\\"ss\\\\word";'
        ),
    }
    mtls = KafkaConnection(
        bootstrap="b:9094", security_protocol="SSL", ca_file=CA, certificate_file=CERT,
        key_file=KEY,
    )  # fmt: skip
    with pytest.raises(KafkaConnectionError, match="one PEM file"):
        build_spark_kafka_options(mtls)
    options = build_spark_kafka_options(mtls, keystore_file=Path("/scratch/ks.pem"))
    assert options["kafka.ssl.keystore.type"] == "PEM"
    assert options["kafka.ssl.keystore.location"] == "/scratch/ks.pem"
    assert "kafka.sasl.jaas.config" not in options


def test_jaas_escapes_quotes_and_backslashes() -> None:
    line = build_jaas_config('a"b', "c\\d")
    assert line.endswith('username="a\\"b" password="c\\\\d";')


def test_describe_never_shows_the_password() -> None:
    scram = KafkaConnection(
        bootstrap="b:9093", security_protocol="SASL_SSL", username="tenant-a",
        password=SecretStr("hunter2-very-secret"),
    )  # fmt: skip
    text = scram.describe()
    assert "tenant-a" in text
    assert "SCRAM-SHA-512" in text
    assert "hunter2" not in text
    assert "hunter2" not in repr(scram)
    assert "hunter2" not in str(scram.model_dump())


def test_pem_keystore_wants_a_pkcs8_key_then_the_chain() -> None:
    key = "-----BEGIN PRIVATE KEY-----\nAAA\n-----END PRIVATE KEY-----\n"
    cert = "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----"
    assert build_pem_keystore(key, cert) == key + cert + "\n"
    with pytest.raises(KafkaConnectionError, match="openssl pkcs8 -topk8"):
        build_pem_keystore(key.replace("PRIVATE", "RSA PRIVATE"), cert)
    with pytest.raises(KafkaConnectionError, match="not a PEM certificate"):
        build_pem_keystore(key, "junk")


def _secret_dir(tmp_path: Path, **files: str) -> Path:
    for key, value in files.items():
        (tmp_path / key.replace("_", ".")).write_text(value)
    return tmp_path


def test_a_scram_endpoint_reads_user_password_and_ca_from_the_mounted_secret(
    tmp_path: Path,
) -> None:
    directory = _secret_dir(tmp_path, username="tenant-a\n", password="pw\n", ca_crt="CA")
    endpoint = KafkaEndpoint.model_validate({
        "bootstrap": "b:9093", "securityProtocol": "SASL_SSL", "credentialsDir": str(directory),
    })  # fmt: skip
    connection = load_kafka_connection(endpoint)
    assert connection.username == "tenant-a"
    assert connection.password is not None
    assert connection.password.get_secret_value() == "pw"
    assert connection.ca_file == directory / "ca.crt"
    assert connection.certificate_file is None
    given = load_kafka_connection(endpoint.model_copy(update={"username": "strimzi-user"}))
    assert given.username == "strimzi-user"


def test_a_tls_endpoint_uses_a_client_certificate_when_the_secret_has_one(
    tmp_path: Path,
) -> None:
    endpoint = KafkaEndpoint(bootstrap="b:9094", security_protocol="SSL",
                             credentials_dir=tmp_path)  # fmt: skip
    _secret_dir(tmp_path, ca_crt="CA")
    server_only = load_kafka_connection(endpoint)
    assert (server_only.ca_file, server_only.certificate_file) == (tmp_path / "ca.crt", None)
    _secret_dir(tmp_path, tls_crt="C", tls_key="K", ca_crt="CA")
    mutual = load_kafka_connection(endpoint)
    assert mutual.certificate_file == tmp_path / "tls.crt"
    assert mutual.key_file == tmp_path / "tls.key"
    assert mutual.ca_file == tmp_path / "ca.crt"


@pytest.mark.parametrize(
    ("protocol", "files", "message"),
    [
        ("SASL_SSL", {"password": "p"}, "no key 'username'"),
        ("SASL_SSL", {"username": "u"}, "no key 'password'"),
        ("SSL", {"tls_crt": "C"}, "no key 'tls.key'"),
        ("SSL", {"tls_key": "K"}, "no key 'tls.crt'"),
    ],
)
def test_a_missing_secret_key_is_named(
    tmp_path: Path, protocol: str, files: dict[str, str], message: str
) -> None:
    endpoint = KafkaEndpoint.model_validate({
        "bootstrap": "b:9093", "securityProtocol": protocol,
        "credentialsDir": str(_secret_dir(tmp_path, **files)),
    })  # fmt: skip
    with pytest.raises(KafkaConnectionError, match=message):
        load_kafka_connection(endpoint)


def test_sasl_without_a_secret_says_where_to_name_one() -> None:
    endpoint = KafkaEndpoint(bootstrap="b:9093", security_protocol="SASL_SSL")
    with pytest.raises(KafkaConnectionError, match=r"spec\.kafka\.credentialsSecretRef"):
        load_kafka_connection(endpoint)
    plain = load_kafka_connection(KafkaEndpoint(bootstrap="b:9092"))
    assert build_librdkafka_settings(plain)["security.protocol"] == "plaintext"


@pytest.mark.parametrize("protocol", ["SSL", "SASL_SSL"])
def test_a_missing_secret_is_named_with_what_to_create(tmp_path: Path, protocol: str) -> None:
    """Pods mount the Secret as optional: when it does not exist its directory is empty."""
    (tmp_path / "..data").mkdir()  # the kubelet's own entries are not keys
    endpoint = KafkaEndpoint.model_validate({
        "bootstrap": "b:9093", "securityProtocol": protocol, "credentialsDir": str(tmp_path),
        "credentialsSecret": "team-a-kafka",
    })  # fmt: skip
    with pytest.raises(KafkaConnectionError) as raised:
        load_kafka_connection(endpoint)
    message = str(raised.value)
    assert "Secret 'team-a-kafka' does not exist in the pipeline's namespace" in message
    assert "username, password, ca.crt, tls.crt, tls.key" in message
    assert "spec.kafka.credentialsSecretRef" in message
