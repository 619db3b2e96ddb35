"""Kafka users for tests of the secured listeners, made the way a cluster's administrator (or
Strimzi's user operator) makes them: SCRAM credentials and ACLs through the AdminClient of a
super user (the stack's plaintext listener), client certificates from the stack's CA."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from pydantic import SecretStr

from metricpipe_contract.kafka import KafkaEndpoint
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.pki import issue_certificate

MECHANISMS = {"SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512,
              "SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256}  # fmt: skip


@dataclass(frozen=True)
class Tenant:
    """A pipeline's Kafka resources: its topic (`own`), its consumer group, its dead-letter
    topic, and another pipeline's topic (`other`) it must not reach."""

    own: str
    other: str
    dlq: str
    group: str


def create_scram_user(stack: StackEnv, name: str, mechanism: str = "SCRAM-SHA-512") -> SecretStr:
    password = secrets.token_urlsafe(16)
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    upsert = UserScramCredentialUpsertion(
        name, ScramCredentialInfo(MECHANISMS[mechanism], 4096), password.encode()
    )
    for future in admin.alter_user_scram_credentials([upsert]).values():
        future.result(timeout=30)
    return SecretStr(password)


def grant_consumer_acls(
    stack: StackEnv, principal: str, tenant: Tenant, *, group: bool = True
) -> None:
    """What docs/kafka-security.md says a pipeline's user needs, and nothing else: read its
    topic with its group (group=False: a batch run's user, which needs none); write its dead
    letters, read them back (duplicate suppression) and read the dead-letter topic's size
    limit."""

    def acl(kind: ResourceType, name: str, operation: AclOperation) -> AclBinding:
        return AclBinding(kind, name, ResourcePatternType.LITERAL, principal, "*", operation,
                          AclPermissionType.ALLOW)  # fmt: skip

    topic = ResourceType.TOPIC
    bindings = [
        acl(topic, tenant.own, AclOperation.READ),
        acl(topic, tenant.own, AclOperation.DESCRIBE),
        acl(topic, tenant.dlq, AclOperation.WRITE),
        acl(topic, tenant.dlq, AclOperation.READ),
        acl(topic, tenant.dlq, AclOperation.DESCRIBE),
        acl(topic, tenant.dlq, AclOperation.DESCRIBE_CONFIGS),
    ]
    if group:
        bindings.append(acl(ResourceType.GROUP, tenant.group, AclOperation.READ))
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    for future in admin.create_acls(bindings).values():
        future.result(timeout=30)


def revoke_topic_read(stack: StackEnv, principal: str, topic: str) -> None:
    """Take away the principal's Read on the topic (its Describe stays)."""
    read = AclBindingFilter(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, principal,
                            "*", AclOperation.READ, AclPermissionType.ALLOW)  # fmt: skip
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    for future in admin.delete_acls([read]).values():
        assert future.result(timeout=30), f"no Read ACL of {principal} on {topic} to revoke"


def issue_client_certificate(stack: StackEnv, user: str) -> tuple[Path, Path]:
    """(certificate, key) for User:<user> on the mutual-TLS listener (its CN is the user)."""
    return issue_certificate(stack.pki_dir, f"test-{user}", user)


def write_unacceptable_certificate_secret(
    directory: Path, stack: StackEnv, user: str, fault: str
) -> Path:
    """A mounted Secret for mutual TLS whose client certificate the brokers must refuse:
    `expired` (signed by the stack's CA, valid until a day before it was issued) or `foreign`
    (signed by a CA the brokers do not trust)."""
    directory.mkdir(parents=True, exist_ok=True)
    key, csr, crt = directory / "tls.key", directory / "tls.csr", directory / "tls.crt"
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={user}",
             "-keyout", str(key), "-out", str(csr))  # fmt: skip
    if fault == "expired":
        signer = ["-CA", str(stack.ca_file), "-CAkey", str(stack.pki_dir / "ca.key"), "-days", "-1"]
    else:
        other_key, other_crt = directory / "other-ca.key", directory / "other-ca.crt"
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=not-the-stack-ca",
                 "-days", "1", "-keyout", str(other_key), "-out", str(other_crt))  # fmt: skip
        signer = ["-CA", str(other_crt), "-CAkey", str(other_key), "-days", "1"]
    _openssl("x509", "-req", "-in", str(csr), *signer, "-CAcreateserial", "-out", str(crt))
    csr.unlink()
    shutil.copy(stack.ca_file, directory / "ca.crt")
    return directory


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def write_scram_secret(directory: Path, stack: StackEnv, user: str, password: SecretStr) -> Path:
    """A directory laid out as a mounted credentials Secret (keys username, password, ca.crt)."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "username").write_text(user)
    (directory / "password").write_text(password.get_secret_value())
    shutil.copy(stack.ca_file, directory / "ca.crt")
    return directory


def write_certificate_secret(directory: Path, stack: StackEnv, user: str) -> Path:
    """A mounted Secret for mutual TLS: tls.crt, tls.key and ca.crt."""
    directory.mkdir(parents=True, exist_ok=True)
    crt, key = issue_client_certificate(stack, user)
    shutil.move(crt, directory / "tls.crt")
    shutil.move(key, directory / "tls.key")
    shutil.copy(stack.ca_file, directory / "ca.crt")
    return directory


def secured_endpoint(bootstrap: str, protocol: str, credentials: Path) -> dict[str, Any]:
    """pipeline.json's `kafka` for a secured listener and a mounted-Secret directory."""
    return KafkaEndpoint(
        bootstrap=bootstrap, security_protocol=protocol,  # type: ignore[arg-type]
        credentials_dir=credentials,
    ).model_dump(by_alias=True, mode="json")  # fmt: skip
