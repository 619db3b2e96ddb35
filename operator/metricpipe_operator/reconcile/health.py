"""ConsumerReady and SinkReady from what the kubelet and the consumers report (pure).

Three writers set ConsumerReady: the reconciler (after applying the Deployment), the Deployment
watcher (`refresh_consumer_status`) and the ResourceManager (each cycle, with the consumer pods
it lists). They all apply `decide_consumer_ready` to the same two numbers — replicas wanted and
replicas available — and only the ResourceManager adds the pods' view, which can say *why*
replicas are missing (the kubelet's reason). So that the writers do not undo each other,
`keep_pod_reason` keeps a pod-derived reason as long as the Deployment still shows replicas
missing; a writer without the pods' view never replaces it with its vaguer one. Once the
replicas are available every writer says True.

SinkReady comes from the same pods: a `CreateContainerConfigError` naming the sink Secret (the
operator has no read access to Secrets; the kubelet tells), and the consumers' last words when
the sink refused them (their termination message, see `classify_sink_error`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .status import Condition

CONSUMER_READY = "ConsumerReady"
SINK_READY = "SinkReady"
# Reasons any writer can give from the Deployment alone. Every other False reason of
# ConsumerReady came from the pods (the kubelet's reason) and only the pods' view replaces it.
DEPLOYMENT_REASONS = frozenset({
    "NotFound", "RolloutPending", "ProgressDeadlineExceeded", "ApplyFailed", "ScaledToZero",
    "Available", "PartiallyAvailable", "ReplicasUnavailable", "Scheduled",
})  # fmt: skip
# What a writer without the pods' view says while replicas are missing.
MISSING_REASONS = frozenset({"ReplicasUnavailable", "PartiallyAvailable",
                             "ProgressDeadlineExceeded"})  # fmt: skip
STARTING = frozenset({"ContainerCreating", "PodInitializing"})  # waiting, not failing
# Reported first when pods disagree: what needs a user's change before what may pass.
SEVERITY = ("Unschedulable", "CreateContainerConfigError", "InvalidImageName", "ErrImageNotLocal",
            "ImagePullBackOff", "ErrImagePull", "RunContainerError", "CreateContainerError",
            "CrashLoopBackOff", "OOMKilled", "Error")  # fmt: skip
# Prefixes the consumer writes to its termination message when the sink refuses it
# (consumers/metricpipe_consumers/sink.py's SinkError texts), and the SinkReady reason each means.
SINK_ERROR_MARKERS = (
    ("refused our credentials", "CredentialsRejected"),
    ("stayed unavailable", "SinkUnreachable"),
    ("sink request failed", "SinkRefused"),
    ("cannot create index", "SinkRefused"),
)


@dataclass(frozen=True)
class Trouble:
    """One consumer container that is not running well, as its pod's status says."""

    pod: str
    reason: str  # the kubelet's: CrashLoopBackOff, CreateContainerConfigError, ...
    message: str
    restarts: int = 0
    last_exit_code: int | None = None
    last_message: str = ""  # the container's last termination message


@dataclass(frozen=True)
class PodsView:
    """The consumer pods of one pipeline (terminating pods left out)."""

    pods: int = 0
    ready: int = 0
    troubles: tuple[Trouble, ...] = ()


def build_pods_view(pods: Iterable[Mapping[str, Any]]) -> PodsView:
    count = ready = 0
    troubles: list[Trouble] = []
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if meta.get("deletionTimestamp"):
            continue
        count += 1
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        if (conditions.get("Ready") or {}).get("status") == "True":
            ready += 1
            continue
        scheduled = conditions.get("PodScheduled") or {}
        if scheduled.get("status") == "False":  # no node takes it: the scheduler says why
            troubles.append(Trouble(str(meta.get("name", "")),
                                    str(scheduled.get("reason") or "Unschedulable"),
                                    str(scheduled.get("message") or "")))  # fmt: skip
            continue
        for container in status.get("containerStatuses") or []:
            trouble = build_trouble(str(meta.get("name", "")), container)
            if trouble is not None:
                troubles.append(trouble)
    return PodsView(count, ready, tuple(troubles))


def build_trouble(pod: str, container: Mapping[str, Any]) -> Trouble | None:
    """A not-ready container's trouble: a waiting reason other than starting, or a container
    that has failed before and is not ready now (between two crashes of a crash loop)."""
    state = container.get("state") or {}
    last = (container.get("lastState") or {}).get("terminated") or {}
    restarts = int(container.get("restartCount") or 0)
    exit_code = last.get("exitCode")
    last_message = str(last.get("message") or "")
    waiting = state.get("waiting")
    if waiting is not None and waiting.get("reason") not in STARTING:
        reason, message = str(waiting.get("reason") or "Waiting"), str(waiting.get("message") or "")
        return Trouble(pod, reason, message, restarts, exit_code, last_message)
    terminated = state.get("terminated")
    if terminated is not None and terminated.get("exitCode") not in (0, None):
        message = str(terminated.get("message") or "")
        return Trouble(pod, str(terminated.get("reason") or "Error"), message, restarts,
                       terminated.get("exitCode"), message)  # fmt: skip
    if restarts > 0 and exit_code not in (0, None) and not container.get("ready"):
        return Trouble(pod, "CrashLoopBackOff", "restarting after a failure", restarts,
                       exit_code, last_message)  # fmt: skip
    return None


def decide_consumer_ready(desired: int, available: int, pods: PodsView | None) -> Condition:
    """The one rule every writer of ConsumerReady applies. `pods` is None for a writer that only
    sees the Deployment; it then cannot name the kubelet's reason."""
    numbers = f"{available}/{desired} replicas available"
    if desired <= 0:
        return Condition(CONSUMER_READY, True, "ScaledToZero", "no replica requested")
    if available >= desired:
        return Condition(CONSUMER_READY, True, "Available", numbers)
    if pods is not None and pods.troubles:
        worst = pick_worst(pods.troubles)
        return Condition(CONSUMER_READY, False, worst.reason, f"{numbers}; {describe(worst)}")
    if available == 0:
        return Condition(CONSUMER_READY, False, "ReplicasUnavailable", numbers)
    return Condition(CONSUMER_READY, True, "PartiallyAvailable", numbers)


def pick_worst(troubles: Sequence[Trouble]) -> Trouble:
    def rank(trouble: Trouble) -> tuple[int, str]:
        known = trouble.reason in SEVERITY
        return (SEVERITY.index(trouble.reason) if known else len(SEVERITY), trouble.pod)

    return min(troubles, key=rank)


def describe(trouble: Trouble) -> str:
    text = f"pod {trouble.pod}: {trouble.reason}"
    if trouble.message:
        text += f": {trouble.message}"
    if trouble.restarts:
        text += f" (restarted {trouble.restarts} times"
        if trouble.last_exit_code is not None:
            text += f", last exit code {trouble.last_exit_code}"
        text += ")"
    if trouble.last_message:
        text += f"; its last words: {trouble.last_message[-600:]}"
    return text


def keep_pod_reason(update: Condition, previous: Mapping[str, Any] | None) -> Condition:
    """A writer without the pods' view keeps the pod-derived reason the ResourceManager wrote
    as long as it itself sees replicas missing; only all replicas available (or a new rollout,
    or no Deployment) replaces it."""
    if update.type != CONSUMER_READY or previous is None:
        return update
    reason = str(previous.get("reason") or "")
    if previous.get("status") != "False" or reason in DEPLOYMENT_REASONS:
        return update
    if update.reason not in MISSING_REASONS:
        return update
    return Condition(CONSUMER_READY, False, reason, str(previous.get("message") or ""))


def classify_sink_error(message: str) -> str | None:
    """The SinkReady reason a consumer's termination message means, or None."""
    lowered = message.lower()
    for marker, reason in SINK_ERROR_MARKERS:
        if marker in lowered:
            return reason
    return None


def decide_sink_ready(secret: str | None, pods: PodsView) -> Condition:
    """SinkReady: False when the sink Secret is missing (the kubelet cannot start a consumer:
    CreateContainerConfigError naming it) or a consumer's last words say the sink refused its
    credentials or could not be reached; True while a consumer is ready (a consumer turns ready
    only after it has created or found its indices and read its state from the sink); Unknown
    while no consumer has got that far."""
    for trouble in pods.troubles:
        text = trouble.message.lower()
        if (
            secret
            and trouble.reason == "CreateContainerConfigError"
            and secret.lower() in text
            and "secret" in text
        ):
            return Condition(
                SINK_READY, False, "SecretMissing",
                f"the sink Secret {secret!r} (spec.sink.credentialsSecretRef) is missing or "
                f"lacks a key: create it in this namespace. The kubelet says: {trouble.message}",
            )  # fmt: skip
    for trouble in pods.troubles:
        reason = classify_sink_error(trouble.last_message)
        if reason is not None:
            return Condition(SINK_READY, False, reason,
                             f"pod {trouble.pod}: {trouble.last_message[-1000:]}")  # fmt: skip
    if pods.ready > 0:
        return Condition(SINK_READY, True, "SinkAccepting",
                         f"{pods.ready} consumer(s) read and write the sink")  # fmt: skip
    return Condition(SINK_READY, None, "NotObserved", "no consumer has reached the sink yet")
