"""The LogArchive spec as pydantic models (the one source of truth of its CRD, like model.py).

A LogArchive selects logs by Fluentd tag, routes every record of the tag to its own Kafka topic
(`metricpipe.<namespace>.<name>.archive`) and has an archiver consumer group write them to HDFS
(archive.py's layout). `operator/metricpipe_operator/api/archive_crd.py` generates the CRD
(crds/logarchives.metricpipe.io.yaml) from these classes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from .durations import parse_duration
from .model import (
    GROUP,
    VERSION,
    Duration,
    RecordFilter,
    Scaling,
    SinkConnection,
    _Model,
    _rules,
)
from .naming import build_log_index_prefix

KIND = "LogArchive"
PLURAL = "logarchives"
SHORT_NAMES = ("la",)
API_VERSION = f"{GROUP}/{VERSION}"
LOGS_SUBRESOURCE = f"{PLURAL}/logs"  # RBAC only: the peek API's SubjectAccessReview checks it
MIB = 1024 * 1024
MAX_RETENTION_DAYS = 3650


class ArchiveSource(_Model):
    tag: str = Field(
        pattern=r"^[A-Za-z0-9_.*{},-]+$",
        max_length=256,
        description="Fluentd tag match pattern of the logs to archive, e.g. 'edge.nginx.**'. "
        "Every record of the tag is archived (no filters).",
    )
    format: Literal["json", "apache_combined", "text"] = Field(
        default="json",
        description="How the archiver parses a record's line into the `fields` column: JSON, "
        "the Apache/NCSA combined log, or text (no fields). The raw line is kept in any case.",
    )

    @property
    def filters(self) -> tuple[RecordFilter, ...]:
        """An archive's route keeps every record of the tag (the route builders read this)."""
        return ()


class ArchiveTopic(_Model):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "self.replicationFactor == oldSelf.replicationFactor",
                "topic.replicationFactor cannot be changed after creation",
                ".replicationFactor",
            ),
        )
    )
    partitions: int = Field(
        default=6,
        ge=1,
        le=1024,
        description="Partitions of the archive topic (the most archivers that can share the "
        "work); can be raised, never lowered.",
    )
    replication_factor: int = Field(default=1, ge=1, le=7, description="Immutable.")
    retention: Duration = Field(
        default="24h",
        description="How long Kafka keeps records: how long an archiver may be down before "
        "records are lost before they reach HDFS.",
    )
    deletion_policy: Literal["Retain", "Delete"] = Field(
        default="Retain",
        description="Delete the topic when the archive is deleted? (HDFS files are kept.)",
    )


class ArchiveFreshness(_Model):
    target: Duration = Field(
        default="15m",
        description="A record should be on HDFS at most this long after Fluentd sent it.",
    )


class Roll(_Model):
    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "duration(self.maxAge) >= duration('1s') && "
                "duration(self.maxAge) <= duration('1h')",
                "roll.maxAge must lie between 1s and 1h (e.g. 60s)",
                ".maxAge",
            ),
        )
    )
    max_bytes: int = Field(
        default=64 * MIB,
        ge=MIB,
        le=1024 * MIB,
        description="A partition's records are written as a file once they reach this many "
        "bytes (an integer of bytes: 67108864 is 64 MiB; 1 MiB..1 GiB).",
    )
    max_age: Duration = Field(
        default="60s",
        description="... or once the oldest of them has waited this long in the archiver.",
    )


class ArchiveIndex(SinkConnection):
    """The logs also indexed into Elasticsearch/OpenSearch, one index a day
    (`metricpipe-logs-<namespace>.<name>-YYYY.MM.DD` by the record's Kafka time), each record
    one document whose id is its Kafka partition and offset: written before the batch is
    committed on HDFS, so a record read again after a crash overwrites its own document."""

    enabled: bool = Field(default=False, description="Index the archive's logs.")
    retention_days: int = Field(
        default=7, ge=1, le=MAX_RETENTION_DAYS,
        description="Days of daily indices kept (by their date); older ones are deleted.",
    )  # fmt: skip

    def index_prefix(self, namespace: str, name: str) -> str:
        return build_log_index_prefix(namespace, name)


class LogArchiveSpec(_Model):
    """What a user declares: which logs to keep on HDFS, for how long, how fresh."""

    model_config = ConfigDict(
        json_schema_extra=_rules(
            (
                "duration(self.freshness.target) >= duration(self.roll.maxAge)",
                "freshness.target must be at least roll.maxAge (a record may wait that long "
                "before it is written): raise freshness.target or lower roll.maxAge",
                ".freshness.target",
            ),
            (
                "!self.scaling.enabled || (self.replicas >= self.scaling.minReplicas && "
                "self.replicas <= self.scaling.maxReplicas)",
                "replicas must lie within scaling.minReplicas..scaling.maxReplicas",
                ".replicas",
            ),
            (
                "self.scaling.minReplicas >= 1",
                "scaling.minReplicas must be at least 1: archivers do not sleep",
                ".scaling.minReplicas",
            ),
            (
                "self.retentionDays >= 1 && self.retentionDays <= 3650",
                "retentionDays must be between 1 and 3650 (days of HDFS files kept)",
                ".retentionDays",
            ),
        )
    )
    source: ArchiveSource
    topic: ArchiveTopic = Field(default_factory=ArchiveTopic)
    retention_days: int = Field(
        default=30,
        ge=1,
        le=MAX_RETENTION_DAYS,
        description="Days of files kept on HDFS (by their dt= directory); older ones are "
        "deleted by the archivers.",
    )
    freshness: ArchiveFreshness = Field(default_factory=ArchiveFreshness)
    replicas: int = Field(
        default=1, ge=1, le=1024, description="Archiver replicas (the /scale subresource)."
    )
    scaling: Scaling = Field(default_factory=Scaling)
    roll: Roll = Field(default_factory=Roll)
    index: ArchiveIndex | None = Field(
        default=None,
        description="Also index the logs into Elasticsearch/OpenSearch for search (Kibana).",
    )

    def roll_seconds(self) -> float:
        return parse_duration(self.roll.max_age)
