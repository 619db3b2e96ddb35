"""The pipeline document the operator mounts into the pod (`pipeline.json`)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from metricpipe_contract.durations import parse_duration
from metricpipe_contract.kafka import KafkaEndpoint
from metricpipe_contract.model import MetricPipelineSpec


class _Doc(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True)


class PipelineIdentity(_Doc):
    namespace: str
    name: str
    uid: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class SinkTarget(_Doc):
    backend: str
    endpoint: str
    index: str
    ca_file: str | None = Field(default=None, alias="caFile")  # spec.sink.caSecretRef's CA


class CacheSource(_Doc):
    """`source.store: redis`: the namespace's log cache of the tag (contract/cache.py). The
    batch user's name and password come from a Secret, as METRICPIPE_REDIS_USERNAME/PASSWORD."""

    host: str
    port: int
    key: str
    dead_letter_key: str = Field(alias="deadLetterKey")
    retention_seconds: int = Field(alias="retentionSeconds")


class PipelineDocument(_Doc):
    """What the operator's `build_pipeline_document` writes; the consumer's whole configuration
    besides secrets (a sink's as environment variables from Secret references, Kafka's as
    files of a mounted Secret, which `kafka` names)."""

    pipeline: PipelineIdentity
    topic: str
    consumer_group: str = Field(alias="consumerGroup")
    dead_letter_topic: str = Field(alias="deadLetterTopic")
    kafka: KafkaEndpoint  # where Kafka is; credentials from the mounted Secret
    sink: SinkTarget
    spec: MetricPipelineSpec
    cache: CacheSource | None = None  # source.store redis: read this instead of the topic

    @property
    def window_ms(self) -> int:
        return round(parse_duration(self.spec.metric.window) * 1000)

    @property
    def lateness_ms(self) -> int:
        return round(parse_duration(self.spec.metric.allowed_lateness) * 1000)

    @classmethod
    def load(cls, path: Path) -> PipelineDocument:
        return cls.model_validate(json.loads(path.read_text()))
