"""The archive's search index (pure parts): daily index names, documents and their ids,
the mapping, and which daily indices the retention deletes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from metricpipe_consumers.archive.index import (
    build_index_name,
    build_log_doc,
    build_log_index_body,
    decide_expired_indices,
)

PREFIX = "metricpipe-logs-web.edge"


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(
    ("time", "index"),
    [
        ("2015-05-17T10:05:03", f"{PREFIX}-2015.05.17"),
        ("2015-05-17T23:59:59.999", f"{PREFIX}-2015.05.17"),
        ("2015-05-18T00:00:00", f"{PREFIX}-2015.05.18"),  # UTC days
    ],
)
def test_the_day_of_the_kafka_time_names_the_index(time: str, index: str) -> None:
    assert build_index_name(PREFIX, ms(time)) == index


def test_a_document_keeps_line_fields_and_coordinates_under_its_coordinates_id() -> None:
    row = {"partition": 2, "offset": 41, "time_ms": ms("2015-05-17T10:05:03"), "key": None,
           "raw": '1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 500 7',
           "fields": json.dumps({"status": 500, "host": "1.2.3.4"})}  # fmt: skip
    doc = build_log_doc(PREFIX, row)
    assert (doc.index, doc.doc_id) == (f"{PREFIX}-2015.05.17", "2-41")
    assert doc.body == {"@timestamp": "2015-05-17T10:05:03.000Z", "message": row["raw"],
                        "key": None, "fields": {"status": 500, "host": "1.2.3.4"},
                        "kafka": {"partition": 2, "offset": 41}}  # fmt: skip
    again = build_log_doc(PREFIX, dict(row))  # read again after a crash: the same document
    assert (again.index, again.doc_id, again.body) == (doc.index, doc.doc_id, doc.body)
    assert build_log_doc(PREFIX, {**row, "fields": "{}"}).body["fields"] == {}


@pytest.mark.parametrize(
    ("backend", "kind"), [("elasticsearch", "flattened"), ("opensearch", "flat_object")]
)
def test_fields_are_one_flat_field_and_nothing_maps_itself(backend: str, kind: str) -> None:
    mappings = build_log_index_body(backend)["mappings"]
    assert mappings["dynamic"] is False
    assert mappings["properties"]["fields"] == {"type": kind}


def test_retention_deletes_whole_days_of_this_prefix_only() -> None:
    names = [f"{PREFIX}-2026.11.20", f"{PREFIX}-2026.11.25", f"{PREFIX}-2026.11.26",
             f"{PREFIX}-2026.12.03", f"{PREFIX}x-2026.11.01", f"{PREFIX}-state",
             "other-2026.01.01"]  # fmt: skip
    now = ms("2026-12-03T12:00:00")
    # 7 days: a day goes once its end is 7 days old (25 Nov ended on 26 Nov 00:00, 7 days
    # before 3 Dec 00:00; 26 Nov's end is 7 days old only on 4 Dec)
    assert decide_expired_indices(names, PREFIX, now, 7) == [
        f"{PREFIX}-2026.11.20", f"{PREFIX}-2026.11.25"]  # fmt: skip
    assert decide_expired_indices(names, PREFIX, now, 30) == []
