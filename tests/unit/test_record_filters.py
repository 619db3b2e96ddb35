"""Source filters: RE2 semantics, linear time on hostile values, clear errors for bad patterns."""

from __future__ import annotations

import time
from typing import Any

import pytest

from metricpipe_consumers.filters import (
    CACHE_SIZE,
    RegexFilter,
    SpecError,
    compile_filters,
    select,
)
from metricpipe_consumers.records import Filtered, Parsed, RecordParser
from metricpipe_contract.model import MetricPipelineSpec, RecordFilter


def spec_with(*filters: dict[str, Any]) -> MetricPipelineSpec:
    return MetricPipelineSpec.model_validate(
        {"source": {"tag": "a", "filters": list(filters)},
         "metric": {"aggregation": "count", "eventTime": {"format": "epoch_millis"}}}
    )  # fmt: skip


def passes(record: dict[str, Any], *filters: dict[str, Any]) -> bool:
    return select(record, compile_filters([RecordFilter.model_validate(f) for f in filters]))


@pytest.mark.parametrize(
    ("record", "spec", "selected"),
    [
        ({"s": "503"}, {"field": "s", "matches": "^5"}, True),
        ({"s": 503}, {"field": "s", "matches": "^5"}, True),  # a number matches as its text
        ({"s": "200"}, {"field": "s", "matches": "^5"}, False),
        ({"s": "x500"}, {"field": "s", "matches": "5"}, True),  # search, not fullmatch
        ({}, {"field": "s", "matches": "^"}, False),  # a missing field fails any filter
        ({"h": {"s": "GET"}}, {"field": "h.s", "equals": "GET"}, True),
        ({"h": {"s": "GET"}}, {"field": "h.s", "equals": "get"}, False),
        ({"h": "x"}, {"field": "h.s", "exists": True}, False),
        ({"h": {"s": 0}}, {"field": "h.s", "exists": True}, True),
        ({"a": "Bot/1"}, {"field": "a", "matches": "(?i)bot\\b"}, True),
        ({"a": "é"}, {"field": "a", "matches": "^.$"}, True),  # one character, two bytes
        ({"a": "x\ny"}, {"field": "a", "matches": "^y"}, False),  # RE2: ^ is text start
    ],
)
def test_filter_semantics(record: dict[str, Any], spec: dict[str, Any], selected: bool) -> None:
    assert passes(record, spec) is selected


@pytest.mark.parametrize(
    ("pattern", "value", "found"),
    [("^5", "503", True), ("^5", "x5", False), ("b+$", "abbb", True), ("(?i)BOT", "a bot", True),
     ("^é$", "é", True), ("^.$", "é", True), ("", "", True), ("a|b", "c", False),
     ("(a+)+$", "a" * 50 + "!", False)],
)  # fmt: skip
def test_the_direct_call_agrees_with_the_public_one(pattern: str, value: str, found: bool) -> None:
    """RegexFilter calls the compiled RE2 directly when google-re2 exposes it, else `search`."""
    direct, public = RegexFilter(pattern), RegexFilter(pattern)
    public._native = None  # the public path
    data = value.encode()
    assert direct.search(data) is found
    assert public.search(data) is found


def test_the_cache_turns_itself_off_for_values_that_never_repeat() -> None:
    matcher = RegexFilter("^1")
    verdicts = [matcher(str(n)) for n in range(3 * CACHE_SIZE)]  # all distinct
    assert verdicts == [str(n).startswith("1") for n in range(3 * CACHE_SIZE)]
    assert not matcher._caching
    assert matcher._seen == {}
    repeating = RegexFilter("^1")
    for _ in range(3):
        assert [repeating(str(n % 100)) for n in range(2 * CACHE_SIZE)].count(True) > 0
    assert repeating._caching


def test_cached_verdicts_equal_fresh_ones() -> None:
    filters = compile_filters([RecordFilter.model_validate({"field": "s", "matches": "^5"})])
    for _ in range(3):  # the second and third rounds are answered from the cache
        assert [select({"s": s}, filters) for s in ("500", "200", "5", "")] == [
            True, False, True, False,
        ]  # fmt: skip


@pytest.mark.parametrize(
    ("pattern", "keeps_aaaa"),
    [("^(a+)+$", True), ("^(a|a)*$", True), ("^(a*)*b$", False), ("(x+x+)+y", False),
     ("^(\\w+\\s?)*$", True)],
)  # fmt: skip
def test_backtracking_patterns_cost_linear_time(pattern: str, keeps_aaaa: bool) -> None:
    """On Python's `re` these take exponential time (^(a+)+$: 2 s at 24 characters); RE2
    answers for a 100,000-character value in about a millisecond (bound: a loaded machine)."""
    parser = RecordParser(spec_with({"field": "v", "matches": pattern}))
    for length in (35, 100_000):
        raw = b'{"time": 1000, "v": "' + b"a" * length + b'!"}'
        started = time.perf_counter()
        assert parser.parse(raw, 10_000) == Filtered(1000)
        assert time.perf_counter() - started < 0.5
    kept = parser.parse(b'{"time": 1000, "v": "aaaa"}', 10_000)
    assert kept == (Parsed(1000, (), None) if keeps_aaaa else Filtered(1000))


@pytest.mark.parametrize(
    ("pattern", "says"),
    [
        ("(", "missing )"),
        ("(a)\\1", "invalid escape sequence"),  # RE2 has no backreferences
        ("a(?=b)", "invalid perl operator"),  # nor look-arounds
        ("a{2000}", "invalid repetition size"),  # RE2 caps counted repetition at 1000
    ],
)
def test_a_pattern_re2_cannot_compile_is_a_spec_error(pattern: str, says: str) -> None:
    spec = spec_with({"field": "status", "equals": "1"}, {"field": "path", "matches": pattern})
    with pytest.raises(SpecError) as raised:
        RecordParser(spec)
    message = str(raised.value)
    assert "spec.source.filters[1].matches" in message
    assert "field path" in message
    assert says in message
