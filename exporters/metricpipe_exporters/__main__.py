"""`python -m metricpipe_exporters`: the lag and freshness exporter process."""

from __future__ import annotations

import signal
import threading
from functools import lru_cache
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, start_http_server

from metricpipe_consumers.sink import build_sink
from metricpipe_contract.kafka import build_librdkafka_settings, load_kafka_connection
from metricpipe_contract.logs import configure_logging

from .cache import build_cache_collector
from .collector import Collector
from .config import ExporterConfig
from .kafka_reader import KafkaReader
from .targets import PipelineTarget, build_targets, fetch_pipeline_objects

log = structlog.get_logger("metricpipe.exporter")


def build_kube_api(config: ExporterConfig) -> Any | None:
    if config.exporter_pipelines_file is not None:
        return None
    import kubernetes  # noqa: PLC0415 - only when reading the cluster

    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    return kubernetes.client.CustomObjectsApi()


def main() -> int:
    config = ExporterConfig()
    configure_logging(config.log_level)
    api = build_kube_api(config)
    try:
        kafka_settings = build_librdkafka_settings(load_kafka_connection(config.kafka_endpoint()))
    except ValueError as error:  # KafkaConnectionError: what to change in the settings
        log.error("cannot connect to Kafka as configured", error=str(error))
        return 3
    password = config.sink_password.get_secret_value() if config.sink_password else None

    @lru_cache(maxsize=256)
    def sink_for_endpoint(backend: str, endpoint: str, index: str) -> Any:
        return build_sink(backend, endpoint, index, config.sink_username, password,
                          ca_file=config.sink_ca_file)  # fmt: skip

    def sink_for(target: PipelineTarget) -> Any:
        return sink_for_endpoint(target.backend, target.endpoint, target.index)

    collector = Collector(
        KafkaReader(kafka_settings, config.exporter_kafka_timeout_seconds),
        lambda: build_targets(fetch_pipeline_objects(config, api), config),
        sink_for if config.exporter_probe_sink else None,
        config.exporter_lookup_budget_seconds,
    )
    registry = CollectorRegistry()
    registry.register(collector)
    cache = build_cache_collector(config)
    if cache is not None:
        registry.register(cache)
    start_http_server(config.exporter_port, registry=registry)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("exporting", port=config.exporter_port, interval=config.exporter_interval_seconds,
             cache=cache.address if cache else None)  # fmt: skip
    while not stop.is_set():
        snapshot = collector.collect_cycle()
        log.debug(
            "cycle", pipelines=len(snapshot.targets), seconds=round(snapshot.cycle_seconds, 3)
        )
        stop.wait(config.exporter_interval_seconds)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
