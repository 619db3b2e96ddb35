"""The Fluentd route (pure builders): what it filters on, and that both renderings agree.

What the route's regexps select is checked against the consumer with Ruby's own engine in
tests/integration/test_route_selection.py; these tables pin the plan and the text."""

from __future__ import annotations

from typing import Any

import pytest

from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef
from metricpipe_operator.reconcile.route import (
    build_cluster_filter,
    build_fluent_conf,
    build_route_plan,
)
from metricpipe_operator.reconcile.route_regex import UntranslatableError, translate_re2

REF = PipelineRef("team-a", "http-5xx", "uid-1", 3)


def spec_of(filters: list[dict[str, Any]], fmt: str = "json") -> MetricPipelineSpec:
    return MetricPipelineSpec.model_validate(
        {
            "source": {"tag": "web.**", "format": fmt, "filters": filters},
            "metric": {"aggregation": "count"},
        }
    )


@pytest.mark.parametrize(
    ("re2", "onigmo"),
    [
        ("^5[0-9][0-9]$", r"(?a)\A5[0-9][0-9]\z"),  # ^ $ are text anchors in RE2
        (r"\d+\s\w", r"(?a)[0-9]+[\t\n\f\r\x20][0-9A-Za-z_]"),  # ASCII, \s without \v
        (r"[^\S]", r"(?a)[^[^\t\n\f\r\x20]]"),
        (r"(?P<code>5..)", r"(?a)(?:5..)"),
        (r"(?i)bot\b", r"(?a)(?i)bot\b"),
        (r"(?s:a.b)", r"(?a)(?m:a.b)"),  # RE2's s is Onigmo's m
        (r"\pL\p{Greek}\PN", r"(?a)\p{L}\p{Greek}\P{N}"),
        (r"\x41\x{1F600}\101", r"(?a)\u{41}\u{1f600}\u{41}"),
        (r"\Qa.b#\E", r"(?a)a\.b\#"),
        ("a{,2}b{2,}", r"(?a)a\{\,2\}b{2,}"),  # {,2} is a literal in RE2, a repeat in Onigmo
        ("[]a&&[:alpha:]]", r"(?a)[\]a\&\&[:alpha:]]"),  # Onigmo nests and intersects classes
        ("a #b", r"(?a)a\u{20}\#b"),  # fluent.conf would read ' #b' as a comment
        ("é\n", r"(?a)\u{e9}\u{a}"),  # a literal line break: kept off the config line
        ("(?:GET|POST) /", r"(?a)(?:GET|POST)\u{20}\/"),
    ],
)
def test_re2_is_translated_to_an_equivalent_onigmo_source(re2: str, onigmo: str) -> None:
    assert translate_re2(re2) == onigmo


@pytest.mark.parametrize(
    ("re2", "why"),
    [
        ("^(a+)+$", "repeated group"),
        ("(a|aa)*b", "repeated group"),
        (".*a.*b.*c", "unbounded repeats"),
        ("(?m)^a$", "multi-line"),
        ("(?U)a+", "ungreedy"),
        ("a(?i)b", "middle"),
        (r"\C", "no exact Onigmo twin"),
        (r"\1", "backreference"),
    ],
)
def test_patterns_without_a_safe_twin_are_left_to_the_consumer(re2: str, why: str) -> None:
    with pytest.raises(UntranslatableError, match=why):
        translate_re2(re2)
    plan = build_route_plan(spec_of([{"field": "path", "matches": re2}]))
    assert plan.rules == ()
    assert len(plan.consumer_only) == 1
    assert build_cluster_filter(REF, spec_of([{"field": "path", "matches": re2}])) is None


def test_apache_route_parses_the_line_then_greps_the_parsed_fields() -> None:
    spec = spec_of([{"field": "status", "matches": "^5"}, {"field": "path", "equals": "/a b"}],
                   fmt="apache_combined")  # fmt: skip
    cluster_filter = build_cluster_filter(REF, spec)
    assert cluster_filter is not None
    steps = cluster_filter["spec"]["filters"]
    kinds = [next(k for k in step if k != "tag") for step in steps]
    assert kinds == ["parser", "parser", "grep", "grep", "recordTransformer"]
    assert [s["parser"]["keyName"] for s in steps[:2]] == ["log", "message"]  # message wins
    for step in steps[:2]:
        parser = step["parser"]
        assert parser["reserveData"] is True  # a record whose key does not parse stays whole
        assert parser["emitInvalidRecordToError"] is False
        assert parser["parse"]["type"] == "regexp"
        assert "(?<metricpipe_status>" in parser["parse"]["expression"]
        assert "(?<time>" not in parser["parse"]["expression"]  # would be read as event time
        assert parser["parse"]["types"] == "metricpipe_status:integer,metricpipe_bytes:integer"
    assert steps[2]["grep"] == {"or": [
        {"regexp": {"key": "metricpipe_host", "pattern": r"/\A\z/"}},  # unparsed lines pass
        {"regexp": {"key": "metricpipe_status", "pattern": r"/(?a)\A5/"}},
    ]}  # fmt: skip
    assert steps[3]["grep"]["or"][1]["regexp"] == {
        "key": "metricpipe_path", "pattern": r"/\A\/a\u{20}b\z/"}  # fmt: skip
    removed = steps[4]["recordTransformer"]["removeKeys"].split(",")
    assert "metricpipe_status" in removed
    assert "metricpipe_agent" in removed


def test_apache_filter_on_host_marks_unparsed_lines_by_another_field() -> None:
    spec = spec_of([{"field": "host", "equals": "a"}], fmt="apache_combined")
    (rule,) = build_route_plan(spec).rules
    assert (rule.key, rule.unparsed_key) == ("metricpipe_host", "metricpipe_status")


def test_json_route_greps_nested_fields_one_filter_per_grep() -> None:
    spec = spec_of([{"field": "http.status", "matches": "^5"},
                    {"field": "http.status", "matches": "3$"}])  # fmt: skip
    cluster_filter = build_cluster_filter(REF, spec)
    assert cluster_filter is not None
    # Fluentd refuses a grep that names one key twice: each filter is a grep of its own.
    assert [s["grep"] for s in cluster_filter["spec"]["filters"]] == [
        {"regexp": [{"key": "$.http.status", "pattern": r"/(?a)\A5/"}]},
        {"regexp": [{"key": "$.http.status", "pattern": r"/(?a)3\z/"}]},
    ]


@pytest.mark.parametrize("fmt", ["json", "apache_combined"])
def test_exists_and_unknown_fields_are_left_to_the_consumer(fmt: str) -> None:
    # Fluentd's grep reads an absent key as "", the same as a present empty value.
    filters = [{"field": "agent", "exists": True}]
    if fmt == "apache_combined":
        filters.append({"field": "kubernetes.pod", "equals": "x"})
    plan = build_route_plan(spec_of(filters, fmt=fmt))
    assert plan.rules == ()
    assert len(plan.consumer_only) == len(filters)
    conf = build_fluent_conf(REF, spec_of(filters, fmt=fmt), "topic", "kafka:9092")
    assert conf.count("# filter left to the consumer: ") == len(filters)
    assert "@type grep" not in conf


HOSTILE = ["#{`id`}", "a #b", '"quoted', "line\nbreak", "tab\there", "é ü", "\\", "/", "'"]


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize("fmt", ["json", "apache_combined"])
def test_patterns_survive_unquoted_fluentd_config_lines(value: str, fmt: str) -> None:
    filters = [{"field": "path", "equals": value}, {"field": "path", "matches": f"x{value}"}]
    spec = spec_of(filters, fmt=fmt)
    conf = build_fluent_conf(REF, spec, "topic", "kafka:9092")
    for line in conf.splitlines():
        if line.strip().startswith(("pattern ", "expression ")):
            text = line.split(None, 1)[1]
            # ASCII, one line, no comment (' #'), no embedded Ruby ('#{'), no leading quote,
            # slashes at both ends: Fluentd and fluent-operator both pass it through verbatim.
            assert text.isascii()
            assert "#" not in text.replace("\\#", "")
            assert text.startswith("/")
            assert text.endswith("/")
    assert conf.count("pattern ") == len(build_route_plan(spec).rules) * (
        2 if fmt == "apache_combined" else 1
    )


def parse_conf_filters(conf: str) -> list[dict[str, Any]]:
    """The <filter> directives of a fluent.conf, as nested dicts of their parameters."""
    filters: list[dict[str, Any]] = []
    stack: list[dict[str, Any]] = []
    for raw in conf.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("<filter "):
            stack = [{"@tag": line[len("<filter ") : -1], "sections": []}]
        elif line.startswith("</") and stack:
            done = stack.pop()
            if stack:
                stack[-1]["sections"].append(done)
            elif line == "</filter>":
                filters.append(done)
        elif line.startswith("<") and stack:
            stack.append({"@section": line[1:-1], "sections": []})
        elif stack:
            key, value = line.split(" ", 1)
            stack[-1][key] = value
    return filters


def as_conf(step: dict[str, Any]) -> dict[str, Any]:
    """A fluent-operator filter item as the fluent.conf directive fluent-operator renders."""

    def regexp(rule: dict[str, str]) -> dict[str, Any]:
        return {"@section": "regexp", "key": rule["key"], "pattern": rule["pattern"],
                "sections": []}  # fmt: skip

    base = {"@tag": step["tag"]}
    if "parser" in step:
        parser, parse = step["parser"], step["parser"]["parse"]
        return {**base, "@type": "parser", "key_name": parser["keyName"],
                "reserve_data": "true", "reserve_time": "true",
                "emit_invalid_record_to_error": "false",
                "sections": [{"@section": "parse", "@type": parse["type"],
                              "expression": parse["expression"], "types": parse["types"],
                              "sections": []}]}  # fmt: skip
    if "grep" in step:
        sections = [regexp(rule) for rule in step["grep"].get("regexp", [])]
        sections += [{"@section": "or", "sections": [regexp(o["regexp"])]}
                     for o in step["grep"].get("or", [])]  # fmt: skip
        return {**base, "@type": "grep", "sections": sections}
    removed = step["recordTransformer"]["removeKeys"]
    return {**base, "@type": "record_transformer", "remove_keys": removed, "sections": []}


@pytest.mark.parametrize(
    ("filters", "fmt"),
    [
        ([{"field": "status", "matches": "^5"}], "apache_combined"),
        ([{"field": "status", "matches": "^5"}, {"field": "agent", "exists": True},
          {"field": "method", "equals": "GET"}], "apache_combined"),
        ([{"field": "http.method", "equals": "GET"}, {"field": "rtt", "matches": "^[0-9.]+$"}],
         "json"),
        ([], "json"),
    ],
)  # fmt: skip
def test_fluent_conf_and_cluster_filter_are_the_same_route(
    filters: list[dict[str, Any]], fmt: str
) -> None:
    spec = spec_of(filters, fmt=fmt)
    conf = build_fluent_conf(REF, spec, "topic", "kafka:9092")
    cluster_filter = build_cluster_filter(REF, spec)
    steps = cluster_filter["spec"]["filters"] if cluster_filter else []
    assert parse_conf_filters(conf) == [as_conf(step) for step in steps]
    assert all(step["tag"] == "web.**" for step in steps)


def test_fluent_conf_sends_to_the_topic() -> None:
    conf = build_fluent_conf(REF, spec_of([]), "metricpipe.team-a.http-5xx", "kafka:9092")
    assert "@type kafka2" in conf
    assert "default_topic metricpipe.team-a.http-5xx" in conf
    assert "<match web.**>" in conf
    assert (conf.count("<label"), conf.count("</label>")) == (1, 1)
