"""Build the operator's clients from its config (the only place that reads kubeconfig)."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient
from kubernetes import client, config

from metricpipe_contract.kafka import build_librdkafka_settings, load_kafka_connection

from .config import OperatorConfig
from .reconcile.kubeapply import KubeApplier
from .reconcile.pipeline import Runtime


def build_api_client() -> client.ApiClient:
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def build_runtime(operator_config: OperatorConfig) -> Runtime:
    """Raises KafkaConnectionError when the operator's Kafka settings or mounted credentials
    do not fit together (the message says what to change)."""
    settings = build_librdkafka_settings(load_kafka_connection(operator_config.kafka_endpoint()))
    admin = AdminClient(
        {
            **settings,
            "socket.timeout.ms": int(operator_config.kafka_timeout_seconds * 1000),
            "reconnect.backoff.max.ms": 5000,
        }
    )
    return Runtime(
        config=operator_config, kube=KubeApplier(build_api_client()), kafka=admin,
        kafka_settings=settings,
    )  # fmt: skip
