"""The API server itself refuses invalid MetricPipelines, naming the field to change;
and its defaulting agrees with the Python model (one source of truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from helpers import with_path
from metricpipe_contract import archive_model
from metricpipe_contract.model import GROUP, KIND, PLURAL, VERSION, MetricPipelineSpec
from pipelines import create_pipeline, get_pipeline, patch_spec

VALID: dict[str, Any] = {
    "source": {"tag": "app.**"},
    "metric": {"aggregation": "avg", "valueField": "rtt", "window": "1h"},
}


def with_(path: str, value: Any) -> dict[str, Any]:
    """VALID with one dotted path set (value None removes it)."""
    return with_path(VALID, path, value)


# (case, spec, words the server's message must contain)
INVALID: list[tuple[str, dict[str, Any], list[str]]] = [
    ("no source", with_("source", None), ["spec.source", "Required"]),
    ("no metric", with_("metric", None), ["spec.metric", "Required"]),
    ("bad mode", with_("mode", "realtime"), ["spec.mode", "stream", "batch"]),
    ("bad aggregation", with_("metric.aggregation", "median"), ["spec.metric.aggregation"]),
    ("percentile without value", with_("metric", {"aggregation": "p95"}),
     ["spec.metric.valueField", "percentile"]),
    ("avg without value", with_("metric", {"aggregation": "avg"}),
     ["spec.metric.valueField", "sum, avg, min and max"]),
    ("ratio without numerator", with_("metric", {"aggregation": "ratio"}),
     ["spec.metric.numerator", "ratio needs metric.numerator"]),
    ("numerator on a count", with_("metric", {"aggregation": "count", "numerator":
                                              [{"field": "status", "equals": "500"}]}),
     ["spec.metric.numerator", "only for aggregation: ratio"]),
    ("ratio with a value", with_("metric", {"aggregation": "ratio", "valueField": "v",
                                            "numerator": [{"field": "s", "exists": True}]}),
     ["spec.metric.valueField", "takes no metric.valueField"]),
    ("numerator pattern not RE2", with_("metric", {"aggregation": "ratio", "numerator":
                                                   [{"field": "s", "matches": "(a)\\1"}]}),
     ["spec.metric.numerator[0]", "RE2"]),
    ("lateness not below window", with_("metric.allowedLateness", "1h"),
     ["spec.metric.allowedLateness", "shorter than metric.window"]),
    ("window not dividing a day", with_("metric.window", "7m"),
     ["spec.metric.window", "divide a day"]),
    ("window too short", with_("metric.window", "5s"), ["spec.metric.window", "at least 10s"]),
    ("API key for OpenSearch", with_("sink", {"backend": "opensearch", "credentialsSecretRef":
                                              {"name": "os", "apiKeyKey": "key"}}),
     ["spec.sink.credentialsSecretRef", "apiKeyKey is for Elasticsearch"]),
    ("bad duration", with_("metric.window", "1 hour"), ["spec.metric.window"]),
    ("freshness below lateness", with_("freshness", {"target": "1m"}),
     ["spec.freshness.target", "longer than metric.allowedLateness"]),
    ("min above max replicas", with_("scaling", {"minReplicas": 5, "maxReplicas": 2}),
     ["spec.scaling.minReplicas", "must not exceed"]),
    ("replicas outside scaling range", with_("replicas", 9),
     ["spec.replicas", "within scaling.minReplicas..scaling.maxReplicas"]),
    ("sleeping batch pipeline", with_("mode", "batch") | {"scaling": {"minReplicas": 0}},
     ["spec.scaling.minReplicas", "needs mode stream"]),
    ("zero partitions", with_("topic", {"partitions": 0}), ["spec.topic.partitions"]),
    ("too many partitions", with_("topic", {"partitions": 5000}), ["spec.topic.partitions"]),
    ("bad topic name", with_("topic", {"name": "logs/web"}), ["spec.topic.name"]),
    ("retention through config", with_("topic", {"config": {"retention.ms": "1"}}),
     ["spec.topic.config", "topic.retention"]),
    ("bad deletion policy", with_("topic", {"deletionPolicy": "Archive"}),
     ["spec.topic.deletionPolicy"]),
    ("bad backend", with_("sink", {"backend": "solr"}), ["spec.sink.backend"]),
    ("bad endpoint", with_("sink", {"endpoint": "elasticsearch:9200"}), ["spec.sink.endpoint"]),
    ("upper-case index", with_("sink", {"index": "Metrics"}), ["spec.sink.index"]),
    ("filter with two tests", with_("source.filters", [{"field": "a", "exists": True,
                                                        "equals": "x"}]),
     ["spec.source.filters[0]", "exactly one of exists, equals or matches"]),
    ("filter with no test", with_("source.filters", [{"field": "a"}]),
     ["spec.source.filters[0]", "exactly one"]),
    ("bad tag", with_("source.tag", "app logs"), ["spec.source.tag"]),
    ("strftime without layout", with_("metric.eventTime", {"format": "strftime"}),
     ["spec.metric.eventTime.layout", "layout"]),
    ("reserved env", with_("consumer", {"env": [{"name": "METRICPIPE_TOPIC", "value": "x"}]}),
     ["spec.consumer.env", "reserved"]),
    ("value field grouped", with_("metric.groupBy", ["rtt"]),
     ["spec.metric.groupBy", "cannot also be a groupBy"]),
    ("batch window under a minute", {**with_("metric.window", "30s"), "mode": "batch"},
     ["spec.metric.window", "batch mode"]),
    ("unknown field", with_("sourcee", {"tag": "x"}), ["unknown field", "spec.sourcee"]),
    # regular expressions compiled by the API server (Go's regexp: RE2 syntax)
    ("unbalanced regex", with_("source.filters", [{"field": "a", "equals": "x"},
                                                  {"field": "host", "matches": "("}]),
     ["spec.source.filters[1]", "missing closing )", "RE2 regular expression"]),
    ("look-ahead regex", with_("source.filters", [{"field": "a", "matches": "^(?=x)"}]),
     ["spec.source.filters[0]", "invalid or unsupported Perl syntax", "RE2 regular expression"]),
    ("backreference", with_("source.filters", [{"field": "a", "matches": "(a)\\1"}]),
     ["spec.source.filters[0]", "invalid escape sequence", "RE2 regular expression"]),
    ("window not dividing a day in ms",  # 86400 s / 10 s divides, 86400000 ms / 10500 not
     with_("metric", {**VALID["metric"], "window": "10500ms", "allowedLateness": "1s"}),
     ["spec.metric.window", "divide a day"]),
    ("internal topic", with_("topic", {"name": "__consumer_offsets"}),
     ["spec.topic.name", "internal topics"]),
]  # fmt: skip


@pytest.mark.usefixtures("metricpipeline_crd")
def test_invalid_pipelines_are_rejected_by_the_api_server(
    kube: client.ApiClient, namespace: str
) -> None:
    assert len(INVALID) >= 20
    objects = client.CustomObjectsApi(kube)
    failures = []
    for index, (case, spec, words) in enumerate(INVALID):
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MetricPipeline",
                "metadata": {"name": f"bad-{index}"}, "spec": spec}  # fmt: skip
        try:
            objects.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body, field_validation="Strict"
            )
        except ApiException as error:
            missing = [w for w in words if w not in (error.body or "")]
            if error.status not in (400, 422) or missing:  # 400: strict decoding
                failures.append(f"{case}: HTTP {error.status}, missing {missing}: {error.body}")
        else:
            failures.append(f"{case}: accepted")
    assert failures == []
    listed = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    assert cast(dict[str, Any], listed)["items"] == []


def _create(kube: client.ApiClient, namespace: str, name: str, spec: dict[str, Any]) -> Any:
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "MetricPipeline",
            "metadata": {"name": name}, "spec": spec}  # fmt: skip
    return client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, body, dry_run="All", field_validation="Strict"
    )


@pytest.mark.usefixtures("metricpipeline_crd")
def test_names_whose_derived_names_overflow_are_refused(
    kube: client.ApiClient, namespace: str
) -> None:
    # A CronJob's name may have at most 52 characters (Kubernetes adds 11 for each Job): the
    # batch workload is <name>-consumer (9 more), so 43 is the longest pipeline name.
    longest = "a" * 43
    assert _create(kube, namespace, longest, VALID)["metadata"]["name"] == longest
    for name, words in (
        ("a" * 44, ["metadata.name", "at most 43 characters", "-consumer", "52"]),
        ("web.5xx", ["metadata.name", "DNS-1035"]),  # a dot: not in a Service's name
        ("5xx-web", ["metadata.name", "DNS-1035"]),  # a digit first: the same
    ):
        with pytest.raises(ApiException) as refused:
            _create(kube, namespace, name, VALID)
        assert refused.value.status == 422, name
        assert refused.value.body is not None
        missing = [w for w in words if w not in refused.value.body]
        assert missing == [], refused.value.body


@pytest.mark.usefixtures("metricpipeline_crd")
def test_sixteen_long_valid_regexes_fit_the_cel_budget(
    kube: client.ApiClient, namespace: str
) -> None:
    """The most filters a spec may hold, each a 256-character pattern (the longest allowed):
    the API server compiles all of them within its per-object CEL cost budget."""
    pattern = ("(GET|POST|PUT) /api/v[0-9]+/[a-z]+" * 8)[:255] + "$"
    assert len(pattern) == 256
    filters = [{"field": f"f{i}", "matches": pattern} for i in range(16)]
    spec = with_("source.filters", filters)
    assert len(_create(kube, namespace, "many-filters", spec)["spec"]["source"]["filters"]) == 16


@pytest.mark.usefixtures("metricpipeline_crd")
def test_immutable_fields_are_refused_on_update(kube: client.ApiClient, namespace: str) -> None:
    create_pipeline(kube, namespace, "p", {**VALID, "topic": {"name": "logs.p"}})
    for change, words in (
        ({"topic": {"name": "logs.q"}}, "topic.name cannot be changed"),
        ({"topic": {"replicationFactor": 3}}, "replicationFactor cannot be changed"),
    ):
        with pytest.raises(ApiException) as refused:
            patch_spec(kube, namespace, "p", change)
        assert refused.value.status == 422
        assert refused.value.body is not None
        assert words in refused.value.body


@pytest.mark.usefixtures("metricpipeline_crd")
@pytest.mark.parametrize(
    "spec",
    [
        VALID,
        {"source": {"tag": "a", "filters": [{"field": "x", "equals": "1"}]},
         "metric": {"aggregation": "count"}, "scaling": {"maxReplicas": 3}},
        {"mode": "batch", "source": {"tag": "b"}, "metric": {"aggregation": "p99",
         "valueField": "v", "eventTime": {"field": "ts", "format": "epoch_millis"}}},
    ],
)  # fmt: skip
def test_server_defaulting_agrees_with_the_model(
    kube: client.ApiClient, namespace: str, unique_name: str, spec: dict[str, Any]
) -> None:
    create_pipeline(kube, namespace, unique_name, spec)
    stored = get_pipeline(kube, namespace, unique_name)["spec"]
    model = MetricPipelineSpec.model_validate(spec)
    assert stored == model.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert MetricPipelineSpec.model_validate(stored) == model


EXAMPLES = sorted(
    Path(__file__).resolve().parents[2].joinpath("manifests", "examples").glob("*.yaml")
)


PLURALS = {KIND: PLURAL, archive_model.KIND: archive_model.PLURAL}


@pytest.mark.usefixtures("metricpipeline_crd", "logarchive_crd")
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_are_accepted_by_the_api_server(
    kube: client.ApiClient, namespace: str, path: Path
) -> None:
    """Each example of either kind, applied as a dry run with strict field validation."""
    body = yaml.safe_load(path.read_text())
    created = client.CustomObjectsApi(kube).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURALS[body["kind"]], body, dry_run="All",
        field_validation="Strict",
    )  # fmt: skip
    assert cast(dict[str, Any], created)["metadata"]["name"] == body["metadata"]["name"]
