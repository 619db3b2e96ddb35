"""A test-only fault hook: `METRICPIPE_FAULT_EXIT_AT=<point>` makes the stream consumer kill
itself with SIGKILL when it reaches that point, after logging `fault injected` with the point
(so a test can prove where the crash landed). Read once, when the settings are made; unset in
production, where `fault_point` does nothing."""

from __future__ import annotations

import os
import signal
import sys

import structlog

from .config import ConsumerConfig

FAULT_POINTS = (
    "after_dead_letter_flush",  # the scan's dead letters are in Kafka; no sink write yet
    "after_sink_dead_letter_flush",  # the sink refusals' letters too; no state write yet
    "after_partials_write",  # the batch's partials are in the sink; no state write, no commit
    "after_state_write",  # the partition states too (resume offsets); no offset commit yet
    "mid_finalize",  # a round's final documents are in the sink; its progress is not saved
)
log = structlog.get_logger("metricpipe.faults")


def fault_point_from_config() -> str | None:
    return ConsumerConfig().fault_exit_at


def fault_point(configured: str | None, point: str) -> None:
    """`kill -9` this process (and its Spark JVM, when it leads its process group) if the
    configured point is this one."""
    if configured != point:
        return
    log.warning("fault injected: killing this process", point=point)
    sys.stdout.flush()
    sys.stderr.flush()
    group = os.getpgid(0)
    if group == os.getpid():
        os.killpg(group, signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
