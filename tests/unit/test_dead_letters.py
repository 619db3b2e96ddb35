"""Dead letters, the pure rules: headers, truncation, DLQ partitions, which letters a replay
must not send again, which sink refusals are one document's; and the DLQ topic's plan."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from metricpipe_consumers.batch import BatchJob, BatchReport
from metricpipe_consumers.document import PipelineDocument
from metricpipe_consumers.documents import SinkDoc
from metricpipe_consumers.kafka_access import build_plaintext_access
from metricpipe_consumers.letters import (
    Letter,
    Source,
    build_letter_headers,
    build_letter_record,
    decide_dead_letter_partition,
    decide_marks_since,
    decide_refusal_scope,
    decide_send,
    estimate_record_bytes,
    fold_marks,
    parse_source,
    read_letter_mark,
    select_refused_rows,
)
from metricpipe_consumers.sink import Refusal, SearchSink, SinkError
from metricpipe_operator.reconcile.topic import TopicPlan, build_dead_letter_plan

PIPELINE = "ns/p"


def letter(
    offset: int,
    *,
    partition: int = 0,
    value: bytes = b"v",
    key: bytes | None = b"k",
    mode: Any = "stream",
    stage: Any = "scan",
    window: int | None = None,
) -> Letter:
    return Letter(
        value,
        key,
        Source("in", partition, offset),
        "malformed_json",
        "detail",
        mode=mode,
        stage=stage,
        window_start_ms=window,
    )


def test_source_round_trips_and_topic_may_contain_dots() -> None:
    assert parse_source("metricpipe.ns.x/3/1234") == Source("metricpipe.ns.x", 3, 1234)
    assert str(Source("a.b", 0, 7)) == "a.b/0/7"


def test_headers_say_why_where_and_who() -> None:
    headers = dict(build_letter_headers(letter(9, partition=2, window=None), PIPELINE))
    assert headers == {
        "metricpipe.reason": b"malformed_json",
        "metricpipe.detail": b"detail",
        "metricpipe.source": b"in/2/9",
        "metricpipe.pipeline": b"ns/p",
        "metricpipe.mode": b"stream",
        "metricpipe.stage": b"scan",
    }
    batch = dict(build_letter_headers(letter(9, mode="batch", window=3_600_000), PIPELINE))
    assert batch["metricpipe.window"] == b"3600000"
    long_detail = Letter(b"", None, Source("in", 0, 0), "r", "x" * 2000)
    assert len(dict(build_letter_headers(long_detail, PIPELINE))["metricpipe.detail"]) == 500


@pytest.mark.parametrize(
    ("value_bytes", "key_bytes", "limit", "truncated", "cut"),
    [
        (2_000_000, 10, 3_211_264, False, None),  # fits: the record unchanged
        (2_000_000, 10, 1_048_588, True, b"value"),  # the DLQ takes less: value cut
        (10, 2_000_000, 1_048_588, True, b"key,value"),  # the key alone does not fit
        (100, 10, 1_048_588, False, None),
    ],
)
def test_a_letter_fits_the_topic_or_is_truncated_with_its_sizes(
    value_bytes: int, key_bytes: int, limit: int, truncated: bool, cut: bytes | None
) -> None:
    original = letter(5, value=b"x" * value_bytes, key=b"k" * key_bytes)
    record = build_letter_record(original, PIPELINE, limit)
    assert record.truncated is truncated
    assert estimate_record_bytes(record.key, record.value, record.headers) <= limit
    headers = dict(record.headers)
    assert headers["metricpipe.source"] == b"in/0/5"  # the original can be found
    if not truncated:
        assert (record.value, record.key) == (original.value, original.key)
        assert "metricpipe.truncated" not in headers
        return
    assert headers["metricpipe.truncated"] == cut
    assert headers["metricpipe.original.bytes"] == str(value_bytes).encode()
    assert original.value is not None
    assert record.value is not None
    assert original.value.startswith(record.value)  # the first bytes, not a summary
    if cut == b"key,value":
        assert headers["metricpipe.original.key.bytes"] == str(key_bytes).encode()
        assert record.key == b"k" * 1024
    else:
        assert record.key == original.key
        assert len(record.value) > limit - 4096  # as much of the value as fits


@pytest.mark.parametrize(
    ("source_partition", "dlq_partitions", "expected"),
    [(0, 6, 0), (5, 6, 5), (5, 1, 0), (7, 3, 1), (2, 0, 0)],
)
def test_dead_letter_partition(source_partition: int, dlq_partitions: int, expected: int) -> None:
    assert decide_dead_letter_partition(source_partition, dlq_partitions) == expected


def headers_of(item: Letter, pipeline: str = PIPELINE) -> list[tuple[str, str | bytes | None]]:
    return list(build_letter_headers(item, pipeline))


def test_read_letter_mark_keeps_only_this_pipelines_letters_about_its_topic() -> None:
    assert read_letter_mark(headers_of(letter(41, partition=3)), PIPELINE, "in") == (
        ("stream", "scan", 3),
        (0, 41),
    )
    batch = letter(7, mode="batch", stage="sink", window=7_200_000)
    assert read_letter_mark(headers_of(batch), PIPELINE, "in") == (
        ("batch", "sink", 0),
        (7_200_000, 7),
    )
    assert read_letter_mark(headers_of(letter(1), "other/p"), PIPELINE, "in") is None
    assert read_letter_mark(headers_of(letter(1)), PIPELINE, "another-topic") is None
    old_style = [(n, v) for n, v in headers_of(letter(1)) if n != "metricpipe.mode"]
    assert read_letter_mark(old_style, PIPELINE, "in") is None  # before marks existed
    assert read_letter_mark(None, PIPELINE, "in") is None
    assert read_letter_mark([("metricpipe.pipeline", b"\xff")], PIPELINE, "in") is None


def test_fold_marks_keeps_the_highest_position_per_key() -> None:
    found = [
        (("stream", "scan", 0), (0, 5)),
        (("stream", "scan", 0), (0, 3)),
        (("stream", "sink", 0), (0, 1)),
        (("batch", "scan", 1), (3_600_000, 2)),
    ]
    marks = fold_marks({("stream", "scan", 0): (0, 4), ("batch", "scan", 1): (7_200_000, 0)}, found)
    assert marks == {
        ("stream", "scan", 0): (0, 5),
        ("stream", "sink", 0): (0, 1),
        ("batch", "scan", 1): (7_200_000, 0),
    }


MARKS = {
    ("stream", "scan", 0): (0, 100),
    ("stream", "sink", 0): (0, 40),
    ("batch", "scan", 1): (3_600_000, 500),
}


@pytest.mark.parametrize(
    ("item", "send"),
    [
        (letter(100), False),  # the newest letter sent: a replay
        (letter(99), False),
        (letter(101), True),
        (letter(100, partition=1), True),  # another partition has no mark
        (letter(41, stage="sink"), True),  # stages are marked apart (their orders differ)
        (letter(40, stage="sink"), False),
        (letter(499, partition=1, mode="batch", window=3_600_000), False),  # a rerun
        (letter(501, partition=1, mode="batch", window=3_600_000), True),
        (letter(10, partition=1, mode="batch", window=7_200_000), True),  # the next window
        (letter(10, partition=1, mode="batch", window=0), False),  # an earlier window's rerun
        # a batch run after the stream consumer: what it read and dead-lettered is done
        (letter(100, mode="batch", window=3_600_000), False),
        (letter(101, mode="batch", window=3_600_000), True),
        (letter(30, mode="batch", stage="sink", window=3_600_000), True),  # its own refusals
    ],
)
def test_decide_send(item: Letter, send: bool) -> None:
    assert decide_send(item, MARKS) is send


@pytest.mark.parametrize(
    ("times", "expected"),
    [([1_000_000, 900_000], 600_000), ([1_000_000, None], None), ([], None)],
)
def test_marks_are_read_from_the_oldest_state_less_a_margin(
    times: list[int | None], expected: int | None
) -> None:
    assert decide_marks_since(times, 300_000) == expected


IMMENSE: dict[str, Any] = {
    "type": "illegal_argument_exception",
    "reason": 'Document contains at least one immense term in field="group_key" (whose UTF8 '
    "encoding is longer than the max length 32766), all of which were skipped.",
    "caused_by": {
        "type": "max_bytes_length_exceeded_exception",
        "reason": "bytes can be at most 32766 in length; got 40011",
    },
}


@pytest.mark.parametrize(
    ("status", "error", "scope"),
    [
        (400, IMMENSE, "document"),
        (
            400,
            {**IMMENSE, "reason": IMMENSE["reason"].replace("group_key", "group.host")},
            "document",
        ),
        (
            400,
            {
                "type": "document_parsing_exception",
                "reason": "[1:2] failed to parse field [group.k] of type [keyword]",
            },
            "document",
        ),
        (
            400,
            {
                "type": "document_parsing_exception",
                "reason": "failed to parse field [count] of type [boolean]",
            },
            "index",
        ),
        (400, {"type": "index_closed_exception", "reason": "closed"}, "index"),
        (400, {"type": "strict_dynamic_mapping_exception", "reason": "x"}, "index"),
        (400, "something the sink did not explain", "document"),
        (401, {"type": "security_exception"}, "index"),
        (403, {"type": "cluster_block_exception"}, "index"),
        (404, {"type": "index_not_found_exception"}, "index"),
    ],
)
def test_decide_refusal_scope(status: int, error: object, scope: str) -> None:
    assert decide_refusal_scope(status, error) == scope


class FakeBulkClient:
    """Answers bulk requests with the item statuses given per document id."""

    def __init__(self, answers: dict[str, list[tuple[int, object]]]) -> None:
        self.answers = answers

    def bulk(self, operations: list[dict[str, Any]]) -> dict[str, Any]:
        items = []
        for action in operations[::2]:
            doc_id = next(iter(action.values()))["_id"]
            status, error = self.answers[doc_id].pop(0)
            items.append({"index": {"status": status, "error": error}})
        return {"items": items}


def write(answers: dict[str, list[tuple[int, object]]], allow: bool) -> Any:
    sink = SearchSink(
        FakeBulkClient(answers),
        "idx",
        keyword_bodies=True,
        transport_errors=(),
        sleep=lambda _s: None,
    )
    docs = [SinkDoc("idx", doc_id, {"n": 1}) for doc_id in answers]
    return sink.write(docs, allow_refusals=allow)


def test_sink_write_returns_one_documents_refusal_and_writes_the_rest() -> None:
    result = write(
        {"a": [(201, None)], "b": [(400, IMMENSE)], "c": [(429, None), (200, None)]}, allow=True
    )
    assert (result.written, result.conflicts) == (2, 0)
    assert [(r.doc.doc_id, r.status) for r in result.refused] == [("b", 400)]
    assert "immense term" in result.refused[0].reason
    assert "32766" in result.refused[0].reason


@pytest.mark.parametrize(
    ("answer", "allow", "says"),
    [
        ((400, IMMENSE), False, "immense term"),  # state and finals: never dropped quietly
        ((403, {"type": "security_exception", "reason": "no"}), True, "credentialsSecretRef"),
        (
            (
                400,
                {
                    "type": "document_parsing_exception",
                    "reason": "failed to parse field [count] of type [boolean]",
                },
            ),
            True,
            "spec.sink.index",
        ),
    ],
)
def test_sink_write_stops_on_what_is_not_one_documents_fault(
    answer: tuple[int, object], allow: bool, says: str
) -> None:
    with pytest.raises(SinkError, match=says.replace(".", r"\.")):
        write({"a": [answer]}, allow=allow)


@pytest.mark.parametrize(
    ("input_config", "expected_bytes"),
    [
        ({}, str(1_048_588 + 65_536)),
        ({"max.message.bytes": "3145728"}, str(3_145_728 + 65_536)),
        ({"max.message.bytes": "junk"}, str(1_048_588 + 65_536)),
    ],
)
def test_dead_letter_topic_takes_what_the_input_takes(
    input_config: dict[str, str], expected_bytes: str
) -> None:
    plan = TopicPlan("metricpipe.ns.x", 6, 3, {"cleanup.policy": "delete", **input_config})
    dlq = build_dead_letter_plan(plan)
    assert (dlq.name, dlq.partitions, dlq.replication_factor) == ("metricpipe.ns.x.dlq", 6, 3)
    assert dlq.config["max.message.bytes"] == expected_bytes
    assert dlq.config["retention.ms"] == str(14 * 24 * 3600 * 1000)
    assert dlq.config["cleanup.policy"] == "delete"


def test_refused_partials_stand_for_this_batchs_records_of_their_series() -> None:
    columns: dict[str, list[Any]] = {
        "partition": [0, 0, 1, 0, 1],
        "offset": [10, 11, 7, 12, 8],
        "event_ms": [5_000, 61_000, 5_000, 6_000, 70_000],
        "gkey": ["x", "x", "x", "y", "x"],
    }
    refused = {(0, 0, "x"), (1, 60_000, "x")}
    assert select_refused_rows(columns, 60_000, refused) == {
        (0, 10): (0, 0, "x"),  # partition 0, window 0, x: refused
        (1, 8): (1, 60_000, "x"),  # partition 1, window 1 min, x: refused
    }  # the same group in another window or partition is written, so are other groups
    assert select_refused_rows(columns, 60_000, set()) == {}


class RecordingWriter:
    """Stands in for DeadLetterWriter: keeps what a batch run sends."""

    def __init__(self) -> None:
        self.mode = "stream"
        self.sent: list[tuple[Any, ...]] = []
        self.flushed = 0

    def send(self, value: Any, key: Any, source: str, reason: str, detail: str, *,
             stage: str = "scan") -> bool:  # fmt: skip
        self.sent.append((value, source, reason, stage, detail))
        return True

    def flush(self) -> None:
        self.flushed += 1


def test_a_batch_run_dead_letters_the_windows_records_behind_a_refused_final() -> None:
    doc = PipelineDocument.model_validate({
        "pipeline": {"namespace": "ns", "name": "p"}, "topic": "in", "consumerGroup": "g",
        "deadLetterTopic": "in.dlq", "kafka": {"bootstrap": "k:9092"},
        "sink": {"backend": "elasticsearch", "endpoint": "http://es", "index": "idx"},
        "spec": {"source": {"tag": "t"}, "mode": "batch",
                 "metric": {"aggregation": "count", "groupBy": ["host", "code"]}},
    })  # fmt: skip
    writer = RecordingWriter()
    kafka = build_plaintext_access("k:9092")
    job = BatchJob(doc, sink=None, engine=None, dead_letters=writer, kafka=kafka)  # type: ignore[arg-type]
    assert writer.mode == "batch"  # the letters say a batch run sent them
    rows = pa.table({"partition": [0, 0, 1, 1], "offset": [5, 6, 9, 10],
                     "key": [None, None, b"k", None],
                     "value": [b"a", b"b", b"c", b"d"]})  # fmt: skip
    table = pa.table({"partition": [0, 0, 1, 1], "offset": [5, 6, 9, 10],
                      "gkey": ["h\x1f200", "long\x1f500", "long\x1f500", "h\x1f200"]})  # fmt: skip
    final = SinkDoc("idx", "s-final", {"group": {"host": "long", "code": "500"}})
    report = BatchReport("ns/p", 0, 3_600_000, counted=4)
    job._dead_letter_refused((Refusal(final, 400, "immense"),), rows, table, report)
    assert [(v, src, reason, stage) for v, src, reason, stage, _ in writer.sent] == [
        (b"b", "in/0/6", "sink_rejected", "sink"), (b"c", "in/1/9", "sink_rejected", "sink"),
    ]  # fmt: skip
    assert writer.sent[0][4] == "HTTP 400: immense"
    assert (report.counted, report.dead_letters["sink_rejected"], writer.flushed) == (2, 2, 1)
