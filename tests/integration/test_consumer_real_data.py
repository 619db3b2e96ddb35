"""Correctness on real data: RIPE Atlas RTTs and an Apache access log through Kafka, the real
consumer process (Spark) and Elasticsearch/OpenSearch, compared with the reference."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from consumers import (
    ConsumerProcesses,
    Records,
    SinkAccess,
    create_topics,
    produce,
    read_topic,
    run_and_compare,
    sink_results,
)
from kafka_users import (
    Tenant,
    create_scram_user,
    grant_consumer_acls,
    secured_endpoint,
    write_certificate_secret,
    write_scram_secret,
)
from metricpipe_consumers.sink import build_sink
from metricpipe_contract.naming import build_default_index, build_index_names
from metricpipe_devstack.env import StackEnv
from shared_data import access_log_lines, rtt_records
from sink_users import create_sink_user, secured_url, super_auth

RTT_PARTITIONS = 6


@pytest.fixture(scope="module")
def rtt_topic(stack: StackEnv) -> tuple[str, Records]:
    # Replayed in event-time order across probes, as the probes' logs would arrive.
    records = sorted(rtt_records(stack.data_dir), key=lambda r: str(r["time"]))
    topic = f"it-rtt-{uuid.uuid4().hex[:8]}"
    create_topics(stack, topic, RTT_PARTITIONS)
    produce(stack, topic, ((str(r["probe"]).encode(), json.dumps(r).encode()) for r in records))
    return topic, read_topic(stack, topic)


RTT_SPECS: dict[str, dict[str, Any]] = {
    "avg": {"aggregation": "avg", "valueField": "rtt", "groupBy": ["probe"]},
    "p95": {"aggregation": "p95", "valueField": "rtt", "groupBy": ["probe"]},
}
LOST = [{"field": "rtt", "matches": "^-[34](\\.0)?$"}]
VALID = [{"field": "rtt", "matches": "^[0-9]"}]


# Each real-data metric runs on one backend, the two backends alternating: that both sinks hold
# the same documents for the same input is test_sink_contract.py's subject.
@pytest.mark.parametrize(("metric", "backend"), [("avg", "elasticsearch"), ("p95", "opensearch")])
def test_rtt_per_probe_per_hour(
    stack: StackEnv, rtt_topic: Any, processes: ConsumerProcesses, tmp_path: Path,
    unique_name: str, backend: str, metric: str,
) -> None:  # fmt: skip
    topic, records = rtt_topic
    spec = {"source": {"tag": "atlas", "filters": VALID}, "metric": RTT_SPECS[metric]}
    run_and_compare(stack, processes, tmp_path, unique_name, topic, {metric: spec}, backend,
                    records)  # fmt: skip


@pytest.mark.parametrize("backend", ["opensearch"])
def test_rtt_loss_rate_per_hour(
    stack: StackEnv, rtt_topic: Any, processes: ConsumerProcesses, tmp_path: Path,
    unique_name: str, backend: str,
) -> None:  # fmt: skip
    """Loss rate per probe per hour = lost pings / all pings, from the final documents of two
    count pipelines (metricpipe computes one aggregation per pipeline; the ratio is a query)."""
    topic, records = rtt_topic
    counts = {}
    specs = {name: {"source": {"tag": "atlas", "filters": filters},
                    "metric": {"aggregation": "count", "groupBy": ["probe"]}}
             for name, filters in (("lost", LOST), ("all", []))}  # fmt: skip
    results = run_and_compare(stack, processes, tmp_path, unique_name, topic, specs, backend,
                              records)  # fmt: skip
    for name, (pipeline, reference, through) in results.items():
        finals, _ = sink_results(pipeline)
        counts[name] = (
            {
                key: int(doc["count"])
                for key, doc in finals.items()
                if key[0] + 3_600_000 <= through
            },
            {key: w.count for key, w in reference.windows.items() if key[0] + 3_600_000 <= through},
        )
    (lost, lost_ref), (every, every_ref) = counts["lost"], counts["all"]
    assert set(every) == set(every_ref), "probe-hours of the sink differ from the reference"
    rates = {key: lost.get(key, 0) / every[key] for key in every}
    expected = {key: lost_ref.get(key, 0) / every_ref[key] for key in every_ref}
    assert rates == expected
    assert len({key[1:] for key in rates}) == 50  # every probe
    assert 0 < sum(1 for r in rates.values() if r > 0) < len(rates)  # real losses, not all


@pytest.mark.parametrize("backend", ["elasticsearch"])
def test_access_log_requests_and_5xx_share_over_the_secured_listeners(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, unique_name: str, backend: str
) -> None:
    """The request count's consumer reads over SASL_SSL as a SCRAM user and writes to the
    secured OpenSearch 2.x node; the 5xx share's (a ratio: 5xx requests / all requests) reads
    over mutual TLS with a client certificate and writes to the secured Elasticsearch 8.x
    node. Both sinks speak HTTPS with the stack's CA, each as a user holding only the pipeline
    role of docs/sink-security.md; each Kafka user has only the ACLs docs/kafka-security.md
    lists, each consumer's log shows which connection it used, and neither log holds a secret."""
    lines = access_log_lines(stack.data_dir)
    topic = f"{unique_name}-access"
    create_topics(stack, topic, 3)
    produce(stack, topic, ((None, line.encode()) for line in lines))
    records = read_topic(stack, topic)
    base = {"tag": "web", "format": "apache_combined"}
    clf = {"field": "time", "format": "clf"}
    requests = {"source": base, "metric": {"aggregation": "count", "eventTime": clf}}
    # the share of server errors among all requests: 5xx / all, both counts in each document
    server_errors = [{"field": "status", "matches": "^5"}]
    errors = {
        "source": base,
        "metric": {"aggregation": "ratio", "eventTime": clf, "numerator": server_errors},
    }
    scram_user, cert_user = f"{unique_name}-requests", f"{unique_name}-5xx"
    password = create_scram_user(stack, scram_user)
    for name, user in (("requests", scram_user), ("5xx", cert_user)):
        group = f"metricpipe.it.{unique_name}-{name}"  # make_pipeline's consumer group
        tenant = Tenant(own=topic, other="", dlq=f"{topic}.dlq", group=group)
        grant_consumer_acls(stack, f"User:{user}", tenant)
    kafka = {
        "requests": secured_endpoint(stack.kafka_sasl_bootstrap, "SASL_SSL",
                                     write_scram_secret(tmp_path / "scram", stack, scram_user,
                                                        password)),
        "5xx": secured_endpoint(stack.kafka_mtls_bootstrap, "SSL",
                                write_certificate_secret(tmp_path / "tls", stack, cert_user)),
    }  # fmt: skip
    sinks, sink_passwords = {}, []
    for name, sink_backend in (("requests", "opensearch"), ("5xx", "elasticsearch")):
        index = build_default_index("it", f"{unique_name}-{name}")  # make_pipeline's namespace
        sink_user = create_sink_user(
            stack, f"{unique_name}-{name}", list(build_index_names(index)), backend=sink_backend
        )
        url = secured_url(stack, sink_backend)
        sinks[name] = SinkAccess(
            target={"backend": sink_backend, "endpoint": url, "caFile": str(stack.ca_file)},
            env={"METRICPIPE_SINK_USERNAME": sink_user.name,
                 "METRICPIPE_SINK_PASSWORD": sink_user.password},
            reader=build_sink(sink_backend, url, index, *super_auth(stack, sink_backend),
                              ca_file=str(stack.ca_file)),
        )  # fmt: skip
        sink_passwords.append(sink_user.password)
    run_and_compare(stack, processes, tmp_path, unique_name, topic,
                    {"requests": requests, "5xx": errors}, backend, records,
                    kafka=kafka, sinks=sinks)  # fmt: skip
    logs = {Path(log).name: Path(log).read_text(errors="replace") for _, log in processes.running}
    said = "\n".join(logs.values())
    assert not [p for p in sink_passwords if p in said]
    assert f"SASL_SSL SCRAM-SHA-512 user {scram_user}" in said, said[-2000:]
    assert f"SSL client certificate {tmp_path / 'tls' / 'tls.crt'}" in said, said[-2000:]
    assert password.get_secret_value() not in said
