"""The consumer's probe endpoints (docs/consumer.md, "Probes"): what each answers when."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from helpers import free_port
from metricpipe_consumers.metrics import STALLED_AFTER_SECONDS, ConsumerMetrics, decide_health

STALLED = STALLED_AFTER_SECONDS


@pytest.mark.parametrize(
    ("path", "started", "silence", "answer"),
    [
        # starting: only the startup probe says so; liveness leaves the start to it
        ("/startupz", False, 0, (503, b"starting")),
        ("/startupz", False, 10 * STALLED, (503, b"starting")),
        ("/healthz", False, 10 * STALLED, (200, b"ok")),
        ("/readyz", False, 0, (503, b"starting")),
        # started, the loop turning
        ("/startupz", True, 0, (200, b"started")),
        ("/healthz", True, STALLED - 1, (200, b"ok")),
        ("/readyz", True, STALLED - 1, (200, b"ok")),
        # started, the loop stuck: not live, not ready (start-up stays done)
        ("/startupz", True, STALLED, (200, b"started")),
        ("/healthz", True, STALLED, (503, b"stalled")),
        ("/readyz", True, STALLED, (503, b"stalled")),
        ("/metrics", True, 0, None),
        ("/other", True, 0, None),
    ],
)
def test_probe_answers(
    path: str, started: bool, silence: float, answer: tuple[int, bytes] | None
) -> None:
    assert decide_health(path, started, silence) == answer


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_the_first_loop_iteration_marks_start_up_over_http() -> None:
    metrics = ConsumerMetrics("ns/p")
    port = free_port()
    server = metrics.serve(port, host="127.0.0.1")
    url = f"http://127.0.0.1:{port}"
    try:
        assert get(f"{url}/startupz") == (503, "starting")
        assert get(f"{url}/healthz") == (200, "ok")
        assert get(f"{url}/readyz") == (503, "starting")
        metrics.alive()
        assert get(f"{url}/startupz") == (200, "started")
        assert get(f"{url}/readyz") == (200, "ok")
        assert get(f"{url}/nowhere")[0] == 404
    finally:
        server.shutdown()
