"""Batch over the Redis log cache (`source.store: redis`): the window's records from a sorted set.

The cache (contract/cache.py) holds every record of a tag as a member (its JSON as Fluentd
received it, plus `metricpipe_uid`) scored by its Fluentd event time in seconds: the time it
entered the logging pipeline, the role Kafka time plays for a topic. So a run reads the members
scored in [start - max future skew, end + allowedLateness) and decides each one exactly as the
Kafka batch run does (batch.py: same parser, same two clocks, same Spark plan, same documents).
A member's identity is (score, SHA-256 of the member): dead letters are fields of the
pipeline's own hash named by it, so a rerun writes the same fields again, never a second letter.

The writer trims members scored before now - retention at every write. A window whose read
range starts before that horizon may have lost records: it is not computed (a partial window is
never published as final), the run reports it as `trimmed`, and the progress moves past it —
it can never become complete again.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa
import redis

from metricpipe_contract.cache import build_member_id

from .batch import BatchJob
from .letters import Mode, Stage

READ_PAGE = 20_000  # members per ZRANGEBYSCORE call: a bounded reply per round trip


def decide_trimmed(window_start_ms: int, now_ms: int, retention_ms: int, skew_ms: int) -> bool:
    """Pure: True when part of the window's read range lies before the cache's trim horizon
    (now - retention), so records the window counts may be gone."""
    return window_start_ms - skew_ms < now_ms - retention_ms


def build_score_range(from_ms: int, until_ms: int) -> tuple[str, str]:
    """ZRANGEBYSCORE bounds in seconds for [from_ms, until_ms): inclusive, then exclusive."""
    return repr(from_ms / 1000), f"({until_ms / 1000!r}"


def fetch_cache_rows(
    client: redis.Redis, key: str, from_ms: int, until_ms: int, page: int = READ_PAGE
) -> tuple[pa.Table, list[str]]:
    """(partition 0, offset = rank in (score, member) order, kafka_ms = the score in ms, key
    None, value = the member) of the members scored in [from_ms, until_ms), and each row's
    identity. Pages by rank: a closed range only grows by late writes, which land in later
    pages or are read by a rerun."""
    low, high = build_score_range(from_ms, until_ms)
    members: list[tuple[bytes, float]] = []
    while True:
        got: list[tuple[bytes, float]] = client.zrangebyscore(  # type: ignore[assignment]
            key, low, high, start=len(members), num=page, withscores=True
        )  # redis-py's sync client: a list, typed as maybe-awaitable
        members += [(bytes(m), float(s)) for m, s in got]
        if len(got) < page:
            break
    members.sort(key=lambda item: (item[1], item[0]))
    table = pa.table({
        "partition": pa.array([0] * len(members), pa.int32()),
        "offset": pa.array(range(len(members)), pa.int64()),
        "kafka_ms": pa.array([math.floor(s * 1000) for _, s in members], pa.int64()),
        "key": pa.array([None] * len(members), pa.binary()),
        "value": pa.array([m for m, _ in members], pa.binary()),
    })  # fmt: skip
    return table, [build_member_id(s, m) for m, s in members]


def fetch_oldest_score_ms(client: redis.Redis, key: str) -> int | None:
    oldest: list[tuple[bytes, float]] = client.zrange(key, 0, 0, withscores=True)  # type: ignore[assignment]
    return math.floor(float(oldest[0][1]) * 1000) if oldest else None


class CacheDeadLetters:
    """Dead letters of a pipeline over the cache: one hash field per record and stage, so a
    rerun overwrites instead of adding (the Kafka writer's duplicate suppression is not
    needed). The interface BatchJob uses of deadletters.DeadLetterWriter."""

    def __init__(self, client: redis.Redis, key: str, pipeline: str) -> None:
        self.client = client
        self.key = key
        self.pipeline = pipeline
        self.mode: Mode = "batch"
        self.window_start_ms: int | None = None
        self._buffer: dict[str, str] = {}

    def ensure_marks(self, since_ms: int | None, source_topic: str) -> None:
        """Nothing to load: a letter's field is its identity."""

    def send(
        self, value: bytes | None, key: bytes | None, source: str, reason: str, detail: str,
        *, stage: Stage = "scan", offset_base: int = 0,
    ) -> bool:  # fmt: skip
        letter = {
            "pipeline": self.pipeline, "source": source, "reason": reason, "detail": detail,
            "stage": stage, "mode": self.mode, "windowStartMs": self.window_start_ms,
            "record": (value or b"").decode("utf-8", "backslashreplace"),
        }  # fmt: skip
        self._buffer[f"{source}#{stage}"] = json.dumps(letter, sort_keys=True)
        return True

    def flush(self) -> None:
        """Write the queued letters (HSET of all fields in one command) or raise."""
        if self._buffer:
            self.client.hset(self.key, mapping=self._buffer)
            self._buffer = {}


class CacheBatchJob(BatchJob):
    """BatchJob reading the cache instead of the topic (see the module)."""

    def __init__(self, *args: Any, client: redis.Redis, now_ms: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert self.doc.cache is not None
        self.cache = self.doc.cache
        self.client = client
        self.started_ms = now_ms
        self._ids: list[str] = []

    def first_record_ms(self) -> int | None:
        return fetch_oldest_score_ms(self.client, self.cache.key)

    def is_trimmed(self, window_start_ms: int) -> bool:
        skew_ms = self.parser.limits.max_future_skew_ms
        return decide_trimmed(window_start_ms, self.started_ms,
                              self.cache.retention_seconds * 1000, skew_ms)  # fmt: skip

    def read_rows(self, from_ms: int, until_ms: int) -> pa.Table:
        table, self._ids = fetch_cache_rows(self.client, self.cache.key, from_ms, until_ms)
        return table

    def source_of(self, partition: int, offset: int) -> str:
        return f"{self.cache.key}/{self._ids[offset]}"
