"""Build and start the ResourceManager inside the operator process (a daemon thread). With
several operator replicas only the leader runs (leader.py), its handlers and this loop alike."""

from __future__ import annotations

import threading

from kubernetes import client

from ..config import OperatorConfig
from .loop import LoopSettings, ResourceManager
from .model import PolicyConfig


def build_resource_manager(config: OperatorConfig, api: client.ApiClient) -> ResourceManager | None:
    if not config.prometheus_url:
        return None
    from .wake import decide_stream  # noqa: PLC0415 - the policy loads only when scaling runs

    settings = LoopSettings(
        prometheus_url=config.prometheus_url, interval_seconds=config.scaling_interval_seconds,
        namespace=config.scaling_namespace,
    )  # fmt: skip
    policy = PolicyConfig(startup_seconds=config.startup_seconds,
                          rebalance_seconds=config.rebalance_seconds,
                          cooldown_seconds=config.scaling_cooldown_seconds,
                          sleep_max_events_per_hour=config.sleep_max_events_per_hour)  # fmt: skip
    return ResourceManager(api, settings, policy, decide_stream)


def start_in_thread(manager: ResourceManager) -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=manager.run, args=(stop,), name="resourcemanager", daemon=True).start()
    return stop
