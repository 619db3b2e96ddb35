"""The Prometheus rules, checked and unit-tested by the real promtool (a binary, no server).

Every alert gets a case where it fires (exact labels and annotations) and one where it stays
silent; the recording rules get a case with exact values. promtool starts time at 0, so
`time()` at eval_time 10m is 600.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from metricpipe_contract import names
from metricpipe_devstack.settings import StackSettings
from metricpipe_exporters import rules
from metricpipe_exporters.render import main as render_main

PIPE = "shop/orders"
OTHER = "shop/clicks"
SERIES_INTERVAL = "15s"


# -- promtool ---------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["2", "3"], ids=["prometheus2", "prometheus3"])
def promtool(request: pytest.FixtureRequest) -> Path:
    """Each test runs on Debian's Prometheus 2 promtool and on Prometheus 3's."""
    settings = StackSettings()
    path = (settings.prometheus_bin if request.param == "2" else settings.prometheus3_bin) / (
        "promtool"
    )
    if not path.is_file():
        pytest.fail(f"promtool not found at {path}: run `make stack-deps`")
    return path


def run_promtool(promtool: Path, *args: str | Path, cwd: Path) -> str:
    command = [str(promtool), *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=120)
    output = result.stdout + result.stderr
    print(output)
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{output}"
    return output


@pytest.fixture(scope="module")
def rule_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "metricpipe-rules.yml"
    path.write_text(rules.render_yaml(rules.build_rule_file()))
    return path


def is_prometheus3(promtool: Path) -> bool:
    return promtool.parent == StackSettings().prometheus3_bin


def run_rule_tests(promtool: Path, rule_file: Path, tmp_path: Path, *tests: dict[str, Any]) -> None:
    unit: dict[str, Any] = {"rule_files": [str(rule_file)], "evaluation_interval": "30s"}
    unit["tests"] = list(tests)
    path = tmp_path / "unit-tests.yml"
    path.write_text(yaml.safe_dump(unit, sort_keys=False))
    output = run_promtool(promtool, "test", "rules", path, cwd=tmp_path)
    assert "SUCCESS" in output


# -- building promtool unit tests ---------------------------------------------------------


def series(metric: str, values: str, **labels: str) -> dict[str, str]:
    selector = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{metric}{{{selector}}}", "values": values}


def case(
    input_series: Iterable[dict[str, str]],
    alerts: Iterable[dict[str, Any]] = (),
    exprs: Iterable[dict[str, Any]] = (),
) -> dict[str, Any]:
    return {
        "interval": SERIES_INTERVAL,
        "input_series": list(input_series),
        "alert_rule_test": list(alerts),
        "promql_expr_test": list(exprs),
    }


RUNBOOK = "https://github.com/metricpipe/metricpipe/blob/main/docs/runbook.md"


def expect(alertname: str, eval_time: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    """Alerts whose annotations are summary, description and runbook: the description ends
    with the runbook's first steps, and runbook_url is the alert's section of docs/runbook.md."""
    done = []
    for each in alerts:
        annotations = dict(each["exp_annotations"])
        first = annotations.pop("runbook")
        annotations["description"] += f" First: {first}"
        annotations["runbook_url"] = f"{RUNBOOK}#{alertname.lower()}"
        done.append({**each, "exp_annotations": annotations})
    return {"eval_time": eval_time, "alertname": alertname, "exp_alerts": done}


def alert(annotations: Mapping[str, str], **labels: str) -> dict[str, Any]:
    return {"exp_labels": labels, "exp_annotations": dict(annotations)}


def pipeline_tail(namespace: str, name: str) -> str:
    """How every per-pipeline runbook ends, with the pipeline label split."""
    return (
        f"; then `kubectl -n {namespace} describe metricpipeline {name}` and `kubectl -n "
        f"{namespace} logs -l app.kubernetes.io/name=metricpipe-consumer,"
        f"app.kubernetes.io/instance={name}`."
    )


def burn_annotations(speed: str, burn: str, windows: str, days: str) -> dict[str, str]:
    return {
        "summary": f"Pipeline shop/orders is burning its freshness error budget {speed}",
        "description": (
            "Pipeline shop/orders has been staler than its freshness target so often that its "
            f"error budget burns {burn}x faster than a 99% objective allows ({windows}); at "
            f"this rate a 30-day budget is gone in {days} days."
        ),
        "runbook": (
            "Compare `metricpipe:time_lag:seconds` and `metricpipe:input_rate:records_per_second`"
            " with `metricpipe:processing_rate:records_per_second` for "
            'pipeline="shop/orders"' + pipeline_tail("shop", "orders")
        ),
    }


def freshness(values: str, target: str = "3600x200") -> list[dict[str, str]]:
    """The sink prober's freshness of PIPE, and its target, at a 1m step."""
    return [
        series(names.SINK_FRESHNESS, values, pipeline=PIPE),
        series(names.PIPELINE_FRESHNESS_TARGET, target, pipeline=PIPE),
    ]


def minutely(test: dict[str, Any]) -> dict[str, Any]:
    return {**test, "interval": "1m"}


# -- static checks ------------------------------------------------------------------------------


def test_promtool_checks_the_rule_file(promtool: Path, rule_file: Path) -> None:
    output = run_promtool(promtool, "check", "rules", rule_file, cwd=rule_file.parent)
    assert "SUCCESS: 16 rules found" in output


def test_promtool_checks_the_rules_of_the_prometheus_rule_manifest(
    promtool: Path, tmp_path: Path
) -> None:
    manifest = yaml.safe_load(rules.render_yaml(rules.build_prometheus_rule_manifest("mon")))
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    assert manifest["metadata"]["namespace"] == "mon"
    path = tmp_path / "from-manifest.yml"
    path.write_text(yaml.safe_dump(manifest["spec"]))
    assert "SUCCESS: 16 rules found" in run_promtool(promtool, "check", "rules", path, cwd=tmp_path)


def test_every_alert_is_documented_and_held() -> None:
    group = rules.build_alerting_rules()
    assert [rule["alert"] for rule in group["rules"]] == [
        "FreshnessBudgetBurnFast",
        "FreshnessBudgetBurnSlow",
        "ConsumerStalled",
        "DeadLetterRateHigh",
        "ExporterDown",
        "LogCacheRefusingWrites",
        "LogCacheNearlyFull",
    ]
    for rule in group["rules"]:
        assert re.fullmatch(r"\d+[mh]", rule["for"]), rule
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert set(rule["annotations"]) == {"summary", "description", "runbook_url"}
        url, anchor = rule["annotations"]["runbook_url"].split("#")
        assert url.endswith("/docs/runbook.md")
        assert anchor in runbook_sections(), f"docs/runbook.md has no section {anchor}"
        if rule["alert"].startswith("LogCache"):  # one cache serves many pipelines
            assert "$labels.redis" in rule["annotations"]["summary"]
        elif rule["alert"] != "ExporterDown":  # has no pipeline: it blinds all of them
            assert "$labels.pipeline" in rule["annotations"]["summary"]
            assert "$labels.pipeline" in rule["annotations"]["description"]


def runbook_sections() -> set[str]:
    """The anchors of docs/runbook.md's `###` headings (lower case, as GitHub makes them)."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "runbook.md").read_text()
    return {line[4:].strip().lower() for line in text.splitlines() if line.startswith("### ")}


def test_objective_sets_the_error_budget() -> None:
    fast = rules.build_alerting_rules(objective=0.999)["rules"][0]
    assert "/ 0.001 > 14.4" in fast["expr"]
    assert "99.9% objective" in fast["annotations"]["description"]
    with pytest.raises(ValueError, match="between 0 and 1"):
        rules.build_alerting_rules(objective=1.0)


# -- metric names never drift from names.py -----------------------------------------------------

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and"}
PROMQL_WORDS |= {"or", "unless", "offset", "inf", "nan", "Inf", "NaN"}
IDENTIFIER = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers that are not functions, aggregations,
    keywords, label names, label values or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range and subquery durations
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    found = set()
    for match in IDENTIFIER.finditer(text):
        token = match.group()
        if token in PROMQL_WORDS or text[match.end() :].lstrip().startswith("("):
            continue
        found.add(token)
    return found


def test_metric_name_parser() -> None:
    expr = (
        'sum by (pipeline, topic) (rate(a_total{job="x y", le="0.5"}[5m] offset 1h)) '
        "/ on (pipeline) group_left (topic) b:c:d > bool 1e3 unless absent(up) or time() - e"
    )
    assert metric_names(expr) == {"a_total", "b:c:d", "up", "e"}


def test_rules_use_only_exported_metric_names() -> None:
    exported = {
        value
        for key, value in vars(names).items()
        if key.isupper() and isinstance(value, str) and not value.startswith("metricpipe-")
    }
    recording = rules.build_recording_rules()["rules"]
    recorded: set[str] = set()
    for rule in recording:  # a recording rule may read only the rules recorded before it
        assert metric_names(rule["expr"]) <= exported | recorded | {"up"}, rule
        recorded.add(rule["record"])
    used: set[str] = set()
    for rule in rules.build_alerting_rules()["rules"]:
        assert metric_names(rule["expr"]) <= exported | recorded | {"up"}, rule
        used |= metric_names(rule["expr"])
    assert all(re.fullmatch(r"metricpipe:[a-z_]+:[a-z_]+", name) for name in recorded)
    assert {rules.FRESHNESS_SLO_BAD, rules.PROCESSING_RATE, "up"} <= used


# -- recording rules ------------------------------------------------------------------------


def sample(value: float, pipeline: str = PIPE) -> dict[str, Any]:
    """One pipeline's value of a rounded recording rule (round() drops the metric name)."""
    namespace = pipeline.split("/", maxsplit=1)[0]
    return {"labels": f'{{namespace="{namespace}", pipeline="{pipeline}"}}', "value": value}


def test_recording_rules_values(promtool: Path, rule_file: Path, tmp_path: Path) -> None:
    inputs = [
        # two partitions: 150 and 300 records per 15s -> 30/s in
        series(names.TOPIC_PARTITION_OFFSET, "0+150x60", pipeline=PIPE, topic="t", partition="0"),
        series(names.TOPIC_PARTITION_OFFSET, "0+300x60", pipeline=PIPE, topic="t", partition="1"),
        # two consumer pods: 75 per 15s each -> 10/s out; 15 dead letters per 15s -> 1/s
        series(names.CONSUMER_RECORDS_CONSUMED, "0+75x60", pipeline=PIPE, pod="a"),
        series(names.CONSUMER_RECORDS_CONSUMED, "0+75x60", pipeline=PIPE, pod="b"),
        series(names.CONSUMER_DEAD_LETTER, "0+15x60", pipeline=PIPE, reason="parse"),
        series(names.GROUP_LAG, "100x60", pipeline=PIPE, partition="0"),
        series(names.GROUP_LAG, "250x60", pipeline=PIPE, partition="1"),
        series(names.GROUP_TIME_LAG, "3x60", pipeline=PIPE, partition="0"),
        series(names.GROUP_TIME_LAG, "7x60", pipeline=PIPE, partition="1"),
        # watermarks (Unix seconds): the slowest partition says 400 -> 600 - 400 = 200s stale
        series(names.CONSUMER_WATERMARK, "500x60", pipeline=PIPE, partition="0"),
        series(names.CONSUMER_WATERMARK, "400x60", pipeline=PIPE, partition="1"),
        series(names.PIPELINE_FRESHNESS_TARGET, "100x60", pipeline=PIPE),
        # OTHER has a sink prober: its freshness wins over the consumers' watermarks
        series(names.SINK_FRESHNESS, "30x60", pipeline=OTHER),
        series(names.CONSUMER_WATERMARK, "0x60", pipeline=OTHER, partition="0"),
        series(names.PIPELINE_FRESHNESS_TARGET, "60x60", pipeline=OTHER),
    ]
    expected = {
        rules.INPUT_RATE: [sample(30)],
        rules.PROCESSING_RATE: [sample(10)],
        rules.DEAD_LETTER_RATE: [sample(1)],
        rules.LAG_RECORDS: [sample(350)],
        rules.TIME_LAG: [sample(7)],
        rules.CONSUMER_FRESHNESS: [
            sample(600, OTHER),
            sample(200),
        ],
        rules.SINK_FRESHNESS: [sample(30, OTHER)],
        rules.FRESHNESS: [sample(30, OTHER), sample(200)],
        rules.FRESHNESS_SLO_BAD: [
            sample(0, OTHER),
            sample(1),
        ],
    }
    # rounded to 1e-6: Prometheus 3's rate() adds the same increases in another order
    # (30 -> 29.999999999999993)
    exprs = [
        {"expr": f"round({record}, 0.000001)", "eval_time": "10m", "exp_samples": samples}
        for record, samples in expected.items()
    ]
    assert set(expected) == {rule["record"] for rule in rules.build_recording_rules()["rules"]}
    run_rule_tests(promtool, rule_file, tmp_path, case(inputs, exprs=exprs))


# -- alerts: each fires when it should and stays silent when it should --------------------------

FAST_BURN = "FreshnessBudgetBurnFast"
SLOW_BURN = "FreshnessBudgetBurnSlow"


def test_freshness_burn_alerts_fire_when_freshness_stays_over_target(
    promtool: Path, rule_file: Path, tmp_path: Path
) -> None:
    stale = minutely(case(freshness("7200x200")))  # twice the 1h target, all the time
    fast = burn_annotations("fast", "100", "over 1h, still over 5m", "2.1")
    slow = burn_annotations("steadily", "100", "over 6h, still over 30m", "5.0")
    stale["alert_rule_test"] = [
        expect(FAST_BURN, "1m"),  # pending: `for: 2m`
        expect(FAST_BURN, "10m", alert(fast, namespace="shop", pipeline=PIPE, severity="critical")),
        expect(SLOW_BURN, "10m"),  # pending: `for: 15m`
        expect(SLOW_BURN, "20m", alert(slow, namespace="shop", pipeline=PIPE, severity="warning")),
    ]
    run_rule_tests(promtool, rule_file, tmp_path, stale)


def test_freshness_burn_alerts_stay_silent_under_target_and_for_short_blips(
    promtool: Path, rule_file: Path, tmp_path: Path
) -> None:
    fresh = minutely(case(freshness("600x200")))
    fresh["alert_rule_test"] = [expect(FAST_BURN, "3h"), expect(SLOW_BURN, "3h")]
    # fresh for an hour, then 3 minutes over target: the 5m window burns, the 1h one does not
    blip = minutely(case(freshness("600x60 7200x2 600x60")))
    blip["alert_rule_test"] = [expect(FAST_BURN, t) for t in ("63m", "65m", "70m")]
    # no target exported yet: no SLO series, no alert
    untargeted = minutely(case(freshness("7200x60", target="_x60")))
    untargeted["alert_rule_test"] = [expect(FAST_BURN, "30m")]
    run_rule_tests(promtool, rule_file, tmp_path, fresh, blip, untargeted)


def stalled_annotations(namespace: str = "shop", name: str = "orders") -> dict[str, str]:
    return {
        "summary": f"Consumers of pipeline {namespace}/{name} process no records",
        "description": (
            f"Pipeline {namespace}/{name} receives records or its lag grows, but its consumers "
            "have processed nothing for 5m; its freshness falls behind."
        ),
        "runbook": (
            f"`kubectl -n {namespace} get pods -l app.kubernetes.io/name=metricpipe-consumer,"
            f"app.kubernetes.io/instance={name}` (crash loops, Pending, not Ready)"
            + pipeline_tail(namespace, name)
        ),
    }


def input_offsets(values: str = "0+150x80") -> dict[str, str]:
    return series(names.TOPIC_PARTITION_OFFSET, values, pipeline=PIPE, topic="t", partition="0")


def test_consumer_stalled_fires(promtool: Path, rule_file: Path, tmp_path: Path) -> None:
    stalled = stalled_annotations()
    firing = alert(stalled, namespace="shop", pipeline=PIPE, severity="warning")
    # records arrive, the consumer is up but its counter stands still
    flat = case([input_offsets(), series(names.CONSUMER_RECORDS_CONSUMED, "900x80", pipeline=PIPE)])
    flat["alert_rule_test"] = [
        expect("ConsumerStalled", "4m"),
        expect("ConsumerStalled", "10m", firing),
    ]
    # no consumer at all (no processing series): the lag grows
    gone = case(
        [input_offsets(), series(names.GROUP_LAG, "0+150x80", pipeline=PIPE, partition="0")]
    )
    gone["alert_rule_test"] = [expect("ConsumerStalled", "10m", firing)]
    run_rule_tests(promtool, rule_file, tmp_path, flat, gone)


def test_consumer_stalled_stays_silent(promtool: Path, rule_file: Path, tmp_path: Path) -> None:
    consumed = series(names.CONSUMER_RECORDS_CONSUMED, "0+150x80", pipeline=PIPE)
    busy = case([input_offsets(), consumed])
    busy["alert_rule_test"] = [expect("ConsumerStalled", "15m")]
    # a 3-minute pause (300s..480s) is shorter than `for: 5m`
    paused = series(names.CONSUMER_RECORDS_CONSUMED, "0+75x20 1500x11 1575+75x40", pipeline=PIPE)
    pause = case([input_offsets(), paused])
    pause["alert_rule_test"] = [expect("ConsumerStalled", t) for t in ("7m", "8m", "10m", "15m")]
    # nothing comes in and nothing is consumed: idle, not stalled
    idle = case(
        [input_offsets("500x80"), series(names.CONSUMER_RECORDS_CONSUMED, "900x80", pipeline=PIPE)]
    )
    idle["alert_rule_test"] = [expect("ConsumerStalled", "15m")]
    run_rule_tests(promtool, rule_file, tmp_path, busy, pause, idle)


def foreign_kafka_exporter(group: str, values: str) -> list[dict[str, str]]:
    """kafka_exporter's series (Strimzi's Kafka Exporter, scraped by the same Prometheus) for a
    consumer group that is not metricpipe's: its lag grows and no one consumes."""
    labels = {
        "consumergroup": group,
        "topic": "payments",
        "partition": "0",
        "job": "kafka-exporter",
        "namespace": "kafka",
        "instance": "10.0.0.9:9308",
    }
    return [
        series("kafka_consumergroup_lag", values, **labels),
        series("kafka_consumergroup_current_offset", "0x80", **labels),
        series("kafka_topic_partition_current_offset", values, **labels),
        series("kafka_consumergroup_members", "1x80", **labels),
    ]


def test_a_foreign_kafka_exporter_raises_no_alert(
    promtool: Path, rule_file: Path, tmp_path: Path
) -> None:
    """A Prometheus shared with kafka_exporter: foreign groups' growing lag and topics enter no
    recording rule and raise no alert, while metricpipe's own stalled pipeline (OTHER) still
    does, alone (promtool compares the whole list of firing alerts)."""
    ours = series(names.CONSUMER_RECORDS_CONSUMED, "0+150x80", pipeline=PIPE)
    stalled = [
        series(names.TOPIC_PARTITION_OFFSET, "0+150x80", pipeline=OTHER, topic="t", partition="0"),
        series(names.CONSUMER_RECORDS_CONSUMED, "900x80", pipeline=OTHER),
    ]
    foreign = [*foreign_kafka_exporter("billing", "0+500x80"),
               *foreign_kafka_exporter("audit", "0+20x80")]  # fmt: skip
    shared = case([input_offsets(), ours, *stalled, *foreign])
    firing = alert(stalled_annotations("shop", "clicks"), namespace="shop", pipeline=OTHER,
                   severity="warning")  # fmt: skip
    shared["alert_rule_test"] = [
        expect("ConsumerStalled", "10m", firing),
        *(expect(name, "10m") for name in ("DeadLetterRateHigh", "FreshnessBudgetBurnFast")),
    ]
    shared["promql_expr_test"] = [
        {"expr": rules.LAG_RECORDS, "eval_time": "10m", "exp_samples": []},
        {
            "expr": f"count({rules.INPUT_RATE})",
            "eval_time": "10m",
            "exp_samples": [{"labels": "{}", "value": 2}],
        },
    ]
    run_rule_tests(promtool, rule_file, tmp_path, shared)


def dead_letter_case(per_step: str) -> dict[str, Any]:
    """10 records/s consumed; `per_step` dead letters every 15s."""
    return case([
        series(names.CONSUMER_RECORDS_CONSUMED, "0+150x100", pipeline=PIPE),
        series(names.CONSUMER_DEAD_LETTER, f"0+{per_step}x100", pipeline=PIPE, reason="parse"),
    ])  # fmt: skip


def test_dead_letter_rate_high(promtool: Path, rule_file: Path, tmp_path: Path) -> None:
    annotations = {
        "summary": "Pipeline shop/orders dead-letters more than 1% of its records",
        "description": (
            "5% of the records consumed by pipeline shop/orders went to its dead-letter topic "
            "(threshold 1%)."
        ),
        "runbook": (
            "See the reasons with `sum by (reason) (rate(metricpipe_consumer_dead_letter_total"
            '{pipeline="shop/orders"}[5m]))` and read a few records of `<topic>.dlq`'
            + pipeline_tail("shop", "orders")
        ),
    }
    high = dead_letter_case("7.5")  # 0.5/s = 5%
    high["alert_rule_test"] = [
        expect("DeadLetterRateHigh", "8m"),  # pending: `for: 10m`
        expect(
            "DeadLetterRateHigh",
            "15m",
            alert(annotations, namespace="shop", pipeline=PIPE, severity="warning"),
        ),
    ]
    low = dead_letter_case("0.75")  # 0.05/s = 0.5%
    low["alert_rule_test"] = [expect("DeadLetterRateHigh", "20m")]
    run_rule_tests(promtool, rule_file, tmp_path, high, low)


def exporter_down_annotations(where: str) -> dict[str, str]:
    return {
        "summary": "The metricpipe exporter is down",
        "description": (
            f"Prometheus cannot scrape job metricpipe-exporter{where}: lag, time lag and sink "
            "freshness of every pipeline are unknown, so the freshness alerts are blind and the "
            "ResourceManager holds replicas."
        ),
        "runbook": (
            "Check the exporter pods and their logs (`kubectl get pods -A -l "
            "app.kubernetes.io/name=metricpipe-exporter`) and the target on Prometheus' "
            "/targets page."
        ),
    }


def up(values: str, job: str = names.EXPORTER_JOB) -> dict[str, str]:
    return series("up", values, job=job, instance="10.0.0.7:9308")


def test_exporter_down_fires(promtool: Path, rule_file: Path, tmp_path: Path) -> None:
    down = case([up("0x40")])
    down["alert_rule_test"] = [
        expect("ExporterDown", "1m"),
        expect(
            "ExporterDown",
            "5m",
            alert(
                exporter_down_annotations(" at 10.0.0.7:9308"),
                job=names.EXPORTER_JOB,
                instance="10.0.0.7:9308",
                severity="warning",
            ),
        ),
    ]
    # no target at all: only the consumers are scraped
    absent = case([up("1x40", job=names.CONSUMER_JOB)])
    absent["alert_rule_test"] = [
        expect(
            "ExporterDown",
            "5m",
            alert(exporter_down_annotations(""), job=names.EXPORTER_JOB, severity="warning"),
        )
    ]
    run_rule_tests(promtool, rule_file, tmp_path, down, absent)


def test_exporter_down_stays_silent(promtool: Path, rule_file: Path, tmp_path: Path) -> None:
    healthy = case([up("1x40")])
    healthy["alert_rule_test"] = [expect("ExporterDown", "5m")]
    blip = case([up("1x4 0x3 1x40")])  # down for one minute, `for: 2m`
    blip["alert_rule_test"] = [expect("ExporterDown", t) for t in ("2m", "3m", "5m")]
    run_rule_tests(promtool, rule_file, tmp_path, healthy, blip)


REDIS = "10.0.0.9:6379"


def cache_runbook(first_step: str) -> str:
    return (
        f"{first_step}; then raise maxmemory (`CONFIG SET maxmemory <bytes>` as the admin user, "
        "and in Redis' config) or keep fewer hours: a shorter cache retention (the operator's "
        "METRICPIPE_CACHE_RETENTION_SECONDS) or `ZREMRANGEBYSCORE <cache key> -inf <Unix s>` "
        "(batch windows that needed those records are then reported trimmed)."
    )


def refusing_annotations(about: str) -> dict[str, str]:
    return {
        "summary": f"The Redis log cache {REDIS} refuses writes: it is full",
        "description": (
            f"Redis {REDIS} refused writes for lack of memory in the last 5m (about {about}; "
            "maxmemory, noeviction). Fluentd keeps the refused chunks in its buffer and retries "
            "them, so nothing is dropped yet; but new records reach the batch pipelines over the "
            "cache only once Redis takes them again, and when a buffer is full Fluentd blocks "
            "its input."
        ),
        "runbook": cache_runbook(
            "See `metricpipe_cache_memory_used_bytes / metricpipe_cache_memory_limit_bytes` and, "
            "as the admin user, which caches hold it (`redis-cli --memkeys`)"
        ),
    }


def refusing(about: str) -> dict[str, Any]:
    return alert(
        refusing_annotations(about), redis=REDIS, job=names.EXPORTER_JOB, severity="critical"
    )


def refused(values: str) -> dict[str, str]:
    return series(names.CACHE_REFUSED_WRITES, values, redis=REDIS, job=names.EXPORTER_JOB)


def test_log_cache_refusing_writes_fires_on_any_refusal(
    promtool: Path, rule_file: Path, tmp_path: Path
) -> None:
    firing = refusing(about="1")
    # one refused write at 2m30s (15s steps): firing at once, as long as 5m hold it
    one = case([refused("0x9 1x40")])
    one["alert_rule_test"] = [
        expect("LogCacheRefusingWrites", "2m"),
        expect("LogCacheRefusingWrites", "3m", firing),
        expect("LogCacheRefusingWrites", "7m", firing),
    ]
    # refusing steadily, across a Redis restart (errorstats start again at 0)
    steady = case([refused("0+5x20 0+5x20")])
    # increase() over 5m of 15s samples: Prometheus 2 takes 21 samples into the range, 3 only
    # 20 (its ranges leave out their start), and the extrapolation to 5m differs
    about = "94.74" if is_prometheus3(promtool) else "95"
    steady["alert_rule_test"] = [expect("LogCacheRefusingWrites", "8m", refusing(about=about))]
    run_rule_tests(promtool, rule_file, tmp_path, one, steady)


def test_log_cache_refusing_writes_stays_silent(
    promtool: Path, rule_file: Path, tmp_path: Path
) -> None:
    # refusals counted before the exporter came: no increase
    old = case([refused("3x40")])
    old["alert_rule_test"] = [expect("LogCacheRefusingWrites", t) for t in ("1m", "5m", "9m")]
    # one refusal at 2m30s, then none: resolved once 5m no longer reach it
    over = case([refused("0x9 1x60")])
    over["alert_rule_test"] = [expect("LogCacheRefusingWrites", t) for t in ("8m", "12m")]
    # the cache away (no series) never fires it
    away = case([refused("0x9 _x20 0x20")])
    away["alert_rule_test"] = [expect("LogCacheRefusingWrites", t) for t in ("4m", "9m")]
    run_rule_tests(promtool, rule_file, tmp_path, old, over, away)


def memory(used: str, limit: str) -> list[dict[str, str]]:
    return [
        series(names.CACHE_MEMORY_USED, used, redis=REDIS, job=names.EXPORTER_JOB),
        series(names.CACHE_MEMORY_LIMIT, limit, redis=REDIS, job=names.EXPORTER_JOB),
    ]


def test_log_cache_nearly_full(promtool: Path, rule_file: Path, tmp_path: Path) -> None:
    annotations = {
        "summary": f"The Redis log cache {REDIS} is nearly full",
        "description": (
            f"Redis {REDIS} uses 95% of its maxmemory; when it is full it refuses Fluentd's "
            "writes (LogCacheRefusingWrites)."
        ),
        "runbook": cache_runbook(
            "Follow `metricpipe_cache_memory_used_bytes / metricpipe_cache_memory_limit_bytes` "
            "over the last day"
        ),
    }
    full = case(memory("950x80", "1000x80"))
    full["alert_rule_test"] = [
        expect("LogCacheNearlyFull", "9m"),  # pending: `for: 10m`
        expect(
            "LogCacheNearlyFull",
            "11m",
            alert(annotations, redis=REDIS, job=names.EXPORTER_JOB, severity="warning"),
        ),
    ]
    roomy = case(memory("850x80", "1000x80"))  # 85%
    roomy["alert_rule_test"] = [expect("LogCacheNearlyFull", "15m")]
    unlimited = case(memory("950x80", "0x80"))  # maxmemory 0: no limit to be near
    unlimited["alert_rule_test"] = [expect("LogCacheNearlyFull", "15m")]
    spike = case(memory("500x20 950x20 500x40", "1000x80"))  # 95% for 5m only
    spike["alert_rule_test"] = [expect("LogCacheNearlyFull", t) for t in ("9m", "12m")]
    run_rule_tests(promtool, rule_file, tmp_path, full, roomy, unlimited, spike)


# -- scrape objects ---------------------------------------------------------------------------


def test_monitors_select_our_pods_and_set_the_jobs_the_rules_use() -> None:
    pod_monitor = rules.build_pod_monitor("mon")
    assert pod_monitor["kind"] == "PodMonitor"
    assert pod_monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": names.CONSUMER_JOB
    }
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    service_monitor = rules.build_service_monitor("mon")
    assert service_monitor["kind"] == "ServiceMonitor"
    assert service_monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": names.EXPORTER_JOB
    }
    assert service_monitor["spec"]["endpoints"][0]["port"] == "metrics"
    for monitor in (pod_monitor, service_monitor):
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["namespace"] == "mon"
        # the job label is the selected label's value: the job names the rules match on
        assert monitor["spec"]["jobLabel"] == "app.kubernetes.io/name"


def test_file_sd_is_accepted_by_promtool(promtool: Path, tmp_path: Path) -> None:
    targets = rules.build_file_sd(["127.0.0.1:9308"], names.EXPORTER_JOB, {"env": "dev"})
    assert targets == [
        {"targets": ["127.0.0.1:9308"], "labels": {"env": "dev", "job": names.EXPORTER_JOB}}
    ]
    (tmp_path / "exporter.json").write_text(json.dumps(targets))
    config = {
        "scrape_configs": [
            {"job_name": "metricpipe", "file_sd_configs": [{"files": [str(tmp_path / "*.json")]}]}
        ]
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    output = run_promtool(promtool, "check", "config", tmp_path / "prometheus.yml", cwd=tmp_path)
    assert "SUCCESS" in output


# -- the CLI ------------------------------------------------------------------------------------


def test_render_cli_writes_rules_and_manifests(
    promtool: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert render_main(["rules", "--out", str(tmp_path / "rules")]) == 0
    rule_path = tmp_path / "rules" / "metricpipe-rules.yml"
    assert yaml.safe_load(rule_path.read_text()) == rules.build_rule_file()
    run_promtool(promtool, "check", "rules", rule_path, cwd=tmp_path)

    out = tmp_path / "manifests"
    assert render_main(["manifests", "--namespace", "mon", "--out", str(out)]) == 0
    kinds = {yaml.safe_load(path.read_text())["kind"] for path in out.glob("*.yaml")}
    assert kinds == {"PrometheusRule", "PodMonitor", "ServiceMonitor"}

    assert render_main(["rules", "--out", str(tmp_path), "--objective", "1.5"]) == 2
    assert "objective must lie strictly between 0 and 1" in capsys.readouterr().err
