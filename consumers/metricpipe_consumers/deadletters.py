"""Dead letters: a record the pipeline cannot count, sent to `<topic>.dlq` with headers that
say why and where it came from (stream consumer and batch runs alike). The rules (headers,
truncation, which letters were sent already) are pure, in `letters.py`; this is the I/O.

- Letters of input partition p go to DLQ partition p (mod the DLQ's partition count).
- A letter larger than the DLQ takes (`max.message.bytes`, read from Kafka) is sent truncated,
  with headers saying so; when Kafka still refuses one as too large (an admin lowered the
  limit meanwhile), the limit is read again and the letter re-sent smaller. A record can
  never make the writer fail; only an unreachable Kafka does.
- `load_marks` reads the newest letters back, so that a replay after a crash does not send
  the same letters again (see `letters.decide_send`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace

import structlog
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, ConfigResource

from .letters import (
    DEFAULT_MAX_MESSAGE_BYTES,
    Letter,
    MarkKey,
    Mode,
    Position,
    Stage,
    build_letter_record,
    decide_dead_letter_partition,
    decide_send,
    fold_marks,
    parse_source,
    read_letter_mark,
)

log = structlog.get_logger("metricpipe.deadletters")
PRODUCER_HEADROOM_BYTES = 65_536  # the producer's own limit above the topic's
MARKS_READ_CAP = 100_000  # newest letters read per DLQ partition when looking for marks
MARKS_READ_SECONDS = 60.0
SIZE_RETRIES = 4


@dataclass
class _Queued:
    letter: Letter
    partition: int
    error: KafkaError | None = None


class DeadLetterWriter:
    def __init__(
        self, kafka: Mapping[str, str], topic: str, pipeline: str, mode: Mode = "stream"
    ) -> None:
        self.kafka = dict(kafka)  # librdkafka settings (kafka_access.KafkaAccess.settings)
        self.bootstrap = kafka["bootstrap.servers"]
        self.topic = topic
        self.pipeline = pipeline
        self.mode: Mode = mode
        self.window_start_ms: int | None = None  # batch: the window being run
        self.marks: dict[MarkKey, Position] = {}
        self._marks_since: int | None = None
        self._marks_loaded = False
        self._admin = AdminClient({**self.kafka})
        self._limit: int | None = None  # the DLQ's max.message.bytes
        self._partitions = 0
        self._producer: Producer | None = None
        self._producer_cap = 0
        self._buffer: list[Letter] = []

    # -- facts about the DLQ ----------------------------------------------------------------------
    def refresh(self) -> None:
        """Read the DLQ's partition count and `max.message.bytes` from Kafka."""
        metadata = self._admin.list_topics(self.topic, timeout=10)
        topic = metadata.topics.get(self.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            raise RuntimeError(
                f"dead-letter topic {self.topic} is not available "
                f"({topic.error if topic else 'missing'}); the operator creates it with the "
                "pipeline's topic"
            )
        self._partitions = len(topic.partitions)
        self._limit = self._read_limit()

    def _read_limit(self) -> int:
        resource = ConfigResource(ConfigResource.Type.TOPIC, self.topic)
        try:
            entries = self._admin.describe_configs([resource])[resource].result(timeout=10)
            return int(entries["max.message.bytes"].value)
        except (KafkaException, KeyError, ValueError) as error:
            log.warning("cannot read the dead-letter topic's max.message.bytes; assuming "
                        "Kafka's default", topic=self.topic, error=str(error))  # fmt: skip
            return DEFAULT_MAX_MESSAGE_BYTES

    @property
    def partitions(self) -> int:
        if not self._partitions:
            self.refresh()
        return self._partitions

    @property
    def producer(self) -> Producer:
        limit = self._limit if self._limit is not None else self._read_limit_now()
        cap = max(limit, 1_000_000) + PRODUCER_HEADROOM_BYTES
        if self._producer is None or cap != self._producer_cap:
            if self._producer is not None:
                self._producer.flush(30)
            self._producer = Producer({
                **self.kafka, "enable.idempotence": True,
                "linger.ms": 20, "message.max.bytes": cap,
                # several small letters in one batch must fit the topic's limit too
                "batch.size": max(1, min(1_000_000, limit - 4096)),
            })  # fmt: skip
            self._producer_cap = cap
        return self._producer

    def _read_limit_now(self) -> int:
        self.refresh()
        assert self._limit is not None
        return self._limit

    # -- writing --------------------------------------------------------------------------------
    def send(
        self, value: bytes | None, key: bytes | None, source: str, reason: str, detail: str,
        *, stage: Stage = "scan", offset_base: int = 0,
    ) -> bool:  # fmt: skip
        """Queue one dead letter (sent by `flush`); `source` is topic/partition/offset of the
        original record (Kafka's offset; `offset_base` as in state.py). False when this letter
        was sent before (a replay): nothing queued."""
        letter = Letter(
            value, key, parse_source(source), reason, detail, mode=self.mode, stage=stage,
            window_start_ms=self.window_start_ms if self.mode == "batch" else None,
            offset_base=offset_base,
        )  # fmt: skip
        if not decide_send(letter, self.marks):
            return False
        self._buffer.append(letter)
        self.marks = fold_marks(self.marks, [(letter.mark_key, letter.position)])
        return True

    def flush(self) -> None:
        """Send the queued letters, in (source partition, position) order, and wait until Kafka
        acknowledged every one — or raise: none is lost quietly. Letters Kafka refuses as too
        large (an admin lowered the DLQ's limit) are sent again, smaller."""
        letters = sorted(self._buffer, key=lambda x: (x.source.partition, x.stage, x.position))
        self._buffer = []
        if not letters:
            return
        partitions = self.partitions
        queued = [
            _Queued(x, decide_dead_letter_partition(x.source.partition, partitions))
            for x in letters
        ]
        limit = self._letter_limit()
        for _attempt in range(SIZE_RETRIES + 1):
            for item in queued:
                self._produce(item, limit)
            if self.producer.flush(30) > 0:
                raise RuntimeError(
                    f"dead letters were not acknowledged by Kafka ({self.bootstrap}) in 30 s"
                )
            failed = [q for q in queued if q.error is not None]
            other = [q.error for q in failed if not _too_large(q.error)]
            if other:
                raise RuntimeError(f"Kafka refused dead letters for {self.topic}: {other[0]}")
            if not failed:
                return
            self.refresh()
            topic_limit = self._letter_limit()
            limit = topic_limit if topic_limit < limit else limit // 2
            log.warning("dead letters refused as too large; sending them smaller",
                        letters=len(failed), limit=limit)  # fmt: skip
            queued = [replace(q, error=None) for q in failed]
        raise RuntimeError(f"dead letters for {self.topic} still too large after shrinking")

    def _letter_limit(self) -> int:
        return self._limit if self._limit is not None else self._read_limit_now()

    def _produce(self, queued: _Queued, limit: int) -> None:
        record = build_letter_record(queued.letter, self.pipeline, limit)
        if record.truncated:
            log.warning("dead letter truncated to fit the dead-letter topic", limit=limit,
                        source=str(queued.letter.source),
                        original_bytes=len(queued.letter.value or b""))  # fmt: skip

        def delivered(error: KafkaError | None, _message: Message) -> None:
            queued.error = error

        producer = self.producer
        while True:
            try:
                producer.produce(
                    self.topic, value=record.value, key=record.key, partition=queued.partition,
                    headers=list(record.headers), on_delivery=delivered,
                )  # fmt: skip
                return
            except BufferError:  # a burst of dead letters: let the queue drain
                producer.poll(0.1)

    def close(self) -> None:
        """Send what is still queued (normally nothing: every batch flushes its own)."""
        if self._buffer:
            self.flush()
        elif self._producer is not None:
            self._producer.flush(30)

    # -- what was sent already ----------------------------------------------------------------
    def ensure_marks(self, since_ms: int | None, source_topic: str) -> None:
        """Load marks unless letters from `since_ms` on were read already (batch runs)."""
        covered = self._marks_loaded and (
            self._marks_since is None or (since_ms is not None and since_ms >= self._marks_since)
        )
        if not covered:
            self.load_marks(since_ms, source_topic)

    def load_marks(self, since_ms: int | None, source_topic: str) -> None:
        """Read this pipeline's letters from `since_ms` (Kafka time; None: the start) in every
        DLQ partition — the newest MARKS_READ_CAP per partition at most — into `marks`."""
        self.refresh()
        started = time.monotonic()
        found = fetch_letter_marks(
            self.kafka,
            self.topic,
            self.partitions,
            since_ms,
            pipeline=self.pipeline,
            source_topic=source_topic,
        )
        self.marks = fold_marks(self.marks, found)
        self._marks_loaded = True
        if self._marks_since is None or since_ms is None or since_ms < self._marks_since:
            self._marks_since = since_ms
        log.info("dead-letter marks read", letters=len(found), marks=len(self.marks),
                 seconds=round(time.monotonic() - started, 3))  # fmt: skip


def _is_eof(error: KafkaError | None) -> bool:
    return error is not None and error.code() == KafkaError._PARTITION_EOF


def _too_large(error: KafkaError | None) -> bool:
    return error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE


def fetch_letter_marks(
    kafka: Mapping[str, str], topic: str, partitions: int, since_ms: int | None, *,
    pipeline: str,
    source_topic: str,
) -> list[tuple[MarkKey, Position]]:  # fmt: skip
    """(mark key, position) of every letter of `pipeline` about `source_topic` in the DLQ's
    range to read. Letters that cannot be read in time are logged: the cost is a possible
    duplicate, never a lost record."""
    consumer = Consumer({
        **kafka, "group.id": f"metricpipe-dlq-marks-{pipeline}",
        "enable.auto.commit": False, "enable.partition.eof": True,
    })  # fmt: skip
    found: list[tuple[MarkKey, Position]] = []
    try:
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        times = (
            consumer.offsets_for_times(
                [TopicPartition(topic, q, since_ms) for q in range(partitions)], timeout=10
            )
            if since_ms is not None
            else []
        )
        for q in range(partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, q), timeout=10)
            start = _start(low, high, times[q].offset if times else None)
            if start < high:
                ends[q] = high
                starts.append(TopicPartition(topic, q, start))
        if not starts:
            return found
        consumer.assign(starts)
        deadline = time.monotonic() + MARKS_READ_SECONDS
        while ends and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.25):
                q = message.partition() or 0
                if message.error() is None:
                    headers = message.headers()
                    mark = read_letter_mark(
                        headers if isinstance(headers, list) else None, pipeline, source_topic
                    )
                    if mark is not None:
                        found.append(mark)
                    if (message.offset() or 0) >= ends.get(q, 0) - 1:
                        ends.pop(q, None)
                elif _is_eof(message.error()):
                    ends.pop(q, None)
        if ends:
            log.warning("dead-letter marks not fully read in time; a replay may repeat letters",
                        partitions=sorted(ends))  # fmt: skip
    except KafkaException as error:
        log.warning("dead-letter marks not read; a replay may repeat letters", error=str(error))
    finally:
        consumer.close()
    return found


def _start(low: int, high: int, at_time: int | None) -> int:
    """First offset to read: the first letter at or after the time (none: the end), never more
    than MARKS_READ_CAP letters before the end."""
    start = low if at_time is None else (high if at_time < 0 else at_time)
    return max(start, low, high - MARKS_READ_CAP)
