"""How every metricpipe process connects to Kafka, and the client settings built from it.

One `KafkaConnection` serves each Kafka client metricpipe runs: the operator's AdminClient and
topic-owner records, the stream consumer, the dead-letter producer, the exporter and the batch
runs' Spark Kafka source. The builders are pure: `build_librdkafka_settings` for the
confluent-kafka clients, `build_spark_kafka_options` for Spark's `kafka.`-prefixed options.

Supported: PLAINTEXT; SSL (the brokers' CA, optionally a client certificate: mutual TLS);
SASL_SSL with SCRAM-SHA-512 or SCRAM-SHA-256 (optionally with a client certificate too).
Secrets (the password, the private key) arrive by reference only: the password as an
environment variable from a Secret key, certificate and key as files of a mounted Secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.alias_generators import to_camel
from pydantic_settings import BaseSettings

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-512", "SCRAM-SHA-256"]
SECURITY_PROTOCOLS: tuple[SecurityProtocol, ...] = ("PLAINTEXT", "SSL", "SASL_SSL")
SASL_MECHANISMS: tuple[SaslMechanism, ...] = ("SCRAM-SHA-512", "SCRAM-SHA-256")
SCRAM_LOGIN_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
# Why a process could not use Kafka, as the first word of its termination message and as the
# reason of the pipeline's ConsumerReady condition (consumers' kafka_check.py writes them,
# the operator's reconcile/health.py reads them).
KAFKA_AUTH_FAILED = "KafkaAuthFailed"
TLS_VERIFICATION_FAILED = "TLSVerificationFailed"
KAFKA_FORBIDDEN = "KafkaForbidden"
KAFKA_SETTINGS_INVALID = "KafkaSettingsInvalid"
KAFKA_REASONS = (KAFKA_AUTH_FAILED, TLS_VERIFICATION_FAILED, KAFKA_FORBIDDEN,
                 KAFKA_SETTINGS_INVALID)  # fmt: skip


class KafkaConnectionError(ValueError):
    """A Kafka connection whose settings do not fit together; the message says what to change."""


class KafkaConnection(BaseModel):
    """Where Kafka is and how to authenticate to it. `ca_file` unset with TLS: the system's
    trust store verifies the brokers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bootstrap: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    username: str | None = None
    password: SecretStr | None = None
    ca_file: Path | None = None
    certificate_file: Path | None = None
    key_file: Path | None = None

    @model_validator(mode="after")
    def _fits_together(self) -> KafkaConnection:
        problem = find_connection_problem(self)
        if problem:
            raise KafkaConnectionError(problem)
        return self

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol != "PLAINTEXT"

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol == "SASL_SSL"

    def describe(self) -> str:
        """For logs and messages: protocol, mechanism and user, never the password or a key."""
        parts = [self.bootstrap, self.security_protocol]
        if self.uses_sasl:
            parts.append(f"{self.sasl_mechanism} user {self.username}")
        if self.certificate_file:
            parts.append(f"client certificate {self.certificate_file}")
        return " ".join(parts)


SecretKey = Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)]


class KafkaSecretKeys(BaseModel):
    """Which keys of a Kafka credentials Secret hold what (defaults: the conventional names),
    and the SCRAM user's name when the Secret holds only its password."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True
    )

    username: str | None = Field(
        default=None,
        max_length=256,
        description="The SCRAM user's name when the Secret holds only its password (a Strimzi "
        "KafkaUser's Secret: the KafkaUser's name); otherwise read from usernameKey.",
    )
    username_key: SecretKey = "username"
    password_key: SecretKey = "password"  # noqa: S105 - the name of a Secret key
    ca_key: SecretKey = "ca.crt"
    certificate_key: SecretKey = "tls.crt"
    key_key: SecretKey = "tls.key"


class KafkaEndpoint(KafkaSecretKeys):
    """The non-secret half of a connection, as a process is told it (pipeline.json's `kafka`,
    or the operator's and exporter's settings): where Kafka is, the protocol, and the directory
    where a Secret is mounted with the credentials under these keys. Files are read when a
    connection is made (`load_kafka_connection`), so a fixed Secret, which the kubelet
    updates in the mounted directory, takes effect at the next attempt."""

    bootstrap: str
    security_protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    credentials_dir: Path | None = None
    credentials_secret: str | None = None  # the mounted Secret's name, for messages


class KafkaClientSettings(BaseSettings):
    """The Kafka connection fields of a process's config (the operator's, the exporter's):
    METRICPIPE_KAFKA_*; the Secret with its credentials is mounted at kafka_credentials_dir."""

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092", description="Kafka bootstrap servers (host:port,...)."
    )
    kafka_security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL (with a client certificate: mutual "
        "TLS) or SASL_SSL (SCRAM users); consumers and batch runs use the same.",
    )  # fmt: skip
    kafka_sasl_mechanism: SaslMechanism = Field(default="SCRAM-SHA-512")
    kafka_credentials_dir: Path | None = Field(
        default=None,
        description="Where this process's Kafka credentials Secret is mounted (keys username, "
        "password, ca.crt, tls.crt, tls.key; each used when present and needed).",
    )
    kafka_username: str | None = Field(
        default=None, description="The SCRAM user, when the Secret holds only the password."
    )

    def kafka_endpoint(self) -> KafkaEndpoint:
        return KafkaEndpoint(
            bootstrap=self.kafka_bootstrap, security_protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism, credentials_dir=self.kafka_credentials_dir,
            username=self.kafka_username,
        )  # fmt: skip


def load_kafka_connection(endpoint: KafkaEndpoint) -> KafkaConnection:
    """The connection an endpoint describes, with its credentials read from the mounted
    Secret: SASL_SSL uses the username and password; a client certificate and key are used
    when the Secret has them (mutual TLS), a CA file when it has one (else the system's trust
    store). Raises
    KafkaConnectionError naming the file or key that is missing."""
    if endpoint.security_protocol == "PLAINTEXT" or endpoint.credentials_dir is None:
        if endpoint.security_protocol == "SASL_SSL":
            raise KafkaConnectionError(
                "Kafka security protocol SASL_SSL needs a credentials Secret: name one in "
                "spec.kafka.credentialsSecretRef (or set the operator's default)"
            )
        return KafkaConnection(
            bootstrap=endpoint.bootstrap, security_protocol=endpoint.security_protocol,
            sasl_mechanism=endpoint.sasl_mechanism,
        )  # fmt: skip
    directory = endpoint.credentials_dir
    keys = (endpoint.username_key, endpoint.password_key, endpoint.ca_key,
            endpoint.certificate_key, endpoint.key_key)  # fmt: skip
    if not any((directory / key).is_file() for key in keys):  # pods mount it as optional
        named = f" {endpoint.credentials_secret!r}" if endpoint.credentials_secret else ""
        raise KafkaConnectionError(
            f"the Kafka credentials Secret{named} does not exist in the pipeline's namespace "
            f"or holds none of the keys {', '.join(keys)}: create it, or name another in "
            "spec.kafka.credentialsSecretRef"
        )

    def required(key: str, what: str) -> Path:
        path = directory / key
        if not path.is_file():
            raise KafkaConnectionError(
                f"the Kafka credentials Secret has no key {key!r} ({what}): add it, or name "
                f"the key that holds it in spec.kafka.credentialsSecretRef"
            )
        return path

    ca = directory / endpoint.ca_key
    fields: dict[str, object] = {"ca_file": ca if ca.is_file() else None}
    if endpoint.security_protocol == "SASL_SSL":
        username = endpoint.username or required(endpoint.username_key, "the SCRAM user's "
                                                 "name").read_text().strip()  # fmt: skip
        password = required(endpoint.password_key, "the SCRAM password").read_text().strip()
        fields |= {"username": username, "password": SecretStr(password)}
    certificate, key = directory / endpoint.certificate_key, directory / endpoint.key_key
    if certificate.is_file() or key.is_file():  # mutual TLS (with SASL_SSL too, if both)
        fields |= {
            "certificate_file": required(endpoint.certificate_key, "the client certificate"),
            "key_file": required(endpoint.key_key, "the client certificate's private key"),
        }
    return KafkaConnection(
        bootstrap=endpoint.bootstrap, security_protocol=endpoint.security_protocol,
        sasl_mechanism=endpoint.sasl_mechanism, **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def find_connection_problem(connection: KafkaConnection) -> str | None:
    """What is wrong with a connection's combination of settings, as an instruction; None: ok."""
    protocol = connection.security_protocol
    given = [
        name
        for name, value in (
            ("username", connection.username),
            ("password", connection.password),
            ("CA", connection.ca_file),
            ("client certificate", connection.certificate_file),
        )
        if value is not None
    ]
    problems = [
        (
            not connection.bootstrap.strip(),
            "Kafka bootstrap servers are empty: set host:port[,host:port...]",
        ),
        (
            (connection.certificate_file is None) != (connection.key_file is None),
            "a Kafka client certificate needs its private key and the other way round: "
            "set both the certificate and the key, or neither",
        ),
        (
            protocol == "PLAINTEXT" and bool(given),
            f"Kafka security protocol PLAINTEXT takes no {', '.join(given)}: set the "
            "protocol to SSL or SASL_SSL, or remove them",
        ),
        (
            protocol == "SASL_SSL" and (not connection.username or connection.password is None),
            f"Kafka security protocol SASL_SSL ({connection.sasl_mechanism}) needs a username "
            "and a password: name the Secret keys holding them",
        ),
        (
            protocol == "SSL" and bool(connection.username or connection.password),
            "Kafka security protocol SSL authenticates by client certificate, not by username "
            "and password: use SASL_SSL for SCRAM users, or remove them",
        ),
    ]
    return next((message for wrong, message in problems if wrong), None)


def build_librdkafka_settings(connection: KafkaConnection) -> dict[str, str]:
    """The security part of a confluent-kafka (librdkafka) client's configuration, with
    `bootstrap.servers`. Brokers' host names are verified against their certificates
    (librdkafka's default, stated here so that no caller's setting turns it off)."""
    settings = {
        "bootstrap.servers": connection.bootstrap,
        "security.protocol": connection.security_protocol.lower(),
    }
    if connection.uses_tls:
        settings["ssl.endpoint.identification.algorithm"] = "https"
        if connection.ca_file is not None:
            settings["ssl.ca.location"] = str(connection.ca_file)
        if connection.certificate_file is not None and connection.key_file is not None:
            settings["ssl.certificate.location"] = str(connection.certificate_file)
            settings["ssl.key.location"] = str(connection.key_file)
    if connection.uses_sasl and connection.username and connection.password is not None:
        settings["sasl.mechanisms"] = connection.sasl_mechanism
        settings["sasl.username"] = connection.username
        settings["sasl.password"] = connection.password.get_secret_value()
    return settings


def build_jaas_config(username: str, password: str) -> str:
    """Java's JAAS line for a SCRAM login; quotes and backslashes in the values escaped."""

    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    return f"{SCRAM_LOGIN_MODULE} required username={quoted(username)} password={quoted(password)};"


def build_spark_kafka_options(
    connection: KafkaConnection, *, keystore_file: Path | None = None
) -> dict[str, str]:
    """Spark's Kafka source options (the Java client's settings, `kafka.`-prefixed).
    keystore_file: one PEM file holding the client's private key and certificate chain, which
    the Java client needs for mutual TLS (`build_pem_keystore` writes it); required when the
    connection has a client certificate."""
    options = {
        "kafka.bootstrap.servers": connection.bootstrap,
        "kafka.security.protocol": connection.security_protocol,
    }
    if connection.uses_tls:
        options["kafka.ssl.endpoint.identification.algorithm"] = "https"
        if connection.ca_file is not None:
            options["kafka.ssl.truststore.type"] = "PEM"
            options["kafka.ssl.truststore.location"] = str(connection.ca_file)
        if connection.certificate_file is not None:
            if keystore_file is None:
                raise KafkaConnectionError(
                    "Spark's Kafka client needs the client key and certificate in one PEM "
                    "file: pass keystore_file (build_pem_keystore)"
                )
            options["kafka.ssl.keystore.type"] = "PEM"
            options["kafka.ssl.keystore.location"] = str(keystore_file)
    if connection.uses_sasl and connection.username and connection.password is not None:
        options["kafka.sasl.mechanism"] = connection.sasl_mechanism
        options["kafka.sasl.jaas.config"] = build_jaas_config(
            connection.username, connection.password.get_secret_value()
        )
    return options


def build_pem_keystore(key_pem: str, certificate_pem: str) -> str:
    """The Java client's PEM keystore: the unencrypted PKCS#8 private key, then the chain.
    A PKCS#1 key ('BEGIN RSA PRIVATE KEY') is refused with what to do about it."""
    if "BEGIN PRIVATE KEY" not in key_pem:
        raise KafkaConnectionError(
            "the Kafka client key must be an unencrypted PKCS#8 PEM key ('BEGIN PRIVATE KEY'); "
            "convert it with 'openssl pkcs8 -topk8 -nocrypt -in key.pem'"
        )
    if "BEGIN CERTIFICATE" not in certificate_pem:
        raise KafkaConnectionError("the Kafka client certificate is not a PEM certificate")
    return key_pem.rstrip("\n") + "\n" + certificate_pem.rstrip("\n") + "\n"
