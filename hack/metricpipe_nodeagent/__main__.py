"""python -m metricpipe_nodeagent — run the development node agent (see docs/node-agent.md)."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import structlog
from kubernetes import config

from .agent import NodeAgent
from .settings import AgentSettings


def main() -> None:
    settings = AgentSettings()
    stop = threading.Event()

    def request_stop(signum: int, _: FrameType | None) -> None:
        structlog.get_logger("nodeagent").info("stopping", signal=signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    api = config.new_client_from_config()  # KUBECONFIG: the stack's admin kubeconfig
    print(f"metricpipe node agent (development only): node {settings.node_name}, "
          f"pods in {settings.work_dir}", flush=True)  # fmt: skip
    NodeAgent(api, settings).run(stop)


if __name__ == "__main__":
    main()
