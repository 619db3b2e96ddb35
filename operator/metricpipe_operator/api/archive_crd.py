"""The LogArchive CRD: its status schema and printer columns; the rest is crd.py's generator
(`python -m metricpipe_operator.api.archive_crd`, run by `make crds`)."""

from __future__ import annotations

from typing import Any

from metricpipe_contract.archive_model import KIND, PLURAL, SHORT_NAMES, LogArchiveSpec
from metricpipe_contract.archive_refs import build_archive_name_rules

from .crd import COMMON_STATUS_PROPERTIES, SCALE_PATHS, CrdDefinition, main

STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Written by the operator only.",
    "properties": {
        **COMMON_STATUS_PROPERTIES,
        "topic": {"type": "string", "description": "The archive's Kafka topic."},
        "directory": {"type": "string", "description": "The archive's directory on HDFS."},
        "archivedThrough": {
            "type": "string",
            "format": "date-time",
            "description": "Every record whose Kafka time is before this is on HDFS (the "
            "ResourceManager's, from the exporter's positions of the archiver group).",
        },
        "lagRecords": {
            "type": "integer",
            "format": "int64",
            "description": "Records on the topic not yet on HDFS.",
        },
        "timeLagSeconds": {
            "type": "number",
            "description": "Now minus archivedThrough: the age of the oldest record not on HDFS.",
        },
        "timeLag": {"type": "string", "description": "Human form of timeLagSeconds."},
        "lastScaleTime": {"type": "string", "format": "date-time"},
        "lastScaleReason": {"type": "string", "description": "Why replicas last changed."},
        "bytes": {
            "type": "integer",
            "format": "int64",
            "description": "Bytes of the committed archive files on HDFS.",
        },
        "files": {
            "type": "integer",
            "format": "int64",
            "description": "Committed archive files on HDFS.",
        },
        "replicas": {"type": "integer", "description": "Archiver replicas that exist."},
        "readyReplicas": {"type": "integer"},
        "desiredReplicas": {"type": "integer"},
        "selector": {"type": "string", "description": "Label selector of the archiver pods."},
        "lastSummaryTime": {
            "type": "string",
            "format": "date-time",
            "description": "When bytes and files were read from HDFS.",
        },
    },
}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
    },
    {"name": "Archived-Through", "type": "string", "jsonPath": ".status.archivedThrough"},
    {"name": "Lag", "type": "integer", "jsonPath": ".status.lagRecords"},
    {"name": "Time-Lag", "type": "string", "jsonPath": ".status.timeLag", "priority": 1},
    {"name": "Bytes", "type": "integer", "jsonPath": ".status.bytes"},
    {"name": "Files", "type": "integer", "jsonPath": ".status.files"},
    {"name": "Replicas", "type": "integer", "jsonPath": ".status.replicas", "priority": 1},
    {"name": "Topic", "type": "string", "jsonPath": ".status.topic", "priority": 1},
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        "priority": 1,
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

LOG_ARCHIVE = CrdDefinition(
    kind=KIND, plural=PLURAL, short_names=SHORT_NAMES,
    description="Logs selected by Fluentd tag, kept on HDFS as Parquet by hour for a number "
    "of days.",
    spec_model=LogArchiveSpec, source_module="metricpipe_contract/archive_model.py",
    status_schema=STATUS_SCHEMA, printer_columns=PRINTER_COLUMNS,
    name_rules=build_archive_name_rules, scale=SCALE_PATHS,
)  # fmt: skip


if __name__ == "__main__":
    main(LOG_ARCHIVE)
