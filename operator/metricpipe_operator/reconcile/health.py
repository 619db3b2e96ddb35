"""ConsumerReady and SinkReady from what the kubelet and the consumers report (pure).

Three writers set ConsumerReady: the reconciler (after applying the Deployment), the Deployment
watcher (`refresh_consumer_status`) and the ResourceManager (each cycle, with the consumer pods
it lists). They all apply `decide_consumer_ready` to the same two numbers — replicas wanted and
replicas available — and only the ResourceManager adds the pods' view, which can say *why*
replicas are missing (the kubelet's reason). So that the writers do not undo each other,
`keep_pod_reason` keeps a pod-derived reason as long as the Deployment still shows replicas
missing; a writer without the pods' view never replaces it with its vaguer one. Once the
replicas are available every writer says True.

A consumer killed for memory is named as such: `OOMKilled` (in the container's state, or in its
last state while the kubelet backs off or restarts it) wins over the crash loop it causes, and
its message carries the memory limit from the pod's spec and the field to raise. A crash loop
for another reason says the restarts, the last exit code, the memory limit and the first line
of the consumer's last words. A consumer that stopped because Kafka refused its settings
starts its last words with the reason (`KafkaAuthFailed`, `TLSVerificationFailed`,
`KafkaForbidden`, `KafkaSettingsInvalid`: consumers' kafka_check.py), which then is the
condition's reason. Messages are one line without times, so the status changes only
when the pods do (a restart, another reason).

SinkReady comes from the same pods: a `CreateContainerConfigError` naming the sink Secret (the
operator has no read access to Secrets; the kubelet tells), and the consumers' last words when
the sink refused them (their termination message, see `classify_sink_error`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from metricpipe_contract.kafka import KAFKA_REASONS, TLS_VERIFICATION_FAILED
from metricpipe_contract.sink import SINK_REASONS

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
OOM_KILLED = "OOMKilled"  # the runtime's reason when the kernel killed for the memory limit
CRASH_LOOP = "CrashLoopBackOff"
CRASHES = frozenset({OOM_KILLED, CRASH_LOOP, "Error"})  # the container ran: its limit matters
# Where a user raises the consumer's memory limit (contract model.py: Consumer.resources).
MEMORY_LIMIT_FIELD = "spec.consumer.resources.limits.memory"
# Reported first when pods disagree: what needs a user's change before what may pass; among
# crashes, the one whose cause is known (memory) before the one whose cause is in its words.
SEVERITY = ("Unschedulable", "CreateContainerConfigError", "InvalidImageName", "ErrImageNotLocal",
            "ImagePullBackOff", "ErrImagePull", "RunContainerError", "CreateContainerError",
            OOM_KILLED, CRASH_LOOP, "Error")  # fmt: skip
LAST_WORDS_CHARS = 300  # of the one line of a container's last words a message quotes
KUBELET_WORDS_CHARS = 300


@dataclass(frozen=True)
class Trouble:
    """One consumer container that is not running well, as its pod's status says."""

    pod: str
    reason: str  # the kubelet's: CrashLoopBackOff, CreateContainerConfigError, ...
    message: str
    restarts: int = 0
    last_exit_code: int | None = None
    last_message: str = ""  # the container's last termination message
    container: str = ""
    memory_limit: str | None = None  # resources.limits.memory: applied (status), else the spec


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
        limits = build_memory_limits(pod.get("spec") or {})
        for container in status.get("containerStatuses") or []:
            limit = find_memory_limit(container) or limits.get(str(container.get("name") or ""))
            trouble = build_trouble(str(meta.get("name", "")), container, limit)
            if trouble is not None:
                troubles.append(trouble)
    return PodsView(count, ready, tuple(troubles))


def build_memory_limits(pod_spec: Mapping[str, Any]) -> dict[str, str]:
    """Container name -> its memory limit as the pod spec holds it ("2Gi"); none: left out."""
    limits: dict[str, str] = {}
    for container in pod_spec.get("containers") or []:
        memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
        if memory is not None and container.get("name"):
            limits[str(container["name"])] = str(memory)
    return limits


def find_memory_limit(container: Mapping[str, Any]) -> str | None:
    """The memory limit a container status reports as applied (kubelets that resize pods in
    place report `resources`): the one the kernel enforced, while after a resize the spec may
    already ask for another. None when not reported: the spec's then."""
    memory = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    return None if memory is None else str(memory)


def build_trouble(
    pod: str, container: Mapping[str, Any], memory_limit: str | None = None
) -> Trouble | None:
    """A not-ready container's trouble: killed for memory (now, or last time while it is backed
    off or restarting), a waiting reason other than starting, or a container that has failed
    before and is not ready now (between two crashes of a crash loop)."""
    state = container.get("state") or {}
    last = (container.get("lastState") or {}).get("terminated") or {}
    restarts = int(container.get("restartCount") or 0)
    exit_code = last.get("exitCode")
    last_message = str(last.get("message") or "")
    waiting = state.get("waiting")
    name = str(container.get("name") or "")
    killed = decide_oom_kill(state, last, bool(container.get("ready")))
    if killed is not None:  # the log tail the kubelet kept is not the consumer's last words
        return Trouble(pod, OOM_KILLED, "", restarts, killed.get("exitCode"), "", name,
                       memory_limit)  # fmt: skip
    if waiting is not None and waiting.get("reason") not in STARTING:
        reason, message = str(waiting.get("reason") or "Waiting"), str(waiting.get("message") or "")
        return Trouble(pod, reason, message, restarts, exit_code, last_message, name, memory_limit)
    terminated = state.get("terminated")
    if terminated is not None and terminated.get("exitCode") not in (0, None):
        message = str(terminated.get("message") or "")
        # Between two starts of a crash loop the kubelet shows the exit (`Error`) for a moment
        # before the back-off: a container that failed before is in the loop, whatever instant
        # the status was read at (the reason would flap otherwise)
        reason = CRASH_LOOP if restarts > 0 else str(terminated.get("reason") or "Error")
        return Trouble(pod, reason, message, restarts, terminated.get("exitCode"), message, name,
                       memory_limit)  # fmt: skip
    if restarts > 0 and exit_code not in (0, None) and not container.get("ready"):
        return Trouble(pod, CRASH_LOOP, "restarting after a failure", restarts,
                       exit_code, last_message, name, memory_limit)  # fmt: skip
    return None


def decide_oom_kill(
    state: Mapping[str, Any], last: Mapping[str, Any], ready: bool
) -> Mapping[str, Any] | None:
    """The termination (state or last state) that says the kernel killed a not-ready container
    for memory and keeps it down, or None. The runtime says `OOMKilled` whenever the kernel
    killed in the container's cgroup, whatever the exit code (137 when the main process was
    killed; the code it exited with when a child such as Spark's JVM was). A last-state kill
    counts while the container is backed off, starting again or running again unready; a
    container that waits for another reason (its config, its image) needs that fixed first."""
    terminated = state.get("terminated") or {}
    if terminated.get("reason") == OOM_KILLED:
        return terminated
    waiting = state.get("waiting")
    down = waiting is None or waiting.get("reason") in STARTING | {CRASH_LOOP}
    if last.get("reason") == OOM_KILLED and not ready and down:
        return last
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
        # a consumer that stopped because Kafka refused its settings says why in its first
        # word (KafkaAuthFailed, TLSVerificationFailed, ...): that is the reason to act on
        kafka = classify_kafka_error(worst.last_message) if worst.reason in CRASHES else None
        reason = kafka or worst.reason
        return Condition(CONSUMER_READY, False, reason, f"{numbers}; {describe(worst)}")
    if available == 0:
        return Condition(CONSUMER_READY, False, "ReplicasUnavailable", numbers)
    return Condition(CONSUMER_READY, True, "PartiallyAvailable", numbers)


def pick_worst(troubles: Sequence[Trouble]) -> Trouble:
    def rank(trouble: Trouble) -> tuple[int, str]:
        known = trouble.reason in SEVERITY
        return (SEVERITY.index(trouble.reason) if known else len(SEVERITY), trouble.pod)

    return min(troubles, key=rank)


def describe(trouble: Trouble) -> str:
    """One line, no times: the pod, the reason, then what to know (and change)."""
    if trouble.reason == OOM_KILLED:
        return describe_oom_kill(trouble)
    text = f"pod {trouble.pod}: {trouble.reason}"
    # the kubelet's words (a crash loop's only count the back-off); a container that has just
    # ended says its last words there too, quoted once below
    if trouble.message and trouble.reason != CRASH_LOOP and trouble.message != trouble.last_message:
        text += f": {one_line(trouble.message, KUBELET_WORDS_CHARS)}"
    facts = []
    if trouble.restarts:
        facts.append(f"restarted {times(trouble.restarts)}")
    if trouble.last_exit_code is not None:
        facts.append(f"last exit code {trouble.last_exit_code}")
    if trouble.reason in CRASHES and trouble.memory_limit:
        facts.append(f"memory limit {trouble.memory_limit}")
    if facts:
        text += f" ({', '.join(facts)})"
    words = summarize_last_words(trouble.last_message)
    if words:
        text += f"; its last words: {words}"
    return text


def describe_oom_kill(trouble: Trouble) -> str:
    who = f"container {trouble.container}" if trouble.container else "the container"
    restarts = f" (restarted {times(trouble.restarts)})" if trouble.restarts else ""
    if trouble.memory_limit:
        return (f"pod {trouble.pod}: OOMKilled: {who} used more than its memory limit "
                f"{trouble.memory_limit}{restarts}; raise {MEMORY_LIMIT_FIELD}")  # fmt: skip
    return (f"pod {trouble.pod}: OOMKilled: the node ran out of memory and {who} has no memory "
            f"limit{restarts}; set {MEMORY_LIMIT_FIELD}")  # fmt: skip


def summarize_last_words(text: str) -> str:
    """The line of a termination message worth quoting: its first (the consumer writes its
    fatal reason as one line), or, when the kubelet kept the log tail of a Python traceback
    instead (FallbackToLogsOnError), the exception at its end."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    traceback = any(line.startswith("Traceback (most recent call last)") for line in lines)
    return one_line(lines[-1] if traceback else lines[0], LAST_WORDS_CHARS)


def one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def times(count: int) -> str:
    return "1 time" if count == 1 else f"{count} times"


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


def classify_kafka_error(message: str) -> str | None:
    """The Kafka reason a consumer's termination message starts with, or None."""
    first = message.strip().split(":", 1)[0]
    return first if first in KAFKA_REASONS and not _about_sink(first, message) else None


def classify_sink_error(message: str) -> str | None:
    """The SinkReady reason a consumer's termination message starts with, or None."""
    first = message.strip().split(":", 1)[0]
    if first == TLS_VERIFICATION_FAILED:
        return first if _about_sink(first, message) else None
    return first if first in SINK_REASONS else None


def _about_sink(reason: str, message: str) -> bool:
    """TLSVerificationFailed is a reason of both Kafka and the sink: the sink's message names
    the field to change, spec.sink.caSecretRef."""
    return reason == TLS_VERIFICATION_FAILED and "spec.sink" in message


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
