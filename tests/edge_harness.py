"""The edge tests' upstream and log reading: an HTTP server the test runs on the peek API's port
(where the edge's Nginx servers proxy to), and the access logs' lines written since a mark
(LogMark, shared with the demo: metricpipe_devstack.logmark)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from metricpipe_devstack.logmark import LogMark
from metricpipe_devstack.settings import StackSettings

__all__ = ["LogMark", "UpstreamHandler", "UpstreamServer", "serve_on_peek_port"]


class UpstreamHandler(BaseHTTPRequestHandler):
    """An upstream's handler as Nginx needs it: HTTP/1.1 kept alive, quiet, JSON answers."""

    protocol_version = "HTTP/1.1"  # Nginx keeps its upstream connections alive
    disable_nagle_algorithm = True

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class UpstreamServer(ThreadingHTTPServer):
    """Closes the connections it accepted when it closes: Nginx keeps idle upstream connections
    open, and a handler thread left on one would answer for a server that is gone."""

    daemon_threads = True

    def __init__(self, port: int, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", port), handler)
        self.connections: list[socket.socket] = []

    def get_request(self) -> tuple[socket.socket, Any]:
        connection, address = super().get_request()
        self.connections.append(connection)
        return connection, address

    def server_close(self) -> None:
        super().server_close()
        for connection in self.connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def serve_on_peek_port(
    handler: type[BaseHTTPRequestHandler], wait_seconds: float = 0
) -> Iterator[UpstreamServer]:
    """`handler` answers on 127.0.0.1:<ports.peek> while the block runs. Another test may hold
    the port for a few seconds: it is tried again for up to `wait_seconds`, then the test fails
    saying who to stop."""
    port = StackSettings().ports.peek
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            server = UpstreamServer(port, handler)
            break
        except OSError as error:
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"127.0.0.1:{port} (the peek API's port) is taken: {error}; stop its user"
                )
            time.sleep(1)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
