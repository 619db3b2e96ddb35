"""A topic deleted and created anew: Kafka's offsets start again at 0, and the consumer's
offsets in the sink continue after what the sink holds (state.py's offset base). Expected
values are worked out here by hand from the state documents written below."""

from __future__ import annotations

from typing import Any

import pytest

from metricpipe_consumers.documents import build_partition_state, kafka_offset_held
from metricpipe_consumers.finalize import split_idle_partitions
from metricpipe_consumers.letters import (
    Letter,
    build_letter_headers,
    decide_send,
    fold_marks,
    parse_source,
    read_letter_mark,
)
from metricpipe_consumers.state import decide_offset_base, load_partition_state
from metricpipe_exporters.sinkprobe import build_sink_probe

OLD, NEW = "id-old", "id-new"


def state_doc(committed: int, *, base: int = 0, topic_id: str | None = OLD,
              partition: int = 0, idle_since: int | None = 0) -> dict[str, Any]:  # fmt: skip
    return build_partition_state(
        "i-state", pipeline="t/p", partition=partition, watermark_ms=1_000,
        committed_offset=committed, caught_up=True, idle_since_ms=idle_since, now_ms=5_000,
        offset_base=base, topic_id=topic_id,
    ).body  # fmt: skip


@pytest.mark.parametrize(
    ("doc", "topic_id", "base"),
    [
        (None, NEW, 0),  # nothing stored: Kafka's offsets as they are
        (state_doc(600), OLD, 0),  # the same topic
        (state_doc(600), None, 0),  # Kafka did not say: the stored base stands
        (state_doc(600, topic_id=None), NEW, 0),  # written before ids were kept
        (state_doc(600), NEW, 600),  # created anew: its offset 0 is the sink's 600
        (state_doc(900, base=600, topic_id=NEW), NEW, 600),  # the same new topic, later
        (state_doc(900, base=600, topic_id=NEW), "id-third", 900),  # created anew again
    ],
)  # fmt: skip
def test_decide_offset_base(doc: dict[str, Any] | None, topic_id: str | None, base: int) -> None:
    assert decide_offset_base(doc, topic_id) == base


def test_a_new_topic_s_records_come_after_what_the_sink_holds() -> None:
    partial = {"window_start_ms": 60_000, "group": {"host": "a"}, "count": 7, "max_offset": 599}
    state = load_partition_state(0, state_doc(600), [partial], NEW)
    assert (state.offset_base, state.resume_offset, state.topic_id) == (600, 600, NEW)
    first_new = 0 + state.offset_base  # Kafka's offset 0 of the new topic
    assert first_new >= state.resume_offset  # not taken as done before
    assert not state.included((60_000, ("a",)), first_new)  # counted on top of the 7
    assert state.included((60_000, ("a",)), 599)  # the old topic's records stay counted once


def test_kafka_offsets_compare_with_kafka_s_log_end() -> None:
    assert kafka_offset_held(state_doc(900, base=600, topic_id=NEW)) == 300
    assert kafka_offset_held({"partition": 0}) == -1
    # caught up with a new topic holding 300 records: idle (finalised), not at 900 vs 300
    held = state_doc(900, base=600, topic_id=NEW)
    split = split_idle_partitions([held], 1, now_ms=10_000, idle_timeout_ms=1, log_end={0: 300})
    assert split == ([], [held])
    behind = state_doc(900, base=600, topic_id=NEW)
    split = split_idle_partitions([behind], 1, now_ms=10_000, idle_timeout_ms=1,
                                  log_end={0: 301})  # fmt: skip
    assert split == ([behind], [])
    probe = build_sink_probe([held], 1, None, end_offsets={0: 300}, now_ms=9_000)
    assert probe.watermark_ms == 9_000  # the sink holds every record there is
    probe = build_sink_probe([held], 1, None, end_offsets={0: 301}, now_ms=9_000)
    assert probe.watermark_ms == 1_000  # one record not yet in the sink


def test_the_old_topic_s_dead_letters_never_hide_the_new_one_s() -> None:
    old = Letter(b"x", None, parse_source("t/0/599"), "malformed_json", "d")
    new = Letter(b"y", None, parse_source("t/0/5"), "malformed_json", "d", offset_base=600)
    marks = fold_marks({}, [(old.mark_key, old.position)])
    assert decide_send(new, marks)  # Kafka's offset 5 of the new topic comes after 599
    # its headers carry the base, so marks read back from the DLQ order it the same way
    headers = build_letter_headers(new, "t/p")
    assert ("metricpipe.source", b"t/0/5") in headers  # where the record is, in Kafka
    mark = read_letter_mark(headers, "t/p", "t")
    assert mark == (new.mark_key, (0, 605))
    assert not decide_send(new, fold_marks(marks, [mark]))  # sent once, replays included
