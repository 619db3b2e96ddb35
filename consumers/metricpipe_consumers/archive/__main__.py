"""`python -m metricpipe_consumers.archive`: one archiver process of a log archive."""

from __future__ import annotations

import signal
import sys
import threading
from functools import partial

import structlog

from metricpipe_contract.logs import configure_logging

from ..faults import fault_point
from ..kafka_access import ensure_kafka_access
from ..webhdfs import WebHdfs
from .document import ArchiveDocument, ArchiverConfig
from .index import build_log_indexer
from .loop import Archiver
from .metrics import ArchiverMetrics
from .store import ArchiveStore


def main() -> int:
    configure_logging()
    log = structlog.get_logger("metricpipe.archive")
    config = ArchiverConfig()
    document = ArchiveDocument.load(config.archive_config)
    kafka = ensure_kafka_access(document.kafka, keystore_dir=None)
    store = ArchiveStore(WebHdfs(document.hdfs.webhdfs_url, document.hdfs.user),
                         document.directory,
                         partial(fault_point, config.fault_exit_at))  # fmt: skip
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("archiver starting", archive=document.key, topic=document.topic,
             directory=document.directory, kafka=kafka.described)  # fmt: skip
    metrics = ArchiverMetrics(document.key)
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    archiver = Archiver(document, config, store, kafka_settings=dict(kafka.settings),
                        metrics=metrics, indexer=build_log_indexer(document, config))  # fmt: skip
    stats = archiver.run(stop)
    log.info("archiver stopped", records=stats.records, batches=stats.batches,
             files=stats.files, bytes=stats.bytes, compacted=stats.compacted)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
