"""Kafka refusing a pipeline's consumers, on the real stack: the operator (with its
ResourceManager) runs on the SASL_SSL listener as the SCRAM admin, and each of three pipelines
names its own Kafka credentials Secret, wrong in its own way (a wrong password, a CA that did
not sign the brokers' certificate, a user without ACLs). Their consumers run as containers on
the stack's kubelet and are refused for real. Each pipeline shows ConsumerReady=False with the
reason (KafkaAuthFailed, TLSVerificationFailed, KafkaForbidden) and what to change; once its
Secret (or its ACLs) is fixed it recovers with no other action, and its final documents equal
the counts computed here from the records produced. No secret value appears in the operator's
log, the pods' logs, the namespace's Events and ConfigMaps, or the pipelines' status."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes import client

from helpers import wait_for
from kafka_users import Tenant, create_scram_user, grant_consumer_acls
from metricpipe_devstack.env import StackEnv
from pipelines import condition, create_pipeline, get_pipeline
from refusals import (
    MINUTE,
    assert_no_secret_anywhere,
    build_records,
    expected_counts,
    finals_are,
    other_ca,
    produce,
    secret_body,
    topic_of,
)

CYCLE_SECONDS = 5
FAULTS = {"password": "KafkaAuthFailed", "ca": "TLSVerificationFailed", "acl": "KafkaForbidden"}
SAYS = {"password": "Check the user and password", "ca": "Put the CA that signed",
        "acl": "grant it Read"}  # fmt: skip


def spec_for(secret: str) -> dict[str, Any]:
    return {
        "source": {"tag": "app"},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "metric": {"aggregation": "count", "groupBy": ["host"], "window": "1m",
                   "allowedLateness": "10s",
                   "eventTime": {"field": "ts", "format": "epoch_millis"}},
        "sink": {"backend": "elasticsearch"},
        "replicas": 1,
        "scaling": {"enabled": False},
        "consumer": {"resources": {"requests": {"cpu": "100m"}}},
        "kafka": {"credentialsSecretRef": {"name": secret}},
    }  # fmt: skip


def ready_reason_is(
    kube: client.ApiClient, namespace: str, name: str, reason: str | None
) -> dict[str, Any] | None:
    """The pipeline when ConsumerReady is False with `reason` (None: when it is True)."""
    pipeline = get_pipeline(kube, namespace, name)
    found = condition(pipeline, "ConsumerReady")
    wanted = ("True", found.get("reason")) if reason is None else ("False", reason)
    return pipeline if (found.get("status"), found.get("reason")) == wanted else None


def test_refused_pipelines_say_why_and_recover_once_fixed(
    stack: StackEnv, kube: client.ApiClient, namespace: str, start_operator: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    core = client.CoreV1Api(kube)
    ca = stack.ca_file.read_text()
    admin_dir = tmp_path / "operator-kafka"
    admin_dir.mkdir()
    admin_password = stack.kafka_scram_admin_password_file.read_text().strip()
    (admin_dir / "username").write_text(stack.kafka_scram_admin)
    (admin_dir / "password").write_text(admin_password)
    (admin_dir / "ca.crt").write_text(ca)
    operator = start_operator(
        namespace, METRICPIPE_PROMETHEUS_URL=stack.prometheus_url,
        METRICPIPE_SCALING_INTERVAL_SECONDS=str(CYCLE_SECONDS),
        METRICPIPE_KAFKA_BOOTSTRAP=stack.kafka_sasl_bootstrap,
        METRICPIPE_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        METRICPIPE_KAFKA_CREDENTIALS_DIR=str(admin_dir),
    )  # fmt: skip
    passwords = {}
    for fault in FAULTS:
        user = f"{namespace}-{fault}"
        passwords[fault] = create_scram_user(stack, user).get_secret_value()
        topic = f"metricpipe.{namespace}.{fault}"  # default names (contract naming.py)
        if fault != "acl":
            grant_consumer_acls(stack, f"User:{user}", Tenant(topic, "", f"{topic}.dlq", topic))
        data = {"username": user, "password": passwords[fault], "ca.crt": ca}
        if fault == "password":
            data["password"] = "not-the-password"
        if fault == "ca":
            data["ca.crt"] = other_ca(tmp_path)
        core.create_namespaced_secret(namespace, secret_body(f"{fault}-kafka", data))
        create_pipeline(kube, namespace, fault, spec_for(f"{fault}-kafka"))
    base = (int(time.time() * 1000) - 30 * MINUTE) // MINUTE * MINUTE
    records = build_records(base)
    try:
        for fault in FAULTS:
            topic = wait_for(partial(topic_of, kube, namespace, fault), 60, f"{fault}: its topic")
            produce(stack, topic, records)

        started = time.monotonic()
        for fault, reason in FAULTS.items():
            pipeline = wait_for(partial(ready_reason_is, kube, namespace, fault, reason), 240,
                                f"{fault}: ConsumerReady {reason}")  # fmt: skip
            message = condition(pipeline, "ConsumerReady")["message"]
            assert SAYS[fault] in message, message
            assert f"{fault}-kafka" in message or fault == "acl", message  # the Secret named
            print(f"{fault}: {reason} after {time.monotonic() - started:.0f} s: {message}")

        # -- fixed, as a user would: the Secrets' data, the missing ACLs ----------------------
        fixed = {"password": {"password": passwords["password"]}, "ca": {"ca.crt": ca}}
        for fault, data in fixed.items():
            core.patch_namespaced_secret(f"{fault}-kafka", namespace, {"stringData": data})
        topic = f"metricpipe.{namespace}.acl"
        grant_consumer_acls(stack, f"User:{namespace}-acl", Tenant(topic, "", f"{topic}.dlq",
                                                                   topic))  # fmt: skip
        fixed_at = time.monotonic()
        expected = expected_counts(records)
        for fault in FAULTS:
            index = f"metricpipe-{namespace}.{fault}.metrics"  # the default index (naming.py)
            wait_for(partial(finals_are, stack, index, expected), 420,
                     f"{fault}: every window final after the fix", 3)  # fmt: skip
            took = time.monotonic() - fixed_at
            print(f"{fault}: recovered, its finals equal {took:.0f} s after the fix")
        for fault in FAULTS:
            wait_for(partial(ready_reason_is, kube, namespace, fault, None), 60,
                     f"{fault}: ConsumerReady True again")  # fmt: skip
    except AssertionError:
        print(f"operator log:\n{operator.log()[-4000:]}")
        raise
    assert_no_secret_anywhere(kube, namespace, operator.log(), list(FAULTS),
                              [admin_password, *passwords.values()])  # fmt: skip
