"""The consumer's one typed configuration object (environment variables METRICPIPE_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .records import RecordLimits


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
    redis_username: str | None = None  # source.store redis: the batch user (from a Secret)
    redis_password: SecretStr | None = None
    sink_api_key: SecretStr | None = None  # Elasticsearch: instead of user name and password
    spark_master: str = Field(default="local[2]", description="Spark master of the session.")
    spark_jars: str = Field(
        default="",
        description="Comma-separated extra jars, paths or globs (the image's "
        "'/opt/metricpipe/jars/*.jar'): the Kafka connector (batch mode). An entry that matches "
        "no file stops the run with an error.",
    )
    spark_warm_up_rounds: int = Field(
        default=3, ge=0, le=10,
        description="Rounds of the batch plan on synthetic rows before joining the group, so "
        "the first real batch runs compiled (engine.warm_up); 0 skips it (a slower first "
        "batch, a shorter start: the integration tests' consumer processes).",
    )  # fmt: skip
    spark_class_archive: Path | None = Field(
        default=None,
        description="A class-data-sharing archive of Spark's classes (classarchive.py) that "
        "the JVM maps instead of loading them: a shorter start. The consumer image has one.",
    )
    memory_limit_bytes: int | None = Field(
        default=None,
        ge=0,
        description="The container's memory limit in bytes (the downward API's limits.memory): "
        "Spark's heap is half of it (sparkconf.decide_driver_memory). Unset: 1g.",
    )
    spark_driver_memory: str | None = Field(
        default=None,
        description="Spark's heap as Spark writes it (e.g. '1500m'), replacing the one decided "
        "from memory_limit_bytes.",
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
    max_future_skew_seconds: float = Field(
        default=300.0,
        ge=0,
        description="A record whose event time is more than this far ahead of the wall clock "
        "(or of its Kafka timestamp, if earlier) is dead-lettered as `future` and never moves "
        "a watermark.",
    )
    max_group_key_bytes: int = Field(
        default=512,
        ge=1,
        description="UTF-8 bytes of one group-by value; longer: dead-lettered as "
        "`oversize_key`. At the default, with at most 8 group-by fields, every keyword the "
        "sink indexes (each value, the joined group_key) stays far below Elasticsearch's "
        "32,766-byte term limit.",
    )
    max_groups_per_window: int = Field(
        default=10_000,
        ge=1,
        description="Distinct groups one partition may add to one window; the records of "
        "further groups are dead-lettered as `oversize_key`.",
    )
    fault_exit_at: str | None = Field(
        default=None,
        description="Tests only: kill -9 the stream consumer at this named point "
        "(`after_dead_letter_flush`, `after_sink_dead_letter_flush`, `after_partials_write`, "
        "`after_state_write`, `mid_finalize`), after logging 'fault injected'. Never set it "
        "in production.",
    )

    def record_limits(self) -> RecordLimits:
        """The limits the record parser and the per-window group cap apply."""
        return RecordLimits(
            max_future_skew_ms=round(self.max_future_skew_seconds * 1000),
            max_group_key_bytes=self.max_group_key_bytes,
            max_groups_per_window=self.max_groups_per_window,
        )
