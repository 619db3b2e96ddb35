"""The operator's one typed configuration object (environment variables METRICPIPE_*)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from metricpipe_contract.archive import DEFAULT_ROOT
from metricpipe_contract.kafka import KafkaClientSettings


class OperatorConfig(KafkaClientSettings):
    """Read once at start-up. Durations are in seconds."""

    model_config = SettingsConfigDict(env_prefix="METRICPIPE_", frozen=True)

    kafka_pipeline_secret: str | None = Field(
        default=None,
        description="With a secured Kafka: the Secret, in each pipeline's namespace, whose "
        "credentials the pipeline's consumers and batch runs use when its spec.kafka names "
        "none (keys as in spec.kafka.credentialsSecretRef's defaults).",
    )
    kafka_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Timeout of each Kafka admin request."
    )
    elasticsearch_url: str = Field(
        default="http://elasticsearch:9200", description="Default sink endpoint (elasticsearch)."
    )
    opensearch_url: str = Field(
        default="http://opensearch:9200", description="Default sink endpoint (opensearch)."
    )
    redis_host: str = Field(
        default="redis",
        description="The Redis log cache (source.store redis): the host the "
        "Fluentd routes and the batch pods reach it at.",
    )
    redis_port: int = Field(default=6379, ge=1, le=65535, description="The Redis cache's port.")
    redis_secret: str = Field(
        default="metricpipe-redis",
        description="The Secret, in each redis-store pipeline's namespace, holding the batch "
        "runs' Redis user (`username`, `password`; the cache's reader ACL user).",
    )
    cache_retention_seconds: int = Field(
        default=3 * 3600,
        ge=600,
        description="How long the log cache keeps a record (the "
        "route's value_expire, by its Fluentd event time): the hours a new pipeline can "
        "compute at once.",
    )
    consumer_image: str = Field(
        default="ghcr.io/metricpipe/consumer:0.1.0",
        description="Image of the consumer/job container when a pipeline names none.",
    )
    route_mode: Literal["auto", "fluent-operator", "configmap"] = Field(
        default="auto",
        description="auto: fluent-operator resources when its CRDs exist, plus the fluent.conf "
        "ConfigMap always; configmap: only the ConfigMap.",
    )
    fluentd_config_label: str = Field(
        default="config.fluentd.fluent.io/enabled",
        description="Label (value 'true') by which the Fluentd resource selects our configs.",
    )
    adopt_topics: str = Field(
        default="",
        description="Existing Kafka topics a pipeline may take over although no pipeline "
        "created them: a Python regular expression the whole topic name must match (e.g. "
        "'logs\\..*'); empty: none. Internal topics ('__*') never. An adopted topic is never "
        "deleted by the operator, whatever the pipeline's deletionPolicy.",
    )
    topic_owners_topic: str = Field(
        default="__metricpipe_topic_owners",
        description="Compacted Kafka topic where the operator records which pipeline created "
        "(or adopted) each topic: the ownership mark Kafka's topic configs cannot hold.",
    )
    repair_interval_seconds: float = Field(
        default=60.0,
        ge=5,
        description="Each pipeline is reconciled again this often, changed or not: drift no "
        "watch event tells of (a Kafka topic deleted, a child edited) is put back within it.",
    )
    retry_min_seconds: float = Field(default=5.0, gt=0, description="First retry delay.")
    retry_max_seconds: float = Field(default=120.0, gt=0, description="Largest retry delay.")
    batch_spark_jars: str = Field(
        default="/opt/metricpipe/jars/*.jar",
        description="Spark's Kafka connector jars for batch runs: comma-separated paths or "
        "globs inside the consumer image (the default is where consumers/Dockerfile puts "
        "them); empty: none, for an image that has them on Spark's classpath already. A run "
        "whose entry matches no file stops with an error naming it.",
    )
    consumer_scratch_size_limit: str = Field(
        default="2Gi",
        description="sizeLimit of the consumer's and batch run's Spark scratch emptyDir "
        "(shuffle, spill and Arrow hand-over files; a Kubernetes quantity). A pod whose "
        "scratch outgrows it is evicted.",
    )
    consumer_metrics_port: int = Field(default=9400, ge=1, le=65535)
    consumer_termination_grace_seconds: int = Field(
        default=90, ge=10, description="Time a consumer gets to flush, write and commit."
    )
    # -- LogArchives (docs/logarchive.md) -----------------------------------------------------
    webhdfs_url: str | None = Field(
        default=None,
        description="WebHDFS of the NameNode the archivers write to and the operator reads "
        "sizes from (http://host:port/webhdfs/v1), as the archiver pods reach it; unset: "
        "LogArchives are not applied (ArchiverReady False, HdfsNotConfigured).",
    )
    archive_root: str = Field(
        default=DEFAULT_ROOT,
        pattern=r"^/[^\s]*$",
        description="HDFS directory holding every archive (<root>/<namespace>/<name>/...).",
    )
    archive_hdfs_user: str = Field(
        default="metricpipe-archiver",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="The user name archivers and the operator give HDFS (simple "
        "authentication): it must be allowed to write under archive_root.",
    )
    archive_status_interval_seconds: float = Field(
        default=60.0,
        ge=5,
        description="Each LogArchive is reconciled again and its bytes and files read from "
        "HDFS (GETCONTENTSUMMARY) this often.",
    )
    # -- the ResourceManager ------------------------------------------------------------------
    prometheus_url: str | None = Field(
        default=None, description="Prometheus the ResourceManager reads; unset: it does not run."
    )
    scaling_interval_seconds: float = Field(default=15.0, gt=0, description="One loop cycle.")
    scaling_namespace: str | None = Field(
        default=None, description="Scale only this namespace's pipelines (default: all)."
    )
    lease_namespace: str | None = Field(
        default=None,
        description="Namespace of the leader Lease; unset: no election (one operator replica). "
        "Set, only the replica holding the Lease runs handlers and the ResourceManager.",
    )
    lease_name: str = Field(default="metricpipe-operator")
    lease_duration_seconds: int = Field(
        default=15,
        ge=3,
        description="How long a Lease not renewed holds: a crashed leader's successor starts "
        "at most this much (plus one retry) after its last renewal.",
    )
    lease_renew_deadline_seconds: float = Field(
        default=10.0,
        gt=0,
        description="A leader that could not renew for this long stops (its pod restarts and "
        "stands by); shorter than the Lease's duration, so it stops before anyone takes over.",
    )
    lease_retry_seconds: float = Field(
        default=2.0, gt=0, description="How often the leader renews and a standby tries."
    )
    startup_seconds: float = Field(default=30.0, ge=0, description="A new replica's start-up.")
    rebalance_seconds: float = Field(default=10.0, ge=0, description="A group rebalance's pause.")
    scaling_cooldown_seconds: float = Field(
        default=60.0, ge=0, description="Least time between two scale changes of a pipeline."
    )
    sleep_max_events_per_hour: float = Field(
        default=4.0, gt=0,
        description="minReplicas 0: a pipeline sleeps only when its sleep-and-wake cycle lasts "
        "at least 2 / this hours (a sleep and a wake are two scale events, each a rebalance).",
    )  # fmt: skip

    @model_validator(mode="after")
    def _renews_in_time(self) -> OperatorConfig:
        if self.lease_renew_deadline_seconds >= self.lease_duration_seconds:
            raise ValueError(
                "METRICPIPE_LEASE_RENEW_DEADLINE_SECONDS must be below "
                "METRICPIPE_LEASE_DURATION_SECONDS: a leader must stop before its Lease expires"
            )
        return self

    @field_validator("adopt_topics")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(
                f"METRICPIPE_ADOPT_TOPICS is not a regular expression: {error}"
            ) from error
        return pattern

    def may_adopt(self, topic: str) -> bool:
        """Whether an existing topic no pipeline created may be taken over (never '__*')."""
        return (
            bool(self.adopt_topics)
            and not topic.startswith("__")
            and (re.fullmatch(self.adopt_topics, topic) is not None)
        )
