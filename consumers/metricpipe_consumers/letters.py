"""Dead letters, the pure part: what a letter carries, how it fits the dead-letter topic, and
which letters were already sent (so that a replay does not send them twice).

A letter is the original record (value and key) with headers saying why it was refused and
where it came from. The I/O (producing, reading the DLQ back) is in `deadletters.py`.

Duplicate suppression ("marks"): the letters of one source partition are produced in a fixed
order per (mode, stage) — the stream consumer in offset order, a batch run in (window, offset)
order — and a crash loses at most a suffix of that order (the idempotent producer keeps order
per DLQ partition; a flush is all-or-error). So the newest letter of a (mode, stage, source
partition) found in the DLQ, its *position*, says that every letter at or before it was sent;
a replay skips those and sends the rest.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Mode = Literal["stream", "batch"]
Stage = Literal["scan", "sink"]  # refused while parsing/windowing, or by the sink
Position = tuple[int, int]  # (window start ms for batch letters, 0 for stream; source offset)
MarkKey = tuple[str, str, int]  # (mode, stage, source partition)
Headers = list[tuple[str, bytes]]

# Kafka's record-batch framing for one record (61 bytes) plus the record's own varints, with
# room to spare: a letter is sized so that it alone fits `max.message.bytes` with this left.
RECORD_RESERVE_BYTES = 1024
HEADER_OVERHEAD_BYTES = 10  # varint lengths of one header's name and value
KEY_KEEP_BYTES = 1024  # a key too large to fit is cut to this
DETAIL_MAX_CHARS = 500
DEFAULT_MAX_MESSAGE_BYTES = 1_048_588  # Kafka's default max.message.bytes


@dataclass(frozen=True)
class Source:
    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


def parse_source(text: str) -> Source:
    """`topic/partition/offset` (topic names cannot contain '/')."""
    topic, partition, offset = text.rsplit("/", 2)
    return Source(topic, int(partition), int(offset))


@dataclass(frozen=True)
class Letter:
    """One record to dead-letter, as decided; `build_letter_record` turns it into bytes."""

    value: bytes | None
    key: bytes | None
    source: Source
    reason: str
    detail: str
    mode: Mode = "stream"
    stage: Stage = "scan"
    window_start_ms: int | None = None  # batch: the window whose run sent it
    # the stream consumer's offset base (state.py): a topic created anew continues after the
    # old one's offsets here too, so the old topic's letters never hide the new one's
    offset_base: int = 0

    @property
    def position(self) -> Position:
        return (self.window_start_ms or 0, self.source.offset + self.offset_base)

    @property
    def mark_key(self) -> MarkKey:
        return (self.mode, self.stage, self.source.partition)


@dataclass(frozen=True)
class LetterRecord:
    value: bytes | None
    key: bytes | None
    headers: Headers
    truncated: bool


def build_letter_headers(letter: Letter, pipeline: str) -> Headers:
    headers: Headers = [
        ("metricpipe.reason", letter.reason.encode()),
        ("metricpipe.detail", letter.detail[:DETAIL_MAX_CHARS].encode()),
        ("metricpipe.source", str(letter.source).encode()),
        ("metricpipe.pipeline", pipeline.encode()),
        ("metricpipe.mode", letter.mode.encode()),
        ("metricpipe.stage", letter.stage.encode()),
    ]
    if letter.window_start_ms is not None:
        headers.append(("metricpipe.window", str(letter.window_start_ms).encode()))
    if letter.offset_base:
        headers.append(("metricpipe.offset_base", str(letter.offset_base).encode()))
    return headers


def estimate_record_bytes(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    """Bytes one record takes in a record batch of its own (an upper bound)."""
    size = len(key or b"") + len(value or b"") + RECORD_RESERVE_BYTES
    return size + sum(len(n) + len(v) + HEADER_OVERHEAD_BYTES for n, v in headers)


def build_letter_record(letter: Letter, pipeline: str, limit: int) -> LetterRecord:
    """The letter as it will be produced: the record unchanged when it fits `limit` (the DLQ's
    `max.message.bytes`), else a truncated copy — the value's first bytes (and the key's, when
    the key alone does not fit) with headers saying so, the original sizes and the source
    coordinates. The original stays in the input topic until its retention ends."""
    headers = build_letter_headers(letter, pipeline)
    if estimate_record_bytes(letter.key, letter.value, headers) <= limit:
        return LetterRecord(letter.value, letter.key, headers, truncated=False)
    value, key = letter.value or b"", letter.key
    cut = ["value"]
    marks: Headers = [
        ("metricpipe.truncated", b"key,value"),  # longest form, for the size estimate
        ("metricpipe.original.bytes", str(len(value)).encode()),
        ("metricpipe.original.key.bytes", str(len(key or b"")).encode()),
    ]
    if key is not None and estimate_record_bytes(key, b"", headers + marks) > limit:
        key = key[:KEY_KEEP_BYTES]
        cut = ["key", "value"]
    room = max(0, limit - estimate_record_bytes(key, b"", headers + marks))
    final: Headers = [
        ("metricpipe.truncated", ",".join(cut).encode()),
        ("metricpipe.original.bytes", str(len(value)).encode()),
    ]
    if "key" in cut:
        final.append(("metricpipe.original.key.bytes", str(len(letter.key or b"")).encode()))
    return LetterRecord(value[:room], key, headers + final, truncated=True)


def decide_dead_letter_partition(source_partition: int, dlq_partitions: int) -> int:
    """Letters of input partition p go to DLQ partition p (the operator gives the DLQ as many
    partitions as the input); a DLQ with fewer (one, before this layout) takes p mod n."""
    return source_partition % max(1, dlq_partitions)


def read_letter_mark(
    headers: Iterable[tuple[str, str | bytes | None]] | None, pipeline: str, source_topic: str
) -> tuple[MarkKey, Position] | None:
    """(mark key, position) of a letter this pipeline sent about `source_topic`, or None (another
    pipeline's, or a letter from before marks existed: it has no mode header)."""
    found = {
        name: value.encode() if isinstance(value, str) else value
        for name, value in headers or []
        if value is not None
    }
    try:
        if found.get("metricpipe.pipeline", b"").decode() != pipeline:
            return None
        mode, stage = found["metricpipe.mode"].decode(), found["metricpipe.stage"].decode()
        source = parse_source(found["metricpipe.source"].decode())
        window = int(found["metricpipe.window"]) if "metricpipe.window" in found else 0
        base = int(found.get("metricpipe.offset_base") or 0)
    except (KeyError, ValueError, UnicodeDecodeError):
        return None
    if source.topic != source_topic:
        return None
    return (mode, stage, source.partition), (window, source.offset + base)


def fold_marks(
    marks: Mapping[MarkKey, Position], found: Iterable[tuple[MarkKey, Position]]
) -> dict[MarkKey, Position]:
    """The highest position per key, over what is known and what was found."""
    merged = dict(marks)
    for key, position in found:
        if key not in merged or position > merged[key]:
            merged[key] = position
    return merged


def decide_send(letter: Letter, marks: Mapping[MarkKey, Position]) -> bool:
    """False when the letter was sent already: its position is at or before the newest letter
    of its (mode, stage, source partition). A batch run also skips a parse rejection at or
    before the stream consumer's newest one of that partition: the stream consumer read every
    offset up to it in order and sent its rejections (the parser is the same)."""
    mark = marks.get(letter.mark_key)
    if mark is not None and letter.position <= mark:
        return False
    if letter.mode == "batch" and letter.stage == "scan":
        stream = marks.get(("stream", "scan", letter.source.partition))
        if stream is not None and letter.source.offset <= stream[1]:
            return False
    return True


SeriesRow = tuple[int, int, str]  # (partition, window start ms, joined group)


def select_refused_rows(
    columns: Mapping[str, list[Any]], window_ms: int, refused: Collection[SeriesRow]
) -> dict[tuple[int, int], SeriesRow]:
    """The batch's records behind refused partial documents: (partition, offset) -> series,
    for the rows (columns partition, offset, event_ms, gkey) whose series was refused."""
    rows = zip(columns["partition"], columns["offset"], columns["event_ms"], columns["gkey"],
               strict=True)  # fmt: skip
    found: dict[tuple[int, int], SeriesRow] = {}
    for partition, offset, event_ms, gkey in rows:
        series = (partition, event_ms // window_ms * window_ms, gkey)
        if series in refused:
            found[(partition, offset)] = series
    return found


def decide_marks_since(updated_ms: Iterable[int | None], margin_ms: int) -> int | None:
    """From what time the DLQ must be read to find the letters a replay may repeat.

    Letters of offsets at or after a partition state's committed offset are produced after
    that state document was written (its `updated_ms`): read from the oldest state of the
    partitions just assigned, less a margin for clocks. A partition without a state (or a
    state without a time) has no bound: read from the start (capped by the reader)."""
    times = list(updated_ms)
    if not times or any(t is None for t in times):
        return None
    return min(t for t in times if t is not None) - margin_ms


_FIELD = re.compile(r"field(?:=\"|\s\[)([^\"\]]+)")
INDEX_LEVEL_ERRORS = frozenset({
    "index_closed_exception", "index_not_found_exception", "invalid_index_name_exception",
    "cluster_block_exception", "strict_dynamic_mapping_exception",
})  # fmt: skip


def decide_refusal_scope(status: int, error: object) -> Literal["document", "index"]:
    """Whether a sink's per-item refusal is about that one document (dead-letter what it stands
    for, go on) or about the index (stop, with the sink's message).

    A document: HTTP 400 whose error names no field, or a field that holds record data
    (`group_key`, `group.*`: e.g. Elasticsearch's "immense term" for a keyword over 32766
    bytes). The index: any other status (401/403 credentials, 404 missing index, ...), an
    index-level error type, or a mapping error on one of the pipeline's own fields (the index
    was created by someone else: every document would be refused)."""
    if status != 400:
        return "index"
    kind, reason = "", ""
    if isinstance(error, Mapping):
        kind, reason = str(error.get("type", "")), str(error.get("reason", ""))
        caused = error.get("caused_by")
        if isinstance(caused, Mapping):
            reason += " " + str(caused.get("reason", ""))
    else:
        reason = str(error)
    if kind in INDEX_LEVEL_ERRORS:
        return "index"
    fields = _FIELD.findall(reason)
    if any(f != "group_key" and not f.startswith("group.") for f in fields):
        return "index"
    return "document"
