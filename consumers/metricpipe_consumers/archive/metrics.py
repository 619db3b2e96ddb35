"""Prometheus metrics of an archiver replica and its probe endpoints (/metrics, /startupz,
/healthz, /readyz: the consumer's rules, metrics.decide_health)."""

from __future__ import annotations

import time
from http.server import ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from metricpipe_contract import names

from ..metrics import decide_health, serve_endpoints


class ArchiverMetrics:
    def __init__(self, archive: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.archive = archive
        r = self.registry

        def counter(name: str, doc: str) -> Any:
            return Counter(name, doc, ["archive"], registry=r).labels(archive)

        self.records = counter(names.ARCHIVE_RECORDS, "Records committed to HDFS.")
        self.bytes = counter(names.ARCHIVE_BYTES, "Bytes of the files committed to HDFS.")
        self.files = counter(names.ARCHIVE_FILES, "Files committed to HDFS.")
        self.compacted = counter(names.ARCHIVE_COMPACTED_FILES, "Files merged away.")
        self.index_refused = counter(names.ARCHIVE_INDEX_REFUSED,
                                     "Documents the index refused (kept on HDFS).")  # fmt: skip
        self.busy = counter(names.ARCHIVE_BUSY_SECONDS,
                            "Seconds spent on records (not waiting for Kafka).")  # fmt: skip
        family = names.ARCHIVE_COMMIT_SECONDS_BUCKET.removesuffix("_bucket")
        self.commit_seconds = Histogram(
            family, "Time to commit one batch to HDFS.", ["archive"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=r,
        ).labels(archive)  # fmt: skip
        self.next_offset = Gauge(names.ARCHIVE_NEXT_OFFSET, "The next offset to archive.",
                                 ["archive", "partition"], registry=r)  # fmt: skip
        self.newest = Gauge(names.ARCHIVE_NEWEST_RECORD,
                            "Kafka time of the newest committed record (Unix seconds).",
                            ["archive", "partition"], registry=r)  # fmt: skip
        self.started = False
        self._last_alive = time.monotonic()

    def alive(self) -> None:
        """The loop made progress (every iteration; the first after assignment marks start)."""
        self._last_alive = time.monotonic()
        self.started = True

    def committed(self, partition: int, *, records: int, size: int, files: int,
                  seconds: float, next_offset: int, newest_ms: int) -> None:  # fmt: skip
        self.records.inc(records)
        self.bytes.inc(size)
        self.files.inc(files)
        self.commit_seconds.observe(seconds)
        self.next_offset.labels(self.archive, str(partition)).set(next_offset)
        self.newest.labels(self.archive, str(partition)).set(newest_ms / 1000)

    def assigned(self, partition: int, next_offset: int | None) -> None:
        """A partition taken over: its next offset as recovered from HDFS."""
        if next_offset is not None:
            self.next_offset.labels(self.archive, str(partition)).set(next_offset)

    def health(self, path: str) -> tuple[int, bytes] | None:
        return decide_health(path, self.started, time.monotonic() - self._last_alive)

    def serve(self, port: int) -> ThreadingHTTPServer:
        return serve_endpoints(self.registry, self.health, port)
