"""The tests' oracle (tests/oracle.py), checked against a second computation that shares
nothing with it (pandas and numpy over the same generated records), against hand-written
verdicts for adversarial records, and then used as the expected values for the consumer's own
record semantics (records.py via reference.py) on the same records."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
import pandas as pd
import pytest

import oracle
from metricpipe_consumers.reference import compute_reference
from metricpipe_contract.model import Interpolation, MetricPipelineSpec

MINUTE = 60_000
NOW = 1_800_000_000_000  # every generated event time is far before it
OFFSETS = (timedelta(0), timedelta(hours=5, minutes=30), timedelta(hours=-8), timedelta(hours=14))
GROUPS = ("a", "ü-probe", "", "日本", "b c", "A", "Ü-probe")  # case matters


def rfc3339(ms: int, offset: timedelta, fraction: bool) -> str:
    local = datetime.fromtimestamp(ms / 1000, timezone(offset))
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    if fraction:
        text += f".{ms % 1000:03d}"
    if offset == timedelta(0):
        return text + "Z"
    sign = "+" if offset >= timedelta(0) else "-"
    hours, rest = divmod(abs(int(offset.total_seconds())) // 60, 60)
    return f"{text}{sign}{hours:02d}:{rest:02d}"


def generated(seed: int, n: int) -> list[tuple[int, str, str, float]]:
    """(event ms, time text, group, value) in event-time order; some exactly on a window's
    first millisecond, values with zeros and negatives."""
    rng = random.Random(seed)
    base = 1_700_000_000_000 // MINUTE * MINUTE
    rows = []
    for i in range(n):
        ms = base + i * 7 * MINUTE // n if i % 17 else base + (i % 7) * MINUTE
        fraction = i % 3 == 0
        ms = ms if fraction else ms - ms % 1000
        value = rng.choice(
            [0.0, -rng.uniform(0, 50), rng.uniform(0, 500), float(rng.randint(-9, 9))]
        )
        when = rfc3339(ms, OFFSETS[i % len(OFFSETS)], fraction)
        rows.append((ms, when, GROUPS[i % len(GROUPS)], value))
    return sorted(rows)


NEGATIVE = [{"field": "v", "matches": "^-"}]  # a ratio's numerator: the negative values


def spec_dict(aggregation: str, **metric: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"valueField": "v"}
    if aggregation in ("count", "rate"):
        fields = {}
    elif aggregation == "ratio":
        fields = {"numerator": NEGATIVE}
    return {"source": {"tag": "t"},
            "metric": {"aggregation": aggregation, "window": "1m", "allowedLateness": "50s",
                       "groupBy": ["g"], **fields, **metric}}  # fmt: skip


def as_records(rows: list[tuple[int, str, str, float]]) -> list[oracle.Record]:
    return [oracle.Record(0, json.dumps({"time": t, "g": g, "v": v}).encode())
            for _, t, g, v in rows]  # fmt: skip


@pytest.mark.parametrize("aggregation", ["count", "sum", "avg", "min", "max", "rate",
                                         "ratio", "p50", "p90", "p95", "p99"])  # fmt: skip
def test_the_oracle_equals_pandas_and_numpy(aggregation: str) -> None:
    rows = generated(seed=3, n=1_500)
    spec = spec_dict(aggregation)
    outcome = oracle.compute(spec, as_records(rows), NOW)
    assert not outcome.dead_letters
    assert outcome.filtered == 0
    frame = pd.DataFrame(rows, columns=["ms", "time", "g", "v"])
    parsed = pd.to_datetime(frame["time"], utc=True, format="ISO8601")
    frame["start"] = (parsed.astype("int64") // 1_000_000) // MINUTE * MINUTE
    assert (frame["start"] == frame["ms"] // MINUTE * MINUTE).all()  # pandas read the times
    grouped = frame.groupby(["start", "g"])["v"]
    if aggregation in ("count", "rate"):
        expected = grouped.size().astype(float) / (60 if aggregation == "rate" else 1)
    elif aggregation == "ratio":
        expected = grouped.agg(lambda s: float((s < 0).sum()) / len(s))
    elif aggregation in oracle.QUANTILES:
        q = oracle.QUANTILES[aggregation]
        expected = grouped.agg(lambda s: np.quantile(s.to_numpy(), q))
    else:
        expected = grouped.agg({"avg": "mean"}.get(aggregation, aggregation))
    got = {key: outcome.value(key, spec) for key in outcome.windows}
    assert {(int(s), (g,)) for s, g in expected.index} == set(got)
    for (start, group), value in expected.items():
        assert got[(int(start), (group,))] == pytest.approx(float(value), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("method", ["lower", "higher", "nearest", "linear"])
def test_quantile_methods_equal_numpy(method: Interpolation) -> None:
    rng = random.Random(5)
    for n in (1, 2, 3, 15, 16, 101):
        values = sorted(rng.uniform(-100, 100) for _ in range(n))
        for q in (0.5, 0.9, 0.95, 0.99):
            expected = float(np.quantile(values, q, method=method))
            assert oracle.quantile(values, q, method) == pytest.approx(expected, rel=1e-12)


CLF_SPEC = {"source": {"tag": "t", "format": "apache_combined"},
            "metric": {"aggregation": "sum", "valueField": "bytes", "groupBy": ["status"],
                       "window": "1h", "allowedLateness": "5m",
                       "eventTime": {"field": "time", "format": "clf"}}}  # fmt: skip


@pytest.mark.parametrize(("line", "fields"), [
    ('1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 512 "-" "curl/8"',
     {"path": "/a", "protocol": "HTTP/1.1", "bytes": 512, "agent": "curl/8", "referrer": "-"}),
    ('1.2.3.4 - bob [17/May/2015:10:05:03 +0530] "GET /q?x=\\"y\\" HTTP/1.0" 304 - "r" "a b"',
     {"path": '/q?x=\\"y\\"', "user": "bob", "bytes": 0, "status": 304}),
    ('h - - [17/May/2015:10:05:03 -0800] "POST /up" 500 7 "http://r/" "Mozilla/5.0 (cut',
     {"path": "/up", "referrer": "http://r/", "bytes": 7, "status": 500}),
    ('h - - [01/Jan/2016:00:00:00 +1400] "- " 408 0', {"method": "-", "path": "", "bytes": 0}),
])  # fmt: skip
def test_access_lines(line: str, fields: dict[str, Any]) -> None:
    parsed = oracle.scan_access_line(line)
    assert parsed.items() >= fields.items()
    if line.endswith("(cut"):
        assert "agent" not in parsed
    stamp = datetime.strptime(parsed["time"], "%d/%b/%Y:%H:%M:%S %z")  # a second parser
    assert oracle.event_ms(parsed["time"], "clf", None) == int(stamp.timestamp()) * 1000


@pytest.mark.parametrize("line", [
    'h - - [17/May/2015:10:05:03 +0000] "get /a HTTP/1.1" 200 5',  # method in lower case
    'h - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 20 5',
    'h - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1 200 5',  # request cut
    'h - - 17/May/2015:10:05:03 +0000 "GET /a" 200 5',
    'h - - [17/May/2015:10:05:03 +0000] "GET /a" 200 5 x',
])  # fmt: skip
def test_lines_that_are_not_access_lines(line: str) -> None:
    with pytest.raises(oracle.Dead, match="malformed_line"):
        oracle.scan_access_line(line)


T0 = "2023-11-14T22:13:20Z"  # 1_700_000_000_000
ADVERSARIAL: list[tuple[bytes | None, str]] = [
    (b'{"time": "2023-11-14T22:13:20Z", "g": "a", "v": 1, "g": "b"}', "ambiguous"),
    (b'{"time": "2023-11-14T22:13:20Z", "g": "a", "v": 1, "\\u0067": "b"}', "ambiguous"),
    (b'{"time": "2023-11-14T22:13:20Z", "g": "a", "v": 1, "n": {"x": 1, "x": 2}}', "ambiguous"),
    (b'{"time": "2023-11-14T22:13:20Z", "g": "a", "v": "12"}', "bad_type"),
    (b'{"time": "2023-11-14T22:13:20Z", "g": "a", "v": true}', "bad_type"),
    (b'{"time": "2023-11-14T22:13:20Z", "g": {"x": 1}, "v": 1}', "bad_type"),
    (b'{"time": "2023-11-14T22:13:20Z", "g": "a\\u001fb", "v": 1}', "bad_type"),
    (b'{"time": "2023-11-14T22:13:20Z", "g": "a", "v": NaN}', "malformed_json"),
    (b'{"time": "2023-11-14T22:13:20Z", "g": "a", "v": ', "malformed_json"),
    (b'["time"]', "malformed_json"),
    (None, "malformed_json"),
    (b"\xff\xfe{}", "not_utf8"),
    (b'{"g": "a", "v": 1}', "missing_field"),
    (b'{"time": null, "g": "a", "v": 1}', "missing_field"),
    (b'{"time": "2023-11-14T22:13:20Z", "v": 1}', "missing_field"),
    (b'{"time": "2023-11-14T22:13:20Z", "g": "a"}', "missing_field"),
    (b'{"time": "14 Nov 2023", "g": "a", "v": 1}', "bad_time"),
    (b'{"time": "2023-02-30T00:00:00Z", "g": "a", "v": 1}', "bad_time"),
    (b'{"time": "3000-01-01T00:00:00Z", "g": "a", "v": 1}', "future"),
    (json.dumps({"time": T0, "g": "x" * 513, "v": 1}).encode(), "oversize_key"),
    (json.dumps({"time": T0, "g": "a", "v": 1, "pad": "x" * 2_000}).encode(), "oversize"),
]


@pytest.mark.parametrize(("raw", "reason"), ADVERSARIAL)
def test_adversarial_records_get_their_reason(raw: bytes | None, reason: str) -> None:
    limits = oracle.Limits(max_record_bytes=1_000)
    outcome = oracle.compute(spec_dict("sum"), [oracle.Record(0, raw)], NOW, limits)
    assert dict(outcome.dead_letters) == {reason: 1}
    assert not outcome.windows


def test_time_on_both_sides_of_the_offsets_and_boundaries() -> None:
    same = ["2023-11-14T22:13:20Z", "2023-11-15T03:43:20+05:30", "2023-11-14T14:13:20-08:00",
            "2023-11-14t22:13:20.000z", "2023-11-14 22:13:20Z"]  # fmt: skip
    assert {oracle.event_ms(t, "rfc3339", None) for t in same} == {1_700_000_000_000}
    assert oracle.event_ms("1700000000.0005", "epoch_seconds", None) == 1_700_000_000_000
    assert oracle.event_ms("1700000000.0015", "epoch_seconds", None) == 1_700_000_000_002
    assert oracle.event_ms(1_700_000_000_123, "epoch_millis", None) == 1_700_000_000_123
    assert oracle.event_ms("14/Nov/2023:22:13:20 -0130", "clf", None) == 1_700_005_400_000
    stamp = "2023/11/14 22h13"
    assert oracle.event_ms(stamp, "strftime", "%Y/%m/%d %Hh%M") == 1_700_000_000_000 - 20_000


def test_watermarks_filters_and_the_group_cap() -> None:
    spec = spec_dict("count", window="1m", allowedLateness="45s")
    spec["source"]["filters"] = [{"field": "keep", "equals": "1"}]

    def record(second: int, group: str = "a", keep: int = 1, partition: int = 0) -> oracle.Record:
        when = datetime.fromtimestamp(1_700_000_000 + second, UTC)
        body = {"time": when.strftime("%Y-%m-%dT%H:%M:%SZ"), "g": group, "keep": keep}
        return oracle.Record(partition, json.dumps(body).encode())

    # windows (seconds from 1_700_000_000): [-20, 40), [40, 100), [100, 160); closed 45 s on
    records = [
        record(0),
        record(130, keep=0),  # filtered, but its time moves partition 0 on
        record(5),  # window -20 closed at 85 <= 130: late
        record(5, partition=1),  # partition 1 has its own watermark: counted
        record(120, "b", partition=1),
        record(121, "c", partition=1),
        record(159, "d", partition=1),  # cap 2: refused, yet a timely record: time moves
        record(50, partition=1),  # window 40 closed at 145 <= 159: late
    ]
    outcome = oracle.compute(spec, records, NOW, oracle.Limits(max_groups_per_window=2))
    assert dict(outcome.dead_letters) == {"late": 2, "oversize_key": 1}
    assert outcome.filtered == 1
    base = 1_700_000_000_000 // MINUTE * MINUTE
    counts = {(start - base, group): w.count for (start, group), w in outcome.windows.items()}
    assert counts == {(0, ("a",)): 2, (120_000, ("b",)): 1, (120_000, ("c",)): 1}


def test_a_kafka_timestamp_judges_future_as_the_first_pass_did() -> None:
    hour_ahead = json.dumps({"time": "2023-11-14T23:13:20Z", "g": "a", "v": 1}).encode()
    produced = 1_700_000_000_000  # an hour before the event time: future then, and now
    outcome = oracle.compute(spec_dict("sum"), [oracle.Record(0, hour_ahead, produced)], NOW)
    assert dict(outcome.dead_letters) == {"future": 1}
    outcome = oracle.compute(spec_dict("sum"), [oracle.Record(0, hour_ahead)], NOW)
    assert not outcome.dead_letters  # judged at NOW, long after


def test_the_consumer_semantics_equal_the_oracle() -> None:
    """The product's record semantics (records.py through reference.py) on the generated
    and adversarial records, the oracle's verdict the expected one."""
    rows = generated(seed=9, n=600)
    mixed = [r.value for r in as_records(rows)]
    for i, (raw, _) in enumerate(ADVERSARIAL[:-2]):  # the last two need other limits
        mixed.insert(i * 29, raw)
    for aggregation in ("count", "sum", "p95", "ratio"):
        spec = spec_dict(aggregation)
        expected = oracle.compute(spec, [oracle.Record(0, raw) for raw in mixed], NOW)
        records = [(0, i, raw) for i, raw in enumerate(mixed)]
        product = compute_reference(MetricPipelineSpec.model_validate(spec), records, now_ms=NOW)
        assert product.dead_letters == expected.dead_letters
        assert set(product.windows) == set(expected.windows)
        for key, window in expected.windows.items():
            assert product.windows[key].count == window.count, key
            assert sorted(product.windows[key].values) == sorted(window.values), key
