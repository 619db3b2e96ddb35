"""The development node agent's pure parts: pod spec → local plan, pod status, back-off."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from metricpipe_nodeagent.node import build_node
from metricpipe_nodeagent.podplan import Host, PlanError, build_pod_plan, list_declared_ports
from metricpipe_nodeagent.podstatus import (
    ContainerView,
    Terminated,
    build_pod_status,
    carry_transition_times,
    decide_backoff,
    decide_phase,
    decide_restart,
)
from metricpipe_nodeagent.settings import AgentSettings
from metricpipe_operator.api.model import MetricPipelineSpec
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.consumer import build_deployment
from metricpipe_operator.reconcile.names import PipelineRef

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POD_DIR = Path("/var/agent/team-a_web_1234")


def consumer_pod(**spec_extra: Any) -> dict[str, Any]:
    """The pod the ReplicaSet controller would create from the operator's real Deployment."""
    spec = MetricPipelineSpec.model_validate(
        {"source": {"tag": "web.**"}, "metric": {"aggregation": "count"}, **spec_extra}
    )
    deployment = build_deployment(
        PipelineRef("team-a", "web", "uid-1", 3), spec, OperatorConfig(), "hash", replicas=1
    )
    template = deployment["spec"]["template"]
    return {
        "metadata": {
            **template["metadata"],
            "name": "web-consumer-abc",
            "namespace": "team-a",
            "uid": "pod-uid",
        },
        "spec": {**template["spec"], "nodeName": "metricpipe-dev-node"},
    }


def lookup_from(objects: Mapping[tuple[str, str], Mapping[str, bytes]]) -> Any:
    return lambda kind, _namespace, name: objects.get((kind, name))


def host(pod: Mapping[str, Any], **extra: Any) -> Host:
    ports = {key: 40000 + i for i, key in enumerate(list_declared_ports(pod))}
    return Host(
        **{
            "pod_dir": POD_DIR,
            "ports": ports,
            "python": "/venv/bin/python",
            "local_images": ("ghcr.io/metricpipe/",),
            "inherited": {"PATH": "/usr/bin", "SECRET_OF_THE_AGENT": "x"},
            **extra,
        }
    )


CONFIG_MAP = {("configMap", "web-config"): {"pipeline.json": b"{}"}}


def test_the_operator_consumer_pod_tolerates_the_agent_node_taint() -> None:
    (taint,) = build_node(AgentSettings())["spec"]["taints"]
    (toleration,) = consumer_pod()["spec"]["tolerations"]
    assert toleration["key"] == taint["key"]
    assert toleration["effect"] == taint["effect"]
    assert toleration["operator"] == "Exists"


def test_consumer_pod_runs_as_the_local_python_with_its_mounts_and_port() -> None:
    pod = consumer_pod()
    plan = build_pod_plan(pod, lookup_from(CONFIG_MAP), host(pod))
    (container,) = plan.containers
    assert container.argv == ("/venv/bin/python", "-m", "metricpipe_consumers", "stream")
    volumes = POD_DIR / "volumes"
    assert container.env["METRICPIPE_PIPELINE_CONFIG"] == f"{volumes}/config/pipeline.json"
    assert container.env["TMPDIR"] == f"{volumes}/tmp"  # noqa: S108 - a volume dir
    assert container.env["METRICPIPE_METRICS_PORT"] == "40000"  # its own loopback port
    assert container.env["POD_NAME"] == "web-consumer-abc"
    assert container.env["PATH"] == "/usr/bin"
    assert "SECRET_OF_THE_AGENT" not in container.env  # not the agent's whole environment
    assert container.ports["metrics"] == 40000
    assert container.readiness is not None
    assert container.readiness.port == 40000
    assert container.readiness.path == "/readyz"
    assert plan.volumes == {"config": {"pipeline.json": b"{}"}, "tmp": {}}
    assert plan.restart_policy == "Always"


def test_credentials_come_from_the_secret() -> None:
    pod = consumer_pod(sink={"credentialsSecretRef": {"name": "es-creds"}})
    objects = {**CONFIG_MAP, ("secret", "es-creds"): {"username": b"u", "password": b"p"}}
    (container,) = build_pod_plan(pod, lookup_from(objects), host(pod)).containers
    assert (
        container.env["METRICPIPE_SINK_USERNAME"],
        container.env["METRICPIPE_SINK_PASSWORD"],
    ) == ("u", "p")
    with pytest.raises(PlanError, match="es-creds") as missing:
        build_pod_plan(pod, lookup_from(CONFIG_MAP), host(pod))
    assert missing.value.reason == "CreateContainerConfigError"


def test_a_missing_config_map_or_a_foreign_image_fails_with_a_reason() -> None:
    pod = consumer_pod()
    with pytest.raises(PlanError, match="web-config") as missing:
        build_pod_plan(pod, lookup_from({}), host(pod))
    assert missing.value.reason == "CreateContainerConfigError"
    pod["spec"]["containers"][0]["image"] = "docker.io/library/nginx:1"
    with pytest.raises(PlanError, match="nginx") as foreign:
        build_pod_plan(pod, lookup_from(CONFIG_MAP), host(pod))
    assert foreign.value.reason == "ErrImageNotLocal"


def test_references_and_field_paths_resolve_like_kubernetes() -> None:
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "a"}},
        "spec": {
            "nodeName": "n",
            "restartPolicy": "OnFailure",
            "containers": [
                {
                    "name": "job",
                    "image": "ghcr.io/metricpipe/consumer:0.1.0",
                    "command": ["python3", "-c"],
                    "args": ["print('$(GREETING) $(UNSET)')"],
                    "env": [
                        {
                            "name": "APP",
                            "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}},
                        },
                        {"name": "GREETING", "value": "hello $(APP)"},
                        {
                            "name": "OPTIONAL",
                            "valueFrom": {
                                "secretKeyRef": {"name": "absent", "key": "k", "optional": True}
                            },
                        },
                    ],
                }
            ],
        },
    }
    (container,) = build_pod_plan(pod, lookup_from({}), host(pod)).containers
    assert container.env["GREETING"] == "hello a"
    assert "OPTIONAL" not in container.env
    assert container.argv == ("/venv/bin/python", "-c", "print('hello a $(UNSET)')")


@pytest.mark.parametrize(
    ("restarts", "ran", "delay"),
    [(0, 1, 0), (1, 1, 10), (2, 1, 20), (3, 5, 40), (6, 5, 300), (12, 5, 300), (4, 700, 0)],
)
def test_crash_loop_back_off_doubles_to_five_minutes(
    restarts: int, ran: float, delay: float
) -> None:
    assert decide_backoff(restarts, ran) == delay


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 2, True),
        ("Never", 1, False),
    ],
)
def test_restart_policy(policy: str, code: int, restart: bool) -> None:
    assert decide_restart(policy, code) is restart


def view(**extra: Any) -> ContainerView:
    base: dict[str, Any] = {
        "name": "c",
        "image": "i",
        "pid": None,
        "started_at": None,
        "ready": False,
        "restart_count": 0,
    }
    return ContainerView(**{**base, **extra})


def test_phase_and_status_follow_the_containers() -> None:
    done = Terminated(0, "Completed", T0, T0 + timedelta(seconds=3))
    failed = Terminated(1, "Error", T0, T0 + timedelta(seconds=3))
    assert decide_phase([view()]) == "Pending"
    assert decide_phase([view(pid=10, started_at=T0)]) == "Running"
    assert decide_phase([view(terminated=done)]) == "Succeeded"
    assert decide_phase([view(terminated=failed)]) == "Failed"
    assert (
        decide_phase(
            [view(restart_count=2, last_terminated=failed, waiting_reason="CrashLoopBackOff")]
        )
        == "Running"
    )
    scheduled = {"type": "PodScheduled", "status": "True"}
    running = build_pod_status(
        [view(pid=10, started_at=T0, ready=True, restart_count=1, last_terminated=failed)],
        scheduled,
        T0,
        T0,
    )
    assert running["phase"] == "Running"
    ready = {c["type"]: c["status"] for c in running["conditions"]}
    assert ready == {
        "PodScheduled": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    (container,) = running["containerStatuses"]
    assert container["restartCount"] == 1
    assert container["state"] == {"running": {"startedAt": "2026-11-26T12:00:00Z"}}
    assert container["lastState"]["terminated"]["exitCode"] == 1
    looping = build_pod_status(
        [view(restart_count=3, last_terminated=failed, waiting_reason="CrashLoopBackOff")],
        None,
        T0,
        T0,
    )
    assert looping["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert {c["type"]: c["status"] for c in looping["conditions"]}["Ready"] == "False"


def test_transition_times_move_only_when_a_condition_changes() -> None:
    first = build_pod_status([view(pid=1, started_at=T0, ready=False)], None, T0, T0)
    later = T0 + timedelta(minutes=1)
    same = carry_transition_times(
        first, build_pod_status([view(pid=1, started_at=T0)], None, T0, later)
    )
    assert same == first
    flipped = carry_transition_times(
        first, build_pod_status([view(pid=1, started_at=T0, ready=True)], None, T0, later)
    )
    times = {c["type"]: c["lastTransitionTime"] for c in flipped["conditions"]}
    assert times == {
        "Initialized": "2026-11-26T12:00:00Z",
        "ContainersReady": "2026-11-26T12:01:00Z",
        "Ready": "2026-11-26T12:01:00Z",
    }


def test_the_termination_message_path_is_a_file_of_the_pod() -> None:
    pod = consumer_pod()
    (container,) = pod["spec"]["containers"]
    container["terminationMessagePath"] = "/dev/termination-log"
    container["env"].append({"name": "REPORT_TO", "value": "/dev/termination-log"})
    (plan,) = build_pod_plan(pod, lookup_from(CONFIG_MAP), host(pod)).containers
    assert plan.termination_message == POD_DIR / "termination" / container["name"]
    assert plan.env["REPORT_TO"] == str(plan.termination_message)  # as if mounted there
    (without,) = build_pod_plan(consumer_pod(), lookup_from(CONFIG_MAP), host(pod)).containers
    assert without.termination_message is None


def test_a_termination_message_is_in_the_terminated_state() -> None:
    done = Terminated(0, "Completed", T0, T0 + timedelta(seconds=5), message='{"windows": 1}')
    status = build_pod_status([view(pid=None, terminated=done)], None, T0, T0)
    (container,) = status["containerStatuses"]
    assert container["state"]["terminated"]["message"] == '{"windows": 1}'
    silent = Terminated(0, "Completed", T0, T0 + timedelta(seconds=5))
    status = build_pod_status([view(pid=None, terminated=silent)], None, T0, T0)
    assert "message" not in status["containerStatuses"][0]["state"]["terminated"]
