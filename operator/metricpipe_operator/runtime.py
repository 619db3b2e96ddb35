"""Build the operator's clients from its config (the only place that reads kubeconfig)."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient
from kubernetes import client, config

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
    admin = AdminClient(
        {
            "bootstrap.servers": operator_config.kafka_bootstrap,
            "socket.timeout.ms": int(operator_config.kafka_timeout_seconds * 1000),
            "reconnect.backoff.max.ms": 5000,
        }
    )
    return Runtime(config=operator_config, kube=KubeApplier(build_api_client()), kafka=admin)
