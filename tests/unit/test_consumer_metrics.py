"""The consumer's metrics endpoint serves the documented names and health."""

from __future__ import annotations

import time
import urllib.request

import pytest

from helpers import free_port
from metricpipe_consumers.metrics import ConsumerMetrics


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_metrics_and_health_endpoints() -> None:
    metrics = ConsumerMetrics("ns/p")
    port = free_port()
    server = metrics.serve(port, host="127.0.0.1")
    try:
        assert get(f"http://127.0.0.1:{port}/readyz")[0] == 503  # not polled yet
        metrics.alive()
        metrics.dead_letter("late")
        metrics.add_phase("spark", 1.5)
        metrics.consumed.inc(10)
        status, body = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert 'metricpipe_consumer_records_consumed_total{pipeline="ns/p"} 10.0' in body
        assert 'metricpipe_consumer_dead_letter_total{pipeline="ns/p",reason="late"} 1.0' in body
        assert 'metricpipe_consumer_phase_seconds_total{phase="spark",pipeline="ns/p"} 1.5' in body
        for name in ("metricpipe_consumer_busy_ratio", "metricpipe_consumer_freshness_seconds",
                     "metricpipe_window_finalization_delay_seconds_bucket"):  # fmt: skip
            assert name in body
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, "ok")
        assert get(f"http://127.0.0.1:{port}/readyz") == (200, "ok")
    finally:
        server.shutdown()


def test_watermarks_say_what_the_sink_holds() -> None:
    """A caught-up partition counts as fresh now; the freshness is that of the stalest."""
    metrics = ConsumerMetrics("ns/p")
    before = time.time()
    metrics.observe_watermarks({0: (int((before - 30) * 1000), False), 1: (None, True),
                                2: (None, False)})  # fmt: skip
    value = {
        s.labels["partition"]: s.value for s in next(iter(metrics.watermark.collect())).samples
    }
    assert set(value) == {"0", "1"}  # no record yet and not caught up: nothing to say
    assert value["0"] == pytest.approx(before - 30, abs=0.01)
    assert value["1"] >= before
    freshness = metrics.freshness.collect()[0].samples[0].value
    assert 30 <= freshness < 31
