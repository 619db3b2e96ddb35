"""The stack's redis-server killed with SIGKILL and started again as `make stack-up` starts it
(the same configuration, data directory and pid file), for the tests that prove what survives
(tests/integration/test_redis_stack.py, test_cache_writer.py)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from helpers import wait_for
from metricpipe_devstack import process
from metricpipe_devstack.process import PidRecord
from metricpipe_devstack.redis import Redis
from metricpipe_devstack.settings import StackSettings
from metricpipe_devstack.stack import stack_status


def kill_redis(component: Redis) -> PidRecord:
    """SIGKILL to the running redis-server (no shutdown, no last fsync); its record once dead."""
    before = component.record()
    assert before is not None, "the stack's Redis was never started"
    assert component.is_running(), "the stack's Redis is not running"
    os.kill(before.pid, signal.SIGKILL)
    wait_for(
        lambda: not process.is_alive(before), timeout=5, what="redis-server dead", interval=0.05
    )
    return before


def restart_redis(component: Redis, killed: PidRecord) -> PidRecord:
    """Start it again as stack-up does and wait until healthy: a new process, which
    stack-status reports healthy."""
    component.start()
    component.wait_healthy(timeout=20)
    after = component.record()
    assert after is not None, "the restart recorded no pid"
    assert after.pid != killed.pid
    assert process.is_alive(after)
    row = next(r for r in stack_status(component.settings) if r["component"] == "redis")
    assert row["pid"] == str(after.pid), row  # stack-status sees the restarted process
    assert row["health"].startswith("healthy"), row
    return after


@pytest.fixture
def stack_redis() -> Iterator[Redis]:
    """The stack's Redis component; started again at the end if a failed test left it dead."""
    component = Redis(StackSettings())
    yield component
    if not component.is_running():
        component.start()
        component.wait_healthy(timeout=20)
