"""One root exception for the operator; each says what to change or that a retry will do."""

from __future__ import annotations


class MetricPipeError(Exception):
    """Root of every metricpipe operator error."""


class TransientError(MetricPipeError):
    """A dependency is unavailable; retrying later will fix it without user action."""


class PermanentError(MetricPipeError):
    """The spec cannot work as written; the message says what to change."""


class KafkaUnavailableError(TransientError):
    pass


class TopicChangeRefusedError(PermanentError):
    """Kafka may not be changed as the spec asks; `reason` is the condition's reason."""

    def __init__(self, message: str, reason: str = "PartitionDecreaseRefused") -> None:
        super().__init__(message)
        self.reason = reason


class KubernetesApiError(TransientError):
    pass


class TopicConflictError(PermanentError):
    """The topic belongs to another pipeline, to Kafka, or to nobody metricpipe knows."""
