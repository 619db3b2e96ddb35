"""Small helpers shared by the integration and e2e tiers."""

from __future__ import annotations

import copy
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None], timeout: float = 60.0, what: str = "condition",
    interval: float = 0.5,
) -> T:  # fmt: skip
    """Poll until predicate returns something truthy (so never None); fail with what we waited
    for."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def present(value: T | None) -> T:
    """A field the typed Kubernetes models leave Optional but the server has filled in; for
    expressions (lambdas, comprehensions) where an `assert ... is not None` cannot stand."""
    assert value is not None
    return value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_path(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `base` with one dotted path set (value None removes it)."""
    spec = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node = spec
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return spec
