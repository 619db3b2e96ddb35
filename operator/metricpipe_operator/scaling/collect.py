"""Collect: a constant number of batched PromQL queries per cycle, for all pipelines at once.

Each query aggregates `by (pipeline)`, so one answer holds every pipeline's value; the cost of a
cycle does not grow with the number of queries per pipeline (there is none).
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import requests

from metricpipe_exporters import names

from .model import MetricSample

REJECTED_WINDOW = "5m"  # dead letters are compared with the input over this window
LATE_WINDOW = "1h"  # a late or future record in this window: the SLO is not met
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
    "dead_letters": f"sum by (pipeline) (increase({names.CONSUMER_DEAD_LETTER}"
    f"[{REJECTED_WINDOW}]))",
    "records_read": f"sum by (pipeline) (increase({names.CONSUMER_RECORDS_CONSUMED}"
    f"[{REJECTED_WINDOW}]))",
    "late_records": f"sum by (pipeline) (increase({names.CONSUMER_DEAD_LETTER}"
    f'{{reason=~"{"|".join(names.LATE_REASONS)}"}}[{LATE_WINDOW}]))',
}
MetricValues = dict[str, dict[str, float]]  # query name -> pipeline -> value


class MetricsUnavailableError(Exception):
    """Prometheus did not answer; the loop fails static."""


def fetch_metric_values(prometheus_url: str, timeout: float, at: float) -> MetricValues:
    """All queries, concurrently, evaluated at the same instant `at`."""

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
        return name, build_values(body)

    with ThreadPoolExecutor(max_workers=len(QUERIES)) as pool:
        return dict(pool.map(one, QUERIES.items()))


def build_values(body: dict[str, Any]) -> dict[str, float]:
    """pipeline -> value from a Prometheus vector answer; NaN and ±Inf are dropped."""
    values = {}
    for sample in body.get("data", {}).get("result", []):
        pipeline = sample.get("metric", {}).get("pipeline")
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
