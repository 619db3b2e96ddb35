"""Build and start the ResourceManager inside the operator process (a daemon thread)."""

from __future__ import annotations

import os
import socket
import threading

from kubernetes import client

from ..config import OperatorConfig
from .lease import LeaderLease
from .loop import LoopSettings, ResourceManager
from .model import PolicyConfig


def build_resource_manager(config: OperatorConfig, api: client.ApiClient) -> ResourceManager | None:
    if not config.prometheus_url:
        return None
    from .policy import decide  # noqa: PLC0415 - the policy loads only when scaling runs

    lease = None
    if config.lease_namespace:
        identity = f"{socket.gethostname()}-{os.getpid()}"
        lease = LeaderLease(api, config.lease_namespace, config.lease_name, identity,
                            config.lease_duration_seconds)  # fmt: skip
    settings = LoopSettings(
        prometheus_url=config.prometheus_url, interval_seconds=config.scaling_interval_seconds,
        namespace=config.scaling_namespace,
    )  # fmt: skip
    policy = PolicyConfig(startup_seconds=config.startup_seconds,
                          rebalance_seconds=config.rebalance_seconds)  # fmt: skip
    return ResourceManager(api, settings, policy, decide, lease)


def start_in_thread(manager: ResourceManager) -> threading.Event:
    stop = threading.Event()
    threading.Thread(target=manager.run, args=(stop,), name="resourcemanager", daemon=True).start()
    return stop
