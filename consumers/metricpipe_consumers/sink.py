"""Elasticsearch and OpenSearch behind one small protocol, with the same document model.

Writes are bulk requests with external versions (stale writes are refused by the server, not
overwritten) and create-only finals; 429/5xx items and connection errors are retried with
exponential back-off; authentication, permission, TLS and index problems raise SinkError, whose
first word is the SinkReady reason (metricpipe_contract.sink) and whose text says what to
fix. Elasticsearch is spoken in the REST API version of its server: the client asks for 9, and
an 8.x server's refusal of that version switches it to 8 (`decide_api_version`), once.
A write may allow per-document refusals (`allow_refusals`): a document the sink refuses for
itself (HTTP 400 about its own data, e.g. Elasticsearch's "immense term" for a keyword over
32766 bytes) is then returned in `WriteResult.refused` for the caller to dead-letter what it
stands for, instead of stopping the pipeline (`letters.decide_refusal_scope`).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any, Protocol

import elastic_transport
import elasticsearch
import opensearchpy
import structlog

from metricpipe_contract.kafka import TLS_VERIFICATION_FAILED
from metricpipe_contract.retry import decide_retry_delay
from metricpipe_contract.sink import (
    SINK_AUTH_FAILED,
    SINK_FORBIDDEN,
    SINK_REFUSED,
    SINK_UNREACHABLE,
)

from .documents import SinkDoc, metrics_index_body, state_index_body
from .letters import decide_refusal_scope

log = structlog.get_logger("metricpipe.sink")
RETRYABLE = {429, 500, 502, 503, 504}
RETRY_MIN_SECONDS, RETRY_MAX_SECONDS = 0.2, 30.0  # between tries of one write or request
# The REST API version the elasticsearch client asks for unless told otherwise (its major).
CLIENT_API_VERSION = installed_version("elasticsearch").partition(".")[0]


class SinkError(Exception):
    """The sink refused us for a reason a retry will not fix: `reason` (SinkReady's), then
    what happened and what to change."""

    def __init__(self, message: str, reason: str = SINK_REFUSED) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class Refusal:
    """A document the sink refused for its own content (not retried)."""

    doc: SinkDoc
    status: int
    reason: str  # the sink's error type and reason, for the dead letter's detail


@dataclass(frozen=True)
class WriteResult:
    written: int
    conflicts: int  # refused because the sink already holds the same or newer data
    refused: tuple[Refusal, ...] = field(default=())  # only with allow_refusals


class MetricSink(Protocol):
    def ensure_indices(self) -> None: ...
    def write(self, docs: list[SinkDoc], *, allow_refusals: bool = False) -> WriteResult: ...
    def search(
        self, index: str, query: dict[str, Any], size: int = 10_000, sort: list[Any] | None = None
    ) -> list[dict[str, Any]]: ...
    def search_all(
        self, index: str, query: dict[str, Any], sort: list[Any]
    ) -> list[dict[str, Any]]: ...
    def refresh(self) -> None: ...


class SearchSink:
    """One implementation over either official client; `keyword_bodies` selects call style
    (the elasticsearch 9 client takes keyword arguments, opensearch-py takes `body=`)."""

    def __init__(
        self, client: Any, index: str, *, keyword_bodies: bool,
        transport_errors: tuple[type[BaseException], ...], max_attempts: int = 8,
        sleep: Callable[[float], None] = time.sleep,
        speak_version: Callable[[int], Any] | None = None,
    ) -> None:  # fmt: skip
        self.client = client
        # Elasticsearch only: a client for an older REST API version (see decide_api_version)
        self.speak_version = speak_version
        self.negotiated = speak_version is None
        self.index = index
        self.state_index = f"{index}-state"
        self.keyword_bodies = keyword_bodies
        self.transport_errors = transport_errors
        self.max_attempts = max_attempts
        self.sleep = sleep

    # -- set-up --------------------------------------------------------------------------------
    def ensure_indices(self) -> None:
        self.ensure_index(self.index, metrics_index_body())
        self.ensure_index(self.state_index, state_index_body())

    def ensure_index(self, name: str, body: dict[str, Any]) -> None:
        """Creates the index unless it exists (another writer creating it first is fine)."""
        if self._exists(name):
            return
        try:
            if self.keyword_bodies:
                self.client.indices.create(index=name, **body)
            else:
                self.client.indices.create(index=name, body=body)
        except self.transport_errors as error:
            if "resource_already_exists" in str(error):
                return
            raise _refusal_error(error, f"cannot create index {name}") from error

    def list_indices(self, pattern: str) -> list[str]:
        """Names of the indices matching `pattern` (a wildcard expression)."""
        found = self._call(lambda: self.client.indices.get(index=pattern, ignore_unavailable=True,
                                                           allow_no_indices=True),
                           f"listing {pattern}")  # fmt: skip
        return sorted(found)

    def delete_index(self, name: str) -> None:
        self._call(lambda: self.client.indices.delete(index=name, ignore_unavailable=True),
                   f"deleting {name}")  # fmt: skip

    def _exists(self, name: str) -> bool:
        return bool(
            self._call(lambda: self.client.indices.exists(index=name), f"checking index {name}")
        )

    # -- writes --------------------------------------------------------------------------------
    def write(self, docs: list[SinkDoc], *, allow_refusals: bool = False) -> WriteResult:
        """Write every document, or raise SinkError. With `allow_refusals`, documents the sink
        refuses for their own content are returned in `refused` (see the module's doc)."""
        pending = list(docs)
        written = conflicts = 0
        refused: list[Refusal] = []
        for attempt in range(self.max_attempts):
            if not pending:
                break
            items = self._bulk(pending)
            retry: list[SinkDoc] = []
            for doc, item in zip(pending, items, strict=True):
                status = int(item.get("status", 500))
                if status < 300:
                    written += 1
                elif status == 409:
                    conflicts += 1
                elif status in RETRYABLE:
                    retry.append(doc)
                elif allow_refusals and decide_refusal_scope(status, item.get("error")) == (
                    "document"
                ):
                    refused.append(Refusal(doc, status, _describe(item.get("error"))))
                else:
                    raise SinkError(_refusal_message(doc, status, item.get("error")),
                                    decide_status_reason(status))  # fmt: skip
            pending = retry
            if pending:  # rejected items (429/5xx): said, so a slow-down is never silent
                log.warning("sink refused documents, retrying", attempt=attempt,
                            documents=len(pending), of=len(docs))  # fmt: skip
                self.sleep(self._retry_delay(attempt))
        if pending:
            raise SinkError(
                f"{len(pending)} documents still refused after {self.max_attempts} tries",
                SINK_UNREACHABLE,
            )
        for refusal in refused:
            log.warning("sink refused a document; what it stands for is dead-lettered",
                        doc=refusal.doc.doc_id, status=refusal.status,
                        reason=refusal.reason[:300])  # fmt: skip
        return WriteResult(written, conflicts, tuple(refused))

    def _bulk(self, docs: list[SinkDoc]) -> list[dict[str, Any]]:
        operations: list[dict[str, Any]] = []
        for doc in docs:
            action: dict[str, Any] = {"_index": doc.index, "_id": doc.doc_id}
            if doc.version is not None:
                action.update({"version": doc.version, "version_type": "external"})
            operations += [{"create" if doc.create_only else "index": action}, doc.body]
        if self.keyword_bodies:
            response = self._call(lambda: self.client.bulk(operations=operations), "writing")
        else:
            response = self._call(lambda: self.client.bulk(body=operations), "writing")
        return [next(iter(item.values())) for item in response["items"]]

    # -- reads ---------------------------------------------------------------------------------
    def search(
        self, index: str, query: dict[str, Any], size: int = 10_000, sort: list[Any] | None = None
    ) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"query": query, "size": size}
        if sort:
            body["sort"] = sort
        response = self._search_raw(index, body)
        return [{"_id": hit["_id"], **hit["_source"]} for hit in response["hits"]["hits"]]

    def search_all(
        self, index: str, query: dict[str, Any], sort: list[Any], page: int = 5_000
    ) -> list[dict[str, Any]]:
        """Every hit, page by page (search_after); `sort` must order hits uniquely."""
        found: list[dict[str, Any]] = []
        after: list[Any] | None = None
        while True:
            body: dict[str, Any] = {"query": query, "size": page, "sort": sort}
            if after is not None:
                body["search_after"] = after
            response = self._search_raw(index, body)
            hits = response["hits"]["hits"]
            found += [{"_id": hit["_id"], **hit["_source"]} for hit in hits]
            if len(hits) < page:
                return found
            after = hits[-1]["sort"]

    def _search_raw(self, index: str, body: dict[str, Any]) -> Any:
        if self.keyword_bodies:
            return self._call(lambda: self.client.search(index=index, **body), f"reading {index}")
        return self._call(lambda: self.client.search(index=index, body=body), f"reading {index}")

    def refresh(self) -> None:
        both = f"{self.index},{self.state_index}"
        self._call(lambda: self.client.indices.refresh(index=both), f"refreshing {both}")

    # -- retries -------------------------------------------------------------------------------
    @staticmethod
    def _retry_delay(attempt: int) -> float:
        """0.2 s doubling to 30 s, with jitter: replicas refused together come back apart."""
        return decide_retry_delay(attempt, RETRY_MIN_SECONDS, RETRY_MAX_SECONDS, random.random())

    def _call(self, request: Callable[[], Any], doing: str = "sink request failed") -> Any:
        if not self.negotiated:
            self._negotiate()
        for attempt in range(self.max_attempts):
            try:
                return request()
            except self.transport_errors as error:
                status = _status_of(error)
                if status is None and is_tls_verification_error(error):
                    raise SinkError(_tls_message(error), TLS_VERIFICATION_FAILED) from error
                if status is not None and status not in RETRYABLE:
                    raise _refusal_error(error, doing) from error
                log.warning("sink unavailable, retrying", attempt=attempt, error=str(error)[:200])
                self.sleep(self._retry_delay(attempt))
        raise SinkError(
            f"the sink stayed unavailable for {self.max_attempts} tries", SINK_UNREACHABLE
        )

    def _negotiate(self) -> None:
        """Elasticsearch: ask for the client's REST API version once (any GET); an older
        server refuses it by name and says which it speaks, and the sink switches to that."""
        self.negotiated = True
        try:
            self.client.perform_request("GET", "/", headers={"accept": "application/json"})
        except self.transport_errors as error:
            version = decide_api_version(_status_of(error), str(error))
            if version is not None and self.speak_version is not None:
                log.info("the sink speaks an older REST API version", version=version)
                self.client = self.speak_version(version)


def decide_api_version(status: int | None, text: str) -> int | None:
    """The REST API version an Elasticsearch server refused our client's for, as it says:
    HTTP 400 media_type_header_exception "Accept version must be either version 8 or 7, but
    found 9" -> 8. None for any other answer (the server speaks the client's version)."""
    if status != 400 or "media_type_header_exception" not in text:
        return None
    found = re.search(r"must be either version (\d+)", text)
    return int(found.group(1)) if found else None


def decide_status_reason(status: int | None) -> str:
    """SinkReady's reason for an HTTP refusal."""
    return {401: SINK_AUTH_FAILED, 403: SINK_FORBIDDEN}.get(status or 0, SINK_REFUSED)


def is_tls_verification_error(error: BaseException) -> bool:
    """A connection the client ended because the server's certificate was not trusted (an
    unknown CA, a name it is not issued for, an expired certificate)."""
    return "CERTIFICATE_VERIFY_FAILED" in str(error) or "certificate verify failed" in str(error)


def _tls_message(error: BaseException) -> str:
    detail = re.search(r"certificate verify failed[^(')\]]*", str(error))
    said = detail.group(0).strip() if detail else str(error)[:300]
    return (
        f"the sink's TLS certificate is not trusted ({said}): "
        "set spec.sink.caSecretRef to a Secret holding the CA that signed it (key ca.crt), "
        "and check that the endpoint's host name is one the certificate names"
    )


def _refusal_error(error: BaseException, doing: str) -> SinkError:
    """A request's refusal as SinkError, with what to change for 401 and 403."""
    status = _status_of(error)
    reason = decide_status_reason(status)
    if reason == SINK_AUTH_FAILED:
        return SinkError(
            f"{doing}: the sink refused our credentials (HTTP 401): check the user name and "
            "password or API key in the Secret named by spec.sink.credentialsSecretRef", reason,
        )  # fmt: skip
    if reason == SINK_FORBIDDEN:
        return SinkError(
            f"{doing}: the sink's user lacks a privilege (HTTP 403: {_server_reason(error)}): "
            "grant it the pipeline's role (docs/sink-security.md) on the pipeline's index and "
            "its -state index", reason,
        )  # fmt: skip
    return SinkError(f"{doing}: {error}", reason)


def _server_reason(error: BaseException) -> str:
    """The server's own reason of an API error (e.g. which action on which index), else the
    error's text."""
    body = getattr(error, "body", None) or getattr(error, "info", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("reason", body["error"]))[:400]
    return "the server gave no reason"  # a HEAD request's answer has no body


def _describe(error: object) -> str:
    """`type: reason (caused by: reason)` of a bulk item's error."""
    if not isinstance(error, dict):
        return str(error)
    text = f"{error.get('type', 'error')}: {error.get('reason', '')}"
    caused = error.get("caused_by")
    if isinstance(caused, dict) and caused.get("reason"):
        text += f" (caused by {caused.get('type', 'error')}: {caused['reason']})"
    return text


def _refusal_message(doc: SinkDoc, status: int, error: object) -> str:
    """A stopping refusal, with what to change."""
    where = f"{doc.index}/{doc.doc_id} refused with HTTP {status}: {_describe(error)}"
    if status in (401, 403):
        return (
            f"{where} (the sink refused our credentials or permissions: check the Secret "
            "named in spec.sink.credentialsSecretRef and the user's index privileges)"
        )
    if status == 404:
        return f"{where} (the index is missing: it was deleted while the pipeline ran?)"
    return (
        f"{where} (a mapping conflict on the pipeline's own fields means the index was "
        "created by someone else: delete it or choose another spec.sink.index)"
    )


def _status_of(error: BaseException) -> int | None:
    for attribute in ("status_code", "status"):
        value = getattr(error, attribute, None)
        if isinstance(value, int):
            return value
    meta = getattr(error, "meta", None)
    status = getattr(meta, "status", None)
    return status if isinstance(status, int) else None


class _ApiVersionTransport(elastic_transport.Transport):
    """Elasticsearch's transport asking for REST API version `api_version` instead of the
    client's own (the server's compatibility header, `compatible-with=N`)."""

    api_version = CLIENT_API_VERSION

    def perform_request(self, method: str, target: str, **kwargs: Any) -> Any:
        headers = kwargs.get("headers")
        own = f"compatible-with={CLIENT_API_VERSION}"
        if headers is not None and own != f"compatible-with={self.api_version}":
            headers = headers.copy()
            for name in ("accept", "content-type"):
                value = headers.get(name)
                if value and own in value:
                    headers[name] = value.replace(own, f"compatible-with={self.api_version}")
            kwargs["headers"] = headers
        return super().perform_request(method, target, **kwargs)


def build_elasticsearch_client(
    endpoint: str, *, api_version: int | None = None, **options: Any
) -> elasticsearch.Elasticsearch:
    """The elasticsearch client, asking for `api_version` of the REST API (default: the
    client's own)."""
    if api_version is None:
        return elasticsearch.Elasticsearch(endpoint, **options)
    transport = type(f"ApiVersion{api_version}Transport", (_ApiVersionTransport,),
                     {"api_version": str(api_version)})  # fmt: skip
    return elasticsearch.Elasticsearch(endpoint, transport_class=transport, **options)


def build_sink(
    backend: str, endpoint: str, index: str, username: str | None, password: str | None,
    *, ca_file: str | None = None, api_key: str | None = None,
) -> SearchSink:  # fmt: skip
    """A sink over the backend's client: basic auth (username and password) or, Elasticsearch
    only, an API key; HTTPS verified against `ca_file` when given, else the system's CAs.
    A `ca_file` that is not there (its Secret, mounted as optional, is missing or lacks the
    key) raises SinkError: TLSVerificationFailed, naming spec.sink.caSecretRef."""
    if ca_file and not Path(ca_file).is_file():
        raise SinkError(
            f"no CA certificate at {ca_file}: the Secret named by spec.sink.caSecretRef does "
            "not exist in the pipeline's namespace or lacks the key it names; create it, or "
            "fix the key",
            TLS_VERIFICATION_FAILED,
        )
    auth = (username, password) if username and password else None
    if backend == "elasticsearch":
        options: dict[str, Any] = {"request_timeout": 30}
        if api_key:
            options["api_key"] = api_key
        elif auth:
            options["basic_auth"] = auth
        if ca_file:
            options["ca_certs"] = ca_file
        errors: tuple[type[BaseException], ...] = (
            elasticsearch.ApiError, elasticsearch.TransportError,
        )  # fmt: skip
        return SearchSink(
            build_elasticsearch_client(endpoint, **options), index, keyword_bodies=True,
            transport_errors=errors,
            speak_version=lambda version: build_elasticsearch_client(
                endpoint, api_version=version, **options),
        )  # fmt: skip
    tls: dict[str, Any] = {"ca_certs": ca_file, "verify_certs": True} if ca_file else {}
    client = opensearchpy.OpenSearch(endpoint, http_auth=auth, timeout=30, **tls)
    return SearchSink(
        client, index, keyword_bodies=False, transport_errors=(opensearchpy.TransportError,)
    )
