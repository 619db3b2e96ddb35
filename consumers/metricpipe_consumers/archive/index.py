"""A LogArchive's optional search index: the archived records also as documents in
Elasticsearch/OpenSearch, one index a day, for search in Kibana.

Exactly once: a record's document id is its Kafka partition and offset and its index follows
from its Kafka time, and a batch is indexed before it is committed on HDFS (loop.py). A crash
after the index write reads the batch again from HDFS's offsets and writes the same documents
over themselves; none is ever written under a second id. The parsed fields go into one
`flattened` (Elasticsearch) / `flat_object` (OpenSearch) field, so records whose fields differ
in type never conflict in the mapping. A document the cluster still refuses for its own
content is logged and counted, and stays on HDFS (the archive is the record of truth).
Retention deletes whole daily indices, as HDFS's deletes whole days.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import structlog

from ..documents import SinkDoc, iso
from ..sink import SearchSink, build_sink
from .document import ArchiveDocument, ArchiverConfig
from .plan import decide_expired_days

log = structlog.get_logger("metricpipe.archive")
DAY_FORMAT = "%Y.%m.%d"
BULK_DOCUMENTS = 2000  # documents per bulk request


def build_index_name(prefix: str, time_ms: int) -> str:
    """`<prefix>-YYYY.MM.DD`, the UTC day of the record's Kafka time."""
    return f"{prefix}-{datetime.fromtimestamp(time_ms / 1000, UTC):{DAY_FORMAT}}"


def build_log_doc(prefix: str, row: dict[str, Any]) -> SinkDoc:
    """One archived row (contract.archive.COLUMNS) as its document."""
    fields = orjson.loads(row["fields"]) if row["fields"] else {}
    body = {
        "@timestamp": iso(row["time_ms"]), "message": row["raw"], "key": row["key"],
        "fields": fields if isinstance(fields, dict) else {},
        "kafka": {"partition": row["partition"], "offset": row["offset"]},
    }  # fmt: skip
    return SinkDoc(build_index_name(prefix, row["time_ms"]),
                   f"{row['partition']}-{row['offset']}", body)  # fmt: skip


def build_log_index_body(backend: str) -> dict[str, Any]:
    keyword = {"type": "keyword"}
    flat = {"type": "flattened"} if backend == "elasticsearch" else {"type": "flat_object"}
    return {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0},
        "mappings": {
            "dynamic": False,  # the fields below only: nothing a record holds adds a mapping
            "properties": {
                "@timestamp": {"type": "date"}, "message": {"type": "text"}, "key": keyword,
                "fields": flat,
                "kafka": {"properties": {"partition": {"type": "integer"},
                                         "offset": {"type": "long"}}},
            },
        },
    }  # fmt: skip


def decide_expired_indices(
    names: Iterable[str], prefix: str, now_ms: int, retention_days: int
) -> list[str]:
    """The daily indices of `prefix` wholly older than the retention (the HDFS days' rule)."""
    by_day: dict[str, str] = {}
    for name in names:
        day = name.removeprefix(f"{prefix}-")
        if day == name or len(day) != len("YYYY.MM.DD"):
            continue
        by_day[f"dt={day.replace('.', '-')}"] = name
    return [by_day[day] for day in decide_expired_days(by_day, now_ms, retention_days)]


class LogIndexer:
    def __init__(self, sink: SearchSink, prefix: str, backend: str) -> None:
        self.sink = sink
        self.prefix = prefix
        self.body = build_log_index_body(backend)
        self.ensured: set[str] = set()

    def index(self, table: pa.Table) -> tuple[int, int]:
        """Writes every row of the table; (written, refused). Raises SinkError when the
        cluster cannot be written (the batch is then not committed either)."""
        docs = [build_log_doc(self.prefix, row) for row in table.to_pylist()]
        for name in sorted({doc.index for doc in docs} - self.ensured):
            self.sink.ensure_index(name, self.body)
            self.ensured.add(name)
        written = refused = 0
        for chunk in _chunks(docs, BULK_DOCUMENTS):
            result = self.sink.write(list(chunk), allow_refusals=True)
            written += result.written + result.conflicts
            refused += len(result.refused)
        return written, refused

    def expire(self, now_ms: int, retention_days: int) -> list[str]:
        names = self.sink.list_indices(f"{self.prefix}-*")
        expired = decide_expired_indices(names, self.prefix, now_ms, retention_days)
        for name in expired:
            self.sink.delete_index(name)
            self.ensured.discard(name)
            log.info("index expired", index=name, retention_days=retention_days)
        return expired


def build_log_indexer(document: ArchiveDocument, config: ArchiverConfig) -> LogIndexer | None:
    """The indexer spec.index asks for (credentials from the environment), or None."""
    target = document.index
    if target is None:
        return None
    password = config.sink_password.get_secret_value() if config.sink_password else None
    api_key = config.sink_api_key.get_secret_value() if config.sink_api_key else None
    sink = build_sink(target.backend, target.endpoint, target.prefix, config.sink_username,
                      password, ca_file=target.ca_file, api_key=api_key)  # fmt: skip
    return LogIndexer(sink, target.prefix, target.backend)


def _chunks(docs: Sequence[SinkDoc], size: int) -> Iterable[Sequence[SinkDoc]]:
    for start in range(0, len(docs), size):
        yield docs[start : start + size]
