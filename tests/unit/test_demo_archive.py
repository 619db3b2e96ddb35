"""The demo's log archive (pure parts): the example LogArchive scaled to the demo's clock, the
demo's own count of the lines it replays, and what it prints about both."""

from __future__ import annotations

from pathlib import Path

from metricpipe_contract.archive_model import LogArchiveSpec
from metricpipe_contract.durations import parse_duration
from metricpipe_demo.archive import (
    ARCHIVE,
    ARCHIVE_EXAMPLE,
    LineTally,
    build_demo_archive,
    build_question_start,
    describe_archive_check,
    describe_peek,
    describe_requests,
    status_pattern,
    tally_lines,
)
from metricpipe_demo.archive_hdfs import ArchiveCount
from metricpipe_demo.pipelines import load_example
from metricpipe_demo.schedule import HTTP, RTT, Emission
from metricpipe_demo.settings import DemoSettings

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "manifests" / "examples"
LINE = (b'83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/ HTTP/1.1" %d %s '
        b'"http://semicomputing.com/" "Mozilla/5.0"')  # fmt: skip


def test_the_demo_archive_is_the_example_on_the_demo_clock() -> None:
    settings = DemoSettings()
    example = load_example(EXAMPLES_DIR, ARCHIVE_EXAMPLE)
    archive = build_demo_archive(example, settings)
    spec = LogArchiveSpec.model_validate(archive["spec"])  # still valid (CEL rules included)
    assert archive["metadata"] == {"name": ARCHIVE, "namespace": settings.namespace}
    assert parse_duration(spec.roll.max_age) == parse_duration(settings.archive_roll_age) == 10
    assert parse_duration(spec.freshness.target) >= parse_duration(spec.roll.max_age)
    assert spec.topic.deletion_policy == "Delete"  # demo-down leaves no topic behind
    pipeline = load_example(EXAMPLES_DIR, "http-5xx-rate")
    assert spec.source.tag == pipeline["spec"]["source"]["tag"]  # the lines the pipeline reads
    assert spec.source.format == "apache_combined"
    assert example["spec"]["roll"]["maxAge"] == "60s"  # the example itself is untouched


def test_the_status_pattern_finds_the_status_not_a_number_elsewhere() -> None:
    pattern = status_pattern(404)
    assert pattern.search(LINE % (404, b"-"))
    assert pattern.search(LINE % (404, b"1234"))
    assert not pattern.search(LINE % (200, b"404"))
    assert not pattern.search(b'1.2.3.4 - - [x] "GET /404 HTTP/1.1" 200 5 "-" "-"')


def test_the_tally_counts_the_lines_of_its_key_as_the_plan_is_consumed() -> None:
    plan = [
        Emission(1.0, HTTP, LINE % (404, b"1"), None, 1.0, 0),
        Emission(2.0, RTT, b'{"rtt": 404}', b"p", 2.0, 0),
        Emission(3.0, HTTP, LINE % (200, b"404"), None, 3.0, 0),
        Emission(4.0, HTTP, LINE % (404, b"-"), None, 3.0, 1),  # a burst copy counts too
    ]
    tally = LineTally(HTTP, status_pattern(404), since=3.0)
    stream = tally_lines(plan, tally)
    assert next(stream) == plan[0]
    assert (tally.lines, tally.matching, tally.matching_since) == (1, 1, 0)  # when taken
    assert list(stream) == plan[1:]
    assert (tally.lines, tally.matching, tally.matching_since) == (3, 2, 1)


def test_the_question_starts_where_the_burst_ends_on_the_demo_clock() -> None:
    settings = DemoSettings()  # burst in source hours 3..5, 60 source seconds per second
    assert build_question_start(1_000.0, settings) == 1_000.0 + 5 * 60


def test_the_archive_check_says_equal_missing_more_and_duplicates() -> None:
    hours = ("dt=2026-03-01/hour=10", "dt=2026-03-01/hour=11")
    assert describe_archive_check(ArchiveCount(5434, 5434, 9, hours), 5434) == (
        "archive on HDFS: 5,434 records in 2 hour(s), 9 files; replayed to its topic: "
        "5,434 lines: equal; no record in two files"
    )
    assert "MISSING 4" in describe_archive_check(ArchiveCount(5430, 5430, 9, hours), 5434)
    assert "2 MORE than sent" in describe_archive_check(ArchiveCount(5436, 5436, 9, hours), 5434)
    assert "3 DUPLICATE rows" in describe_archive_check(ArchiveCount(5437, 5434, 9, hours), 5434)


def test_the_peek_summary() -> None:
    tally = LineTally(HTTP, status_pattern(404), since=0.0, lines=5434, matching=112,
                      matching_since=10)  # fmt: skip
    assert describe_peek(10, 10, tally, "status=404", 1) == (
        "peek: 10 record(s) with status=404 since the burst's end (--limit 10, newest first); "
        "the replay sent 10 such lines after it, 112 in all; the archive holds 1 hour(s)"
    )


def test_each_archive_request_with_its_edge_line() -> None:
    logged = [
        {"event": "peek.listening", "port": 39480},
        {"event": "peek.request", "path": "/healthz", "status": 200, "seconds": 0.001},
        {"event": "peek.request", "path": "/v1/namespaces/d/logarchives/web-access/hours",
         "status": 200, "user": "system:serviceaccount:d:log-reader", "request_id": "a1",
         "seconds": 0.033},
        {"event": "peek.request", "path": "/v1/namespaces/d/logarchives/web-access/records",
         "status": 200, "user": "system:serviceaccount:d:log-reader", "request_id": "b2",
         "seconds": 0.22, "records": 2, "scanned_files": 6, "scanned_bytes": 46881},
        {"server": "edge-nginx-b", "request_id": "b2", "tls_protocol": "TLSv1.3",
         "request_time": 0.221, "status": 200},
        {"server": "edge-nginx-a", "request_id": "zz", "tls_protocol": "TLSv1.3",
         "request_time": 0.5, "status": 200},  # another client's request
    ]  # fmt: skip
    assert describe_requests(logged) == [
        "the API logged: hours 200 for system:serviceaccount:d:log-reader, 0.03 s",
        "the API logged: records 200 for system:serviceaccount:d:log-reader, 2 records, "
        "6 files / 46,881 bytes read, 0.22 s; edge-nginx-b logged it (TLSv1.3, 0.221 s)",
    ]
