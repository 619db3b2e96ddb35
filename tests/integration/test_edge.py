"""The edge is real: HTTPS through the stack's HAProxy (TCP) to its two Nginx servers and on to
an upstream on the peek API's port, which this test serves itself.

Each test's client connects from its own loopback address (127.x.y.z), so what Nginx logs and
limits is provably the address HAProxy passed in the PROXY protocol header (HAProxy itself
reaches Nginx from 127.0.0.1), and rate-limit state left by an earlier run cannot matter.
"""

from __future__ import annotations

import http.client
import json
import random
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from edge_harness import LogMark, UpstreamHandler, serve_on_peek_port
from helpers import wait_for
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.settings import StackSettings

SLOW_SECONDS = 0.2


@dataclass
class Upstream:
    """What the stand-in for the peek API was asked: request id -> the headers it got."""

    seen: dict[str, dict[str, str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(upstream: Upstream) -> type[BaseHTTPRequestHandler]:
    class Handler(UpstreamHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            with upstream.lock:
                upstream.seen[self.headers.get("X-Request-Id", "")] = dict(self.headers)
            if self.path.startswith("/slow/"):
                time.sleep(SLOW_SECONDS)
            status = 500 if self.path.startswith("/fail/") else 200
            self.answer(status, json.dumps({"path": self.path}).encode())

    return Handler


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """An HTTP server on the peek API's port while this module's tests run."""
    state = Upstream()
    with serve_on_peek_port(_handler(state), wait_seconds=30):
        yield state


@dataclass(frozen=True)
class Reply:
    status: int
    served_by: str
    request_id: str


@dataclass(frozen=True)
class EdgeClient:
    """HTTPS to the edge from one loopback address, one connection per request (so HAProxy
    balances every request), TLS verified with the stack's CA."""

    host: str
    port: int
    context: ssl.SSLContext
    source: str

    def get(self, path: str, request_id: str, token: str = "") -> Reply:
        connection = http.client.HTTPSConnection(
            self.host, self.port, context=self.context, timeout=10, source_address=(self.source, 0)
        )
        headers = {"X-Request-Id": request_id, "User-Agent": "metricpipe-edge-test"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            response.read()
            return Reply(response.status, response.getheader("X-Edge-Server", ""), request_id)
        finally:
            connection.close()


def _client(stack: StackEnv) -> EdgeClient:
    assert stack.edge_url, ".stack/env lacks METRICPIPE_EDGE_URL; run 'make stack-up'"
    host, port = stack.edge_url.removeprefix("https://").rsplit(":", 1)
    source = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    context = ssl.create_default_context(cafile=str(stack.ca_file))
    return EdgeClient(host, int(port), context, source)


def _expected_status(path: str) -> int:
    return 500 if path.startswith("/fail/") else 200


def test_requests_through_haproxy_and_both_nginx_are_logged_once_with_the_real_client(
    stack: StackEnv, upstream: Upstream
) -> None:
    assert stack.edge_haproxy_log is not None
    assert len(stack.edge_access_logs) == 2
    client = _client(stack)
    run = uuid.uuid4().hex[:8]
    nginx_logs = LogMark.take(stack.edge_access_logs)
    haproxy_log = LogMark.take((stack.edge_haproxy_log,))
    kinds = ("ok", "ok", "fail", "ok", "slow")  # a fifth answer 500, a fifth take 0.2 s
    paths = {f"{run}-{i:02d}": f"/{kinds[i % len(kinds)]}/{i}?run={run}" for i in range(40)}

    replies = [client.get(path, rid, token=f"token-{rid}") for rid, path in paths.items()]

    assert [r.status for r in replies] == [_expected_status(p) for p in paths.values()]
    served = {name: sum(r.served_by == f"edge-nginx-{name}" for r in replies) for name in "ab"}
    assert min(served.values()) >= len(paths) // 4, served  # round robin: about half each

    def logged() -> list[dict[str, Any]] | None:
        mine = [r for r in nginx_logs.records() if str(r["request_id"]).startswith(f"{run}-")]
        return mine if len(mine) >= len(paths) else None

    records = wait_for(logged, timeout=5, what="every request in the access logs", interval=0.1)
    by_id = {r["request_id"]: r for r in records}
    assert sorted(r["request_id"] for r in records) == sorted(paths)  # each exactly once
    for reply in replies:
        record = by_id[reply.request_id]
        assert record["status"] == reply.status
        assert record["remote_addr"] == client.source  # from the PROXY header, not HAProxy's
        assert record["server"] == reply.served_by
        assert record["uri"] == paths[reply.request_id]
        assert record["upstream_status"] == str(reply.status)
        assert record["user_agent"] == "metricpipe-edge-test"
        assert record["tls_protocol"].startswith("TLSv1.")
        if "/slow/" in record["uri"]:
            assert record["request_time"] >= SLOW_SECONDS
    # The upstream got each request once, with the caller's token and the client's address.
    assert set(upstream.seen) == set(paths)
    for rid, headers in upstream.seen.items():
        assert headers["Authorization"] == f"Bearer token-{rid}"
        assert headers["X-Forwarded-For"] == client.source
        assert headers["X-Forwarded-Proto"] == "https"

    # HAProxy logged one TCP session per request, from the client's own address.
    def sessions_logged() -> list[dict[str, Any]] | None:
        mine = [r for r in haproxy_log.records() if r["client_addr"] == client.source]
        return mine if len(mine) >= len(paths) else None  # each is written at its close

    sessions = wait_for(sessions_logged, timeout=5, what="HAProxy's session lines", interval=0.1)
    assert len(sessions) == len(paths)
    assert {s["server"] for s in sessions} == {"edge-nginx-a", "edge-nginx-b"}
    assert all(s["termination_state"] == "--" for s in sessions)


def test_a_burst_from_one_client_gets_429_and_other_clients_do_not(
    stack: StackEnv, upstream: Upstream
) -> None:
    limits = StackSettings().edge_limits
    client, bystander = _client(stack), _client(stack)
    run = uuid.uuid4().hex[:8]
    nginx_logs = LogMark.take(stack.edge_access_logs)
    burst = 6 * (limits.strict_burst + 1)  # three times what the two Nginx admit together
    path = f"{limits.strict_prefix}burst?run={run}"

    replies = [client.get(path, f"{run}-{i:02d}") for i in range(burst)]
    other = client.get(f"/ok/generous?run={run}", f"{run}-generous")
    bystanders = bystander.get(path, f"{run}-bystander")

    statuses = [r.status for r in replies]
    assert set(statuses) == {200, 429}, statuses
    admitted = statuses.count(200)
    # Each Nginx admits burst + 1 at once (the rate refills one per 60/rate_per_min seconds).
    assert limits.strict_burst + 1 <= admitted <= 2 * (limits.strict_burst + 1) + 2, statuses
    assert statuses[: limits.strict_burst + 1] == [200] * (limits.strict_burst + 1)
    assert other.status == 200  # the generous limit of every other path is untouched
    assert bystanders.status == 200  # the limit is per client

    def logged() -> list[dict[str, Any]] | None:
        mine = [r for r in nginx_logs.records() if str(r["request_id"]).startswith(f"{run}-")]
        return mine if len(mine) >= burst + 2 else None

    records = wait_for(logged, timeout=5, what="the burst in the access logs", interval=0.1)
    rejected = [r for r in records if r["status"] == 429]
    assert len(rejected) == statuses.count(429)
    assert all(r["remote_addr"] == client.source for r in rejected)
    assert all(r["upstream_addr"] == "" for r in rejected)  # Nginx answered them itself
    # Only what was admitted reached the upstream.
    reached = {rid for rid in upstream.seen if rid.startswith(f"{run}-") and rid[-2:].isdigit()}
    assert len(reached) == admitted, sorted(upstream.seen)
