"""A stack start that fails stops what it started, and only that."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from metricpipe_devstack import stack
from metricpipe_devstack.errors import StackError
from metricpipe_devstack.settings import StackSettings

NAMES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kafka",
         "hdfs-namenode", "hdfs-datanode",
         "elasticsearch", "elasticsearch-secure", "opensearch", "opensearch-secure", "prometheus",
         "prometheus3", "redis",
         "edge-nginx-a", "edge-nginx-b", "edge-haproxy",
         "pod-discovery",
         "spark", "containerd",
         "kubelet")  # fmt: skip


class FakeComponent:
    def __init__(self, name: str, running: bool, log: list[str]) -> None:
        self.name, self.running, self.log = name, running, log

    def is_running(self) -> bool:
        return self.running

    def argv(self) -> list[str]:
        return [self.name]

    def stop(self) -> str:
        self.log.append(f"stop {self.name}")
        self.running = False
        return "stopped"


def start_failing_at_kafka(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, running: set[str]
) -> list[str]:
    log: list[str] = []
    components = [FakeComponent(n, n in running, log) for n in NAMES]

    def started(group: list[Any], _echo: Any) -> None:
        for component in group:
            component.running = True
            log.append(f"start {component.name}")

    def wait(group: list[Any], _echo: Any) -> None:
        if any(c.name == "kafka" for c in group):
            raise StackError("kafka", "did not become healthy")

    def delete_bridge(*_: object) -> str:
        log.append("delete bridge")
        return "deleted"

    fakes: dict[str, Any] = {
        "build_components": lambda _settings: components,
        "reserve_ports": lambda *_: None,
        "_fresh_start": lambda *_: log.append("fresh start"),
        "ensure_bridge": lambda *_: log.append("bridge"),
        "delete_bridge": delete_bridge,
        "start_node": lambda *_: log.append("start node"),
        "stop_node": lambda *_: log.append("stop node"),
        "_start": started,
        "_wait": wait,
    }
    for name, fake in fakes.items():
        monkeypatch.setattr(stack, name, fake)
    settings = StackSettings(stack_dir=tmp_path / ".stack")
    with pytest.raises(StackError, match="kafka"):
        stack.stack_up(settings, echo=lambda _text: None, fetch=False)
    return log


def test_a_fresh_start_that_fails_stops_everything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = start_failing_at_kafka(monkeypatch, tmp_path, running=set())
    assert "stop node" in log
    assert log[-1] == "delete bridge"
    stopped = {line.removeprefix("stop ") for line in log if line.startswith("stop ")}
    started = {line.removeprefix("start ") for line in log if line.startswith("start ")}
    assert started
    assert started <= stopped


def test_what_ran_before_keeps_running(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    log = start_failing_at_kafka(monkeypatch, tmp_path, running={"etcd", "containerd", "kubelet"})
    assert "stop etcd" not in log
    assert "stop node" not in log  # the node was running: left alone
    assert "delete bridge" not in log
    assert "stop kafka" in log
    assert "stop hdfs-namenode" in log
    assert "stop hdfs-datanode" in log
    assert "stop edge-haproxy" in log
    assert "stop kube-apiserver" in log
