"""Prometheus metrics of a consumer replica, and its /metrics, /startupz, /healthz and /readyz
endpoints (docs/consumer.md, "Probes")."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from metricpipe_contract import names
from metricpipe_contract.names import DEAD_LETTER_REASONS

# The loop calls `alive()` at every iteration (a poll of at most max_batch_seconds, plus the
# batch or tick it runs): this long without one and the consumer is stuck, not slow.
STALLED_AFTER_SECONDS = 120.0


def decide_health(path: str, started: bool, silence: float) -> tuple[int, bytes] | None:
    """The answer of a probe endpoint (None: not one).

    - /startupz: the consumer has started — Spark's session is up and warm, the sink's indices
      exist, the group is subscribed and the loop has come back from its first poll.
    - /healthz (liveness): the loop makes progress. Before start-up it answers 200: bounding
      the start is the startup probe's job, and a JVM starting on a loaded machine is slow,
      not stuck.
    - /readyz: it can do work — started, and the loop is not stalled.
    """
    stalled = silence >= STALLED_AFTER_SECONDS
    if path == "/startupz":
        return (200, b"started") if started else (503, b"starting")
    if path == "/healthz":
        return (503, b"stalled") if started and stalled else (200, b"ok")
    if path == "/readyz":
        if not started:
            return 503, b"starting"
        return (503, b"stalled") if stalled else (200, b"ok")
    return None


class ConsumerMetrics:
    def __init__(self, pipeline: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        labels = {"pipeline": pipeline}
        r = self.registry

        def counter(name: str, doc: str) -> Any:
            return Counter(name, doc, ["pipeline"], registry=r).labels(**labels)

        def gauge(name: str, doc: str) -> Any:
            return Gauge(name, doc, ["pipeline"], registry=r).labels(**labels)

        self.consumed = counter(names.CONSUMER_RECORDS_CONSUMED, "Records read from Kafka.")
        self.written = counter("metricpipe_consumer_records_aggregated_total",
                               "Records counted into a window.")  # fmt: skip
        self.filtered = counter("metricpipe_consumer_records_filtered_total",
                                "Records dropped by the source filters.")  # fmt: skip
        self.skipped = counter("metricpipe_consumer_records_replay_skipped_total",
                               "Replayed records already in the sink.")  # fmt: skip
        self.finals_rewritten = counter(
            "metricpipe_consumer_finals_rewritten_total",
            "Final documents a finalisation round found already written (a round repeated "
            "after a crash or by a new leader); the sink kept the first.",
        )
        self.dead_lettered = Counter(
            names.CONSUMER_DEAD_LETTER, "Records sent to the dead-letter topic.",
            ["pipeline", "reason"], registry=r,
        )  # fmt: skip
        for reason in DEAD_LETTER_REASONS:  # at 0 from the start (contract names.py)
            self.dead_lettered.labels(pipeline=pipeline, reason=reason)
        self.batch_records = Histogram(
            "metricpipe_consumer_batch_records", "Records per micro-batch.", ["pipeline"],
            buckets=(10, 100, 1_000, 10_000, 50_000, 100_000, 200_000), registry=r,
        ).labels(**labels)  # fmt: skip
        self.batch_seconds = Histogram(
            "metricpipe_consumer_batch_seconds", "Processing time of a micro-batch.", ["pipeline"],
            registry=r,
        ).labels(**labels)  # fmt: skip
        self.compute_seconds = Histogram(
            "metricpipe_consumer_spark_seconds", "Spark time per micro-batch.", ["pipeline"],
            registry=r,
        ).labels(**labels)  # fmt: skip
        self.phase_seconds = Counter(
            names.CONSUMER_PHASE_SECONDS, "Time spent per phase of the micro-batches.",
            ["pipeline", "phase"], registry=r,
        )  # fmt: skip
        self.busy_fraction = gauge(
            names.CONSUMER_BUSY_FRACTION,
            "Share of wall time spent processing (not waiting for records).",
        )
        self.busy_seconds = counter(
            names.CONSUMER_BUSY_SECONDS,
            "Time the consumer was occupied (per batch: its slower stage, parse or Spark + "
            "sink, plus its offset commit; plus the periodic state/finalization work); its "
            "rate is the busy fraction over that window.",
        )
        self.processing_rate = gauge(
            names.CONSUMER_PROCESSING_RATE,
            "Records per second of processing time, last batch.",
        )
        self.commit_failures = counter(
            "metricpipe_consumer_commit_failures_total",
            "Offset commits refused (e.g. during a rebalance).",
        )
        self.assigned = gauge("metricpipe_consumer_assigned_partitions", "Partitions owned.")
        self.watermark = Gauge(
            names.CONSUMER_WATERMARK,
            "Time up to which the partition's data is in the sink (Unix seconds): its event-time "
            "watermark, or the last time it was caught up.",
            ["pipeline", "partition"], registry=r,
        )  # fmt: skip
        self.freshness = gauge(
            "metricpipe_consumer_freshness_seconds",
            "Now minus the lowest committed watermark of owned partitions.",
        )
        self.pipeline_watermark = gauge(
            names.PIPELINE_WATERMARK,
            "Pipeline watermark seen by the finalizer (Unix seconds).",
        )
        self.finalization_delay = Histogram(
            "metricpipe_window_finalization_delay_seconds",
            "Time from window end to its final document.", ["pipeline"],
            buckets=(1, 5, 15, 30, 60, 120, 300, 900, 1800, 3600, 7200), registry=r,
        ).labels(**labels)  # fmt: skip
        self._pipeline = pipeline
        self._last_alive = time.monotonic()
        self.started = False  # the loop has come back from its first poll

    def add_phase(self, phase: str, seconds: float) -> None:
        self.phase_seconds.labels(pipeline=self._pipeline, phase=phase).inc(seconds)

    def dead_letter(self, reason: str) -> None:
        self.dead_lettered.labels(pipeline=self._pipeline, reason=reason).inc()

    def record_cycle(self, waited: float, worked: float) -> None:
        total = waited + worked
        if total > 0:
            self.busy_fraction.set(worked / total)
        if worked > 0:
            self.batch_seconds.observe(worked)

    def record_busy(self, seconds: float) -> None:
        self.busy_seconds.inc(seconds)

    def alive(self) -> None:
        """The loop made progress (called at every iteration; the first marks start-up)."""
        self._last_alive = time.monotonic()
        self.started = True

    def health(self, path: str) -> tuple[int, bytes] | None:
        return decide_health(path, self.started, time.monotonic() - self._last_alive)

    def observe_watermarks(self, marks: Mapping[int, tuple[int | None, bool]]) -> None:
        """Per partition (watermark ms, caught up) as last written to the sink: the time up to
        which its data is there — the event-time watermark, or now for a partition that was
        caught up (there is nothing newer to reflect; without this a quiet topic would look
        ever staler)."""
        now = time.time()
        values = []
        for partition, (watermark_ms, caught_up) in marks.items():
            mark = watermark_ms / 1000 if watermark_ms is not None else None
            if caught_up:
                mark = max(mark or 0.0, now)
            if mark is not None:
                self.watermark.labels(self._pipeline, str(partition)).set(mark)
                values.append(mark)
        if values:
            self.freshness.set(max(0.0, now - min(values)))

    def serve(self, port: int, host: str = "0.0.0.0") -> ThreadingHTTPServer:  # noqa: S104
        return serve_endpoints(self.registry, self.health, port, host)


def serve_endpoints(
    registry: CollectorRegistry, health: Callable[[str], tuple[int, bytes] | None], port: int,
    host: str = "0.0.0.0",  # noqa: S104 - a pod's probes and Prometheus come from outside
) -> ThreadingHTTPServer:  # fmt: skip
    """/metrics from the registry and the probe endpoints `health` answers, in a thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer = health(self.path)
            if self.path.startswith("/metrics"):
                body, status, kind = generate_latest(registry), 200, CONTENT_TYPE_LATEST
            elif answer is not None:
                (status, body), kind = answer, "text/plain"
            else:
                body, status, kind = b"not found", 404, "text/plain"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
