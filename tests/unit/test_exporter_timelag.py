"""Exact time lag against the interpolation method, and the sink prober's watermark (pure)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from metricpipe_exporters.config import ExporterConfig
from metricpipe_exporters.sinkprobe import build_sink_probe
from metricpipe_exporters.targets import build_targets, read_pipelines_file
from metricpipe_exporters.timelag import (
    PartitionLag,
    decide_time_lag_seconds,
    estimate_time_lag_by_interpolation,
)

NOW_MS = 1_000_000_000


def lag(end: int, committed: int | None, oldest_ms: int | None = None) -> PartitionLag:
    return PartitionLag("t", 0, end, committed, oldest_ms)


@pytest.mark.parametrize(
    ("partition", "expected"),
    [
        (lag(100, 100), 0.0),  # caught up: 0, whatever the timestamps
        (lag(100, 100, NOW_MS - 999_000), 0.0),
        (lag(100, 40, NOW_MS - 12_500), 12.5),  # the oldest unprocessed record's age
        (lag(100, 40, NOW_MS + 3_000), 0.0),  # producer clock ahead: never negative
        (lag(100, 40, None), None),  # timestamp not read yet: no sample, not a guess
        (lag(100, None), None),  # never committed
        (lag(0, 0), 0.0),  # empty partition
    ],
)
def test_decide_time_lag(partition: PartitionLag, expected: float | None) -> None:
    assert decide_time_lag_seconds(partition, NOW_MS) == expected


def recorded_history() -> tuple[list[tuple[float, int]], dict[int, float]]:
    """A topic's production, second by second: 10 records/s for 600 s, a burst of 100,000
    records at t=600, 10 records/s again until t=900, then nothing until t=1500 (quiet). The
    lag tables of interpolating exporters sample the log-end offset every 60 s."""
    produced_at: dict[int, float] = {}  # offset -> produce time
    offset = 0
    for second in range(900):
        count = 10 + (100_000 if second == 600 else 0)
        for i in range(count):
            produced_at[offset] = second + i / count
            offset += 1
    samples = [(float(t), _end_at(produced_at, t)) for t in range(0, 1501, 60)]
    return samples, produced_at


def _end_at(produced_at: dict[int, float], t: float) -> int:
    return sum(1 for stamp in produced_at.values() if stamp < t)


@pytest.fixture(scope="module")
def history() -> tuple[list[tuple[float, int]], dict[int, float]]:
    return recorded_history()


def test_spike_interpolation_is_absurd_exact_is_not(
    history: tuple[list[tuple[float, int]], dict[int, float]],
) -> None:
    """The table's last sample predates a burst: an offset inside the burst is beyond it, and
    the extrapolation from the slow slope before the burst puts its time far in the future."""
    samples, produced_at = history
    table = [s for s in samples if s[0] <= 600]  # the table as of t=605, before its next sample
    now, committed = 605.0, 6_000 + 50_000  # the consumer is halfway through the burst
    exact = now - produced_at[committed]
    estimate = estimate_time_lag_by_interpolation(table, committed, now)
    assert exact == pytest.approx(4.5, abs=0.01)
    assert estimate < -4_000  # "minus 80 minutes": absurd
    assert abs(estimate - exact) > 1_000


def test_quiet_topic_interpolation_is_nan_exact_is_zero(
    history: tuple[list[tuple[float, int]], dict[int, float]],
) -> None:
    samples, produced_at = history
    end = len(produced_at)
    quiet = [s for s in samples if s[0] >= 960]  # no record since t=900: a flat table
    assert math.isnan(estimate_time_lag_by_interpolation(quiet, end - 5, 1500.0))
    assert decide_time_lag_seconds(lag(end, end), 1_500_000) == 0.0
    behind = lag(end, end - 5, round(produced_at[end - 5] * 1000))
    assert decide_time_lag_seconds(behind, 1_500_000) == pytest.approx(1500 - 899.5, abs=0.01)


def test_steady_traffic_interpolation_agrees(
    history: tuple[list[tuple[float, int]], dict[int, float]],
) -> None:
    """Where the rate is steady both methods agree: the difference is the burst, not the maths."""
    samples, produced_at = history
    committed = 3_000  # t=300
    exact = 400.0 - produced_at[committed]
    estimate = estimate_time_lag_by_interpolation(samples, committed, 400.0)
    assert estimate == pytest.approx(exact, abs=0.2)


def state(watermark: int | None, caught_up: bool = False, updated: int | None = None) -> dict:  # type: ignore[type-arg]
    return {"kind": "partition", "watermark_ms": watermark, "caught_up": caught_up,
            "updated_ms": updated}  # fmt: skip


@pytest.mark.parametrize(
    ("states", "partitions", "expected"),
    [
        ([state(5_000), state(3_000)], 2, 3_000),  # the slowest partition bounds it
        ([state(5_000), state(3_000, True, 9_000)], 2, 5_000),  # caught up: reflected to then
        ([state(5_000)], 2, None),  # a partition without state: nothing of it is reflected
        ([state(None, True, 7_000), state(6_000)], 2, 6_000),  # an empty, caught-up partition
        ([], None, None),
    ],
)
def test_sink_probe_watermark(
    states: list[dict],  # type: ignore[type-arg]
    partitions: int | None,
    expected: int | None,
) -> None:
    probe = build_sink_probe(states, partitions, {"window_end_ms": 3_600_000})
    assert probe.watermark_ms == expected
    assert probe.final_window_end_ms == 3_600_000


def test_targets_from_a_pipelines_file(tmp_path: Path) -> None:
    path = tmp_path / "pipelines.yaml"
    path.write_text(
        "- metadata: {namespace: team-a, name: rtt}\n"
        "  spec: {source: {tag: atlas}, metric: {aggregation: avg, valueField: rtt},"
        " freshness: {target: 10m}, sink: {backend: opensearch}}\n"
    )
    config = ExporterConfig(opensearch_url="http://os:9200")
    (target,) = build_targets(read_pipelines_file(path), config)
    assert target.pipeline == "team-a/rtt"
    assert target.consumer_group == "metricpipe.team-a.rtt"
    assert target.freshness_target_seconds == 600
    assert (target.backend, target.endpoint) == ("opensearch", "http://os:9200")
    assert target.topic
    assert target.index


def held(partition: int, watermark: int | None, offset: int, caught_up: bool = True) -> dict:  # type: ignore[type-arg]
    """A state document as a quiet partition keeps it: written once, `updated_ms` aging."""
    return {"kind": "partition", "partition": partition, "watermark_ms": watermark,
            "committed_offset": offset, "caught_up": caught_up, "updated_ms": 1_000}  # fmt: skip


@pytest.mark.parametrize(
    ("states", "ends", "expected"),
    [
        # the sink holds every record Kafka has: current now, however old the document
        ([held(0, 5_000, 40), held(1, 6_000, 7)], {0: 40, 1: 7}, 90_000),
        # one partition has records the sink does not hold yet: its watermark bounds it, even
        # if its document said caught up when it was written
        ([held(0, 5_000, 40), held(1, 6_000, 7)], {0: 41, 1: 7}, 5_000),
        # an empty partition (no record ever) that the sink has fully seen
        ([held(0, None, 0), held(1, 6_000, 7, caught_up=False)], {0: 0, 1: 9}, 6_000),
    ],
)
def test_sink_probe_current_when_the_sink_holds_the_log_end(
    states: list[dict],  # type: ignore[type-arg]
    ends: dict[int, int],
    expected: int,
) -> None:
    probe = build_sink_probe(states, 2, None, ends, now_ms=90_000)
    assert probe.watermark_ms == expected
