"""The consumer benchmark's Spark peer (bench/spark_peer.py), its pure parts: the window
documents and their ids, the `_bulk` body, the comparison with metricpipe's final documents
and the totals over a query's progress reports. Expected values are written out by hand
(2016-10-01T00:00:00Z is 1,475,280,000 s after the epoch)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from spark_peer import (
    build_bulk_body,
    build_doc_id,
    build_window_doc,
    compare_documents,
    format_peer_table,
    summarize_progress,
)

OCT_1 = 1_475_280_000_000  # 2016-10-01T00:00:00Z in ms
HOUR = 3_600_000


def final(start_ms: int, probe: str, value: float, count: int) -> dict[str, Any]:
    """A final document as metricpipe writes it, reduced to what the comparison reads."""
    return {"window_start_ms": start_ms, "group": {"probe": probe}, "value": value,
            "count": count, "final": True, "pipeline": "bench/p"}  # fmt: skip


def test_window_document_carries_metricpipes_fields() -> None:
    assert build_window_doc(OCT_1, OCT_1 + HOUR, "11119-0", 20.5, 4) == {
        "window_start": "2016-10-01T00:00:00Z",
        "window_end": "2016-10-01T01:00:00Z",
        "window_start_ms": 1_475_280_000_000,
        "window_end_ms": 1_475_283_600_000,
        "group": {"probe": "11119-0"},
        "group_key": "probe=11119-0",
        "metric": "avg",
        "value": 20.5,
        "count": 4,
        "final": True,
    }


def test_document_id_is_window_start_and_probe() -> None:
    assert build_doc_id(OCT_1, "11119-0") == "1475280000000-11119-0"
    assert build_doc_id(OCT_1 + HOUR, "7") == "1475283600000-7"


def test_bulk_body_indexes_each_document_under_its_id() -> None:
    docs = [{"window_start_ms": 5, "group": {"probe": "a"}, "value": 1.5},
            {"window_start_ms": 6, "group": {"probe": "b"}, "value": 2.0}]  # fmt: skip
    body = build_bulk_body("peer", docs)
    assert body == (
        '{"index": {"_index": "peer", "_id": "5-a"}}\n'
        '{"window_start_ms": 5, "group": {"probe": "a"}, "value": 1.5}\n'
        '{"index": {"_index": "peer", "_id": "6-b"}}\n'
        '{"window_start_ms": 6, "group": {"probe": "b"}, "value": 2.0}\n'
    )


def test_rerun_writes_the_same_ids() -> None:
    doc = build_window_doc(OCT_1, OCT_1 + HOUR, "p", 3.0, 1)
    first = json.loads(build_bulk_body("i", [doc]).splitlines()[0])
    again = json.loads(build_bulk_body("i", [dict(doc, value=4.0)]).splitlines()[0])
    assert first == again == {"index": {"_index": "i", "_id": "1475280000000-p"}}


def test_identical_windows_are_equal() -> None:
    docs = [final(OCT_1, "a", 12.25, 4), final(OCT_1, "b", -3.0, 2)]
    result = compare_documents(docs, docs)
    assert result == {
        "peer_windows": 2, "metricpipe_windows": 2, "both": 2, "equal": 2, "different": 0,
        "missing_from_peer": 0, "lost_by_peer": 0, "missing_from_metricpipe": 0,
        "lost_by_metricpipe": 0, "examples_different": [],
    }  # fmt: skip


def test_value_within_the_relative_tolerance_is_equal() -> None:
    # 100.0 and 100.00000000001 differ by 1e-13 of the value: summation order, not a fault
    peer = [final(OCT_1, "a", 100.00000000001, 4)]
    result = compare_documents(peer, [final(OCT_1, "a", 100.0, 4)])
    assert (result["equal"], result["different"]) == (1, 0)


def test_value_beyond_the_tolerance_or_another_count_differs() -> None:
    peer = [final(OCT_1, "a", 100.001, 4), final(OCT_1, "b", 7.0, 3)]
    mine = [final(OCT_1, "a", 100.0, 4), final(OCT_1, "b", 7.0, 2)]
    result = compare_documents(peer, mine)
    assert (result["both"], result["equal"], result["different"]) == (2, 0, 2)
    assert result["examples_different"] == [
        {"window_start_ms": OCT_1, "probe": "a", "peer": [100.001, 4], "metricpipe": [100.0, 4]},
        {"window_start_ms": OCT_1, "probe": "b", "peer": [7.0, 3], "metricpipe": [7.0, 2]},
    ]


def test_missing_windows_are_lost_only_before_the_sides_last_window() -> None:
    # peer: hours 0, 1, 2 for "a"; metricpipe: hours 0, 1 for "a" and hour 0 for "b"
    peer = [final(OCT_1 + h * HOUR, "a", 1.0, 1) for h in range(3)]
    mine = [final(OCT_1 + h * HOUR, "a", 1.0, 1) for h in range(2)] + [final(OCT_1, "b", 2.0, 1)]
    result = compare_documents(peer, mine)
    assert (result["both"], result["equal"]) == (2, 2)
    # ("b", hour 0) is before the peer's last window (hour 2): the peer lost it
    assert (result["missing_from_peer"], result["lost_by_peer"]) == (1, 1)
    # ("a", hour 2) is metricpipe's last hour + 1: beyond what it had closed, not lost
    assert (result["missing_from_metricpipe"], result["lost_by_metricpipe"]) == (1, 0)


def test_a_window_in_the_others_last_hour_is_not_counted_lost() -> None:
    peer = [final(OCT_1 + HOUR, "a", 1.0, 1)]
    mine = [final(OCT_1 + HOUR, "a", 1.0, 1), final(OCT_1 + HOUR, "b", 1.0, 1)]
    result = compare_documents(peer, mine)
    assert (result["missing_from_peer"], result["lost_by_peer"]) == (1, 0)


def test_nothing_finalised_on_one_side() -> None:
    result = compare_documents([], [final(OCT_1, "a", 1.0, 1)])
    assert (result["both"], result["missing_from_peer"], result["lost_by_peer"]) == (0, 1, 0)


def report(started: str, rows: int, watermark: str, dropped: int) -> dict[str, Any]:
    """A StreamingQueryProgress's JSON, reduced to the fields summarize_progress reads."""
    return {"timestamp": started, "numInputRows": rows, "eventTime": {"watermark": watermark},
            "stateOperators": [{"numRowsDroppedByWatermark": dropped}]}  # fmt: skip


def test_progress_totals() -> None:
    progress = [
        report("2026-12-05T23:13:51.633Z", 200_000, "1970-01-01T00:00:00.000Z", 0),
        report("2026-12-05T23:13:58.001Z", 200_000, "2016-11-15T10:00:00.000Z", 12),
        report("2026-12-05T23:14:03.500Z", 8_087, "2016-12-30T01:00:00.000Z", 3),
        report("2026-12-05T23:14:05.000Z", 0, "2016-12-31T23:53:08.000Z", 0),
    ]
    assert summarize_progress(progress) == {
        "records_read": 408_087,
        "records_dropped_late": 15,
        "batches_with_data": 3,
        "batches": 4,
        "last_watermark": "2016-12-31T23:53:08.000Z",
        "first_batch_started": "2026-12-05T23:13:51.633Z",
    }


def test_progress_without_data() -> None:
    idle = {"timestamp": "2026-12-05T23:14:05.000Z", "numInputRows": 0, "eventTime": {}}
    expected = {"records_read": 0, "records_dropped_late": 0, "batches_with_data": 0,
                "batches": 1, "last_watermark": None, "first_batch_started": None}  # fmt: skip
    assert summarize_progress([idle]) == expected


def test_table_shows_ratios_to_the_raw_loop() -> None:
    comparison = compare_documents([final(OCT_1, "a", 1.0, 1)], [final(OCT_1, "a", 1.0, 1)])
    sides = [("spark peer", 25_000.0, 27_249), ("metricpipe tuned", 40_000.0, None)]
    lines = format_peer_table(100_000.0, sides, comparison)
    assert lines[1] == "   raw loop                  100,000   1.000         -"
    assert lines[2] == "   spark peer                 25,000   0.250    27,249"
    assert lines[3] == "   metricpipe tuned           40,000   0.400         -"
    assert lines[4].startswith("   windows both finalised: 1, equal 1, different 0;")
