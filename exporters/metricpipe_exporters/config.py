"""The exporter's one typed configuration object (environment variables METRICPIPE_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from metricpipe_contract.kafka import KafkaClientSettings


class ExporterConfig(KafkaClientSettings):
    """Read once at start-up. Durations are in seconds."""

    model_config = SettingsConfigDict(env_prefix="METRICPIPE_", frozen=True)

    elasticsearch_url: str = Field(default="http://elasticsearch:9200")
    opensearch_url: str = Field(default="http://opensearch:9200")
    sink_username: str | None = Field(default=None, description="From a Secret reference.")
    sink_password: SecretStr | None = Field(default=None, description="From a Secret reference.")
    sink_ca_file: str | None = Field(
        default=None, description="CA (PEM) of the sinks' HTTPS certificates, a mounted Secret."
    )
    exporter_port: int = Field(default=9401, ge=0, le=65535, description="/metrics port.")
    exporter_interval_seconds: float = Field(
        default=5.0, gt=0, description="One collection cycle (Kafka + sink) this often."
    )
    exporter_kafka_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Timeout of each Kafka request of a cycle."
    )
    exporter_lookup_budget_seconds: float = Field(
        default=3.0, gt=0, description="Time a cycle may spend reading record timestamps."
    )
    exporter_pipelines_file: Path | None = Field(
        default=None,
        description="YAML/JSON list of MetricPipeline objects to watch instead of the cluster's.",
    )
    exporter_namespace: str | None = Field(
        default=None, description="Only this namespace's MetricPipelines (default: all)."
    )
    exporter_probe_sink: bool = Field(default=True, description="Run the sink freshness prober.")
    redis_host: str | None = Field(
        default=None,
        description="The Redis log cache to watch (INFO at each scrape); unset: no cache series.",
    )
    redis_port: int = Field(default=6379, ge=1, le=65535, description="The Redis cache's port.")
    redis_username: str = Field(
        default="metricpipe-exporter", description="Redis ACL user; needs only +info +ping."
    )
    redis_password: SecretStr | None = Field(default=None, description="From a Secret reference.")
    redis_timeout_seconds: float = Field(
        default=2.0, gt=0, description="Connect and reply timeout of a scrape's INFO."
    )
    log_level: str = "INFO"
