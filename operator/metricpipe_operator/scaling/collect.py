"""Collect: a constant number of batched PromQL queries per cycle, for all pipelines at once.

Each query aggregates `by (pipeline)`, so one answer holds every pipeline's value; the cost of a
cycle does not grow with the number of queries per pipeline (there is none).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from metricpipe_contract import names

from .model import MetricSample

REJECTED_WINDOW = "5m"  # dead letters are compared with the input over this window
LATE_WINDOW = "1h"  # a late or future record in this window: the SLO is not met


def build_counted_within(series: str, window: str) -> str:
    """PromQL: what the counters of `series` counted in the last `window`, per pipeline.

    Each series' last value in the window less its last value before it, exactly. A series with
    no sample before the window (a process started within it: its counters start at 0) counts
    its last value; one whose counter went down (its process restarted) counts its `increase()`,
    the only count Prometheus keeps across a restart (or, restarted between the two samples, its
    last value). Not `increase()` for all, which is wrong twice in a consumer's first minutes: it
    starts at a series' first sample (a consumer that dead-letters a backlog before its first
    scrape shows 180 dead letters there, and `increase()` says 0), and it extrapolates over the
    window (0 then 200 records read, 15 s apart, evaluated 15 s later, are 400): dead letters
    over records read came out at 0.49 for a backlog that was 90 % malformed."""
    now = f"last_over_time({series}[{window}])"
    before = f"last_over_time({series}[{window}] offset {window})"
    restarted = f"resets({series}[{window}]) > 0"
    grown = f"(({now} - {before}) >= 0) unless ({restarted})"
    across = f"increase({series}[{window}]) and ({restarted})"
    return f"sum by (pipeline) (({grown}) or ({across}) or {now})"


QUERIES: dict[str, str] = {
    "input_rate": f"sum by (pipeline) (rate({names.TOPIC_PARTITION_OFFSET}[1m]))",
    "processing_rate": f"sum by (pipeline) (rate({names.CONSUMER_RECORDS_CONSUMED}[1m]))",
    # busy seconds per second, over the same window as the processing rate: capacity per
    # replica = processed / busy time, without a one-batch gauge's noise
    "busy_fraction": f"avg by (pipeline) (rate({names.CONSUMER_BUSY_SECONDS}[1m]))",
    "lag_records": f"sum by (pipeline) ({names.GROUP_LAG})",
    "time_lag_seconds": f"max by (pipeline) ({names.GROUP_TIME_LAG})",
    # the sink prober when it answers, else the consumers' own watermarks, else (no consumer
    # has written anything yet) the age of the oldest record not consumed: nothing newer than
    # it can be in the sink
    "freshness_seconds": f"max by (pipeline) ({names.SINK_FRESHNESS}) or "
    f"(time() - min by (pipeline) ({names.CONSUMER_WATERMARK})) or "
    f"max by (pipeline) ({names.GROUP_TIME_LAG})",
    "partitions": f"max by (pipeline) ({names.TOPIC_PARTITIONS})",
    # what share of the input the consumers dead-lettered (RecordsRejected), and whether any
    # record came too late for its window (then the freshness SLO is not met)
    "dead_letters": build_counted_within(names.CONSUMER_DEAD_LETTER, REJECTED_WINDOW),
    "records_read": build_counted_within(names.CONSUMER_RECORDS_CONSUMED, REJECTED_WINDOW),
    "late_records": build_counted_within(
        f'{names.CONSUMER_DEAD_LETTER}{{reason=~"{"|".join(names.LATE_REASONS)}"}}', LATE_WINDOW
    ),
}
MetricValues = dict[str, dict[str, float]]  # query name -> pipeline -> value


class MetricsUnavailableError(Exception):
    """Prometheus did not answer; the loop fails static."""


def fetch_metric_values(
    prometheus_url: str, timeout: float, at: float, queries: Mapping[str, str] = QUERIES,
    label: str = "pipeline",
) -> MetricValues:  # fmt: skip
    """All queries, concurrently, evaluated at the same instant `at`; each answer by the value
    of `label` (the pipeline's; the archive's for an archive's queries)."""

    def one(item: tuple[str, str]) -> tuple[str, dict[str, float]]:
        name, promql = item
        params: dict[str, str | float] = {"query": promql, "time": at}
        try:
            response = requests.get(
                f"{prometheus_url}/api/v1/query", params=params,
                timeout=timeout,
            )  # fmt: skip
            response.raise_for_status()
            body = response.json()
        except (requests.RequestException, ValueError) as error:
            raise MetricsUnavailableError(f"Prometheus at {prometheus_url}: {error}") from error
        return name, build_values(body, label)

    with ThreadPoolExecutor(max_workers=len(queries)) as pool:
        return dict(pool.map(one, queries.items()))


def build_values(body: dict[str, Any], label: str = "pipeline") -> dict[str, float]:
    """pipeline (the `label`'s value) -> value from a Prometheus vector answer; NaN and ±Inf
    are dropped."""
    values = {}
    for sample in body.get("data", {}).get("result", []):
        pipeline = sample.get("metric", {}).get(label)
        value = float(sample["value"][1])
        if pipeline and math.isfinite(value):
            values[pipeline] = value
    return values


def build_sample(pipeline: str, values: MetricValues, replicas: int, at: float) -> MetricSample:
    def get(name: str) -> float | None:
        return values.get(name, {}).get(pipeline)

    partitions = get("partitions")
    return MetricSample(
        at=at, replicas=replicas, input_rate=get("input_rate"),
        processing_rate=get("processing_rate"), busy_fraction=get("busy_fraction"),
        lag_records=get("lag_records"), time_lag_seconds=get("time_lag_seconds"),
        freshness_seconds=get("freshness_seconds"),
        partitions=int(partitions) if partitions is not None else None,
        dead_letters=get("dead_letters"), records_read=get("records_read"),
        late_records=get("late_records"),
    )  # fmt: skip
