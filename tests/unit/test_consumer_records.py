"""Record parsing: JSON and Apache combined lines, every dead-letter reason, the future bound,
repeated keys, group-key limits and the `Filtered` marker."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from metricpipe_consumers.records import (
    Filtered,
    Parsed,
    RecordLimits,
    RecordParser,
    Rejected,
    SpecError,
    decode_json_object,
    may_repeat_a_key,
    parse_event_time,
)
from metricpipe_contract.model import MetricPipelineSpec, RecordFilter

RTT = MetricPipelineSpec.model_validate(
    {"source": {"tag": "a"}, "metric": {"aggregation": "avg", "valueField": "rtt",
                                        "groupBy": ["probe"]}}
)  # fmt: skip
NESTED = MetricPipelineSpec.model_validate(
    {"source": {"tag": "a"}, "metric": {"aggregation": "avg", "valueField": "m.rtt",
                                        "groupBy": ["m.probe"], "eventTime": {"field": "m.t"}}}
)  # fmt: skip
APACHE = MetricPipelineSpec.model_validate(
    {
        "source": {"tag": "w", "format": "apache_combined",
                   "filters": [{"field": "status", "matches": "^5"}]},
        "metric": {"aggregation": "rate", "groupBy": ["status"],
                   "eventTime": {"field": "time", "format": "clf"}},
    }
)  # fmt: skip
SPARSE = MetricPipelineSpec.model_validate(
    {"source": {"tag": "a", "filters": [{"field": "level", "equals": "error"}]},
     "metric": {"aggregation": "count", "eventTime": {"field": "ts", "format": "epoch_millis"}}}
)  # fmt: skip
LINE = (
    '83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /images/kibana.png HTTP/1.1" 500 203023 '
    '"http://semicomplete.com/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1)"'
)
T0 = 1478184479000  # 2016-11-03T14:47:59Z
NOW = T0 + 3_600_000  # the records below are judged an hour after T0 unless said otherwise


def j(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()


def rtt(**fields: Any) -> bytes:
    return j({"time": "2016-11-03T14:47:59Z", "probe": 7, "rtt": 23.5, **fields})


def test_json_record() -> None:
    assert RecordParser(RTT).parse(rtt(), NOW) == Parsed(T0, ("7",), 23.5)


def test_apache_line_and_filters() -> None:
    parser = RecordParser(APACHE)
    apache_ms = 1431857103000
    assert parser.parse(LINE.encode(), apache_ms) == Parsed(apache_ms, ("500",), None)
    # filtered, not dead: with the event time it carries
    assert parser.parse(LINE.replace(" 500 ", " 200 ").encode(), apache_ms) == Filtered(apache_ms)
    wrapped = j({"message": LINE, "stream": "stdout"})
    assert parser.parse(wrapped, apache_ms) == Parsed(apache_ms, ("500",), None)


SHARE = MetricPipelineSpec.model_validate(
    {"source": {"tag": "w", "format": "apache_combined",
                "filters": [{"field": "method", "equals": "GET"}]},
     "metric": {"aggregation": "ratio", "numerator": [{"field": "status", "matches": "^5"},
                                                     {"field": "bytes", "exists": True}],
                "eventTime": {"field": "time", "format": "clf"}}}
)  # fmt: skip


def test_a_ratio_counts_every_kept_record_and_marks_the_numerator() -> None:
    """Value 1.0 for a record passing every numerator filter, 0.0 for one the source filters
    keep that does not; what the source filters remove is not in the denominator."""
    parser = RecordParser(SHARE)
    at = 1431857103000
    assert parser.parse(LINE.encode(), at) == Parsed(at, (), 1.0)
    assert parser.parse(LINE.replace(" 500 ", " 200 ").encode(), at) == Parsed(at, (), 0.0)
    assert parser.parse(LINE.replace(" 500 ", " 503 ").encode(), at) == Parsed(at, (), 1.0)
    assert parser.parse(LINE.replace('"GET', '"POST').encode(), at) == Filtered(at)
    rejected = parser.parse(b"GET / 500", at)
    assert isinstance(rejected, Rejected)
    assert rejected.reason == "malformed_line"


def test_a_numerator_pattern_re2_refuses_names_its_place() -> None:
    spec = SHARE.model_copy(update={"metric": SHARE.metric.model_copy(
        update={"numerator": [RecordFilter(field="path", matches="(a)\\1")]})})  # fmt: skip
    with pytest.raises(SpecError, match=r"spec\.metric\.numerator\[0\]\.matches"):
        RecordParser(spec)


@pytest.mark.parametrize(
    ("spec", "raw", "reason"),
    [
        (RTT, b'{"time": "2016-11-03T14:47:59Z", "probe": 1, ', "malformed_json"),
        (RTT, b"[1, 2]", "malformed_json"),
        (RTT, b"\xff\xfe not utf-8", "not_utf8"),
        (RTT, b"{" + b" " * 2_000_000 + b"}", "oversize"),
        (RTT, j({"probe": 1, "rtt": 2.0}), "missing_field"),
        (RTT, j({"time": "2016-11-03T14:47:59Z", "rtt": 2.0}), "missing_field"),
        (RTT, j({"time": "2016-11-03T14:47:59Z", "probe": 1}), "missing_field"),
        (RTT, rtt(rtt="fast"), "bad_type"),
        (RTT, rtt(rtt=True), "bad_type"),
        (RTT, rtt(probe={"id": 1}), "bad_type"),
        (RTT, rtt(probe="a\x1fb"), "bad_type"),  # the engine's group separator
        (RTT, rtt(time="yesterday"), "bad_time"),
        (RTT, rtt(time=12), "bad_time"),
        (RTT, rtt(time="3000-01-01T00:00:00Z"), "future"),
        (RTT, rtt(probe="p" * 513), "oversize_key"),
        (RTT, b'{"time": "2016-11-03T14:47:59Z", "probe": 1, "rtt": 1, "rtt": 2}', "ambiguous"),
        (APACHE, b"GET / HTTP/1.1 500", "malformed_line"),
        (APACHE, LINE.replace("17/May/2015", "17/Mai/2015").encode(), "bad_time"),
        (APACHE, LINE.replace("2015:", "3015:", 1).encode(), "future"),
        (APACHE, b'{"message": "x", "message": ' + json.dumps(LINE).encode() + b"}", "ambiguous"),
        (RTT, None, "malformed_json"),
    ],
)
def test_dead_letter_reasons(spec: MetricPipelineSpec, raw: bytes | None, reason: str) -> None:
    result = RecordParser(spec).parse(raw, NOW)
    assert isinstance(result, Rejected), result
    assert result.reason == reason


@pytest.mark.parametrize(
    ("event_ms", "now_ms", "skew_ms", "future"),
    [
        (NOW + 300_000, NOW, 300_000, False),  # exactly the skew ahead: accepted
        (NOW + 300_001, NOW, 300_000, True),
        (NOW + 1, NOW, 0, True),
        (NOW, NOW, 0, False),
        (NOW - 86_400_000 * 365, NOW, 0, False),  # the past is never `future`
        (NOW + 59_000, NOW, 60_000, False),
    ],
)
def test_future_bound(event_ms: int, now_ms: int, skew_ms: int, future: bool) -> None:
    epoch = MetricPipelineSpec.model_validate(
        {"source": {"tag": "a"}, "metric": {"aggregation": "avg", "valueField": "rtt",
         "groupBy": ["probe"], "eventTime": {"format": "epoch_millis"}}}
    )  # fmt: skip
    parser = RecordParser(epoch, limits=RecordLimits(max_future_skew_ms=skew_ms))
    result = parser.parse(j({"time": event_ms, "probe": 1, "rtt": 1.0}), now_ms)
    if future:
        assert isinstance(result, Rejected)
        assert result.reason == "future"
    else:
        assert result == Parsed(event_ms, ("1",), 1.0)


def test_the_clock_moves_a_cached_time_out_of_the_future() -> None:
    """The event-time cache holds text -> ms, never the verdict: judged later, it counts."""
    parser = RecordParser(RTT, limits=RecordLimits(max_future_skew_ms=0))
    assert isinstance(parser.parse(rtt(), T0 - 1), Rejected)
    assert parser.parse(rtt(), T0) == Parsed(T0, ("7",), 23.5)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (j({"ts": T0, "level": "info"}), Filtered(T0)),  # read, not counted: time moves on
        (j({"ts": "soon", "level": "info"}), Filtered(None)),  # unreadable time: no move
        (j({"level": "info"}), Filtered(None)),
        (j({"ts": NOW + 301_000, "level": "info"}), Filtered(None)),  # future: no move
        (j({"ts": T0}), Filtered(T0)),  # the filter's field is missing: filtered
        (j({"ts": T0, "level": "error"}), Parsed(T0, (), None)),
        (j({"ts": NOW + 301_000, "level": "error"}), Rejected("future", "")),
        (b'{"ts": 1, "level": "info", "level": "error"}', Rejected("ambiguous", "")),
    ],
)
def test_filtered_records_carry_their_event_time(raw: bytes, expected: object) -> None:
    result = RecordParser(SPARSE).parse(raw, NOW)
    if isinstance(expected, Rejected):
        assert isinstance(result, Rejected)
        assert result.reason == expected.reason
    else:
        assert result == expected


@pytest.mark.parametrize(
    ("value", "limit", "accepted"),
    [
        ("p" * 512, 512, True),
        ("p" * 513, 512, False),
        ("é" * 256, 512, True),  # 2 bytes each: 512 bytes
        ("é" * 257, 512, False),  # 257 characters, 514 bytes
        ("€" * 170 + "pp", 512, True),  # 3 bytes each: 512 bytes
        ("€" * 171, 512, False),
        ("😀" * 128, 512, True),  # 4 bytes each
        ("😀" * 128 + "p", 512, False),
        ("", 512, True),
        ("pp", 1, False),
        (12345, 4, False),  # a number counts by its text
        (1234, 4, True),
    ],
)
def test_group_key_limit_counts_utf8_bytes(value: Any, limit: int, accepted: bool) -> None:
    for spec, raw in (
        (RTT, rtt(probe=value)),
        (NESTED, j({"m": {"t": "2016-11-03T14:47:59Z", "probe": value, "rtt": 1}})),
    ):
        result = RecordParser(spec, limits=RecordLimits(max_group_key_bytes=limit)).parse(raw, NOW)
        if accepted:
            assert isinstance(result, Parsed)
            assert result.group == (str(value),)
        else:
            assert isinstance(result, Rejected)
            assert result.reason == "oversize_key"
            assert "METRICPIPE_MAX_GROUP_KEY_BYTES" in result.detail


# --- repeated keys ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "ambiguous"),
    [
        (b'{"a": 1, "a": 1}', True),  # the same value twice is still two claims
        (b'{"a": 1, "b": {"c": 1, "c": 2}}', True),  # nested
        (b'{"a": [{"c": 1}, {"c": 2, "d": 0, "c": 3}]}', True),  # in an array
        (b'{"a": 1, "\\u0061": 2}', True),  # an escape that spells the same key
        (b'{"a\\u003ab": 1, "a:b": 2}', True),  # an escaped colon (the slow path)
        (b'{"a" : 1 ,\n  "a"\t:\t2}', True),  # whitespace around the colon
        (b'{"t": "10:00:00", "v": {"w": "x:y"}, "t": "10:00:01"}', True),  # colons in values
        (b'{"a": 1, "a ": 2, " a": 3, "A": 4}', False),  # different keys
        (b'{"a": {"a": {"a": 1}}}', False),  # one key per object
        (b'{"a": [{"b": 1}, {"b": 2}]}', False),  # one key per object, twice
        (b'{"t": "10:00:00", "u": "http://x:80/", "\\u003a": ":"}', False),
        (b'{"a\\"b": 1, "a\\\\b": 2}', False),  # escaped quote and backslash
        (b'{"\\u00e9": 1, "\xc3\xa9": 2}', True),  # "é" escaped and in UTF-8
        (b"{}", False),
    ],
)
def test_repeated_keys_are_ambiguous(raw: bytes, ambiguous: bool) -> None:
    result = decode_json_object(raw)
    if ambiguous:
        assert isinstance(result, Rejected)
        assert result.reason == "ambiguous"
    else:
        assert result == json.loads(raw)


def _random_json(rng: random.Random, depth: int = 0) -> str:
    """JSON text of a random object, whose keys may repeat (the oracle finds out)."""
    keys = ["a", "b", "t", "a:b", "é", "\\u0061", "\\u003a", "x y", '\\"', ":"]
    members = []
    for _ in range(rng.randint(0, 5)):
        roll = rng.random()
        if roll < 0.2 and depth < 3:
            value = _random_json(rng, depth + 1)
        elif roll < 0.3 and depth < 3:
            value = "[" + ", ".join(_random_json(rng, depth + 1) for _ in range(2)) + "]"
        elif roll < 0.6:
            value = json.dumps(rng.choice(["10:00:00", "x", ":", "a:b:c", "é:"]))
        else:
            value = str(rng.randint(-5, 5))
        members.append(
            f'"{rng.choice(keys)}"{rng.choice(["", " "])}:{rng.choice(["", " "])}{value}'
        )
    return "{" + ", ".join(members) + "}"


def test_the_cheap_check_never_misses_a_repeated_key() -> None:
    """2,000 random objects: the verdict equals an exact check written here (Python's json
    with a pairs hook), and `may_repeat_a_key` is true for every object with a repeat."""

    def has_repeat(text: str) -> bool:
        found = False

        def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
            nonlocal found
            found = found or len({k for k, _ in items}) < len(items)
            return dict(items)

        json.loads(text, object_pairs_hook=pairs)
        return found

    rng = random.Random(16)
    repeats = 0
    for _ in range(2000):
        text = _random_json(rng)
        raw = text.encode()
        expected = has_repeat(text)
        repeats += expected
        if expected:
            assert may_repeat_a_key(raw, json.loads(text)), text
        result = decode_json_object(raw)
        assert isinstance(result, Rejected) == expected, text
    assert 200 < repeats < 1800  # both kinds were tried


def test_the_cheap_check_passes_ordinary_records() -> None:
    """Records without repeats rarely take the slow path (none of these do)."""
    for raw in (rtt(), j({"ts": 1, "level": "info"}), j({"message": LINE, "stream": "stdout"}),
                j({"a": {"b": [1, 2, {"c": "d:e"}]}, "url": "http://h:1/p?q=1"})):  # fmt: skip
        assert not may_repeat_a_key(raw, json.loads(raw))


@pytest.mark.parametrize(
    ("when", "fmt", "expected"),
    [
        ("2016-11-03T14:47:59Z", "rfc3339", 1478184479000),
        ("2016-11-03T15:47:59+01:00", "rfc3339", 1478184479000),
        (1478184479, "epoch_seconds", 1478184479000),
        ("1478184479123", "epoch_millis", 1478184479123),
        ("03/Nov/2016:14:47:59 +0000", "clf", 1478184479000),
    ],
)
def test_event_time_formats(when: Any, fmt: str, expected: int) -> None:
    assert parse_event_time(when, fmt) == expected
