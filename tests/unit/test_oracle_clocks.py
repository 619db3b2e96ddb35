"""The oracle's two clocks, on records worked out by hand: stream mode decides `late` by the
partition's watermark (event time), batch mode by arrival (Kafka time) against the record's
own window end + allowed lateness."""

from __future__ import annotations

import json
import time

import oracle

MIN = 60_000
BASE = 1_700_000_040_000 // MIN * MIN
SPEC = {"source": {"tag": "t"},
        "metric": {"aggregation": "sum", "valueField": "v", "window": "1m",
                   "allowedLateness": "10s"}}  # fmt: skip
# (name, event second, arrival second), in arrival order on one partition
ARRIVALS = [("A", 0, 5), ("B", 70, 75), ("D", 20, 65), ("C", 10, 80), ("E", 200, 81),
            ("F", 100, 85)]  # fmt: skip


def records() -> list[oracle.Record]:
    out = []
    for name, event, arrival in ARRIVALS:
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((BASE + event * 1000) / 1000))
        value = json.dumps({"time": when, "v": ord(name)}).encode()
        out.append(oracle.Record(0, value, BASE + arrival * 1000))
    return out


def sums(outcome: oracle.Outcome) -> dict[int, float]:
    return {(start - BASE) // 1000: sum(w.values) for (start, _), w in outcome.windows.items()}


def test_stream_clock_is_the_watermark() -> None:
    # B moves the watermark to 70 s: D (window 0, closes at 70 s) is late; C too; E moves it to
    # 200 s, so F (window 60 s, closes at 130 s) is late.
    outcome = oracle.compute(SPEC, records(), BASE + 10 * MIN)
    assert sums(outcome) == {0: ord("A"), 60: ord("B"), 180: ord("E")}
    assert outcome.dead_letters == {"late": 3}


def test_batch_clock_is_the_arrival() -> None:
    # D arrived at 65 s < 70 s and F at 85 s < 130 s: in time; only C (80 s >= 70 s) is late.
    outcome = oracle.compute(SPEC, records(), BASE + 10 * MIN, clock="batch")
    assert sums(outcome) == {0: ord("A") + ord("D"), 60: ord("B") + ord("F"), 180: ord("E")}
    assert outcome.dead_letters == {"late": 1}
