"""Elasticsearch and OpenSearch behind one small protocol, with the same document model.

Writes are bulk requests with external versions (stale writes are refused by the server, not
overwritten) and create-only finals; 429/5xx items and connection errors are retried with
exponential back-off; authentication and index problems raise SinkError with what to fix.
A write may allow per-document refusals (`allow_refusals`): a document the sink refuses for
itself (HTTP 400 about its own data, e.g. Elasticsearch's "immense term" for a keyword over
32766 bytes) is then returned in `WriteResult.refused` for the caller to dead-letter what it
stands for, instead of stopping the pipeline (`letters.decide_refusal_scope`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import elasticsearch
import opensearchpy
import structlog

from .documents import SinkDoc, metrics_index_body, state_index_body
from .letters import decide_refusal_scope

log = structlog.get_logger("metricpipe.sink")
RETRYABLE = {429, 500, 502, 503, 504}


class SinkError(Exception):
    """The sink refused writes for a reason a retry will not fix (the message says what to do)."""


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
    ) -> None:  # fmt: skip
        self.client = client
        self.index = index
        self.state_index = f"{index}-state"
        self.keyword_bodies = keyword_bodies
        self.transport_errors = transport_errors
        self.max_attempts = max_attempts
        self.sleep = sleep

    # -- set-up --------------------------------------------------------------------------------
    def ensure_indices(self) -> None:
        for name, body in (
            (self.index, metrics_index_body()),
            (self.state_index, state_index_body()),
        ):
            if self._exists(name):
                continue
            try:
                if self.keyword_bodies:
                    self.client.indices.create(index=name, **body)
                else:
                    self.client.indices.create(index=name, body=body)
            except self.transport_errors as error:
                if "resource_already_exists" in str(error):
                    continue
                raise SinkError(f"cannot create index {name}: {error}") from error

    def _exists(self, name: str) -> bool:
        return bool(self._call(lambda: self.client.indices.exists(index=name)))

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
                    raise SinkError(_refusal_message(doc, status, item.get("error")))
            pending = retry
            if pending:  # rejected items (429/5xx): said, so a slow-down is never silent
                log.warning("sink refused documents, retrying", attempt=attempt,
                            documents=len(pending), of=len(docs))  # fmt: skip
                self.sleep(min(30.0, 0.2 * 2**attempt))
        if pending:
            raise SinkError(
                f"{len(pending)} documents still refused after {self.max_attempts} tries"
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
            response = self._call(lambda: self.client.bulk(operations=operations))
        else:
            response = self._call(lambda: self.client.bulk(body=operations))
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
            return self._call(lambda: self.client.search(index=index, **body))
        return self._call(lambda: self.client.search(index=index, body=body))

    def refresh(self) -> None:
        self._call(lambda: self.client.indices.refresh(index=f"{self.index},{self.state_index}"))

    # -- retries -------------------------------------------------------------------------------
    def _call(self, request: Callable[[], Any]) -> Any:
        for attempt in range(self.max_attempts):
            try:
                return request()
            except self.transport_errors as error:
                status = _status_of(error)
                if status in (401, 403):
                    raise SinkError(
                        f"the sink refused our credentials (HTTP {status}); check the Secret "
                        "named in spec.sink.credentialsSecretRef"
                    ) from error
                if status is not None and status not in RETRYABLE:
                    raise SinkError(f"sink request failed: {error}") from error
                log.warning("sink unavailable, retrying", attempt=attempt, error=str(error)[:200])
                self.sleep(min(30.0, 0.2 * 2**attempt))
        raise SinkError(f"the sink stayed unavailable for {self.max_attempts} tries")


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


def build_sink(
    backend: str, endpoint: str, index: str, username: str | None, password: str | None
) -> SearchSink:
    auth = (username, password) if username and password else None
    if backend == "elasticsearch":
        es = elasticsearch.Elasticsearch(endpoint, basic_auth=auth, request_timeout=30)
        errors: tuple[type[BaseException], ...] = (
            elasticsearch.ApiError, elasticsearch.TransportError,
        )  # fmt: skip
        return SearchSink(es, index, keyword_bodies=True, transport_errors=errors)
    client = opensearchpy.OpenSearch(endpoint, http_auth=auth, timeout=30)
    return SearchSink(
        client, index, keyword_bodies=False, transport_errors=(opensearchpy.TransportError,)
    )
