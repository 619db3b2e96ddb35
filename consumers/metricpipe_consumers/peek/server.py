"""The HTTP shell: routes, authorisation, limits and the NDJSON stream (docs/peek.md).

Order of the checks: the path (400/404, before anything else), the token and the access
review (401/403), the parameters and the limits (400/413), then HDFS (404 for an archive with
no files). A records page is streamed with chunked transfer encoding as each group of files
is read; an error after the first line is sent ends the stream with an `{"error": ...}` line.
"""

from __future__ import annotations

import itertools
import json
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import requests
import structlog

from ..webhdfs import WebHdfsError
from .auth import Gate, parse_bearer
from .config import PeekConfig
from .errors import PeekError
from .forwarded import Network, client_address, parse_trusted
from .request import parse_params, parse_records_query, parse_route
from .scan import ArchiveReader, ScanBudget, Trailer
from .timerange import decide_range

log = structlog.get_logger("metricpipe.peek")
JSON = "application/json"
NDJSON = "application/x-ndjson"
HOURS_DEFAULT_SECONDS = 86_400.0


@dataclass
class Response:
    status: int
    body: bytes | Iterable[bytes]
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)  # what the request's log line says


def error_response(error: PeekError) -> Response:
    headers = {}
    if error.status == 401:
        invalid = "" if "no bearer token" in error.message else ', error="invalid_token"'
        headers["WWW-Authenticate"] = f'Bearer realm="metricpipe-peek"{invalid}'
    body = json.dumps(error.body()).encode() + b"\n"
    return Response(error.status, body, headers=headers, summary={"error": error.message})


class PeekService:
    def __init__(
        self, config: PeekConfig, gate: Gate, reader: ArchiveReader,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self.config, self.gate, self.reader = config, gate, reader
        self.now_ms, self.monotonic = now_ms, monotonic

    def handle(self, target: str, authorization: str | None) -> Response:
        try:
            return self._handle(target, authorization)
        except PeekError as error:
            return error_response(error)
        except (WebHdfsError, requests.RequestException) as error:
            log.warning("peek.hdfs_failed", error=str(error))
            return error_response(PeekError(502, f"HDFS did not answer: {error}"))

    def _handle(self, target: str, authorization: str | None) -> Response:
        route = parse_route(target)
        if route.endpoint == "healthz":
            return Response(200, b'{"ok":true}\n')
        identity = self.gate.authorize(parse_bearer(authorization), route.namespace, route.name)
        params, fields = parse_params(target)
        config, summary = self.config, {"user": identity.username}
        if route.endpoint == "hours":
            if fields or set(params) - {"since", "until"}:
                raise PeekError(400, "hours takes only since and until")
            span = decide_range(
                params.get("since"), params.get("until"), self.now_ms(),
                default_seconds=HOURS_DEFAULT_SECONDS,
                max_seconds=config.max_hours_range_seconds, limit="max_hours_range",
            )  # fmt: skip
            hours = self.reader.hours(route.namespace, route.name, span)
            return Response(200, json.dumps(hours).encode() + b"\n", summary=summary)
        query = parse_records_query(
            params, fields, default_limit=min(config.default_page_records, config.max_page_records),
            max_limit=config.max_page_records, max_pattern_chars=config.max_pattern_chars,
        )  # fmt: skip
        span = decide_range(
            query.since, query.until, self.now_ms(), default_seconds=config.default_range_seconds,
            max_seconds=config.max_range_seconds, limit="max_range",
        )  # fmt: skip
        budget = ScanBudget(config.max_scan_bytes,
                            self.monotonic() + config.request_timeout_seconds, self.monotonic,
                            config.whole_file_bytes)  # fmt: skip
        pages = self.reader.records(route.namespace, route.name, query, span, budget)
        first = next(pages)  # a PeekError before any line becomes the response's status
        return Response(200, _lines(itertools.chain([first], pages), summary), NDJSON,
                        summary=summary)  # fmt: skip


def _lines(
    pages: Iterator[list[dict[str, Any]] | Trailer], summary: dict[str, Any]
) -> Iterator[bytes]:
    records = 0
    try:
        for page in pages:
            if isinstance(page, Trailer):
                summary.update(page.as_json(), records=records)
                yield orjson.dumps(page.as_json()) + b"\n"
            else:
                records += len(page)
                yield b"".join(orjson.dumps(record) + b"\n" for record in page)
    except (PeekError, WebHdfsError, requests.RequestException) as error:
        summary.update(error=str(error), records=records)
        yield orjson.dumps({"error": f"the page ended early: {error}"}) + b"\n"


class PeekHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: PeekServer

    def do_GET(self) -> None:
        started = time.monotonic()
        service = self.server.service
        response = service.handle(self.path, self.headers.get("Authorization"))
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Cache-Control", "no-store")
        for name, value in response.headers.items():
            self.send_header(name, value)
        try:
            if isinstance(response.body, bytes):
                self.send_header("Content-Length", str(len(response.body)))
                self.end_headers()
                self.wfile.write(response.body)
            else:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in response.body:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True
            response.summary["error"] = "client went away"
        path = self.path.split("?", 1)[0]
        peer = str(self.client_address[0])
        headers = self.headers
        client = client_address(peer, headers.get("X-Real-IP"), headers.get("X-Forwarded-For"),
                                self.server.trusted)  # fmt: skip
        extra = {"via": peer} if client != peer else {}
        if request_id := self.headers.get("X-Request-Id"):  # the edge's, to match its log
            extra["request_id"] = request_id[:128]
        log.info("peek.request", path=path, status=response.status, client=client, **extra,
                 seconds=round(time.monotonic() - started, 3), **response.summary)  # fmt: skip

    def _refuse(self) -> None:
        body = b'{"error":"only GET"}\n'
        self.send_response(405)
        self.send_header("Allow", "GET")
        self.send_header("Content-Type", JSON)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:
        """Requests are logged once, by do_GET, with structlog (never a header)."""


class PeekServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], service: PeekService, timeout: float,
        trusted: tuple[Network, ...] = (),
    ) -> None:  # fmt: skip
        super().__init__(address, PeekHandler)
        self.service = service
        self.trusted = trusted
        PeekHandler.timeout = timeout


def build_server(config: PeekConfig, service: PeekService) -> PeekServer:
    server = PeekServer((config.host, config.port), service, config.request_timeout_seconds,
                        parse_trusted(config.trusted_proxies))  # fmt: skip
    if config.tls_cert_file is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(config.tls_cert_file, config.tls_key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    return server
