"""The shared Apache log as a Redis log cache holds it, for the tests of the batch path over the
cache (tests/integration/test_cache_batch.py, tests/e2e/test_cache_jobs.py): the lines retimed
to end an hour ago with their Fluentd times, the cache read back as the oracle's records, the
documents' fields that say when a run ran, and the clean-up of a namespace's keys."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import oracle
from metricpipe_contract.cache import build_cache_key, build_dead_letter_key
from metricpipe_demo.retime import parse_clf_time, rewrite_clf_timestamp
from metricpipe_devstack.env import StackEnv

HOUR_MS = 3_600_000
CHANGING = ("finalized_at", "delay_seconds")  # when it ran, not what it computed


def retime(lines: list[str], end_ms: int) -> list[tuple[float, str]]:
    """Each line moved by whole hours so that the newest lies in the hour before `end_ms`,
    with its Fluentd time (score): its request time plus 0-1.5 s; a line without a readable
    time keeps its text and its predecessor's time, as a shipper stamping arrival would."""
    times: list[int | None] = []
    for line in lines:
        try:
            times.append(oracle.event_ms(oracle.scan_access_line(line)["time"], "clf", None))
        except oracle.Dead:
            times.append(None)
    newest = max(t for t in times if t is not None)
    shift = (end_ms // HOUR_MS - newest // HOUR_MS - 1) * HOUR_MS
    out, last = [], 0
    for index, (line, when) in enumerate(zip(lines, times, strict=True)):
        if when is not None:
            last = when + shift
            moved = rewrite_clf_timestamp(line.encode(), _utc(last)).decode()
        else:
            moved = line
        out.append((last / 1000 + (index % 7) * 0.25, moved))
    return out


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def hours_of(events: list[tuple[float, str]]) -> set[int]:
    """The hours the lines' own timestamps fall in (lines without one left out)."""
    hours = set()
    for _, line in events:
        try:
            when = parse_clf_time(line.encode())
        except ValueError:
            continue
        hours.add(int(when.timestamp() * 1000) // HOUR_MS * HOUR_MS)
    return hours


def cached_records(stack: StackEnv, key: str) -> list[oracle.Record]:
    """Every member of the cache as the oracle's record (one partition; the score as its
    arrival time), read as the admin user."""
    assert stack.redis is not None
    admin = stack.redis.connect("admin", decode_responses=False)
    members = admin.zrange(key, 0, -1, withscores=True)
    return [oracle.Record(0, bytes(m), math.floor(float(s) * 1000)) for m, s in members]  # type: ignore[union-attr]


def comparable(
    finals: dict[Any, dict[str, Any]], changing: tuple[str, ...] = CHANGING
) -> dict[Any, dict[str, Any]]:
    """The final documents without the fields that say when (and, given, by whom) they were
    computed."""
    return {k: {f: v for f, v in doc.items() if f not in changing} for k, doc in finals.items()}


def delete_cache_keys(stack: StackEnv, namespace: str) -> None:
    """The namespace's caches and dead-letter hashes, deleted as the admin user."""
    assert stack.redis is not None
    admin = stack.redis.connect("admin")
    for pattern in (build_cache_key(namespace, "*"), build_dead_letter_key(namespace, "*")):
        for key in admin.scan_iter(match=pattern.replace("{", "\\{").replace("}", "\\}")):
            admin.delete(key)
