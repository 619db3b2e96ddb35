"""Status tells the truth: the pure decisions behind ConsumerReady, SinkReady, Ready,
RecordsRejected, the SLO state and lag for a group that never committed (tables, no servers)."""

from __future__ import annotations

from typing import Any

import pytest

from metricpipe_exporters.timelag import PartitionLag, decide_time_lag_seconds
from metricpipe_operator.reconcile.health import (
    PodsView,
    Trouble,
    build_pods_view,
    classify_kafka_error,
    classify_sink_error,
    decide_consumer_ready,
    decide_sink_ready,
    keep_pod_reason,
)
from metricpipe_operator.reconcile.status import (
    CONDITION_TYPES,
    Condition,
    merge_conditions,
    rebuild_ready,
)
from metricpipe_operator.scaling.model import Decision, MetricSample
from metricpipe_operator.scaling.observe import build_consumer_pods
from metricpipe_operator.scaling.report import (
    build_scaling_conditions,
    build_scaling_status,
    decide_slo_state,
)


def pod(
    name: str,
    *,
    ready: bool = False,
    state: dict[str, Any] | None = None,
    last: dict[str, Any] | None = None,
    restarts: int = 0,
    scheduled: dict[str, Any] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    """A pod as the kubelet reports it (the fields the decisions read)."""
    conditions = [{"type": "Ready", "status": "True" if ready else "False"}]
    if scheduled is not None:
        conditions.append({"type": "PodScheduled", **scheduled})
    container = {
        "name": "consumer",
        "ready": ready,
        "restartCount": restarts,
        "state": state or {"running": {}},
        "lastState": {"terminated": last} if last else {},
    }
    meta: dict[str, Any] = {"name": name, "namespace": "ns"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "status": {"conditions": conditions, "containerStatuses": [container]},
    }


CRASHING = pod(
    "c-1",
    state={
        "waiting": {
            "reason": "CrashLoopBackOff",
            "message": "back-off 20s restarting failed container",
        }
    },
    last={"exitCode": 1, "reason": "Error"},
    restarts=3,
)
BETWEEN_CRASHES = pod(
    "c-2", state={"running": {}}, last={"exitCode": 1, "reason": "Error"}, restarts=2
)
NO_SECRET = pod(
    "c-3",
    state={
        "waiting": {
            "reason": "CreateContainerConfigError",
            "message": 'secret "es-creds" not found',
        }
    },
)
NO_IMAGE = pod(
    "c-4", state={"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}
)
STARTING = pod("c-5", state={"waiting": {"reason": "ContainerCreating"}})
WARMING = pod("c-6", state={"running": {}})  # first start, not ready yet
READY = pod("c-7", ready=True)
UNSCHEDULABLE = pod(
    "c-8",
    state={"waiting": {"reason": "ContainerCreating"}},
    scheduled={"status": "False", "reason": "Unschedulable", "message": "0/1 nodes are available"},
)
GONE = pod("c-9", deleting=True, state={"waiting": {"reason": "CrashLoopBackOff"}})


@pytest.mark.parametrize(
    ("desired", "pods", "status", "reason"),
    [
        (1, [CRASHING], False, "CrashLoopBackOff"),
        (1, [BETWEEN_CRASHES], False, "CrashLoopBackOff"),  # running again, not ready
        (1, [NO_SECRET], False, "CreateContainerConfigError"),
        (1, [NO_IMAGE], False, "ImagePullBackOff"),
        (1, [UNSCHEDULABLE], False, "Unschedulable"),
        (1, [STARTING], False, "ReplicasUnavailable"),  # nothing runs yet, nothing failed
        (1, [WARMING], False, "ReplicasUnavailable"),
        (1, [], False, "ReplicasUnavailable"),  # a new pipeline: no pod yet
        (1, [READY], True, "Available"),
        (2, [READY, WARMING], True, "PartiallyAvailable"),  # a scale-up under way
        (2, [READY, CRASHING], False, "CrashLoopBackOff"),  # one of two fails: say so
        (2, [CRASHING, NO_SECRET], False, "CreateContainerConfigError"),  # the config first
        (1, [READY, GONE], True, "Available"),  # a terminating pod counts for nothing
        (0, [], True, "ScaledToZero"),
    ],
)
def test_consumer_ready_from_the_pods(
    desired: int, pods: list[dict[str, Any]], status: bool, reason: str
) -> None:
    view = build_pods_view(pods)
    condition = decide_consumer_ready(desired, view.ready, view)
    assert (condition.status, condition.reason) == (status, reason), condition.message
    assert f"{view.ready}/{desired} replicas available" in condition.message or desired == 0


def test_the_message_carries_the_kubelet_words_and_last_exit() -> None:
    crashing = pod(
        "c-1",
        state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
        last={"exitCode": 3, "reason": "Error", "message": "bad env X"},
        restarts=4,
    )
    condition = decide_consumer_ready(1, 0, build_pods_view([crashing]))
    # the back-off text is left out: it changes with every restart
    assert "pod c-1: CrashLoopBackOff (" in condition.message
    assert "back-off" not in condition.message
    assert "restarted 4 times, last exit code 3" in condition.message
    assert "bad env X" in condition.message
    pulling = decide_consumer_ready(1, 0, build_pods_view([NO_IMAGE]))
    assert "pod c-4: ImagePullBackOff: Back-off pulling image" in pulling.message


PREVIOUS_CRASH = {
    "type": "ConsumerReady",
    "status": "False",
    "reason": "CrashLoopBackOff",
    "message": "0/1 replicas available; pod c-1: CrashLoopBackOff",
}


@pytest.mark.parametrize(
    ("update", "previous", "reason"),
    [
        # a writer that sees only the Deployment keeps the kubelet's reason while replicas miss
        (
            Condition("ConsumerReady", False, "ReplicasUnavailable", "0/1"),
            PREVIOUS_CRASH,
            "CrashLoopBackOff",
        ),
        (
            Condition("ConsumerReady", True, "PartiallyAvailable", "1/2"),
            PREVIOUS_CRASH,
            "CrashLoopBackOff",
        ),
        (
            Condition("ConsumerReady", False, "ProgressDeadlineExceeded", "x"),
            PREVIOUS_CRASH,
            "CrashLoopBackOff",
        ),
        # ... and gives it up once every replica is available, or a new rollout starts
        (Condition("ConsumerReady", True, "Available", "1/1"), PREVIOUS_CRASH, "Available"),
        (Condition("ConsumerReady", None, "RolloutPending", ""), PREVIOUS_CRASH, "RolloutPending"),
        # a reason any writer gives is replaced by the newer one
        (
            Condition("ConsumerReady", True, "Available", "1/1"),
            {**PREVIOUS_CRASH, "reason": "ReplicasUnavailable"},
            "Available",
        ),
        (
            Condition("ConsumerReady", False, "ReplicasUnavailable", "0/1"),
            None,
            "ReplicasUnavailable",
        ),
    ],
)
def test_writers_without_the_pods_do_not_undo_the_kubelet_reason(
    update: Condition, previous: dict[str, Any] | None, reason: str
) -> None:
    assert keep_pod_reason(update, previous).reason == reason


@pytest.mark.parametrize(
    ("secret", "pods", "status", "reason"),
    [
        ("es-creds", [NO_SECRET], False, "SecretMissing"),
        (None, [NO_SECRET], None, "NotObserved"),  # not the sink's Secret: ConsumerReady says it
        ("other", [NO_SECRET], None, "NotObserved"),
        (
            None,
            [
                pod(
                    "c",
                    state={"waiting": {"reason": "CrashLoopBackOff"}},
                    restarts=1,
                    last={
                        "exitCode": 2,
                        "message": "SinkAuthFailed: checking index m: the sink refused our "
                        "credentials (HTTP 401): check the user name and password or API key "
                        "in the Secret named by spec.sink.credentialsSecretRef",
                    },
                )
            ],
            False,
            "SinkAuthFailed",
        ),
        (
            None,
            [
                pod(
                    "c",
                    state={"waiting": {"reason": "CrashLoopBackOff"}},
                    restarts=1,
                    last={
                        "exitCode": 2,
                        "message": "SinkUnreachable: the sink stayed unavailable for 8 tries",
                    },
                )
            ],
            False,
            "SinkUnreachable",
        ),
        (None, [CRASHING], None, "NotObserved"),  # crashing for another reason
        (None, [], None, "NotObserved"),
        ("es-creds", [READY], True, "SinkAccepting"),
    ],
)
def test_sink_ready(
    secret: str | None, pods: list[dict[str, Any]], status: bool | None, reason: str
) -> None:
    condition = decide_sink_ready(secret, build_pods_view(pods))
    assert (condition.type, condition.status, condition.reason) == ("SinkReady", status, reason)


@pytest.mark.parametrize(
    ("message", "sink", "kafka"),
    [
        ("SinkForbidden: writing: the sink's user lacks a privilege (HTTP 403: action "
         "[indices:data/write/bulk[s]] is unauthorized ...)", "SinkForbidden", None),
        ("SinkAuthFailed: checking index m: ... spec.sink.credentialsSecretRef", "SinkAuthFailed",
         None),
        ("SinkRefused: cannot create index m: mapping conflict", "SinkRefused", None),
        ("SinkUnreachable: the sink stayed unavailable for 8 tries", "SinkUnreachable", None),
        # the same reason from either side, told apart by the field the message names
        ("TLSVerificationFailed: the sink's TLS certificate is not trusted (...): set "
         "spec.sink.caSecretRef to a Secret holding the CA", "TLSVerificationFailed", None),
        ("TLSVerificationFailed: Kafka's certificate is not trusted: check the CA in the "
         "Secret kafka-creds", None, "TLSVerificationFailed"),
        ("KafkaAuthFailed: wrong password", None, "KafkaAuthFailed"),
        ("Traceback ... KeyError", None, None),
        ("the sink refused our credentials", None, None),  # a reason comes first, or none
    ],
)  # fmt: skip
def test_sink_and_kafka_errors_by_their_first_word(
    message: str, sink: str | None, kafka: str | None
) -> None:
    assert (classify_sink_error(message), classify_kafka_error(message)) == (sink, kafka)


def parts(**statuses: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        {"type": kind, "status": status, "reason": reason, "message": ""}
        for kind, (status, reason) in statuses.items()
    ]


@pytest.mark.parametrize(
    ("conditions", "status", "reason"),
    [
        (
            parts(
                SpecValid=("True", "Accepted"),
                TopicReady=("True", "a"),
                RouteReady=("True", "b"),
                ConsumerReady=("True", "c"),
            ),
            "True",
            "AllReady",
        ),
        (
            parts(
                SpecValid=("True", "Accepted"),
                TopicReady=("True", "a"),
                RouteReady=("True", "b"),
                ConsumerReady=("False", "CrashLoopBackOff"),
            ),
            "False",
            "ConsumerReadyCrashLoopBackOff",
        ),
        (
            parts(
                SpecValid=("True", "Accepted"),
                TopicReady=("True", "a"),
                RouteReady=("True", "b"),
                ConsumerReady=("True", "c"),
                SinkReady=("False", "SecretMissing"),
            ),
            "False",
            "SinkReadySecretMissing",
        ),
        # nothing observed about the sink yet does not hold Ready back
        (
            parts(
                SpecValid=("True", "Accepted"),
                TopicReady=("True", "a"),
                RouteReady=("True", "b"),
                ConsumerReady=("True", "c"),
                SinkReady=("Unknown", "NotObserved"),
            ),
            "True",
            "AllReady",
        ),
        # conditions that report, not gate
        (
            parts(
                SpecValid=("True", "Accepted"),
                TopicReady=("True", "a"),
                RouteReady=("True", "b"),
                ConsumerReady=("True", "c"),
                RecordsRejected=("True", "DeadLetterShareHigh"),
                FreshnessSLOMet=("False", "RecordsLate"),
            ),
            "True",
            "AllReady",
        ),
    ],
)
def test_ready_follows_every_part_the_object_holds(
    conditions: list[dict[str, Any]], status: str, reason: str
) -> None:
    ready = next(c for c in rebuild_ready(conditions, 1) if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == (status, reason)


def test_ready_is_rebuilt_from_merged_conditions_whoever_writes() -> None:
    """The reconciler writes its parts after the ResourceManager wrote SinkReady False: Ready
    stays False (a writer that knows only its own parts would have set it True)."""
    rm = rebuild_ready(
        merge_conditions(
            [],
            [Condition("SinkReady", False, "SecretMissing", "")]
            + [Condition(k, True, "ok", "") for k in CONDITION_TYPES],
            1,
        ),
        1,
    )
    reconciler = rebuild_ready(merge_conditions(rm, [Condition("TopicReady", True, "x", "")], 2), 2)
    ready = next(c for c in reconciler if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "SinkReadySecretMissing")


def sample(**fields: float) -> MetricSample:
    return MetricSample(at=0, replicas=1, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("fields", "status", "reason", "shown"),
    [
        ({"dead_letters": 180.0, "records_read": 200.0}, True, "DeadLetterShareHigh", "90%"),
        ({"dead_letters": 10.0, "records_read": 200.0}, False, "WithinThreshold", "5%"),
        ({"dead_letters": 0.0, "records_read": 200.0}, False, "WithinThreshold", "0%"),
        ({"dead_letters": 30.0, "records_read": 200.0}, True, "DeadLetterShareHigh", "15%"),
        ({"records_read": 0.0}, None, "NoInput", None),
        ({}, None, "NoInput", None),
    ],
)
def test_records_rejected(
    fields: dict[str, float], status: bool | None, reason: str, shown: str | None
) -> None:
    observed = sample(freshness_seconds=10.0, **fields)
    (_, _, rejected) = build_scaling_conditions(Decision(1, "x"), observed, 100)
    assert (rejected.type, rejected.status, rejected.reason) == ("RecordsRejected", status, reason)
    assert build_scaling_status(Decision(1, "x"), observed, [], 100).get("rejected") == shown


@pytest.mark.parametrize(
    ("freshness", "late", "state"),
    [
        (10.0, None, "Met"),
        (10.0, 0.0, "Met"),
        (10.0, 0.2, "Met"),  # increase() interpolates: less than half a record is none
        (10.0, 3.0, "Incomplete"),  # fresh, but windows were finalised without records
        (95.0, 3.0, "Incomplete"),
        (None, 3.0, "Incomplete"),
        (150.0, None, "Breached"),
        (None, None, "Unknown"),
    ],
)
def test_slo_is_not_met_when_records_came_late(
    freshness: float | None, late: float | None, state: str
) -> None:
    assert decide_slo_state(freshness, 100, late) == state


def test_late_records_turn_the_slo_condition_false() -> None:
    observed = sample(freshness_seconds=10.0, late_records=4.0)
    (_, slo, _) = build_scaling_conditions(Decision(1, "x"), observed, 100)
    assert (slo.type, slo.status, slo.reason) == ("FreshnessSLOMet", False, "RecordsLate")
    assert "4 records dead-lettered as late or future" in slo.message
    status = build_scaling_status(Decision(1, "x"), observed, [], 100)
    assert (status["slo"], status["lateRecords"]) == ("Incomplete", 4)


@pytest.mark.parametrize(
    ("lag", "records", "seconds"),
    [
        # a group that never committed: lag from the oldest record kept, consumer or not
        (PartitionLag("t", 0, 500, None, 1_000, start_offset=0), 500, 9.0),
        (PartitionLag("t", 0, 500, None, 1_000, start_offset=200), 300, 9.0),  # retention
        (PartitionLag("t", 0, 0, None, None, start_offset=0), 0, None),  # no data: no age
        (PartitionLag("t", 0, 500, None, None, start_offset=0), 500, None),  # not read yet
        (PartitionLag("t", 0, 500, None, None), None, None),  # start offset unknown
        # a group that committed: from its committed offset, as before
        (PartitionLag("t", 0, 500, 500, None, start_offset=0), 0, 0.0),
        (PartitionLag("t", 0, 500, 400, 4_000, start_offset=0), 100, 6.0),
    ],
)
def test_lag_of_a_group_that_never_committed(
    lag: PartitionLag, records: int | None, seconds: float | None
) -> None:
    assert lag.records == records
    assert decide_time_lag_seconds(lag, now_ms=10_000) == seconds


def test_consumer_pods_by_pipeline_from_their_labels() -> None:
    def labelled(name: str, namespace: str, component: str, pipeline: str) -> dict[str, Any]:
        return {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    "app.kubernetes.io/component": component,
                    "metricpipe.io/pipeline": pipeline,
                },
            }
        }

    found = build_consumer_pods(
        [
            labelled("a-1", "ns1", "consumer", "a"),
            labelled("a-2", "ns1", "consumer", "a"),
            labelled("a-3", "ns2", "consumer", "a"),
            labelled("b-run", "ns1", "batch", "b"),
        ]
    )
    assert {k: [p["metadata"]["name"] for p in v] for k, v in found.items()} == {
        "ns1/a": ["a-1", "a-2"],
        "ns2/a": ["a-3"],
    }


def test_a_pods_view_counts_only_live_pods() -> None:
    view = build_pods_view([READY, GONE, CRASHING])
    assert (view.pods, view.ready) == (2, 1)
    assert [t.reason for t in view.troubles] == ["CrashLoopBackOff"]
    assert isinstance(view, PodsView)
    assert isinstance(view.troubles[0], Trouble)
