"""The sink's document model (pure): partial and final metric documents, and progress state.

- Partial: one per (pipeline, window, group, partition); its external version is the highest
  Kafka offset it includes + 1, so a stale or replayed write is refused by the sink itself.
- Final: one per (pipeline, window, group), written once (create-only) when every partition's
  watermark passed window end + allowed lateness; `final: true`, merged across partitions.
- Partition state (in the state index): watermark, committed offset, caught-up flag.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .aggregate import Aggregate


@dataclass(frozen=True)
class SinkDoc:
    index: str
    doc_id: str
    body: dict[str, Any]
    version: int | None = None  # external version (monotonic), or None
    create_only: bool = False


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def parse_iso_ms(text: str) -> int:
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def series_id(pipeline: str, window_start_ms: int, group: tuple[str, ...]) -> str:
    digest = hashlib.sha1(  # noqa: S324 - an id, not security
        json.dumps([pipeline, window_start_ms, list(group)]).encode()
    ).hexdigest()
    return digest[:24]


def build_metric_fields(
    pipeline: str,
    *,
    aggregation: str,
    interpolation: str,
    group_by: list[str],
    window: tuple[int, int],
    group: tuple[str, ...],
    agg: Aggregate,
) -> dict[str, Any]:
    start, window_ms = window
    counts = (
        {"numerator": round(agg.total), "denominator": agg.count} if aggregation == "ratio" else {}
    )
    return {
        "pipeline": pipeline,
        "metric": aggregation,
        "window_start": iso(start),
        "window_end": iso(start + window_ms),
        "window_start_ms": start,
        "window_end_ms": start + window_ms,
        "group": dict(zip(group_by, group, strict=True)),
        "group_key": ",".join(f"{k}={v}" for k, v in zip(group_by, group, strict=True)),
        "value": agg.value(aggregation, window_ms / 1000, interpolation),
        **agg.to_fields(),
        **counts,
    }


def build_partial_doc(
    index: str, *, pipeline: str, aggregation: str, interpolation: str, group_by: list[str],
    window: tuple[int, int], group: tuple[str, ...], partition: int, agg: Aggregate, now_ms: int,
) -> SinkDoc:  # fmt: skip
    body = build_metric_fields(
        pipeline, aggregation=aggregation, interpolation=interpolation, group_by=group_by,
        window=window, group=group, agg=agg,
    )  # fmt: skip
    body.update({"final": False, "partition": partition, "updated_at": iso(now_ms)})
    doc_id = f"{series_id(pipeline, window[0], group)}-p{partition}"
    return SinkDoc(index, doc_id, body, version=agg.max_offset + 1)


def build_final_doc(
    index: str, *, pipeline: str, aggregation: str, interpolation: str, group_by: list[str],
    window: tuple[int, int], group: tuple[str, ...], agg: Aggregate, now_ms: int,
) -> SinkDoc:  # fmt: skip
    body = build_metric_fields(
        pipeline, aggregation=aggregation, interpolation=interpolation, group_by=group_by,
        window=window, group=group, agg=agg,
    )  # fmt: skip
    body.pop("max_offset", None)
    window_end = window[0] + window[1]
    body.update({
        "final": True,
        "offsets": {str(p): o for p, o in sorted(agg.offsets.items())},
        "finalized_at": iso(now_ms),
        "delay_seconds": (now_ms - window_end) / 1000,
    })  # fmt: skip
    return SinkDoc(index, f"{series_id(pipeline, window[0], group)}-final", body, create_only=True)


def build_partition_state(
    index: str, *, pipeline: str, partition: int, watermark_ms: int | None,
    committed_offset: int, caught_up: bool, idle_since_ms: int | None, now_ms: int,
    offset_base: int = 0, topic_id: str | None = None,
) -> SinkDoc:  # fmt: skip
    """committed_offset counts in the sink's offsets: Kafka's plus offset_base (state.py)."""
    body = {
        "kind": "partition",
        "pipeline": pipeline,
        "partition": partition,
        "watermark_ms": watermark_ms,
        "committed_offset": committed_offset,
        "offset_base": offset_base,
        "topic_id": topic_id,
        "caught_up": caught_up,
        "idle_since_ms": idle_since_ms,
        "updated_at": iso(now_ms),
        "updated_ms": now_ms,
    }
    return SinkDoc(index, f"partition-{partition}", body,
                   version=decide_state_version(committed_offset, caught_up))  # fmt: skip


def kafka_offset_held(state: Mapping[str, Any]) -> int:
    """The Kafka offset up to which a partition state says the sink holds the records (-1:
    none), comparable with Kafka's log-end offsets."""
    committed = state.get("committed_offset")
    if committed is None:
        return -1
    return int(committed) - int(state.get("offset_base") or 0)


def decide_state_version(committed_offset: int, caught_up: bool) -> int:
    """A partition state's external version: its offset first (a stale owner's older state is
    refused), then caught-up above not caught up, so a partition that became caught up without
    new offsets — an empty partition, first written before its log end was known — says so.
    Back to not caught up at the same offset is refused: records it has not read yet show in
    the log end, which the finalizer compares with the offset."""
    return committed_offset * 1000 + (2 if caught_up else 1)


def metrics_index_body() -> dict[str, Any]:
    keyword = {"type": "keyword"}
    return {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0},
        "mappings": {
            "dynamic_templates": [{"groups": {"path_match": "group.*", "mapping": keyword}}],
            "properties": {
                "pipeline": keyword, "metric": keyword, "group_key": keyword,
                "window_start": {"type": "date"}, "window_end": {"type": "date"},
                "window_start_ms": {"type": "long"}, "window_end_ms": {"type": "long"},
                "group": {"type": "object", "dynamic": True},
                "partition": {"type": "integer"}, "final": {"type": "boolean"},
                "value": {"type": "double"}, "count": {"type": "long"},
                "sum": {"type": "double"}, "min": {"type": "double"}, "max": {"type": "double"},
                "sum_squares": {"type": "double"}, "max_offset": {"type": "long"},
                "sketch": {"type": "object", "enabled": False},
                "offsets": {"type": "object", "enabled": False},
                "updated_at": {"type": "date"}, "finalized_at": {"type": "date"},
                "delay_seconds": {"type": "double"},
            },
        },
    }  # fmt: skip


def state_index_body() -> dict[str, Any]:
    return {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0},
        "mappings": {
            "properties": {
                "kind": {"type": "keyword"}, "pipeline": {"type": "keyword"},
                "partition": {"type": "integer"}, "watermark_ms": {"type": "long"},
                "committed_offset": {"type": "long"}, "caught_up": {"type": "boolean"},
                "offset_base": {"type": "long"}, "topic_id": {"type": "keyword"},
                "idle_since_ms": {"type": "long"},
                "updated_at": {"type": "date"}, "updated_ms": {"type": "long"},
                "finalized_through_ms": {"type": "long"}, "batch_read_through_ms": {"type": "long"},
            }
        },
    }  # fmt: skip
