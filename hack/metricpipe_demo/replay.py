"""Replay a plan to Kafka at its due times: the I/O shell of the demo's traffic (its CLI,
`python -m metricpipe_demo.replay`, is in cli.py).

RTT points go to one topic as JSON, Apache lines to another as raw text bytes (or to several,
as Fluentd copies a tag's record into every route that selects it). The replayer
sleeps until each record is due, produces whatever is due in one go, serves delivery callbacks
with poll() at least every `chunk_size` records, counts what was sent, delivered and failed,
and keeps per-second counts of sent records so the demo can plot its input rate.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from threading import Event
from typing import Any, Protocol

import confluent_kafka
from confluent_kafka.admin import AdminClient

from .schedule import Emission

MAX_WAIT = 0.25  # seconds: the longest sleep, so stop and progress stay responsive
STOP_FLUSH_TIMEOUT = 5.0  # seconds to wait for deliveries after a stop

DeliveryCallback = Callable[[Any, Any], None]
KafkaConfig = dict[str, str | int | float]  # librdkafka properties
Topics = Mapping[str, str | tuple[str, ...]]  # topic key -> the topic, or every topic, it goes to


class Producer(Protocol):
    """The part of confluent_kafka.Producer the replayer uses."""

    def produce(
        self, topic: str, *, value: bytes, key: bytes | None, on_delivery: DeliveryCallback
    ) -> None: ...

    def poll(self, timeout: float) -> int: ...

    def flush(self, timeout: float) -> int: ...


@dataclass
class ReplayStats:
    """Counts of one replay, updated while it runs (delivery callbacks run on the replaying
    thread, inside poll/flush; another thread may read them).

    sent:            records of the plan produced (a record copied to two topics counts once).
    delivered, failed, undelivered: messages (a record copied to two topics is two); undelivered
                     ones were still queued when the replay stopped waiting at the end.
    sent_per_second: topic -> UNIX second -> records produced to it in that second.
    source_times:    topic key -> source instant (UNIX seconds) of the latest record produced.
    behind:          how late the latest record was produced after it was due, seconds.
    burst_sent:      (first, last) UNIX time a burst copy (Emission.copy > 0) was produced, or
                     None while none has been: when the burst ran on the wall clock.
    """

    sent: int = 0
    delivered: int = 0
    failed: int = 0
    undelivered: int = 0
    behind: float = 0.0
    first_error: str | None = None
    sent_per_second: dict[str, dict[int, int]] = field(default_factory=dict)
    source_times: dict[str, float] = field(default_factory=dict)
    burst_sent: tuple[float, float] | None = None

    def record_delivery(self, error: Any, message: Any) -> None:
        if error is None:
            self.delivered += 1
        else:
            self.failed += 1
            if self.first_error is None:
                self.first_error = str(error)

    def record_sent(self, topics: tuple[str, ...], emission: Emission, now: float) -> None:
        self.sent += 1
        second = int(now)
        for topic in topics:
            seconds = self.sent_per_second.setdefault(topic, {})
            seconds[second] = seconds.get(second, 0) + 1
        self.source_times[emission.topic_key] = emission.source_time
        self.behind = max(0.0, now - emission.due)
        if emission.copy > 0:
            self.burst_sent = (self.burst_sent[0] if self.burst_sent else now, now)

    def build_rate_series(self, topic: str | None = None) -> list[tuple[int, int]]:
        """(UNIX second, records sent) for every second from the first to the last sent,
        idle seconds included as 0; topic None: all topics together."""
        totals: dict[int, int] = {}
        for name, seconds in list(self.sent_per_second.items()):
            if topic is None or name == topic:
                for second, count in seconds.copy().items():
                    totals[second] = totals.get(second, 0) + count
        if not totals:
            return []
        return [(s, totals.get(s, 0)) for s in range(min(totals), max(totals) + 1)]


@dataclass(frozen=True)
class ReplayProgress:
    """A snapshot for the progress callback; rate: records/s since the previous snapshot."""

    elapsed: float
    sent: int
    delivered: int
    failed: int
    rate: float
    behind: float
    source_times: dict[str, datetime]
    final: bool = False


class _Reporter:
    def __init__(
        self,
        stats: ReplayStats,
        callback: Callable[[ReplayProgress], None] | None,
        every: float,
        now: float,
    ) -> None:
        self.stats, self.callback, self.every = stats, callback, every
        self.started = self.last_time = now
        self.last_sent = 0

    def maybe_report(self, now: float) -> None:
        if self.callback is not None and now - self.last_time >= self.every:
            self.report(now)

    def report(self, now: float, *, final: bool = False) -> None:
        if self.callback is None:
            return
        stats, span = self.stats, max(now - self.last_time, 1e-9)
        times = {k: datetime.fromtimestamp(v, UTC) for k, v in stats.source_times.items()}
        rate = (stats.sent - self.last_sent) / span
        self.callback(
            ReplayProgress(
                now - self.started, stats.sent, stats.delivered, stats.failed, rate,
                stats.behind, times, final,
            )
        )  # fmt: skip
        self.last_time, self.last_sent = now, stats.sent


def build_producer(config: KafkaConfig) -> Producer:
    producer: Producer = confluent_kafka.Producer(config)
    return producer


def replay(
    producer_config: KafkaConfig,
    plan: Iterable[Emission],
    *,
    topics: Topics,
    stop: Event | None = None,
    progress: Callable[[ReplayProgress], None] | None = None,
    progress_every: float = 5.0,
    chunk_size: int = 100,
    flush_timeout: float = 30.0,
    stats: ReplayStats | None = None,
    producer_factory: Callable[[KafkaConfig], Producer] = build_producer,
    clock: Callable[[], float] = time.time,
    wait: Callable[[float], object] | None = None,
) -> ReplayStats:
    """Produce every emission of `plan` to topics[emission.topic_key] (one topic or each of a
    tuple) once it is due (clock: UNIX seconds), until the plan ends or `stop` is set. Pass
    `stats` to watch the counts live from another thread. `wait(seconds)` sleeps (default:
    stop.wait)."""
    stop = stop or Event()
    stats = stats if stats is not None else ReplayStats()
    replayer = _Replayer(
        producer=producer_factory(dict(producer_config)),
        stats=stats,
        stop=stop,
        sleep=wait or stop.wait,
        clock=clock,
        reporter=_Reporter(stats, progress, progress_every, clock()),
    )
    replayer.run(plan, topics, chunk_size)
    timeout = min(flush_timeout, STOP_FLUSH_TIMEOUT) if stop.is_set() else flush_timeout
    stats.undelivered = replayer.producer.flush(timeout)
    replayer.reporter.report(clock(), final=True)
    return stats


@dataclass
class _Replayer:
    producer: Producer
    stats: ReplayStats
    stop: Event
    sleep: Callable[[float], object]
    clock: Callable[[], float]
    reporter: _Reporter

    def run(self, plan: Iterable[Emission], topics: Topics, chunk_size: int) -> None:
        since_poll = 0
        for emission in plan:
            routed = topics.get(emission.topic_key)
            if routed is None:
                raise ValueError(f"no topic for {emission.topic_key!r} records (topics: {topics})")
            targets = (routed,) if isinstance(routed, str) else routed
            if not self.wait_until(emission.due):
                return
            if not all(self.produce(topic, emission) for topic in targets):
                return
            now = self.clock()
            self.stats.record_sent(targets, emission, now)
            since_poll += 1
            if since_poll >= chunk_size:
                self.producer.poll(0)
                since_poll = 0
                self.reporter.maybe_report(now)

    def wait_until(self, due: float) -> bool:
        """Sleep until `due`, serving callbacks and progress; False when stopped."""
        while not self.stop.is_set():
            now = self.clock()
            if now >= due:
                return True
            self.producer.poll(0)
            self.reporter.maybe_report(now)
            self.sleep(min(due - now, MAX_WAIT))
        return False

    def produce(self, topic: str, emission: Emission) -> bool:
        """Produce one record, waiting while the local queue is full; False when stopped."""
        while not self.stop.is_set():
            try:
                self.producer.produce(
                    topic,
                    value=emission.payload,
                    key=emission.key,
                    on_delivery=self.stats.record_delivery,
                )
            except BufferError:
                self.producer.poll(0.1)  # the queue is full: serve deliveries to make room
            else:
                return True
        return False


def fetch_missing_topics(producer_config: KafkaConfig, topics: Iterable[str]) -> list[str]:
    """The topics the cluster does not have (topic auto-creation is off on the local stack)."""
    admin = AdminClient(dict(producer_config))
    existing = set(admin.list_topics(timeout=10).topics)
    return sorted(set(topics) - existing)


if __name__ == "__main__":
    from .cli import main

    sys.exit(main())
