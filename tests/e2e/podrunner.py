"""A test-only stand-in for the kubelet (until the development node agent exists): keeps as many
consumer processes running as the pipeline's consumer Deployment asks for.

It reads the Deployment's `spec.replicas` and the pipeline.json of the ConfigMap the operator
wrote, starts `python -m metricpipe_consumers stream` processes (each registered with the stack's
Prometheus through file_sd, job `metricpipe-consumer`), and stops the newest with SIGTERM when
the Deployment shrinks — the same signals a kubelet would send.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers import free_port
from metricpipe_devstack.env import StackEnv
from metricpipe_exporters import names
from metricpipe_exporters.rules import build_file_sd


@dataclass
class Replica:
    process: subprocess.Popen[bytes]
    sd_file: Path
    log: Path


@dataclass
class PodRunner:
    stack: StackEnv
    kube: client.ApiClient
    namespace: str
    pipeline: str
    work_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    replicas: list[Replica] = field(default_factory=list)
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (time, running)
    started: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=30)
        while self.replicas:
            self._stop_one()

    def logs(self) -> str:
        return "\n".join(f"== {r.log}\n{r.log.read_text(errors='replace')[-2000:]}"
                         for r in self.replicas)  # fmt: skip

    def _loop(self) -> None:
        apps, core = client.AppsV1Api(self.kube), client.CoreV1Api(self.kube)
        while not self._stop.is_set():
            try:
                deployment = apps.read_namespaced_deployment(
                    f"{self.pipeline}-consumer", self.namespace
                )
                config_map = core.read_namespaced_config_map(
                    f"{self.pipeline}-config", self.namespace
                )
            except ApiException:
                time.sleep(1)
                continue
            document = self.work_dir / "pipeline.json"
            document.write_text(next(iter((config_map.data or {}).values())))
            wanted = int(deployment.spec.replicas or 0) if deployment.spec else 0
            self.replicas = [
                r for r in self.replicas if r.process.poll() is None
            ]  # crashed: restart
            while len(self.replicas) < wanted:
                self._start_one(document)
            while len(self.replicas) > wanted:
                self._stop_one()
            self.timeline.append((time.time(), len(self.replicas)))
            time.sleep(1)

    def _start_one(self, document: Path) -> None:
        port = free_port()
        self.started += 1
        log = self.work_dir / f"consumer-{self.started}.log"
        env = {**os.environ, "METRICPIPE_PIPELINE_CONFIG": str(document),
               "METRICPIPE_METRICS_PORT": str(port), "METRICPIPE_SPARK_MASTER": "local[1]",
               **self.env}  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "metricpipe_consumers", "stream"], stdout=out,
                stderr=subprocess.STDOUT, env=env, start_new_session=True,
            )  # fmt: skip
        sd_file = self.stack.prometheus_file_sd_dir / f"consumer-{self.namespace}-{port}.json"
        sd_file.write_text(json.dumps(build_file_sd([f"127.0.0.1:{port}"], names.CONSUMER_JOB, {})))
        self.replicas.append(Replica(process, sd_file, log))

    def _stop_one(self) -> None:
        replica = self.replicas.pop()
        replica.sd_file.unlink(missing_ok=True)
        if replica.process.poll() is None:
            os.killpg(replica.process.pid, signal.SIGTERM)
            try:
                replica.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(replica.process.pid, signal.SIGKILL)
