"""The consumer's one typed configuration object (environment variables METRICPIPE_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConsumerConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METRICPIPE_", frozen=True)

    pipeline_config: Path = Field(
        default=Path("/etc/metricpipe/pipeline.json"), description="The operator's pipeline.json."
    )
    metrics_port: int = Field(default=9400, ge=0, le=65535, description="0 disables the server.")
    kafka_bootstrap: str | None = Field(default=None, description="Overrides pipeline.json.")
    sink_endpoint: str | None = Field(default=None, description="Overrides pipeline.json.")
    sink_username: str | None = None
    sink_password: SecretStr | None = None
    spark_master: str = Field(default="local[2]", description="Spark master of the session.")
    spark_jars: str = Field(
        default="", description="Comma-separated extra jars: the Kafka connector (batch mode)."
    )
    batch_max_windows: int = Field(
        default=24, ge=1, description="Batch mode: windows one run may make up; the rest next run."
    )
    termination_message_path: Path | None = Field(
        default=None,
        description="Batch mode: where the run writes its report (the container's "
        "terminationMessagePath; the ResourceManager sizes the next runs from it).",
    )
    max_batch_records: int = Field(default=100_000, ge=1)
    max_batch_seconds: float = Field(default=2.0, gt=0)
    finalize_interval_seconds: float = Field(default=5.0, gt=0)
    max_record_bytes: int = Field(default=1_048_576, ge=1, description="Larger: dead-lettered.")
    session_timeout_ms: int = Field(default=30_000, ge=1000)
    group_instance_id: str | None = Field(
        default=None,
        description="Static group membership (the pod name): a restarted container rejoins "
        "with its partitions instead of triggering a rebalance.",
    )
    idle_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A caught-up partition stops holding back finalisation after this long.",
    )
    log_level: str = "INFO"
