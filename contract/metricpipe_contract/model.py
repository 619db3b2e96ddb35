"""The MetricPipeline spec as pydantic models.

This module is the single source of truth: `crd.py` generates the CRD's OpenAPI schema
(defaults, enums, bounds, patterns) and its CEL rules from these classes, and a test applies
objects to the real API server and checks that its defaulting agrees with these models.
Field names are camelCase on the wire (aliases) and snake_case in Python.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from .durations import DURATION_PATTERN, parse_duration
from .kafka import KafkaSecretKeys
from .naming import build_default_index, build_default_topic

GROUP = "metricpipe.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "MetricPipeline"
PLURAL = "metricpipelines"

Duration = Annotated[str, Field(pattern=DURATION_PATTERN, max_length=32)]
FieldPath = Annotated[str, Field(pattern=r"^[A-Za-z_@][A-Za-z0-9_.@-]*$", max_length=128)]
Quantity = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|Ki|M|Mi|G|Gi|T|Ti)?$")]
Aggregation = Literal[
    "count", "sum", "avg", "min", "max", "rate", "ratio", "p50", "p90", "p95", "p99"
]
Interpolation = Literal["linear", "lower", "higher", "nearest"]
PERCENTILES = ("p50", "p90", "p95", "p99")
NEEDS_VALUE = ("sum", "avg", "min", "max", *PERCENTILES)


def _rules(*rules: tuple[str, str, str]) -> dict[str, Any]:
    """CEL x-kubernetes-validations: (rule, message, fieldPath relative to this object)."""
    return {
        "x-kubernetes-validations": [
            {"rule": rule, "message": message, **({"fieldPath": path} if path else {})}
            for rule, message, path in rules
        ]
    }


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class RecordFilter(_Model):
    """Keep only records whose field exists, equals a value, or matches a regex (one of them)."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "[has(self.exists), has(self.equals), has(self.matches)].filter(x, x).size() == 1",
                "a record filter needs exactly one of exists, equals or matches",
                "",
            ),
            (
                "!has(self.exists) || self.exists",
                "exists: false is not supported; omit the filter instead",
                ".exists",
            ),
            # The API server compiles the pattern with Go's regexp (RE2 syntax, what the
            # consumers run): an invalid one is an evaluation error, which refuses the object
            # with the compiler's words, the filter's index and this message.
            (
                "!has(self.matches) || type(''.matches(self.matches)) == bool",
                "source.filters[].matches must be an RE2 regular expression (the syntax of "
                "Go's regexp: no look-around, no backreferences)",
                "",
            ),
        )
    )
    field: FieldPath = Field(description="Record field (dots for nesting, e.g. http.status).")
    exists: bool | None = Field(default=None, description="The field must be present.")
    equals: str | None = Field(default=None, max_length=256, description="Exact string value.")
    matches: str | None = Field(
        default=None, min_length=1, max_length=256, description="RE2 regular expression."
    )


class Source(_Model):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "self.store == oldSelf.store",
                "source.store cannot be changed; create a new pipeline to read the other store",
                ".store",
            ),
        )
    )
    tag: str = Field(
        pattern=r"^[A-Za-z0-9_.*{},-]+$",
        max_length=256,
        description="Fluentd tag match pattern of the logs to route, e.g. 'app.web.**'.",
    )
    format: Literal["json", "apache_combined"] = Field(
        default="json",
        description="How a record's message is parsed: JSON, or the Apache/NCSA combined log.",
    )
    filters: list[RecordFilter] = Field(default_factory=list, max_length=16)
    store: Literal["kafka", "redis"] = Field(
        default="kafka",
        description="Where the records wait for the consumers: the pipeline's own Kafka topic, "
        "or the namespace's Redis log cache of the tag (batch mode only; no topic, no route of "
        "its own; hours still in the cache are computed at once).",
    )


class Topic(_Model):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "has(self.name) == has(oldSelf.name) && "
                "(!has(self.name) || self.name == oldSelf.name)",
                "topic.name cannot be changed; create a new pipeline for a new topic",
                ".name",
            ),
            (
                "self.replicationFactor == oldSelf.replicationFactor",
                "topic.replicationFactor cannot be changed after creation",
                ".replicationFactor",
            ),
            (
                "!has(self.name) || !self.name.startsWith('__')",
                "topic.name must not start with '__': those are Kafka's internal topics",
                ".name",
            ),
            (
                "!has(self.config) || !self.config.exists(k, k in "
                "['retention.ms', 'cleanup.policy', 'min.insync.replicas'])",
                "set retention through topic.retention; cleanup.policy and min.insync.replicas "
                "are managed by metricpipe",
                ".config",
            ),
        )
    )
    name: str | None = Field(
        default=None,
        pattern=r"^[a-zA-Z0-9._-]+$",
        max_length=249,
        description="Kafka topic; defaults to metricpipe.<namespace>.<name>. Immutable. The "
        "operator creates it and owns it; an existing topic is refused unless the operator "
        "allows adoption (METRICPIPE_ADOPT_TOPICS).",
    )
    partitions: int = Field(
        default=6, ge=1, le=1024, description="Partitions; can be raised, never lowered."
    )
    replication_factor: int = Field(default=1, ge=1, le=7, description="Immutable.")
    retention: Duration = Field(default="168h", description="How long Kafka keeps records.")
    config: dict[str, str] = Field(
        default_factory=dict,
        max_length=32,
        description="Extra topic configuration (Kafka topic config keys).",
    )
    deletion_policy: Literal["Retain", "Delete"] = Field(
        default="Retain", description="Delete the topic when the pipeline is deleted?"
    )


class EventTime(_Model):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "self.format != 'strftime' || has(self.layout)",
                "eventTime.format strftime needs eventTime.layout (e.g. '%d/%b/%Y:%H:%M:%S %z')",
                ".layout",
            ),
        )
    )
    field: FieldPath = Field(default="time", description="Record field holding the event time.")
    format: Literal["rfc3339", "epoch_seconds", "epoch_millis", "clf", "strftime"] = Field(
        default="rfc3339", description="clf is the access-log form 10/Oct/2000:13:55:36 -0700."
    )
    layout: str | None = Field(default=None, max_length=64, description="strftime layout.")


class Metric(_Model):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "!(self.aggregation in ['p50', 'p90', 'p95', 'p99']) || has(self.valueField)",
                "percentile aggregations need metric.valueField",
                ".valueField",
            ),
            (
                "!(self.aggregation in ['sum', 'avg', 'min', 'max']) || has(self.valueField)",
                "sum, avg, min and max need metric.valueField",
                ".valueField",
            ),
            (
                "duration(self.allowedLateness) < duration(self.window)",
                "metric.allowedLateness must be shorter than metric.window",
                ".allowedLateness",
            ),
            (
                "duration('24h').getMilliseconds() % duration(self.window).getMilliseconds() == 0",
                "metric.window must divide a day evenly (e.g. 1m, 5m, 15m, 1h, 6h, 24h)",
                ".window",
            ),
            (
                "duration(self.window) >= duration('10s')",
                "metric.window must be at least 10s",
                ".window",
            ),
            (
                "self.aggregation != 'ratio' || (has(self.numerator) && size(self.numerator) > 0)",
                "ratio needs metric.numerator: the filters a record must pass to count above "
                "the line (e.g. [{field: status, matches: '^5'}])",
                ".numerator",
            ),
            (
                "self.aggregation == 'ratio' || !has(self.numerator) || size(self.numerator) == 0",
                "metric.numerator is only for aggregation: ratio",
                ".numerator",
            ),
            (
                "self.aggregation != 'ratio' || !has(self.valueField)",
                "ratio counts records and takes no metric.valueField",
                ".valueField",
            ),
            (
                "!has(self.valueField) || !(self.valueField in self.groupBy)",
                "metric.valueField cannot also be a groupBy field",
                ".groupBy",
            ),
        )
    )
    aggregation: Aggregation = Field(
        description="How each window's records are combined: count, rate (records per "
        "second), ratio (the share of records passing metric.numerator), sum, avg, min, max, "
        "or a percentile of valueField."
    )
    value_field: FieldPath | None = Field(
        default=None, description="Numeric field to aggregate (not for count, rate and ratio)."
    )
    numerator: list[RecordFilter] = Field(
        default_factory=list,
        max_length=16,
        description="ratio only: the filters (all must pass) that select the numerator's "
        "records among the window's records (those the source filters keep, the denominator). "
        "Documents keep both counts, so windows and partitions merge exactly.",
    )
    event_time: EventTime = Field(default_factory=EventTime)
    window: Duration = Field(default="1h", description="Tumbling event-time window.")
    allowed_lateness: Duration = Field(
        default="5m", description="How late a record may arrive and still count."
    )
    group_by: list[FieldPath] = Field(
        default_factory=list,
        max_length=8,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="Fields that split the metric into series (e.g. probe, status).",
    )
    percentile_interpolation: Interpolation = Field(
        default="linear",
        description="Percentiles between two ranks: linear (numpy's default, Spark's "
        "percentile), lower, higher or nearest, at position q x (count - 1).",
    )


class SecretKeyRef(_Model):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    username_key: str = Field(default="username", max_length=253)
    password_key: str = Field(default="password", max_length=253)
    api_key_key: str | None = Field(
        default=None,
        max_length=253,
        description="Elasticsearch only: the key holding an API key (its encoded form), used "
        "instead of the user name and password.",
    )


class CaSecretRef(_Model):
    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)
    key: str = Field(default="ca.crt", pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)


class KafkaCredentialsRef(_Model, KafkaSecretKeys):
    """A Secret in the pipeline's namespace with the pipeline's own Kafka credentials; which
    keys are used follows the operator's security protocol (SASL_SSL: the SCRAM user and
    password; a client certificate and key when present: mutual TLS; a CA when present)."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)


class KafkaAccess(_Model):
    credentials_secret_ref: KafkaCredentialsRef | None = Field(
        default=None,
        description="The pipeline's own Kafka user (per-tenant credentials); defaults to the "
        "operator's METRICPIPE_KAFKA_PIPELINE_SECRET in the pipeline's namespace.",
    )


class SinkConnection(_Model):
    """How to reach an Elasticsearch/OpenSearch cluster (a pipeline's sink, an archive's
    index)."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "!has(self.credentialsSecretRef) || !has(self.credentialsSecretRef.apiKeyKey) "
                "|| self.backend == 'elasticsearch'",
                "sink.credentialsSecretRef.apiKeyKey is for Elasticsearch: OpenSearch takes a "
                "user name and password (usernameKey, passwordKey)",
                ".credentialsSecretRef",
            ),
        )
    )
    backend: Literal["elasticsearch", "opensearch"] = Field(default="elasticsearch")
    endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/]+(/.*)?$",
        max_length=512,
        description="URL of the cluster; defaults to the operator's endpoint for the backend.",
    )
    credentials_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret in the pipeline's namespace with the credentials."
    )
    ca_secret_ref: CaSecretRef | None = Field(
        default=None,
        description="Secret in the pipeline's namespace holding the CA certificate (PEM) that "
        "signed the sink's HTTPS certificate (ECK: <cluster>-es-http-certs-public); without "
        "it the consumer trusts its image's system CAs.",
    )


class Sink(SinkConnection):
    index: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9._-]*$",
        max_length=200,
        description="Index for the metric documents; defaults to "
        "metricpipe-<namespace>.<name>.metrics. One pipeline per index.",
    )


class Freshness(_Model):
    target: Duration = Field(
        default="1h", description="Metrics must reach the sink at most this long after events."
    )


class Scaling(_Model):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "self.minReplicas <= self.maxReplicas",
                "scaling.minReplicas must not exceed scaling.maxReplicas",
                ".minReplicas",
            ),
        )
    )
    enabled: bool = Field(default=True, description="Let the ResourceManager set replicas.")
    min_replicas: int = Field(
        default=1, ge=0, le=1024,
        description="0 lets the ResourceManager put a stream pipeline to sleep (0 replicas) "
        "while its input is low, and wake it before freshness nears the target.",
    )  # fmt: skip
    max_replicas: int = Field(default=6, ge=1, le=1024)
    target_utilization: float = Field(
        default=0.7, ge=0.1, le=1.0, description="Busy fraction each replica is sized for."
    )
    scale_down_stabilization: Duration = Field(
        default="10m", description="How long lower demand must last before scaling down."
    )


class EnvVar(_Model):
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", max_length=128)
    value: str = Field(default="", max_length=4096)


class ResourceRequirements(_Model):
    requests: dict[str, Quantity] = Field(default_factory=dict, max_length=8)
    limits: dict[str, Quantity] = Field(default_factory=dict, max_length=8)


class Consumer(_Model):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "!has(self.env) || self.env.all(e, !e.name.startsWith('METRICPIPE_'))",
                "consumer.env names starting with METRICPIPE_ are reserved for the operator",
                ".env",
            ),
        )
    )
    image: str | None = Field(
        default=None, max_length=512, description="Defaults to the operator's consumer image."
    )
    resources: ResourceRequirements = Field(default_factory=ResourceRequirements)
    env: list[EnvVar] = Field(default_factory=list, max_length=32)
    max_batch_records: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="Most records one micro-batch holds (default 100000). Smaller batches lower "
        "the latency of a lightly loaded consumer and cost throughput under load.",
    )  # fmt: skip
    max_batch_wait: Duration | None = Field(
        default=None, description="Longest wait to fill a micro-batch (default 2s)."
    )


class MetricPipelineSpec(_Model):
    """What a user declares: where logs come from, what to compute, where results go."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "duration(self.freshness.target) > duration(self.metric.allowedLateness)",
                "freshness.target must be longer than metric.allowedLateness",
                ".freshness.target",
            ),
            (
                "!self.scaling.enabled || (self.replicas >= self.scaling.minReplicas && "
                "self.replicas <= self.scaling.maxReplicas)",
                "replicas must lie within scaling.minReplicas..scaling.maxReplicas",
                ".replicas",
            ),
            (
                "self.mode == 'stream' || self.scaling.minReplicas >= 1",
                "scaling.minReplicas 0 (sleeping) needs mode stream: set it to 1 or more",
                ".scaling.minReplicas",
            ),
            (
                "self.mode != 'batch' || duration(self.metric.window) >= duration('1m')",
                "batch mode needs metric.window of at least 1m",
                ".metric.window",
            ),
            (
                "self.source.store != 'redis' || self.mode == 'batch'",
                "source.store redis needs mode batch: the cache is read by a job per window",
                ".source.store",
            ),
        )
    )
    mode: Literal["stream", "batch"] = Field(default="stream")
    replicas: int = Field(
        default=1,
        ge=0,
        le=1024,
        description="Consumer replicas (the /scale subresource); 0 while the pipeline sleeps.",
    )
    source: Source
    topic: Topic = Field(default_factory=Topic)
    metric: Metric
    sink: Sink = Field(default_factory=Sink)
    freshness: Freshness = Field(default_factory=Freshness)
    scaling: Scaling = Field(default_factory=Scaling)
    consumer: Consumer = Field(default_factory=Consumer)
    kafka: KafkaAccess | None = Field(
        default=None, description="How the pipeline's consumers authenticate to Kafka."
    )

    # -- derived values used by the reconciler (pure) -----------------------------------------
    def topic_name(self, namespace: str, name: str) -> str:
        return self.topic.name or build_default_topic(namespace, name)

    def index_name(self, namespace: str, name: str) -> str:
        return self.sink.index or build_default_index(namespace, name)

    def window_seconds(self) -> float:
        return parse_duration(self.metric.window)
