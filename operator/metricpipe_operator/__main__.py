"""`python -m metricpipe_operator`: run the operator (Kopf) with the handlers of this package.

With METRICPIPE_LEASE_NAMESPACE set, the process first stands by until it holds the leader
Lease (leader.py), answering its liveness probe meanwhile; then it runs the handlers and the
ResourceManager, and exits (status 3) as soon as its leadership can no longer be trusted."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import kopf
import structlog

from metricpipe_contract.logs import configure_logging

from . import handlers  # registers the handlers
from .config import OperatorConfig
from .leader import LeaderElection, LeaderLease
from .runtime import build_api_client

log = structlog.get_logger("metricpipe.operator")
EXIT_LEADERSHIP_LOST = 3


class _StandbyHealth(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"standing by\n")

    def log_message(self, format: str, *args: object) -> None:
        return  # probes every few seconds: not worth a line each


@contextmanager
def serve_standby_health(liveness_url: str) -> Iterator[None]:
    """Answer the liveness probe while waiting for the Lease (Kopf serves it once running)."""
    url = urlparse(liveness_url)
    server = ThreadingHTTPServer((url.hostname or "0.0.0.0", url.port or 8080), _StandbyHealth)  # noqa: S104
    threading.Thread(target=server.serve_forever, name="standby-health", daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def build_election(config: OperatorConfig) -> LeaderElection | None:
    if not config.lease_namespace:
        return None
    identity = f"{socket.gethostname()}-{os.getpid()}"
    lease = LeaderLease(build_api_client(), config.lease_namespace, config.lease_name, identity,
                        config.lease_duration_seconds)  # fmt: skip

    def stop_now(why: str) -> None:
        log.error("leadership lost; stopping so that no two replicas act", why=why)
        os._exit(EXIT_LEADERSHIP_LOST)  # no handler may write another line

    return LeaderElection(lease, retry_seconds=config.lease_retry_seconds,
                          renew_deadline=config.lease_renew_deadline_seconds,
                          on_lost=stop_now)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metricpipe-operator", description=__doc__)
    parser.add_argument(
        "--namespace",
        action="append",
        default=[],
        help="watch only these namespaces (default: the whole cluster)",
    )
    parser.add_argument(
        "--liveness", default="http://127.0.0.1:8080/healthz", help="liveness endpoint URL"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    election = build_election(handlers.CONFIG)
    if election is not None:
        with serve_standby_health(args.liveness):
            election.acquire()
    try:
        asyncio.run(
            kopf.operator(
                standalone=True,  # one replica runs at a time: the Lease decides which
                clusterwide=not args.namespace,
                namespaces=list(args.namespace),
                liveness_endpoint=args.liveness,
                # the repairs of cluster-scoped children look only at pipelines served here
                memo=kopf.Memo(namespaces=frozenset(args.namespace)),
            )
        )
    finally:
        if election is not None:
            election.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())
