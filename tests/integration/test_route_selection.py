"""The Fluentd route selects what the consumer counts, checked with Ruby's regex engine.

The filters of the route (the fluent-operator ClusterFilter the operator renders) run in Debian's
`ruby` through route_selection.rb, a simulation of Fluentd's parser, grep and record_transformer
written from Fluentd's source; the consumer side is the product's RecordParser. Both read the
same records: the shared real Apache log (each line as a Fluentd record {"message": line}, and
{"log": line}) and the shared RIPE Atlas RTT records, or the seeded generator when the shared
data is absent. Needs no server, only `ruby` (hack/prereqs.sh installs it).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import re2  # type: ignore[import-untyped]  # google-re2: RE2 itself, not the consumer
import yaml
from kubernetes import client

from metricpipe_consumers.records import Filtered, Parsed, RecordParser, Rejected
from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef
from metricpipe_demo.generator import (
    SyntheticSettings,
    iter_synthetic_access_lines,
    iter_synthetic_rtt,
)
from metricpipe_devstack.datasets import (
    DatasetMissingError,
    iter_access_log_lines,
    iter_rtt_records,
)
from metricpipe_operator.reconcile.route import build_cluster_filter, build_route_plan
from metricpipe_operator.reconcile.route_regex import translate_re2

REPO = Path(__file__).resolve().parents[2]
SIMULATOR = Path(__file__).with_name("route_selection.rb")
REF = PipelineRef("team-a", "route", "uid-1", 1)
DECODE_REASONS = {"malformed_line", "malformed_json", "not_utf8", "oversize"}
RTT_SAMPLE = 60_000  # records of the RTT archive (408,087 in all): enough, and a few seconds

# Hand-written lines the real log lacks: cut-off trailing fields, odd spacing, both keys.
CRAFTED_LINES = [
    '10.0.0.1 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 503 12 "-" "Mozilla/5.0 (X11',
    '10.0.0.2 - - [17/May/2015:10:05:04 +0000] "GET /b HTTP/1.1" 500 - "http://x/',
    '10.0.0.3 - - [17/May/2015:10:05:05 +0000] "GET /c HTTP/1.1" 502 7',
    '10.0.0.4 - - [17/May/2015:10:05:06 +0000] "GET /d HTTP/1.1" 500 7 "-" "a \\"b\\" c"   ',
    '10.0.0.5 - - [17/May/2015:10:05:07 +0000] "-" 400 0 "-" "-"',
    '10.0.0.6 - - [17/May/2015:10:05:08 +0000] "GET  HTTP/1.1" 500 0 "-" "-"',
    '10.0.0.7 - - [17/May/2015:10:05:09 +0000] "GET /e HTTP/1.1" 5000 1 "-" "-"',
    '10.0.0.8\u00a0- - [17/May/2015:10:05:10 +0000] "GET /f HTTP/1.1" 500 1 "-" "-"',
    "not an access log line at all",
    "",
    '10.0.0.9 - - [17/May/2015:10:05:11 +0000] "GET /g\\"h HTTP/1.1" 500 1 "-" "-"',
    '10.0.0.10 - - [17/May/2015:10:05:12 +0000] "GET /a b HTTP/1.1 HTTP/1.0" 503 1 "-" "-"',
]


@dataclass(frozen=True)
class Case:
    name: str
    filters: list[dict[str, Any]]


APACHE_CASES = [
    Case("status_5xx", [{"field": "status", "matches": "^5[0-9][0-9]$"}]),
    Case("status_equals_404", [{"field": "status", "equals": "404"}]),
    Case("bytes_dash_is_zero", [{"field": "bytes", "equals": "0"}]),
    Case("images", [{"field": "path", "matches": r"\.(?:png|jpe?g|gif)$"}]),
    Case(
        "get_bots",
        [{"field": "method", "equals": "GET"}, {"field": "agent", "matches": r"(?i)bot\b"}],
    ),
    Case("no_referrer", [{"field": "referrer", "matches": "^-$"}]),
    Case("http10", [{"field": "protocol", "equals": "HTTP/1.0"}]),
    Case("morning", [{"field": "time", "matches": r"^1[78]/May/2015:0[0-9]:"}]),
    Case("host_prefix", [{"field": "host", "matches": r"^66\.249\."}]),
    Case("agent_exists", [{"field": "agent", "exists": True}]),  # left to the consumer
    Case("backtracking", [{"field": "path", "matches": "^(/[a-z]+)+$"}]),  # left to the consumer
]


def example_spec(name: str) -> dict[str, Any]:
    document = yaml.safe_load((REPO / "manifests" / "examples" / f"{name}.yaml").read_text())
    spec: dict[str, Any] = document["spec"]
    return spec


def with_filters(spec: dict[str, Any], filters: list[dict[str, Any]]) -> MetricPipelineSpec:
    source = {**spec["source"], "filters": filters or spec["source"].get("filters", [])}
    return MetricPipelineSpec.model_validate({**spec, "source": source})


@pytest.fixture(scope="module")
def ruby() -> str:
    path = shutil.which("ruby")
    if path is None:
        pytest.fail("ruby is not installed: run `make prereqs` (installs Debian's ruby)")
    return path


def access_lines(data_dir: Path) -> tuple[list[str], str]:
    try:
        return list(iter_access_log_lines(data_dir)), "shared access log"
    except DatasetMissingError:
        lines = iter_synthetic_access_lines(SyntheticSettings(), hours=48)
        return [line.line.decode() for line in lines], "seeded generator (shared data absent)"


def rtt_records(data_dir: Path) -> tuple[list[dict[str, Any]], str]:
    try:
        records = iter_rtt_records(data_dir)
        return [record for _, record in zip(range(RTT_SAMPLE), records, strict=False)], "RIPE"
    except DatasetMissingError:
        points = iter_synthetic_rtt(SyntheticSettings(probes=10), hours=72)
        return [{"time": p.time, "probe": p.probe, "rtt": p.rtt} for p in points], "generator"


def apache_records(lines: list[str]) -> Iterator[dict[str, Any]]:
    for line in [*lines, *CRAFTED_LINES]:
        yield {"message": line, "stream": "stdout"}
        yield {"log": line}
    # Both keys: the consumer reads message first (and log when message is empty).
    yield {"message": CRAFTED_LINES[0], "log": CRAFTED_LINES[8]}
    yield {"message": "", "log": CRAFTED_LINES[1]}
    yield {"message": CRAFTED_LINES[8], "log": CRAFTED_LINES[2]}
    yield {"stream": "stdout"}


def route_forwards(ruby: str, spec: MetricPipelineSpec, records: list[dict[str, Any]],
                   tmp_path: Path) -> dict[str, set[int]]:  # fmt: skip
    """Indices of the records the route forwards to Kafka ("forwarded"), of those it altered
    ("changed") and of those Fluentd's grep kept because it raised ("grep_failed")."""
    cluster_filter = build_cluster_filter(REF, spec)
    if cluster_filter is None:
        return {"forwarded": set(range(len(records))), "changed": set(), "grep_failed": set()}
    steps = tmp_path / "steps.json"
    steps.write_text(json.dumps(cluster_filter["spec"]["filters"]))
    data = tmp_path / "records.jsonl"
    data.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    result = subprocess.run([ruby, str(SIMULATOR), str(steps), str(data)],
                            capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return {key: set(indices) for key, indices in json.loads(result.stdout).items()}


def consumer_outcomes(spec: MetricPipelineSpec, records: list[dict[str, Any]]) -> list[str]:
    """Per record: 'counted' (passed the filters), 'filtered' or 'unparsed' (dead-lettered
    before any filter could be applied)."""
    parser = RecordParser(spec)
    now_ms = int(time.time() * 1000)
    outcomes = []
    for record in records:
        result = parser.parse(orjson.dumps(record), now_ms)
        if isinstance(result, Filtered):
            outcomes.append("filtered")
        elif isinstance(result, Rejected) and result.reason in DECODE_REASONS:
            outcomes.append("unparsed")
        else:
            assert isinstance(result, Parsed | Rejected)
            outcomes.append("counted")
    return outcomes


def compare(ruby: str, spec: MetricPipelineSpec, records: list[dict[str, Any]],
            tmp_path: Path) -> dict[str, int]:  # fmt: skip
    route = route_forwards(ruby, spec, records, tmp_path)
    forwarded = route["forwarded"]
    outcomes = consumer_outcomes(spec, records)
    counted = {i for i, outcome in enumerate(outcomes) if outcome == "counted"}
    unparsed = {i for i, outcome in enumerate(outcomes) if outcome == "unparsed"}
    assert not route["changed"], "the route must hand Kafka the record it received"
    lost = counted - forwarded
    assert not lost, [records[i] for i in sorted(lost)[:5]]
    # Forwarded but not counted: lines neither side could parse (the consumer dead-letters
    # them), records on which Fluentd's grep raised (a nested field under a non-object), and
    # filters the route leaves to the consumer. Anything else is a disagreement.
    extra = forwarded - counted - unparsed - route["grep_failed"]
    if not build_route_plan(spec).consumer_only:
        assert not extra, [records[i] for i in sorted(extra)[:5]]
    return {"records": len(records), "counted": len(counted), "forwarded": len(forwarded),
            "unparsed": len(unparsed), "unparsed_forwarded": len(unparsed & forwarded),
            "grep_failed": len(route["grep_failed"]), "extra": len(extra)}  # fmt: skip


@pytest.mark.parametrize("case", APACHE_CASES, ids=lambda case: case.name)
def test_apache_route_selects_what_the_consumer_counts(
    ruby: str, data_dir: Path, tmp_path: Path, case: Case
) -> None:
    lines, origin = access_lines(data_dir)
    records = list(apache_records(lines))
    spec = with_filters(example_spec("http-5xx-rate"), case.filters)
    counts = compare(ruby, spec, records, tmp_path)
    print(f"{case.name} on {origin}: {counts}")
    assert counts["counted"] > 0  # the case selects something: the comparison is not vacuous
    if case.name == "status_5xx":
        assert build_route_plan(spec).rules, "the filter must run in Fluentd"
        assert counts["forwarded"] < counts["records"] // 10  # Fluentd drops most of the log


def test_json_route_selects_what_the_consumer_counts(
    ruby: str, data_dir: Path, tmp_path: Path
) -> None:
    records, origin = rtt_records(data_dir)
    nested: list[dict[str, Any]] = [
        {"time": "2016-10-01T00:00:00Z", "probe": "1", "rtt": 3.5, "http": {"status": 503}},
        {"time": "2016-10-01T00:00:00Z", "probe": "2", "rtt": 1, "http": {"status": "200"}},
        {"time": "2016-10-01T00:00:00Z", "probe": "3", "rtt": -3, "http": "flat"},
        {"time": "2016-10-01T00:00:00Z", "probe": "4", "rtt": None, "http": {}},
        {"time": "2016-10-01T00:00:00Z", "probe": "5", "rtt": "12.5"},
    ]
    records += nested
    example = example_spec("avg-rtt")
    probe_5 = [{"field": "probe", "equals": "5"}, {"field": "rtt", "matches": r"^\d+\.5$"}]
    for filters in ([], [{"field": "http.status", "matches": "^5"}], probe_5):
        spec = with_filters(example, filters)
        counts = compare(ruby, spec, records, tmp_path)
        print(f"avg-rtt {filters or 'example filter'} on {origin}: {counts}")
        assert counts["counted"] > 0


# RE2 patterns and values where RE2 and Onigmo part ways unless translated (anchors and line
# breaks, ASCII classes, \v, {,n}, nested classes, (?s), Unicode letters and case folding).
TRANSLATION_CASES: list[tuple[str, list[str]]] = [
    ("^5[0-9][0-9]$", ["500", "5000", "500\n", "x\n500", "503"]),
    ("^a$", ["a", "a\n", "b\na", "a\nb"]),
    (r"\d+", ["12", "١٢", "x"]),
    (r"^\w+$", ["abc_1", "é", "a-b"]),
    (r"\s", [" ", "\v", "\u00a0", "\t", "x"]),
    (r"[[:alpha:]]", ["é", "a", "1"]),
    (r"a\b", ["a", "aé", "ab", "a-"]),
    ("a{,2}", ["a{,2}", "aa", ""]),
    ("[a[b]", ["[", "a", "b", "c"]),
    ("[a&&b]", ["&", "a", "b", "c"]),
    ("(?s)a.b", ["a\nb", "axb"]),
    ("a.b", ["a\nb", "axb"]),
    (r"(?i)straße", ["STRASSE", "Straße", "STRAßE"]),
    (r"(?i)k", ["K", "\u212a", "k"]),
    (r"\pL+\PL", ["éa1", "abc"]),
    (r"\x{e9}|\x41", ["é", "A", "e"]),
    (r"\Q.*\E$", [".*", "ab"]),
    (r"(?P<x>GET|POST) /api", ["GET /api", "PUT /api"]),
    ("a #b", ["a #b", "a"]),
    (r"[^\S]x", [" x", "ax"]),
    (r"^/api/v[0-9]+/.*\.json$", ["/api/v2/x.json", "/api/v2/x.json\n", "/api/vx/y.json"]),
]


def test_translated_patterns_select_what_re2_selects(ruby: str, tmp_path: Path) -> None:
    cases = [(translate_re2(p), p, values) for p, values in TRANSLATION_CASES]
    table = tmp_path / "cases.json"
    table.write_text(json.dumps([[onigmo, values] for onigmo, _, values in cases]))
    script = ('require "json"; cases = JSON.parse(File.read(ARGV[0])); '
              "puts JSON.generate(cases.map { |s, vs| r = Regexp.compile(s); "
              "vs.map { |v| !r.match(v).nil? } })")  # fmt: skip
    result = subprocess.run([ruby, "-e", script, str(table)], capture_output=True, text=True,
                            timeout=60, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    onigmo_verdicts = json.loads(result.stdout)
    assert sum(len(v) for v in onigmo_verdicts) == sum(len(vs) for _, vs in TRANSLATION_CASES)
    disagreements = []
    for (onigmo, pattern, values), verdicts in zip(cases, onigmo_verdicts, strict=True):
        compiled = re2.compile(pattern)
        for value, verdict in zip(values, verdicts, strict=True):
            expected = compiled.search(value) is not None
            # Onigmo's full case folding (ß ~ ss) may match more: a superset is safe.
            if verdict != expected and not (verdict and pattern.startswith("(?i)")):
                disagreements.append((pattern, onigmo, value, expected, verdict))
    assert not disagreements


@pytest.mark.usefixtures("fluent_operator_crds")
@pytest.mark.parametrize("example", ["http-5xx-rate", "avg-rtt"])
def test_route_objects_are_stored_as_built_by_fluent_operator_crds(
    kube: client.ApiClient, unique_name: str, example: str
) -> None:
    """The real API server validates the ClusterFilter against fluent-operator's own CRD and
    prunes nothing of it (a field unknown to the schema would vanish from the stored object)."""
    spec = example_spec(example)
    filters = [*spec["source"].get("filters", []), {"field": "path", "equals": 'a #{b} "c"\n'}]
    body = build_cluster_filter(PipelineRef("route", unique_name, "uid", 1),
                                with_filters(spec, filters))  # fmt: skip
    assert body is not None
    api = client.CustomObjectsApi(kube)
    stored = cast(
        dict[str, Any],
        api.create_cluster_custom_object("fluentd.fluent.io", "v1alpha1", "clusterfilters", body),
    )
    try:
        assert stored["spec"] == body["spec"]
    finally:
        api.delete_cluster_custom_object("fluentd.fluent.io", "v1alpha1", "clusterfilters",
                                         body["metadata"]["name"])  # fmt: skip
