"""Secured sinks and a secured Kafka refusing pipelines' consumers, on the real stack. The
operator runs on Kafka's mutual-TLS listener, and every pipeline reads as its own certificate
user with only its ACLs and writes to a secured search engine (HTTPS from the stack's CA, users
and roles enforced by the servers: the Elasticsearch 8.x node or the OpenSearch 2.x node) with
its own credentials and CA Secrets. Seven pipelines are each wrong in one way: a wrong sink
password, a sink user whose role may only read, a CA that did not sign the sink's certificate,
a Kafka client certificate that has expired, one signed by a CA the brokers do not trust, a
sink CA Secret and a Kafka credentials Secret that do not exist. Their consumers run as
containers on the stack's kubelet and are refused for real. Each pipeline shows SinkReady or
ConsumerReady False with the reason (SinkAuthFailed, SinkForbidden, TLSVerificationFailed,
KafkaAuthFailed, KafkaSettingsInvalid) and what to change; once its Secret (or its role) is
fixed or created it recovers with no other action, and its final documents equal the counts
computed here from the records produced. No password or private-key line appears in any log
file of the stack's servers, the operator's or the pods' logs, the namespace's Events and
ConfigMaps, or the pipelines' status."""

from __future__ import annotations

import json
import time
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes import client

from helpers import wait_for
from kafka_users import (
    Tenant,
    grant_consumer_acls,
    write_certificate_secret,
    write_unacceptable_certificate_secret,
)
from metricpipe_devstack.env import StackEnv
from pipelines import condition, create_pipeline, get_pipeline
from refusals import (
    FINALS,
    MINUTE,
    assert_no_secret_anywhere,
    build_records,
    count_finals,
    expected_counts,
    other_ca,
    produce,
    secret_body,
    topic_of,
)
from sink_users import (
    create_sink_user,
    grant_sink_role,
    secure_request,
    secured_url,
    super_auth,
)

FAULTS = {"password": ("SinkReady", "SinkAuthFailed"), "role": ("SinkReady", "SinkForbidden"),
          "ca": ("SinkReady", "TLSVerificationFailed"),
          "expired": ("ConsumerReady", "KafkaAuthFailed"),
          "foreign": ("ConsumerReady", "KafkaAuthFailed"),
          "absent-ca": ("SinkReady", "TLSVerificationFailed"),
          "absent-kafka": ("ConsumerReady", "KafkaSettingsInvalid")}  # fmt: skip
REISSUE = "signed by a CA the brokers trust and not expired"
SAYS = {
    "password": "spec.sink.credentialsSecretRef",
    "role": "lacks a privilege",
    "ca": "spec.sink.caSecretRef",
    "expired": REISSUE,
    "foreign": REISSUE,
    "absent-ca": "no CA certificate at",
    "absent-kafka": "'absent-kafka-kafka' does not exist",
}
BACKEND = {"password": "elasticsearch", "role": "opensearch", "ca": "elasticsearch",
           "expired": "elasticsearch", "foreign": "opensearch", "absent-ca": "opensearch",
           "absent-kafka": "elasticsearch"}  # fmt: skip
ABSENT = {"absent-ca": "absent-ca-sink-ca", "absent-kafka": "absent-kafka-kafka"}  # created late
REFUSED_CERTIFICATES = ("expired", "foreign")


def spec_for(stack: StackEnv, fault: str) -> dict[str, Any]:
    return {
        "source": {"tag": "app"},
        "topic": {"partitions": 1, "deletionPolicy": "Delete"},
        "metric": {"aggregation": "count", "groupBy": ["host"], "window": "1m",
                   "allowedLateness": "10s",
                   "eventTime": {"field": "ts", "format": "epoch_millis"}},
        "sink": {"backend": BACKEND[fault], "endpoint": secured_url(stack, BACKEND[fault]),
                 "credentialsSecretRef": {"name": f"{fault}-sink"},
                 "caSecretRef": {"name": f"{fault}-sink-ca"}},
        "replicas": 1,
        "scaling": {"enabled": False},
        "consumer": {"resources": {"requests": {"cpu": "100m"}}},
        "kafka": {"credentialsSecretRef": {"name": f"{fault}-kafka"}},
    }  # fmt: skip


def final_counts(stack: StackEnv, backend: str, index: str) -> Counter[tuple[int, str]]:
    """The sink's final documents, read by the super user with plain HTTPS (no product code)."""
    auth = super_auth(stack, backend)
    ask = partial(secure_request, stack, auth=auth, backend=backend)
    if ask("HEAD", f"/{index}").status_code != 200:
        return Counter()
    ask("POST", f"/{index}/_refresh")
    return count_finals(ask("POST", f"/{index}/_search", json=FINALS).json())


def reason_is(
    kube: client.ApiClient, namespace: str, name: str, kind: str, reason: str | None
) -> dict[str, Any] | None:
    """The pipeline when its condition `kind` is False with `reason` (None: when True)."""
    pipeline = get_pipeline(kube, namespace, name)
    found = condition(pipeline, kind)
    wanted = ("True", found.get("reason")) if reason is None else ("False", reason)
    return pipeline if (found.get("status"), found.get("reason")) == wanted else None


def files_of(directory: Path) -> dict[str, str]:
    """A mounted-Secret directory's keys, as a Secret's stringData."""
    return {key: (directory / key).read_text() for key in ("tls.crt", "tls.key", "ca.crt")}


def key_line(pem: str) -> str:
    """A line from the middle of a private key: it appears nowhere but in its key."""
    lines = [line for line in pem.splitlines() if line and not line.startswith("-----")]
    return lines[len(lines) // 2]


def finals_are(
    stack: StackEnv, backend: str, index: str, expected: Counter[tuple[int, str]]
) -> bool:
    return final_counts(stack, backend, index) == expected


def test_refused_sinks_say_why_and_recover_once_fixed(
    stack: StackEnv, kube: client.ApiClient, namespace: str, start_operator: Any,
    tmp_path: Path,
) -> None:  # fmt: skip
    core = client.CoreV1Api(kube)
    ca = stack.ca_file.read_text()
    operator = start_operator(
        namespace, METRICPIPE_PROMETHEUS_URL=stack.prometheus_url,
        METRICPIPE_SCALING_INTERVAL_SECONDS="5",  # the ResourceManager reads the pods this often
        METRICPIPE_KAFKA_BOOTSTRAP=stack.kafka_mtls_bootstrap,
        METRICPIPE_KAFKA_SECURITY_PROTOCOL="SSL",  # as User:admin, by its certificate's CN
        METRICPIPE_KAFKA_CREDENTIALS_DIR=str(write_certificate_secret(
            tmp_path / "operator-kafka", stack, "admin")),
    )  # fmt: skip
    users = {}
    kafka_files: dict[str, dict[str, str]] = {}
    absent: dict[str, dict[str, str]] = {}  # the Secrets created only as the fix

    def put_secret(name: str, data: dict[str, str]) -> None:
        if name in ABSENT.values():
            absent[name] = data
        else:
            core.create_namespaced_secret(namespace, secret_body(name, data))

    for fault in FAULTS:
        topic = f"metricpipe.{namespace}.{fault}"  # default names (contract naming.py)
        kafka_user = f"{namespace}-{fault}-kafka"
        grant_consumer_acls(stack, f"User:{kafka_user}", Tenant(topic, "", f"{topic}.dlq", topic))
        if fault in REFUSED_CERTIFICATES:
            kafka_dir = write_unacceptable_certificate_secret(
                tmp_path / f"{fault}-kafka", stack, kafka_user, fault)  # fmt: skip
        else:
            kafka_dir = write_certificate_secret(tmp_path / f"{fault}-kafka", stack, kafka_user)
        kafka_files[fault] = files_of(kafka_dir)
        put_secret(f"{fault}-kafka", kafka_files[fault])
        index = f"metricpipe-{namespace}.{fault}.metrics"  # the default index (naming.py)
        users[fault] = create_sink_user(
            stack,
            f"{namespace}-{fault}",
            [index, f"{index}-state"],
            backend=BACKEND[fault],
            read_only=fault == "role",
        )
        password = "not-the-password" if fault == "password" else users[fault].password
        put_secret(f"{fault}-sink", {"username": users[fault].name, "password": password})
        put_secret(f"{fault}-sink-ca", {"ca.crt": other_ca(tmp_path) if fault == "ca" else ca})
        create_pipeline(kube, namespace, fault, spec_for(stack, fault))
    base = (int(time.time() * 1000) - 30 * MINUTE) // MINUTE * MINUTE
    records = build_records(base)
    try:
        for fault in FAULTS:
            topic = wait_for(partial(topic_of, kube, namespace, fault), 60, f"{fault}: its topic")
            produce(stack, topic, records)

        started = time.monotonic()
        for fault, (kind, reason) in FAULTS.items():
            pipeline = wait_for(partial(reason_is, kube, namespace, fault, kind, reason), 240,
                                f"{fault}: {kind} {reason}")  # fmt: skip
            message = condition(pipeline, kind)["message"]
            assert SAYS[fault] in message, message
            assert fault not in REFUSED_CERTIFICATES or f"'{fault}-kafka'" in message, message
            assert fault not in ABSENT or "create it" in message, message
            print(f"{fault}: {reason} after {time.monotonic() - started:.0f} s: {message}")

        # -- fixed, as a user would: the Secrets' data, the user's role, the missing Secrets --
        for name, data in absent.items():
            core.create_namespaced_secret(namespace, secret_body(name, data))
        core.patch_namespaced_secret(
            "password-sink", namespace, {"stringData": {"password": users["password"].password}}
        )
        core.patch_namespaced_secret("ca-sink-ca", namespace, {"stringData": {"ca.crt": ca}})
        grant_sink_role(stack, users["role"], list(users["role"].indices))
        for fault in REFUSED_CERTIFICATES:  # re-issued by the stack's CA, for the same user
            kafka_files[f"{fault}-fixed"] = files_of(
                write_certificate_secret(
                    tmp_path / f"{fault}-kafka-fixed", stack, f"{namespace}-{fault}-kafka"
                )
            )
            core.patch_namespaced_secret(f"{fault}-kafka", namespace,
                                         {"stringData": kafka_files[f"{fault}-fixed"]})  # fmt: skip
        fixed_at = time.monotonic()
        expected = expected_counts(records)
        for fault in FAULTS:
            index = f"metricpipe-{namespace}.{fault}.metrics"
            wait_for(partial(finals_are, stack, BACKEND[fault], index, expected), 480,
                     f"{fault}: every window final after the fix", 3)  # fmt: skip
            took = time.monotonic() - fixed_at
            print(f"{fault}: recovered, its finals equal {took:.0f} s after the fix")
        for fault, (kind, _) in FAULTS.items():
            wait_for(partial(reason_is, kube, namespace, fault, kind, None), 60,
                     f"{fault}: {kind} True again")  # fmt: skip
    except AssertionError:
        for fault in FAULTS:
            conditions = (get_pipeline(kube, namespace, fault).get("status") or {}).get(
                "conditions"
            )
            print(f"{fault}: {json.dumps(conditions)[:3000]}")
        for pod in core.list_namespaced_pod(namespace).items:
            name = str(pod.metadata.name)  # type: ignore[union-attr]
            try:
                said = core.read_namespaced_pod_log(name, namespace, previous=True)
            except client.ApiException:
                said = core.read_namespaced_pod_log(name, namespace)
            print(f"log of {name}:\n{said[-3000:]}")
        print(f"operator log:\n{operator.log()[-4000:]}")
        raise
    key_lines = [key_line(files["tls.key"]) for files in kafka_files.values()]
    assert_no_secret_anywhere(kube, namespace, operator.log(), list(FAULTS),
                              [u.password for u in users.values()] + key_lines)  # fmt: skip
