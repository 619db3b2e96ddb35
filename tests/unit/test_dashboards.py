"""The generated dashboards (pure): committed as generated, valid for grafana-foundation-sdk's
model and for the saved-objects model they are built from, every Grafana query uses metric
names the consumers, the exporter or the recording rules really expose, every saved object is
well formed and aggregates on fields the sink's documents really carry, and the live check's
query translation (metricpipe_dashboards.live) sends what Grafana and Kibana would."""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.models.dashboard import Dashboard
from prometheus_client import CollectorRegistry, Metric

from metricpipe_consumers.aggregate import Aggregate
from metricpipe_consumers.archive.metrics import ArchiverMetrics
from metricpipe_consumers.documents import build_final_doc, build_partial_doc, metrics_index_body
from metricpipe_consumers.metrics import ConsumerMetrics
from metricpipe_contract import names
from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_dashboards import cli, grafana, live
from metricpipe_dashboards.saved_objects_model import SavedObjects
from metricpipe_exporters import rules
from metricpipe_exporters.cache import CacheCollector
from metricpipe_exporters.collector import Collector, Snapshot
from metricpipe_exporters.config import ExporterConfig
from metricpipe_exporters.kafka_reader import KafkaReader
from metricpipe_exporters.targets import PipelineTarget, build_target

REPO = Path(__file__).resolve().parents[2]
# Where `make manifests` writes them (the monitoring component's ConfigMap reads the Grafana one).
DASHBOARDS = REPO / "manifests" / "components" / "monitoring" / "dashboards"

# -- the names the system exposes ---------------------------------------------------------------

# The series a metric family is scraped as, by type (prometheus_client's exposition).
SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def exposed_names(families: Iterable[Metric]) -> set[str]:
    """Every series name the families are scraped as, whether or not they have samples yet."""
    found: set[str] = set()
    for family in families:
        found.update(family.name + suffix for suffix in SERIES_SUFFIXES.get(family.type, ("",)))
        found.update(sample.name for sample in family.samples)
    return found


def consumer_names() -> set[str]:
    """The consumers' and the archivers' series (an archiver's gauges appear once set)."""
    registry = CollectorRegistry()
    ConsumerMetrics("shop/orders", registry=registry)
    archiver = ArchiverMetrics("shop/edge", registry=registry)
    archiver.committed(0, records=1, size=1, files=1, seconds=0.1, next_offset=1, newest_ms=1)
    return exposed_names(registry.collect())


class FakeReader:
    """What the scrape side of the exporter's Collector reads from its Kafka reader."""

    lookups = {"hit": 1, "read": 2, "missing": 0}  # noqa: RUF012 - read only


def make_target(
    pipeline: str = "shop/orders", replicas: int | None = 2, desired: int | None = 3
) -> PipelineTarget:
    return PipelineTarget(
        pipeline=pipeline, consumer_group=f"metricpipe.{pipeline.replace('/', '.')}",
        topic="t", backend="opensearch", endpoint="http://os:9200", index="metricpipe-shop-x",
        freshness_target_seconds=600.0, replicas=replicas, desired_replicas=desired,
    )  # fmt: skip


def exporter_families(*targets: PipelineTarget) -> list[Metric]:
    collector = Collector(
        cast("KafkaReader", FakeReader()), lambda: list(targets), None, lookup_budget=1.0
    )
    collector.snapshot = Snapshot(taken_at=1.0, targets=list(targets))
    return list(collector.collect())


def exporter_names() -> set[str]:
    """The lag exporter's series and its log-cache collector's (INFO of an AOF cache)."""
    cache = CacheCollector(lambda: "used_memory:1\nmaxmemory:2\naof_enabled:1\n", "r:6379")
    return exposed_names(exporter_families(make_target())) | exposed_names(cache.collect())


def recording_rule_names() -> set[str]:
    return {rule["record"] for rule in rules.build_recording_rules()["rules"]}


def known_names() -> set[str]:
    return consumer_names() | exporter_names() | recording_rule_names()


def names_constants() -> dict[str, str]:
    """The metric names in names.py (not the job names)."""
    return {
        key: value
        for key, value in vars(names).items()
        if key.isupper() and isinstance(value, str) and not key.endswith("_JOB")
    }


def test_names_py_lists_only_series_that_are_exposed() -> None:
    exposed = consumer_names() | exporter_names()
    missing = {key: value for key, value in names_constants().items() if value not in exposed}
    assert not missing, f"names.py lists series nobody exposes: {missing}"


# -- PromQL metric names --------------------------------------------------------------------

AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}  # fmt: skip
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}  # + (labels)
IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
VARIABLE = re.compile(r"\$(\{[^}]*\}|[A-Za-z0-9_]+)")  # $pipeline, ${datasource}, $__interval
NUMBER_OR_DURATION = re.compile(r"[0-9.][0-9A-Za-z_.]*")  # 5m, 1h30m, 0.5, 1e3, 0x1f


def skip_string(expr: str, start: int) -> int:
    """The index after the string literal at `start` (", ' or `; backslash escapes)."""
    quote, i = expr[start], start + 1
    while i < len(expr) and expr[i] != quote:
        i += 2 if expr[i] == "\\" and quote != "`" else 1
    return i + 1


def skip_group(expr: str, start: int, close: str) -> int:
    """The index after the group opened at `start`: `{...}` (matchers), `[...]` (ranges,
    subqueries) or `(...)` (a label list); strings inside may hold the closing character."""
    i = start + 1
    while i < len(expr) and expr[i] != close:
        i = skip_string(expr, i) if expr[i] in "\"'`" else i + 1
    return i + 1


def skip_spaces(expr: str, i: int) -> int:
    while i < len(expr) and expr[i].isspace():
        i += 1
    return i


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers that are not functions,
    aggregations, keywords or labels, outside label matchers, strings, ranges and variables."""
    found: set[str] = set()
    i = 0
    while i < len(expr):
        char = expr[i]
        if char in "\"'`":
            i = skip_string(expr, i)
        elif char in "{[":
            i = skip_group(expr, i, "}" if char == "{" else "]")
        elif (variable := VARIABLE.match(expr, i)) is not None:
            i = variable.end()
        elif (number := NUMBER_OR_DURATION.match(expr, i)) is not None:
            i = number.end()
        elif (word := IDENTIFIER.match(expr, i)) is not None:
            name, i = word.group(), word.end()
            after = skip_spaces(expr, i)
            calls = after < len(expr) and expr[after] == "("
            if name.lower() in LABEL_LISTS:
                i = skip_group(expr, after, ")") if calls else i
            elif not (calls or name.lower() in KEYWORDS or name.lower() in AGGREGATIONS):
                found.add(name)
        else:
            i += 1
    return found


LABEL_VALUES = re.compile(r"label_values\((?P<selector>.+),\s*(?P<label>[A-Za-z_]\w*)\)")


def variable_selector(query: str) -> str:
    """The series selector of a Grafana `label_values(<selector>, <label>)` query."""
    match = LABEL_VALUES.fullmatch(query.strip())
    assert match is not None, f"not a label_values query: {query}"
    return match["selector"]


def grafana_queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target, annotation and query variable."""
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            yield f"annotation {annotation['name']!r}", annotation["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']!r}", variable_selector(variable["query"])


def unknown_names(queries: Iterable[tuple[str, str]], known: set[str]) -> dict[str, set[str]]:
    """where -> the metric names it uses that nothing exposes."""
    found = {where: metric_names(expr) - known for where, expr in queries}
    return {where: unknown for where, unknown in found.items() if unknown}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('rate(made_up_total{pipeline=~"$pipeline"}[$__rate_interval])', {"made_up_total"}),
        (
            "sum by (pipeline, reason) (rate(made_up_total{reason=\"a}b\", x='y'}[5m] "
            "offset 1h30m))",
            {"made_up_total"},
        ),
        (
            "metricpipe:made_up:seconds > bool on (pipeline) group_left (topic) other * 1e3",
            {"metricpipe:made_up:seconds", "other"},
        ),
        (
            "time() - min without (partition) (made_up) AND ON(pipeline) "
            "avg_over_time(x[1h:5m]) unless absent(up)",
            {"made_up", "x", "up"},
        ),
        ("sum(rate(a[5m])) / sum by(job)(b) or vector(0)", {"a", "b"}),
        ('count_values("value", made_up) > ${threshold}', {"made_up"}),
        (
            "histogram_quantile(0.99, sum by (le) (rate(made_up_bucket[$__interval])))",
            {"made_up_bucket"},
        ),
    ],
)
def test_the_extractor_finds_exactly_the_metric_names(expr: str, expected: set[str]) -> None:
    assert metric_names(expr) == expected


@pytest.mark.parametrize(
    ("expr", "unknown"),
    [
        (
            'rate(metricpipe_consumer_made_up_total{pipeline=~"$pipeline"}[5m])',
            {"metricpipe_consumer_made_up_total"},
        ),
        (
            f'{rules.FRESHNESS}{{pipeline=~"$pipeline"}} > on (pipeline) '
            "metricpipe:made_up:seconds",
            {"metricpipe:made_up:seconds"},
        ),
        # a counter's family name without `_total` is not a series
        (
            f"rate({names.CONSUMER_DEAD_LETTER.removesuffix('_total')}[5m])",
            {names.CONSUMER_DEAD_LETTER.removesuffix("_total")},
        ),
        # a label is not a metric
        (f"sum by (reason) ({names.CONSUMER_DEAD_LETTER}) / reason", {"reason"}),
    ],
)
def test_an_unknown_metric_name_is_reported(expr: str, unknown: set[str]) -> None:
    assert unknown_names([("made up", expr)], known_names()) == {"made up": unknown}


def test_every_grafana_query_uses_names_the_system_exposes() -> None:
    queries = list(grafana_queries(grafana_model()))
    assert len(queries) >= 10
    assert unknown_names(queries, known_names()) == {}, "dashboard uses unknown metric names"


def grafana_model() -> dict[str, Any]:
    return grafana.to_json(grafana.build_dashboard())


# -- the committed files ------------------------------------------------------------------------


def test_the_committed_dashboards_are_generated() -> None:
    for file_name, text in cli.build_outputs().items():
        path = DASHBOARDS / file_name
        assert path.is_file(), f"{path} is missing: run `make manifests` and commit the result"
        assert path.read_text() == text, (
            f"{file_name} differs from the code: run `make manifests` and commit the result"
        )


def test_the_cli_writes_both_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--out", str(tmp_path / "out")]) == 0
    written = {p.name: p.read_text() for p in (tmp_path / "out").iterdir()}
    assert written == cli.build_outputs()
    printed = capsys.readouterr().out.split()
    assert sorted(printed) == sorted(str(tmp_path / "out" / name) for name in written)
    grafana_text = written[cli.GRAFANA_FILE]
    assert grafana_text.endswith("}\n")
    assert grafana_text == json.dumps(json.loads(grafana_text), indent=2, sort_keys=True) + "\n"


# -- Grafana --------------------------------------------------------------------------------

PANEL_SERIES = {  # title -> the series it shows
    "Freshness vs target": {rules.FRESHNESS, names.PIPELINE_FRESHNESS_TARGET},
    "Time lag": {rules.TIME_LAG},
    "Lag (records)": {rules.LAG_RECORDS},
    "Consumer replicas": {names.PIPELINE_REPLICAS, names.PIPELINE_DESIRED_REPLICAS},
    "Throughput: input vs processing": {rules.INPUT_RATE, rules.PROCESSING_RATE},
    "Dead letters": {names.CONSUMER_DEAD_LETTER, rules.DEAD_LETTER_RATE},
}


def test_the_grafana_dashboard_has_its_panels_and_variables() -> None:
    dashboard = json.loads((DASHBOARDS / cli.GRAFANA_FILE).read_text())
    assert dashboard["uid"] == "metricpipe-pipelines"
    assert dashboard["schemaVersion"] >= 36
    panels = dashboard["panels"]
    assert [p["title"] for p in panels] == list(PANEL_SERIES)
    assert len({p["id"] for p in panels}) == len(panels)
    cells = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels]
    assert len(set(cells)) == len(cells), "panels overlap"
    for panel in panels:
        assert panel["type"] == "timeseries"
        refs = [t["refId"] for t in panel["targets"]]
        assert all(refs), panel["title"]
        assert len(set(refs)) == len(refs), panel["title"]
        series: set[str] = set()
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert 'pipeline=~"$pipeline"' in target["expr"], target["expr"]
            series |= metric_names(target["expr"])
        assert series == PANEL_SERIES[panel["title"]], panel["title"]

    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    pipeline = variables["pipeline"]
    assert (pipeline["multi"], pipeline["includeAll"]) == (True, True)
    assert pipeline["datasource"]["uid"] == "${datasource}"
    assert LABEL_VALUES.fullmatch(pipeline["query"])["label"] == "pipeline"  # type: ignore[index]
    assert metric_names(variable_selector(pipeline["query"])) <= recording_rule_names()


def test_the_committed_grafana_json_is_valid_for_the_sdk_model() -> None:
    """Read back by grafana-foundation-sdk's model (panels decoded by their plugin's types),
    the committed file encodes to itself: nothing in it is outside the model."""
    plugins.register_default_plugins()
    committed = json.loads((DASHBOARDS / cli.GRAFANA_FILE).read_text())
    assert grafana.to_json(Dashboard.from_json(committed)) == committed


def test_targets_and_desired_values_are_drawn_dashed() -> None:
    panels = {p["title"]: p for p in grafana_model()["panels"]}
    dashed = {title: grafana.dashed_ref_ids(panel) for title, panel in panels.items()}
    with_targets = {"Freshness vs target", "Consumer replicas"}
    assert dashed == {title: (["B"] if title in with_targets else []) for title in PANEL_SERIES}
    for panel in panels.values():
        for override in panel["fieldConfig"]["overrides"]:
            assert override["matcher"]["id"] == "byFrameRefID"


def test_scaling_events_are_an_annotation_on_desired_replicas() -> None:
    dashboard = grafana_model()
    (scaling,) = [a for a in dashboard["annotations"]["list"] if "expr" in a]
    assert scaling["datasource"]["uid"] == "${datasource}"
    assert scaling["expr"].startswith("changes(")
    assert metric_names(scaling["expr"]) == {names.PIPELINE_DESIRED_REPLICAS}


# -- OpenSearch Dashboards / Kibana saved objects -------------------------------------------

JSON_STRINGS = (
    ("visState",),
    ("uiStateJSON",),
    ("panelsJSON",),
    ("optionsJSON",),
    ("kibanaSavedObjectMeta", "searchSourceJSON"),
)


def saved_objects() -> list[dict[str, Any]]:
    lines = (DASHBOARDS / cli.SAVED_OBJECTS_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines]


def embedded_json(obj: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    """path -> parsed value of every JSON string in the object's attributes."""
    found: dict[tuple[str, ...], Any] = {}
    for path in JSON_STRINGS:
        value: Any = obj["attributes"]
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            assert isinstance(value, str), f"{obj['id']}: {'.'.join(path)} must be a JSON string"
            found[path] = json.loads(value)
    return found


def document_fields() -> tuple[dict[str, Any], set[str]]:
    """The metric index mapping, and the fields of a real partial and a real final document."""
    mapping = metrics_index_body()["mappings"]["properties"]
    agg = Aggregate(count=2, total=3.0, minimum=1.0, maximum=2.0, sum_squares=5.0, max_offset=7,
                    offsets={0: 7})  # fmt: skip
    common: dict[str, Any] = {
        "pipeline": "shop/orders", "aggregation": "avg", "interpolation": "linear",
        "group_by": ["host"],
        "window": (60_000, 60_000), "group": ("a",), "agg": agg, "now_ms": 150_000,
    }  # fmt: skip
    partial = build_partial_doc("metricpipe-shop-orders", partition=0, **common)
    final = build_final_doc("metricpipe-shop-orders", **common)
    return mapping, set(partial.body) | set(final.body)


def test_the_saved_objects_are_well_formed() -> None:
    text = (DASHBOARDS / cli.SAVED_OBJECTS_FILE).read_text()
    assert text.endswith("\n")
    assert "\n\n" not in text
    objects = saved_objects()
    assert SavedObjects.parse_ndjson(text).render_ndjson() == text  # the model reads it back
    for obj in objects:
        assert {"type", "id", "attributes"} <= set(obj), obj
        assert obj["attributes"]["title"]
    ids = [obj["id"] for obj in objects]
    assert len(set(ids)) == len(ids), "duplicate ids"
    by_id = {obj["id"]: obj for obj in objects}
    assert {obj["type"] for obj in objects} == {"index-pattern", "visualization", "dashboard"}
    for obj in objects:
        ref_names = [ref["name"] for ref in obj.get("references", [])]
        assert len(set(ref_names)) == len(ref_names), obj["id"]
        for ref in obj.get("references", []):
            assert ref["id"] in by_id, f"{obj['id']}: reference {ref} resolves to nothing"
            assert by_id[ref["id"]]["type"] == ref["type"], f"{obj['id']}: {ref}"
        parsed = embedded_json(obj)
        if obj["type"] == "visualization":
            assert set(parsed) == set(JSON_STRINGS) - {("panelsJSON",), ("optionsJSON",)}
            assert parsed[("visState",)]["title"] == obj["attributes"]["title"]
            assert obj["attributes"]["description"]
            assert obj["attributes"]["version"] == 1
            search = parsed[("kibanaSavedObjectMeta", "searchSourceJSON")]
            assert "index" not in search, "the index pattern goes through references"
            assert search["indexRefName"] in ref_names
        if obj["type"] == "dashboard":
            panels = parsed[("panelsJSON",)]
            assert [p["panelRefName"] for p in panels] == ref_names
            assert all(by_id[ref["id"]]["type"] == "visualization" for ref in obj["references"])
            assert len({p["panelIndex"] for p in panels}) == len(panels)
            assert all(p["version"] and p["gridData"]["i"] == p["panelIndex"] for p in panels)


def test_the_visualizations_use_fields_the_documents_carry() -> None:
    mapping, carried = document_fields()
    objects = saved_objects()
    (pattern,) = [obj for obj in objects if obj["type"] == "index-pattern"]
    time_field = pattern["attributes"]["timeFieldName"]
    assert mapping[time_field]["type"] == "date"
    assert time_field in carried
    spec = MetricPipelineSpec.model_validate(
        {"source": {"tag": "atlas"}, "metric": {"aggregation": "avg", "valueField": "rtt"}}
    )
    title = pattern["attributes"]["title"]
    index = spec.index_name("shop", "orders")
    assert fnmatch.fnmatch(index, title)
    assert fnmatch.fnmatch(f"{index}-state", title)
    visualizations = [obj for obj in objects if obj["type"] == "visualization"]
    assert 3 <= len(visualizations) <= 4
    used: set[str] = set()
    for vis in visualizations:
        parsed = embedded_json(vis)
        fields = {
            a["params"]["field"] for a in parsed[("visState",)]["aggs"] if "field" in a["params"]
        }
        query = parsed[("kibanaSavedObjectMeta", "searchSourceJSON")]["query"]["query"]
        fields |= set(re.findall(r"([A-Za-z_][\w.]*)\s*:", query))  # KQL `field:value`
        assert fields <= set(mapping), f"{vis['id']}: {fields - set(mapping)} not in the mapping"
        assert fields <= carried, f"{vis['id']}: {fields - carried} not in any document"
        used |= fields
    assert {"value", "group_key", "count", "final", "window_start"} <= used


# -- the replica gauges ---------------------------------------------------------------------

PIPELINE_OBJECT = {
    "metadata": {"namespace": "shop", "name": "orders", "uid": "u-1"},
    "spec": {"source": {"tag": "atlas"}, "metric": {"aggregation": "avg", "valueField": "rtt"}},
}


@pytest.mark.parametrize(
    ("status", "replicas", "desired"),
    [
        ({"replicas": 2, "desiredReplicas": 3, "lag": 10}, 2, 3),
        ({"desiredReplicas": 1}, None, 1),  # reconciled, no Deployment status yet
        ({}, None, None),
        (None, None, None),  # never reconciled (or a pipelines file)
        ({"replicas": True, "desiredReplicas": "3"}, None, None),  # not integers: no value
    ],
)
def test_build_target_reads_the_replicas_from_the_status(
    status: dict[str, Any] | None, replicas: int | None, desired: int | None
) -> None:
    obj = dict(PIPELINE_OBJECT)
    if status is not None:
        obj["status"] = status
    target = build_target(obj, ExporterConfig(opensearch_url="http://os:9200"))
    assert (target.replicas, target.desired_replicas) == (replicas, desired)
    assert target.pipeline == "shop/orders"


def test_the_exporter_serves_the_replica_gauges_only_when_known() -> None:
    families = exporter_families(
        make_target("shop/orders", 2, 3), make_target("shop/clicks", None, None)
    )
    values = {
        (sample.name, sample.labels["pipeline"]): sample.value
        for family in families
        for sample in family.samples
        if family.name in (names.PIPELINE_REPLICAS, names.PIPELINE_DESIRED_REPLICAS)
    }
    assert values == {
        (names.PIPELINE_REPLICAS, "shop/orders"): 2,
        (names.PIPELINE_DESIRED_REPLICAS, "shop/orders"): 3,
    }


# -- the live check's translation (metricpipe_dashboards.live) ----------------------------------


def test_variables_are_filled_as_grafana_fills_them() -> None:
    variables = live.Variables(pipelines=("it/a-1", "it/b.2"), step_seconds=15, scrape_seconds=5)
    assert variables.rate_interval_seconds == 20  # max(15 + 5, 4 x 5)
    assert live.Variables(("x",), step_seconds=15).rate_interval_seconds == 60  # 4 x 15 s
    filled = variables.fill('rate(x{pipeline=~"$pipeline"}[$__rate_interval]) + y[$__interval]')
    assert filled == r'rate(x{pipeline=~"(it/a-1|it/b\\.2)"}[20s]) + y[15s]'
    assert live.grafana_regex_escape(r"a\b+c") == r"a\\\\b\\+c"


@pytest.mark.parametrize(
    ("kql", "filters"),
    [
        ("", []),
        ("final:true", [{"term": {"final": True}}]),
        (" pipeline : it/x ", None),  # a slash is beyond `field:value` here: refused
        ("final:true and pipeline:x", None),
    ],
)
def test_kql_is_translated_or_refused(kql: str, filters: list[dict[str, Any]] | None) -> None:
    if filters is None:
        with pytest.raises(ValueError, match="KQL"):
            live.translate_kql(kql)
    else:
        assert live.translate_kql(kql) == filters


def test_a_visualization_becomes_the_search_kibana_sends() -> None:
    objects = SavedObjects.parse_ndjson((DASHBOARDS / cli.SAVED_OBJECTS_FILE).read_text())
    (final_value,) = [v for v in objects.visualizations() if v.id == "metricpipe-final-value"]
    only_a = [{"terms": {"pipeline": ["it/a"]}}]
    body = live.build_search_body(
        final_value.vis_state, final_value.search_source.query.query, "window_start",
        start_ms=1_000, end_ms=2_000, interval="1m", extra_filters=only_a,
    )  # fmt: skip
    assert body["size"] == 0
    assert body["query"]["bool"]["filter"] == [
        {"range": {"window_start": {"gte": 1_000, "lte": 2_000, "format": "epoch_millis"}}},
        {"term": {"final": True}},
        {"terms": {"pipeline": ["it/a"]}},
    ]
    histogram = body["aggs"]["2"]
    assert histogram["date_histogram"]["field"] == "window_start"
    assert histogram["date_histogram"]["fixed_interval"] == "1m"
    split = histogram["aggs"]["3"]
    assert split["terms"] == {"field": "pipeline", "size": 10, "order": {"1": "desc"}}
    assert split["aggs"]["1"] == {"avg": {"field": "value"}}
    group = split["aggs"]["4"]
    assert group["terms"]["field"] == "group_key"
    assert group["aggs"] == {"1": {"avg": {"field": "value"}}}
    (partial_vs_final,) = [v for v in objects.visualizations() if v.id.endswith("partial-vs-final")]
    counted = live.build_search_body(
        partial_vs_final.vis_state, "", "window_start", start_ms=0, end_ms=1, interval="1m"
    )
    assert counted["aggs"]["2"]["aggs"]["3"]["terms"]["order"] == {"_count": "desc"}
    assert counted["aggs"]["2"]["aggs"]["3"]["aggs"] == {}  # a count needs no sub-aggregation


def test_leaf_rows_walk_nested_buckets() -> None:
    aggregations = {"2": {"buckets": [
        {"key": 60_000, "key_as_string": "t1", "doc_count": 3, "1": {"value": 2.0},
         "3": {"buckets": [{"key": "it/a", "doc_count": 2, "1": {"value": 1.5}},
                           {"key": "it/b", "doc_count": 1, "1": {"value": 3.0}}]}},
        {"key": 120_000, "doc_count": 1, "3": {"buckets": [{"key": "it/a", "doc_count": 1}]}},
    ]}}  # fmt: skip
    assert live.leaf_rows(aggregations, ["2", "3"], ["1"]) == [
        (("t1", "it/a"), {"1": 1.5}),
        (("t1", "it/b"), {"1": 3.0}),
        ((120_000, "it/a"), {"1": 1}),  # no metric agg: the bucket's document count
    ]
