"""The second, independent freshness source: what the sink itself holds.

Each consumer replica writes a state document per partition to `<index>-state` with the
partition's event-time watermark and the offset up to which the sink holds its records
(`committed_offset`). A partition's data is reflected in the sink up to its watermark — or up
to now when the sink holds every record Kafka has (the state's offset reaches the log-end
offset the exporter read in the same cycle: there is nothing newer to reflect). The pipeline's
sink watermark is the minimum over partitions; the newest final window shows how far windows
are finished.

The log-end offset, not the state's own `caught_up` flag at `updated_ms`, decides "current":
the state document is versioned by its offset (so a previous owner's late write never wins),
so a quiet partition's document is not rewritten and its `updated_ms` ages; read that way, a
quiet pipeline looked ever staler (the ResourceManager then scaled up an idle pipeline).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from metricpipe_consumers.documents import kafka_offset_held
from metricpipe_consumers.sink import MetricSink


@dataclass(frozen=True)
class SinkProbe:
    watermark_ms: int | None  # min over partitions of the effective watermark
    final_window_end_ms: int | None  # newest final window's end
    partitions: int  # partitions with a state document


def build_sink_probe(
    states: list[dict[str, Any]], partition_count: int | None, newest_final: dict[str, Any] | None,
    end_offsets: Mapping[int, int] | None = None, now_ms: int = 0,
) -> SinkProbe:  # fmt: skip
    """Pure: the pipeline's sink watermark from the partition state documents and the log-end
    offsets read now (`end_offsets`; without them, a caught-up flag counts as of its write).
    Unknown (None) while some partition has no state yet: its data is not reflected at all."""
    marks = []
    for state in states:
        mark = state.get("watermark_ms")
        end = (end_offsets or {}).get(int(state.get("partition", -1)))
        holds = kafka_offset_held(state)  # in Kafka's offsets, as `end` is
        if end is not None and "committed_offset" in state and holds >= end:
            mark = max(int(mark or 0), now_ms)  # the sink holds every record there is
        elif end is None and state.get("caught_up") and state.get("updated_ms") is not None:
            mark = max(int(mark or 0), int(state["updated_ms"]))
        if mark is not None:
            marks.append(int(mark))
    complete = partition_count is not None and len(marks) >= partition_count
    final_end = newest_final.get("window_end_ms") if newest_final else None
    return SinkProbe(
        watermark_ms=min(marks) if marks and complete else None,
        final_window_end_ms=int(final_end) if final_end is not None else None,
        partitions=len(marks),
    )


def fetch_sink_probe(
    sink: MetricSink, index: str, partition_count: int | None,
    end_offsets: Mapping[int, int] | None = None, now_ms: int = 0,
) -> SinkProbe:  # fmt: skip
    states = sink.search(f"{index}-state", {"term": {"kind": "partition"}})
    finals = sink.search(index, {"term": {"final": True}}, size=1, sort=[{"window_end_ms": "desc"}])
    return build_sink_probe(
        states, partition_count, finals[0] if finals else None, end_offsets, now_ms
    )
