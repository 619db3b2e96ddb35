"""Dead letters: a record the pipeline cannot count, sent to `<topic>.dlq` unchanged, with
headers that say why and where it came from (stream consumer and batch runs alike)."""

from __future__ import annotations

from confluent_kafka import Producer


class DeadLetterWriter:
    def __init__(self, bootstrap: str, topic: str, pipeline: str) -> None:
        self.topic = topic
        self.pipeline = pipeline.encode()
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 20}
        )

    def send(
        self, value: bytes | None, key: bytes | None, source: str, reason: str, detail: str
    ) -> None:
        """Queue one dead letter; `source` is topic/partition/offset of the original record."""
        headers: list[tuple[str, str | bytes | None]] = [
            ("metricpipe.reason", reason.encode()),
            ("metricpipe.detail", detail[:500].encode()),
            ("metricpipe.source", source.encode()),
            ("metricpipe.pipeline", self.pipeline),
        ]
        while True:
            try:
                self.producer.produce(self.topic, value=value, key=key, headers=headers)
                return
            except BufferError:  # a burst of dead letters: let the queue drain
                self.producer.poll(0.1)

    def flush(self) -> None:
        """Every queued dead letter acknowledged by Kafka, or an error: none is lost quietly."""
        if self.producer.flush(30) > 0:
            raise RuntimeError("dead-letter records were not acknowledged by Kafka")
