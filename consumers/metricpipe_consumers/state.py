"""Per-partition progress of one consumer replica (pure bookkeeping)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .aggregate import Aggregate

SeriesKey = tuple[int, tuple[str, ...]]  # (window start ms, group)


@dataclass
class PartitionState:
    """What this replica knows of a partition it owns, loaded from the sink on assignment.

    resume_offset: offsets below it were fully processed (partials, dead letters, state) —
        skipped entirely on replay, whatever Kafka's committed offset says.
    watermark_ms: the highest event time accepted so far (None before the first record).
    series: the open windows' cumulative aggregates, each with the highest offset included.
    groups: the groups admitted so far to each open window (`admit`, the per-window cap).
    offset_base: added to Kafka's offsets, giving the offsets the sink's documents hold
        (resume_offset, the aggregates' max_offset, the documents' versions). 0 until the topic
        is deleted and created anew: Kafka's offsets start again at 0, and the new topic's
        offset 0 then stands for the old topic's resume offset, so that everything the sink
        holds stays ordered by offset (`decide_offset_base`).
    topic_id: Kafka's id of the topic these offsets belong to (None: not known).
    """

    partition: int
    resume_offset: int = 0
    watermark_ms: int | None = None
    series: dict[SeriesKey, Aggregate] = field(default_factory=dict)
    caught_up: bool = False
    idle_since_ms: int | None = None  # caught up, with nothing new to read, since then
    replayed_through: int = -1  # highest offset any loaded aggregate includes
    groups: dict[int, set[tuple[str, ...]]] = field(default_factory=dict)
    offset_base: int = 0
    topic_id: str | None = None

    def included(self, key: SeriesKey, offset: int) -> bool:
        """Was this record already counted (a replay after a crash)?"""
        if offset > self.replayed_through:
            return False  # past everything loaded: the common case, no lookup
        existing = self.series.get(key)
        return existing is not None and offset <= existing.max_offset

    def is_late(self, window_start: int, window_ms: int, lateness_ms: int) -> bool:
        if self.watermark_ms is None:
            return False
        return window_start + window_ms + lateness_ms <= self.watermark_ms

    def remember(self, key: SeriesKey, aggregate: Aggregate) -> None:
        """Record a window's cumulative aggregate (always through here: keeps
        `replayed_through` true for `included`)."""
        self.series[key] = aggregate
        self.replayed_through = max(self.replayed_through, aggregate.max_offset)
        self.groups.setdefault(key[0], set()).add(key[1])

    def admit(self, window_start: int, group: tuple[str, ...], cap: int) -> bool:
        """May this window count this group? At most `cap` distinct groups per window and
        partition; a record of a group past the cap is dead-lettered (`oversize_key`).

        Replays decide the same: the groups loaded with the open windows' partials are the
        ones admitted before the resume offset, and a group refused once was refused because
        the cap was full with groups admitted earlier, which are all loaded again."""
        admitted = self.groups.get(window_start)
        if admitted is None:
            self.groups[window_start] = {group}
            return True
        if group in admitted:
            return True
        if len(admitted) >= cap:
            return False
        admitted.add(group)
        return True

    def accept(self, event_ms: int | None) -> None:
        """A record was read with this event time (None: none that can move time)."""
        if event_ms is not None and (self.watermark_ms is None or event_ms > self.watermark_ms):
            self.watermark_ms = event_ms

    def forget_closed(self, finalized_through_ms: int, window_ms: int) -> None:
        """Drop windows already finalized: they can only receive late records now."""
        for key in [k for k in self.series if k[0] + window_ms <= finalized_through_ms]:
            del self.series[key]
        for start in [s for s in self.groups if s + window_ms <= finalized_through_ms]:
            del self.groups[start]


def decide_offset_base(state_doc: dict[str, Any] | None, topic_id: str | None) -> int:
    """The offset base for the topic as it is now (pure): the stored one for the same topic (or
    when either id is unknown: a state written before ids were kept, Kafka not answering); for
    a topic created anew since, the stored resume offset, where the new topic's offset 0
    continues (what the sink holds stays below it, what the new topic brings comes after)."""
    if not state_doc:
        return 0
    stored_base = int(state_doc.get("offset_base") or 0)
    stored_id = state_doc.get("topic_id")
    if stored_id and topic_id and stored_id != topic_id:
        return int(state_doc.get("committed_offset") or 0)
    return stored_base


def load_partition_state(
    partition: int, state_doc: dict[str, Any] | None, partials: list[dict[str, Any]],
    topic_id: str | None = None,
) -> PartitionState:  # fmt: skip
    state = PartitionState(partition)
    state.offset_base = decide_offset_base(state_doc, topic_id)
    state.topic_id = topic_id or (str(state_doc["topic_id"]) if state_doc and
                                  state_doc.get("topic_id") else None)  # fmt: skip
    if state_doc:
        state.resume_offset = int(state_doc.get("committed_offset") or 0)
        watermark = state_doc.get("watermark_ms")
        state.watermark_ms = int(watermark) if watermark is not None else None
    for doc in partials:
        start = int(doc["window_start_ms"])
        group = tuple(str(v) for v in (doc.get("group") or {}).values())
        state.remember((start, group), Aggregate.from_fields(doc, partition))
    return state
