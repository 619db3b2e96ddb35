"""A reconcile's outcome as Kopf's retry errors: shared by the MetricPipeline and LogArchive
handlers (the only layer that raises kopf errors)."""

from __future__ import annotations

import random

import kopf

from metricpipe_contract.retry import decide_retry_delay

from .reconcile.pipeline import Outcome, Runtime


def retry_delay(runtime: Runtime, retry: int) -> float:
    config = runtime.config
    draw = random.random()  # jitter: nothing secret rides on it
    return decide_retry_delay(retry, config.retry_min_seconds, config.retry_max_seconds, draw)


def raise_for_outcome(outcome: Outcome, runtime: Runtime, retry: int) -> None:
    """Permanent: the spec must change; transient: soon again (backoff); blocked: another
    object holds what this one asks for, so look again later."""
    if outcome.permanent:
        raise kopf.PermanentError(outcome.permanent)
    if outcome.transient:
        raise kopf.TemporaryError(outcome.transient, delay=retry_delay(runtime, retry))
    if outcome.blocked:
        raise kopf.TemporaryError(outcome.blocked, delay=runtime.config.retry_max_seconds)
