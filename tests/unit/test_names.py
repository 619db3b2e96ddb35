"""Derived names: unique per pipeline, apart across namespaces, within Kubernetes' limits; and
the spec checks the operator makes before it creates anything (pure)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.naming import decide_reserved_name
from metricpipe_contract.refs import MAX_NAME_LENGTH, PipelineRef
from metricpipe_operator.api.checks import check_event_time_layout, decide_spec_refusal
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.batchjob import build_cronjob
from metricpipe_operator.reconcile.consumer import (
    build_consumer_configmap,
    build_deployment,
    build_metrics_service,
)
from metricpipe_operator.reconcile.route import (
    build_cluster_fluentd_config,
    build_cluster_output,
    build_route_configmap,
)

CONFIG = OperatorConfig(kafka_bootstrap="kafka:9092")
# Kubernetes' own limits, written out here (not read from the code under test)
DNS_1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def spec_of(**extra: Any) -> MetricPipelineSpec:
    base: dict[str, Any] = {"source": {"tag": "web.**", "filters": [{"field": "a", "equals": "b"}]},
                            "metric": {"aggregation": "count"}}  # fmt: skip
    return MetricPipelineSpec.model_validate({**base, **extra})


def names_of(namespace: str, name: str) -> dict[str, str]:
    ref = PipelineRef(namespace, name, "uid")
    spec = spec_of()
    return {
        "topic": spec.topic_name(namespace, name),
        "group": ref.consumer_group,
        "index": spec.index_name(namespace, name),
        "state index": spec.index_name(namespace, name) + "-state",
        "route": ref.cluster_route_name,
    }


def test_team_slash_a_x_and_team_a_slash_x_share_nothing() -> None:
    one, other = names_of("team", "a-x"), names_of("team-a", "x")
    assert one == {
        "topic": "metricpipe.team.a-x",
        "group": "metricpipe.team.a-x",
        "index": "metricpipe-team.a-x.metrics",
        "state index": "metricpipe-team.a-x.metrics-state",
        "route": "mp-team.a-x",
    }
    assert other["index"] == "metricpipe-team-a.x.metrics"
    assert other["route"] == "mp-team-a.x"
    assert set(one.values()).isdisjoint(other.values())


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (("team", "a-x"), ("team-a", "x")),
        (("a", "b-c-d"), ("a-b", "c-d")),
        (("ns", "x"), ("ns", "x-state")),  # an index and the other's state index
        (("ns", "x"), ("ns", "x-metrics")),
        (("n" * 63, "p" * 43), ("n" * 63, "p" * 42 + "q")),  # long: hashed route names
        (("n" * 63, "p" * 43), ("n" * 62, "n" + "p" * 42)),
    ],
)
def test_every_derived_name_differs_between_two_pipelines(
    first: tuple[str, str], second: tuple[str, str]
) -> None:
    one, other = names_of(*first), names_of(*second)
    assert set(one.values()).isdisjoint(other.values()), (one, other)


def test_the_longest_name_in_the_longest_namespace_fits_every_limit() -> None:
    namespace, name = "n" * 63, "p" * MAX_NAME_LENGTH
    ref, spec = PipelineRef(namespace, name, "uid"), spec_of()
    assert MAX_NAME_LENGTH == 43  # 52 (CronJob) - len("-consumer")
    cronjob = build_cronjob(ref, spec, CONFIG, "h", parallelism=1)
    assert len(cronjob["metadata"]["name"]) <= 52
    service = build_metrics_service(ref, CONFIG)["metadata"]["name"]
    assert len(service) <= 63
    assert DNS_1035_LABEL.match(service)
    for body in (build_deployment(ref, spec, CONFIG, "h", replicas=1),
                 build_consumer_configmap(ref, spec, "t", CONFIG),
                 build_route_configmap(ref, spec, "t", "kafka:9092"),
                 build_cluster_output(ref, spec, "t", "kafka:9092"),
                 build_cluster_fluentd_config(ref, "enabled")):  # fmt: skip
        meta = body["metadata"]
        assert len(meta["name"]) <= 253
        assert DNS_1123_SUBDOMAIN.match(meta["name"]), meta["name"]
        for value in meta["labels"].values():
            assert len(value) <= 63, value
            assert LABEL_VALUE.match(value), value
    assert len(spec.topic_name(namespace, name) + ".dlq") <= 249  # Kafka's limit
    assert len(spec.index_name(namespace, name) + "-state") <= 255  # Elasticsearch's limit


def test_route_names_readable_when_short_hashed_when_long() -> None:
    assert PipelineRef("shop", "orders", "u").cluster_route_name == "mp-shop.orders"
    long = PipelineRef("n" * 40, "p" * 30, "u").cluster_route_name
    assert len(long) == 63
    assert "." not in long  # the readable form always has one: the two forms never meet
    assert re.fullmatch(r"mp-n+-p+-[0-9a-f]{16}", long)


@pytest.mark.parametrize(
    ("layout", "window", "problem"),
    [
        ("%d/%b/%Y:%H:%M:%S %z", 3600, None),
        ("%Y-%m-%dT%H:%M:%S.%f", 10, None),
        ("%Y-%m-%d %I:%M:%S %p", 60, None),
        ("%Y%m%d%H", 3600, None),  # hour resolution for hourly windows
        ("%Y%m%d%H", 300, "within the window (300 s)"),  # but not for 5-minute ones
        ("%H:%M:%S", 3600, "back as 1900-01-01"),  # no date
        ("%d/%b %H:%M:%S", 3600, "back as 1900-"),  # no year
        ("%Y-%m-%d %I:%M:%S", 3600, "back as 2031-11-27T09:47:53"),  # 12-hour clock, no %p
        ("time", 3600, "back as 1900-01-01T00:00:00"),  # no directive at all
        ("%s", 3600, "bad directive"),  # strptime has no %s
        ("%Y-%m-%d %Q", 3600, "bad directive"),
        ("%Y-%m-%d %H:%M:%", 3600, "cannot be read back"),
    ],
)
def test_event_time_layout_check(layout: str, window: float, problem: str | None) -> None:
    found = check_event_time_layout(layout, window)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert problem in found
        assert layout in found


@pytest.mark.parametrize(
    ("namespace", "topic", "index", "refused"),
    [
        ("shop", None, None, None),
        ("shop", "metricpipe.shop.orders", "metricpipe-shop.orders.metrics", None),
        ("shop", "logs.web", "web-metrics", None),
        ("shop", "metricpipe.bank.payments", None, "spec.topic.name"),
        ("shop", None, "metricpipe-bank.payments.metrics", "spec.sink.index"),
        ("shop", "metricpipe.bank", "metricpipe-bank", None),  # no dot after: no namespace's
    ],
)
def test_names_reserved_for_other_namespaces(
    namespace: str, topic: str | None, index: str | None, refused: str | None
) -> None:
    found = decide_reserved_name(namespace, topic, index)
    if refused is None:
        assert found is None
    else:
        assert found is not None
        assert refused in found
        assert "'bank'" in found


def test_spec_refusal_reasons() -> None:
    layout = {"aggregation": "count", "eventTime": {"format": "strftime", "layout": "%H:%M"}}
    refusal = decide_spec_refusal(spec_of(metric=layout), "shop")
    assert refusal is not None
    assert refusal.reason == "InvalidEventTimeLayout"
    reserved = decide_spec_refusal(spec_of(topic={"name": "metricpipe.bank.x"}), "shop")
    assert reserved is not None
    assert reserved.reason == "ReservedName"
    assert decide_spec_refusal(spec_of(), "shop") is None
