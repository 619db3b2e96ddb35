"""`python -m metricpipe_consumers.peek`: the peek API (docs/peek.md)."""

from __future__ import annotations

import signal
import threading
from typing import Any

import structlog
from kubernetes import client
from kubernetes import config as kube_config

from metricpipe_contract.logs import configure_logging

from ..webhdfs import WebHdfs
from .auth import Gate, KubeReviews
from .config import PeekConfig
from .scan import ArchiveReader
from .server import PeekService, build_server


def build_kube_client(config: PeekConfig) -> Any:
    if config.kubeconfig is not None:
        return kube_config.new_client_from_config(config_file=str(config.kubeconfig))
    try:
        kube_config.load_incluster_config()
        return client.ApiClient()
    except kube_config.ConfigException:
        return kube_config.new_client_from_config()  # KUBECONFIG or ~/.kube/config


def main() -> int:
    config = PeekConfig()  # type: ignore[call-arg]  # webhdfs_url comes from the environment
    configure_logging(config.log_level)
    log = structlog.get_logger("metricpipe.peek")
    hdfs = WebHdfs(config.webhdfs_url, config.hdfs_user, timeout=config.hdfs_timeout_seconds)
    reviews = KubeReviews(build_kube_client(config))
    gate = Gate(reviews, cache_seconds=config.review_cache_seconds,
                audiences=config.token_audiences)  # fmt: skip
    service = PeekService(config, gate, ArchiveReader(hdfs, config.archive_root))
    server = build_server(config, service)
    stop = threading.Event()

    def _stop(*_: Any) -> None:
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    host, port = server.server_address[:2]
    log.info("peek.listening", host=host, port=port, tls=config.tls_cert_file is not None,
             archive_root=config.archive_root, hdfs_user=config.hdfs_user,
             max_range_seconds=config.max_range_seconds, max_scan_bytes=config.max_scan_bytes,
             max_page_records=config.max_page_records,
             trusted_proxies=list(config.trusted_proxies))  # fmt: skip
    server.serve_forever()
    server.server_close()
    log.info("peek.stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
