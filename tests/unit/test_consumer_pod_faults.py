"""ConsumerReady says what the kubelet says about a failing consumer: `OOMKilled` with the
container's memory limit and the field to raise, `CrashLoopBackOff` with restarts, exit code,
memory limit and the first line of its last words (tables over pod statuses in the JSON shape
the API server sends; no servers)."""

from __future__ import annotations

from typing import Any

import pytest

from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef
from metricpipe_operator.api.crd import build_spec_schema
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.consumer import build_deployment
from metricpipe_operator.reconcile.health import (
    build_pods_view,
    decide_consumer_ready,
    decide_sink_ready,
    summarize_last_words,
)
from metricpipe_operator.scaling.observe import build_health_conditions

FIELD = "spec.consumer.resources.limits.memory"


def pod(
    name: str,
    *,
    ready: bool = False,
    state: dict[str, Any] | None = None,
    last: dict[str, Any] | None = None,
    restarts: int = 0,
    limit: str | None = "2Gi",
) -> dict[str, Any]:
    """A consumer pod as the API server returns it: the spec's resources and the kubelet's
    container status (timestamps included: they must not reach the message)."""
    resources: dict[str, Any] = {"requests": {"memory": "1Gi"}}
    if limit is not None:
        resources["limits"] = {"memory": limit, "cpu": "2"}
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {"containers": [{"name": "consumer", "resources": resources}]},
        "status": {
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            "containerStatuses": [
                {
                    "name": "consumer",
                    "ready": ready,
                    "restartCount": restarts,
                    "state": state or {"running": {"startedAt": "2026-01-01T10:05:00Z"}},
                    "lastState": {"terminated": last} if last else {},
                }
            ],
        },
    }


def oom(exit_code: int = 137, at: str = "2026-01-01T10:00:00Z") -> dict[str, Any]:
    return {"reason": "OOMKilled", "exitCode": exit_code, "finishedAt": at}


BACKOFF = {
    "waiting": {
        "reason": "CrashLoopBackOff",
        "message": "back-off 40s restarting failed container=consumer pod=c_ns(0b9c)",
    }
}
KILLED_NOW = pod("c-1", state={"terminated": oom()})
BACKING_OFF = pod("c-1", state=BACKOFF, last=oom(), restarts=3)
RUNNING_AGAIN = pod("c-1", last=oom(), restarts=1)  # restarted, Spark starting, not ready
CREATING_AGAIN = pod(
    "c-1", state={"waiting": {"reason": "ContainerCreating"}}, last=oom(), restarts=1
)
JVM_KILLED = pod("c-1", state=BACKOFF, last=oom(exit_code=1), restarts=2)  # a child was killed
READY_SINCE = pod("c-1", ready=True, last=oom(), restarts=1)  # OOMed once, ready ever since
SECRET_AFTER = pod(
    "c-0",
    state={"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "s" not found'}},
    last=oom(),
    restarts=1,
)
REFUSING = pod(
    "c-2",
    state=BACKOFF,
    last={
        "reason": "Error",
        "exitCode": 3,
        "message": "spec refused: metric.field 'rtt' is not numeric\nsee docs",
    },
    restarts=4,
)
EXITED = {"reason": "Error", "exitCode": 1, "message": "Fatal Python error"}
FIRST_EXIT = pod("c-2", state={"terminated": EXITED})  # failed once, not restarted yet
EXITED_AGAIN = pod("c-2", state={"terminated": EXITED}, last=EXITED, restarts=2)  # in the loop
WARMING = pod("c-3")  # first start, not ready yet
READY = pod("c-4", ready=True)
UNSCHEDULED = {
    **pod("c-5"),
    "status": {
        "conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
        ]
    },
}


@pytest.mark.parametrize(
    ("desired", "pods", "status", "reason"),
    [
        (1, [KILLED_NOW], False, "OOMKilled"),  # the kernel just killed it
        (1, [BACKING_OFF], False, "OOMKilled"),  # the kubelet waits: the cause is memory
        (1, [RUNNING_AGAIN], False, "OOMKilled"),  # not "starting": it was killed before
        (1, [CREATING_AGAIN], False, "OOMKilled"),
        (1, [JVM_KILLED], False, "OOMKilled"),  # the runtime's reason, not exit code 137
        (1, [READY_SINCE], True, "Available"),  # every replica ready now: True
        (1, [SECRET_AFTER], False, "CreateContainerConfigError"),  # cannot start: that first
        (1, [REFUSING], False, "CrashLoopBackOff"),
        (1, [FIRST_EXIT], False, "Error"),  # the first exit: what the kubelet says
        (1, [EXITED_AGAIN], False, "CrashLoopBackOff"),  # the instant between back-offs
        (2, [READY, BACKING_OFF], False, "OOMKilled"),  # one of two killed: say so
        (2, [READY, READY_SINCE], True, "Available"),
        (2, [WARMING, BACKING_OFF], False, "OOMKilled"),  # memory over a generic "not ready"
        (2, [REFUSING, BACKING_OFF], False, "OOMKilled"),  # the known cause first
        (2, [BACKING_OFF, SECRET_AFTER], False, "CreateContainerConfigError"),
        (2, [BACKING_OFF, UNSCHEDULED], False, "Unschedulable"),
        (0, [BACKING_OFF], True, "ScaledToZero"),
    ],
)
def test_consumer_ready_names_the_kill(
    desired: int, pods: list[dict[str, Any]], status: bool, reason: str
) -> None:
    view = build_pods_view(pods)
    condition = decide_consumer_ready(desired, view.ready, view)
    assert (condition.status, condition.reason) == (status, reason), condition.message


@pytest.mark.parametrize(
    ("pods", "message"),
    [
        (
            [BACKING_OFF],
            "0/1 replicas available; pod c-1: OOMKilled: container consumer used more than its "
            f"memory limit 2Gi (restarted 3 times); raise {FIELD}",
        ),
        (
            [pod("c-1", state={"terminated": oom()}, limit="512Mi")],
            "0/1 replicas available; pod c-1: OOMKilled: container consumer used more than its "
            f"memory limit 512Mi; raise {FIELD}",
        ),
        (
            [pod("c-1", state=BACKOFF, last=oom(), restarts=1, limit=None)],
            "0/1 replicas available; pod c-1: OOMKilled: the node ran out of memory and "
            f"container consumer has no memory limit (restarted 1 time); set {FIELD}",
        ),
        (  # the limit the kubelet reports as applied (an in-place resize) wins over the spec
            [
                {
                    **BACKING_OFF,
                    "status": {
                        **BACKING_OFF["status"],
                        "containerStatuses": [
                            {
                                **BACKING_OFF["status"]["containerStatuses"][0],
                                "resources": {"limits": {"memory": "3Gi"}},
                            }
                        ],
                    },
                }
            ],
            "0/1 replicas available; pod c-1: OOMKilled: container consumer used more than its "
            f"memory limit 3Gi (restarted 3 times); raise {FIELD}",
        ),
        (
            [REFUSING],
            "0/1 replicas available; pod c-2: CrashLoopBackOff (restarted 4 times, last exit "
            "code 3, memory limit 2Gi); its last words: spec refused: metric.field 'rtt' is not "
            "numeric",
        ),
        (  # no last words (the kubelet's back-off text is left out: it changes every restart)
            [pod("c-2", state=BACKOFF, last={"reason": "Error", "exitCode": 1}, restarts=2)],
            "0/1 replicas available; pod c-2: CrashLoopBackOff (restarted 2 times, last exit "
            "code 1, memory limit 2Gi)",
        ),
    ],
)
def test_messages_say_what_to_change(pods: list[dict[str, Any]], message: str) -> None:
    view = build_pods_view(pods)
    assert decide_consumer_ready(1, view.ready, view).message == message


def test_messages_are_one_stable_line_without_the_log_tail() -> None:
    """Times and the kubelet's back-off do not reach the message (the status would churn), nor
    the log tail the kubelet keeps for an OOM kill (FallbackToLogsOnError: any log line)."""
    tail = '{"event": "batch", "dsn": "https://user:hunter2@es"}\n{"event": "poll"}'
    first = pod("c-1", state=BACKOFF, last={**oom(), "message": tail}, restarts=3)
    later_backoff = {"waiting": {**BACKOFF["waiting"], "message": "back-off 5m0s restarting"}}
    again = pod("c-1", state=later_backoff, last=oom(at="2026-01-01T11:00:00Z"), restarts=3)
    messages = {decide_consumer_ready(1, 0, build_pods_view([p])).message for p in (first, again)}
    (message,) = messages
    assert "\n" not in message
    assert "hunter2" not in message
    assert "2026" not in message
    long_words = "spec refused: " + "x" * 2000 + "\nnext line"
    crash = pod("c-2", state=BACKOFF, last={"exitCode": 3, "message": long_words}, restarts=1)
    message = decide_consumer_ready(1, 0, build_pods_view([crash])).message
    assert "\n" not in message
    assert len(message) < 500
    assert "next line" not in message


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("spec refused: no field 'rtt'", "spec refused: no field 'rtt'"),
        (
            "\n  the sink stayed unavailable for 8 tries \nmore\n",
            "the sink stayed unavailable for 8 tries",
        ),
        (  # the kubelet kept the log tail of a Python crash: the exception says it
            '{"event": "spark ready"}\nTraceback (most recent call last):\n  File "x.py", line'
            " 3, in <module>\nKeyError: 'rtt'\n",
            "KeyError: 'rtt'",
        ),
        ("", ""),
        ("\n\n", ""),
    ],
)
def test_the_line_of_the_last_words_quoted(text: str, line: str) -> None:
    assert summarize_last_words(text) == line


def test_an_oom_tail_is_not_taken_for_the_sinks_words() -> None:
    tail = "sink request failed: 503 (retrying)\nstill retrying"
    killed = pod("c-1", state=BACKOFF, last={**oom(), "message": tail}, restarts=1)
    assert decide_sink_ready(None, build_pods_view([killed])).reason == "NotObserved"


def test_the_field_to_raise_is_the_crds() -> None:
    """The message's field path exists in the CRD and sets the consumer container's limit."""
    schema = build_spec_schema()
    for part in FIELD.split(".")[1:-1]:
        schema = schema["properties"][part]
    assert schema["additionalProperties"]  # limits: a map of quantities, memory among them
    spec = MetricPipelineSpec.model_validate(
        {
            "source": {"tag": "app.**"},
            "metric": {"aggregation": "count"},
            "consumer": {
                "resources": {"limits": {"memory": "768Mi"}, "requests": {"memory": "768Mi"}}
            },
        }
    )
    deployment = build_deployment(PipelineRef("ns", "p", "uid", 1), spec, OperatorConfig(), "h", 1)
    template = deployment["spec"]["template"]["spec"]
    # the operator's own pod spec, as the kubelet then reports the container killed
    killed = {
        "metadata": {"name": "p-abc", "namespace": "ns"},
        "spec": template,
        "status": BACKING_OFF["status"],
    }
    ready, sink = build_health_conditions(spec, [killed])
    assert (ready.type, ready.status, ready.reason) == ("ConsumerReady", False, "OOMKilled")
    assert f"memory limit 768Mi (restarted 3 times); raise {FIELD}" in ready.message
    assert sink.status is None  # the kill says nothing about the sink
