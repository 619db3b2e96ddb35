"""Record parsing: JSON and Apache combined lines, and every dead-letter reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from metricpipe_consumers.records import Parsed, RecordParser, Rejected, parse_event_time
from metricpipe_operator.api.model import MetricPipelineSpec

RTT = MetricPipelineSpec.model_validate(
    {"source": {"tag": "a"}, "metric": {"aggregation": "avg", "valueField": "rtt",
                                        "groupBy": ["probe"]}}
)  # fmt: skip
APACHE = MetricPipelineSpec.model_validate(
    {
        "source": {"tag": "w", "format": "apache_combined",
                   "filters": [{"field": "status", "matches": "^5"}]},
        "metric": {"aggregation": "rate", "groupBy": ["status"],
                   "eventTime": {"field": "time", "format": "clf"}},
    }
)  # fmt: skip
LINE = (
    '83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /images/kibana.png HTTP/1.1" 500 203023 '
    '"http://semicomplete.com/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1)"'
)


def j(record: dict[str, Any]) -> bytes:
    return json.dumps(record).encode()


def test_json_record() -> None:
    parsed = RecordParser(RTT).parse(j({"time": "2016-11-03T14:47:59Z", "probe": 7, "rtt": 23.5}))
    assert parsed == Parsed(1478184479000, ("7",), 23.5)


def test_apache_line_and_filters() -> None:
    parser = RecordParser(APACHE)
    assert parser.parse(LINE.encode()) == Parsed(1431857103000, ("500",), None)
    assert parser.parse(LINE.replace(" 500 ", " 200 ").encode()) is None  # filtered, not dead
    wrapped = j({"message": LINE, "stream": "stdout"})
    assert parser.parse(wrapped) == Parsed(1431857103000, ("500",), None)


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
        (RTT, j({"time": "2016-11-03T14:47:59Z", "probe": 1, "rtt": "fast"}), "bad_type"),
        (RTT, j({"time": "2016-11-03T14:47:59Z", "probe": 1, "rtt": True}), "bad_type"),
        (RTT, j({"time": "2016-11-03T14:47:59Z", "probe": {"id": 1}, "rtt": 1}), "bad_type"),
        (RTT, j({"time": "yesterday", "probe": 1, "rtt": 1}), "bad_time"),
        (RTT, j({"time": 12, "probe": 1, "rtt": 1}), "bad_time"),
        (APACHE, b"GET / HTTP/1.1 500", "malformed_line"),
        (APACHE, LINE.replace("17/May/2015", "17/Mai/2015").encode(), "bad_time"),
        (RTT, None, "malformed_json"),
    ],
)
def test_dead_letter_reasons(spec: MetricPipelineSpec, raw: bytes | None, reason: str) -> None:
    result = RecordParser(spec).parse(raw)
    assert isinstance(result, Rejected)
    assert result.reason == reason


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
