"""The development node agent's pure parts: pod spec → local plan, pod status, back-off."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from metricpipe_nodeagent.node import build_node, build_node_status
from metricpipe_nodeagent.podplan import (
    ContainerPlan,
    Host,
    PlanError,
    Probe,
    build_pod_plan,
    list_declared_ports,
)
from metricpipe_nodeagent.podstatus import (
    ContainerView,
    Terminated,
    build_pod_status,
    carry_transition_times,
    decide_backoff,
    decide_phase,
    decide_restart,
)
from metricpipe_nodeagent.probes import (
    ProbeState,
    decide_due_probes,
    decide_probe_result,
    plan_probes,
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
    bare = consumer_pod()
    bare["spec"]["containers"][0].pop("terminationMessagePath", None)
    (without,) = build_pod_plan(bare, lookup_from(CONFIG_MAP), host(bare)).containers
    assert without.termination_message is None


def test_a_termination_message_is_in_the_terminated_state() -> None:
    done = Terminated(0, "Completed", T0, T0 + timedelta(seconds=5), message='{"windows": 1}')
    status = build_pod_status([view(pid=None, terminated=done)], None, T0, T0)
    (container,) = status["containerStatuses"]
    assert container["state"]["terminated"]["message"] == '{"windows": 1}'
    silent = Terminated(0, "Completed", T0, T0 + timedelta(seconds=5))
    status = build_pod_status([view(pid=None, terminated=silent)], None, T0, T0)
    assert "message" not in status["containerStatuses"][0]["state"]["terminated"]


# -- probes: startup first, then liveness and readiness (as a kubelet runs them) ---------------


def probe(path: str, period: float, failures: int, delay: float = 0, successes: int = 1) -> Probe:
    return Probe(kind="httpGet", port=1, path=path, initial_delay=delay, period=period,
                 timeout=1, failure_threshold=failures, success_threshold=successes)  # fmt: skip


def probed(startup: Probe | None, liveness: Probe | None, readiness: Probe | None) -> ContainerPlan:
    return ContainerPlan(name="c", image="i", argv=("x",), env={}, ports={}, readiness=readiness,
                         liveness=liveness, startup=startup)  # fmt: skip


def run_probes(
    plan: ContainerPlan, answer: Callable[[str, float], bool], until: float
) -> tuple[list[tuple[float, str, bool]], str | None, float | None, ProbeState]:
    """Virtual seconds from a start at 0: every due probe runs and answers at once. Returns the
    probes run (time, kind, result), the kill reason and its time, and the last state."""
    state, runs = plan_probes(plan, 0.0), list[tuple[float, str, bool]]()
    for now in range(int(until) + 1):
        due, state = decide_due_probes(state, float(now))
        for kind in due:
            ok = answer(kind, now)
            runs.append((float(now), kind, ok))
            verdict = decide_probe_result(state, kind, ok, float(now))
            state = verdict.state
            if verdict.kill:
                return runs, verdict.kill, float(now), state
    return runs, None, None, state


def test_liveness_and_readiness_wait_for_the_startup_probe() -> None:
    """A start of 95 s with a liveness probe that would have killed it after 60 s: the startup
    probe (10 s x 30) holds liveness back until it succeeds; then liveness and readiness run."""
    plan = probed(probe("/startupz", 10, 30), probe("/healthz", 20, 3), probe("/readyz", 5, 3))
    runs, kill, _, state = run_probes(plan, lambda _kind, now: now >= 95, until=130)
    assert kill is None
    started_at = next(t for t, kind, ok in runs if kind == "startup" and ok)
    assert started_at == 100  # the first startup probe at or after 95 s
    assert {kind for t, kind, _ in runs if t < started_at} == {"startup"}
    assert not [t for t, kind, _ in runs if kind == "startup" and t > started_at]  # done with
    assert (started_at + 1, "readiness", True) in runs  # at the next tick, not a period later
    assert state.started
    assert state.ready


def test_a_start_that_never_succeeds_is_killed_after_threshold_times_period() -> None:
    plan = probed(probe("/startupz", 10, 6), probe("/healthz", 20, 3), None)
    runs, kill, killed_at, state = run_probes(plan, lambda _kind, _now: False, until=300)
    assert kill == "startup probe failed 6 times"
    assert killed_at == 50  # probes at 0, 10, ..., 50: the sixth failure
    assert {kind for _, kind, _ in runs} == {"startup"}
    assert not state.ready


def test_without_a_startup_probe_liveness_runs_from_its_initial_delay() -> None:
    """What killed every consumer under load before: liveness from 30 s, whatever the start."""
    plan = probed(None, probe("/healthz", 20, 6, delay=30), probe("/readyz", 10, 3))
    _, kill, killed_at, _ = run_probes(plan, lambda _kind, now: now >= 200, until=300)
    assert kill == "liveness probe failed 6 times"
    assert killed_at == 130  # 30, 50, ..., 130


def test_a_live_container_is_killed_after_liveness_fails_threshold_times_in_a_row() -> None:
    plan = probed(probe("/startupz", 10, 30), probe("/healthz", 20, 3), None)

    def answer(kind: str, now: float) -> bool:
        return kind == "startup" or now < 100 or 140 <= now < 150  # a success resets the count

    runs, kill, killed_at, state = run_probes(plan, answer, until=400)
    assert runs[0] == (0, "startup", True)
    assert state.ready  # no readiness probe: ready once started
    assert kill == "liveness probe failed 3 times"
    # every 20 s from the tick after start-up: fails at 101, 121, not at 141, at 161, 181, 201
    assert killed_at == 201


def test_readiness_follows_its_thresholds() -> None:
    plan = probed(None, None, probe("/readyz", 5, 2, successes=2))
    state = plan_probes(plan, 0.0)
    assert state.started
    assert not state.ready
    ready = []
    for now, ok in enumerate([True, True, False, True, False, False, True, True]):
        state = decide_probe_result(state, "readiness", ok, float(now)).state
        ready.append(state.ready)
    assert ready == [False, True, True, True, True, False, False, True]


def test_a_probe_still_running_is_not_started_again_and_late_results_are_ignored() -> None:
    plan = probed(probe("/startupz", 10, 3), probe("/healthz", 20, 3), probe("/readyz", 5, 3))
    state = plan_probes(plan, 0.0)
    due, state = decide_due_probes(state, 0.0)
    assert due == ("startup",)
    due, state = decide_due_probes(state, 10.0, running=frozenset({"startup"}))
    assert due == ()
    state = decide_probe_result(state, "startup", True, 12.0).state
    assert decide_probe_result(state, "startup", False, 13.0).state == state
    before = plan_probes(plan, 0.0)
    assert decide_probe_result(before, "liveness", False, 1.0).state == before


def test_the_consumer_pod_has_a_startup_probe_the_agent_runs() -> None:
    pod = consumer_pod()
    (container,) = build_pod_plan(pod, lookup_from(CONFIG_MAP), host(pod)).containers
    assert container.startup is not None
    assert container.startup.path == "/startupz"
    assert container.startup.port == container.ports["metrics"]
    assert container.startup.period * container.startup.failure_threshold >= 300
    state = plan_probes(container, 0.0)
    assert not state.started
    assert not state.ready


def test_a_container_is_started_in_its_status_only_after_its_startup_probe() -> None:
    starting = build_pod_status([view(pid=1, started_at=T0)], None, T0, T0)
    (container,) = starting["containerStatuses"]
    assert container["started"] is False
    assert "running" in container["state"]
    started = build_pod_status([view(pid=1, started_at=T0, started=True)], None, T0, T0)
    assert started["containerStatuses"][0]["started"] is True


def quantity(text: str) -> float:
    """A Kubernetes quantity as a number (cores, bytes): the suffixes the specs here use."""
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text.removesuffix(suffix)) * factor
    return float(text)


def test_twelve_default_consumers_fit_the_dev_node_of_a_two_core_16_gib_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scheduler places a pod only where its requests fit the node's allocatable."""
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    monkeypatch.setattr("os.sysconf", lambda name: {"SC_PHYS_PAGES": 4 * 2**20,
                                                    "SC_PAGE_SIZE": 4096}[name])  # fmt: skip
    allocatable = build_node_status(AgentSettings(), T0, T0)["allocatable"]
    (container,) = consumer_pod()["spec"]["containers"]
    requests = container["resources"]["requests"]
    assert 12 * quantity(requests["cpu"]) <= quantity(allocatable["cpu"])
    assert 12 * quantity(requests["memory"]) <= quantity(allocatable["memory"])
    assert int(allocatable["pods"]) >= 12
