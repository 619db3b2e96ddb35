"""The peek API's checks before any HDFS call (pure, by tables): paths, parameters, time
ranges and their limits, cursors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from metricpipe_consumers.peek.cursor import (
    Order,
    Position,
    decode_cursor,
    encode_cursor,
    hour_end,
    is_after,
)
from metricpipe_consumers.peek.errors import LimitError, PeekError
from metricpipe_consumers.peek.request import parse_params, parse_records_query, parse_route
from metricpipe_consumers.peek.timerange import decide_range, format_time, parse_time

NOW = int(datetime(2025, 5, 1, 12, 0, tzinfo=UTC).timestamp() * 1000)
H = 3_600_000
ARCHIVE = "/v1/namespaces/team-a/logarchives/web"


@pytest.mark.parametrize(
    ("target", "endpoint"),
    [
        (f"{ARCHIVE}/records", "records"),
        (f"{ARCHIVE}/hours?since=2h", "hours"),
        ("/healthz", "healthz"),
    ],
)
def test_routes(target: str, endpoint: str) -> None:
    assert parse_route(target).endpoint == endpoint


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("/v1/namespaces/../logarchives/web/records", 400),
        ("/v1/namespaces/team-a/logarchives/../records", 400),
        ("/v1/namespaces/team-a/logarchives/%2e%2e/records", 400),
        ("/v1/namespaces/team-a/logarchives/%2E%2E/records", 400),
        ("/v1/namespaces/team-a/logarchives/web%2f..%2fother/records", 400),
        ("/v1/namespaces/team-a/logarchives/web/../../b/logarchives/web/records", 400),
        ("/v1/namespaces//metricpipe/archives/logarchives/web/records", 400),
        ("/v1/namespaces/team-a/logarchives//etc/records", 400),
        ("/v1/namespaces/Team-A/logarchives/web/records", 400),
        ("/v1/namespaces/team_a/logarchives/web/records", 400),
        ("/v1/namespaces/team-a/logarchives/web.x/records", 400),
        ("/v1/namespaces/team-a/logarchives/-web/records", 400),
        (f"/v1/namespaces/team-a/logarchives/{'a' * 64}/records", 400),
        ("/v1/namespaces/team-a/logarchives/web/files", 400),
        ("/v1/namespaces/team-a/pipelines/web/records", 400),
        ("/v1/namespaces/team-a/logarchives/web\\..\\x/records", 400),
        ("http://evil/v1/namespaces/team-a/logarchives/web/records", 400),
        ("/metricpipe/archives/team-a/web/records", 404),
        ("/v2/namespaces/team-a/logarchives/web/records", 404),
        ("/", 404),
    ],
)
def test_paths_that_escape_or_do_not_exist(target: str, status: int) -> None:
    with pytest.raises(PeekError) as refused:
        parse_route(target)
    assert refused.value.status == status


def test_the_route_names_the_archive() -> None:
    route = parse_route(f"{ARCHIVE}/records?grep=x")
    assert (route.namespace, route.name) == ("team-a", "web")


@pytest.mark.parametrize(
    ("query", "single", "fields"),
    [
        ("", {}, {}),
        ("since=2h&grep=a%20b", {"since": "2h", "grep": "a b"}, {}),
        ("field.req.path=%2Fx&field.status=500", {}, {"req.path": "/x", "status": "500"}),
        ("regex=status%3D5..&order=oldest", {"regex": "status=5..", "order": "oldest"}, {}),
    ],
)
def test_parameters(query: str, single: dict[str, str], fields: dict[str, str]) -> None:
    assert parse_params(f"/x?{query}") == (single, fields)


def _parse(target: str) -> object:
    single, fields = parse_params(target)
    return parse_records_query(single, fields, default_limit=100, max_limit=1000,
                               max_pattern_chars=100)  # fmt: skip


@pytest.mark.parametrize("query", ["grep=a&grep=b", "field.a=1&field.a=2", "nope=1", "limit"])
def test_parameters_refused(query: str) -> None:
    with pytest.raises(PeekError) as refused:
        _parse(f"/x?{query}")
    assert refused.value.status == 400


def _query(**params: str) -> object:
    fields = {k[6:]: v for k, v in params.items() if k.startswith("field_")}
    single = {k: v for k, v in params.items() if not k.startswith("field_")}
    return parse_records_query(single, fields, default_limit=100, max_limit=1000,
                               max_pattern_chars=50)  # fmt: skip


@pytest.mark.parametrize(
    ("params", "status", "limit"),
    [
        ({"limit": "1001"}, 400, "max_page_records"),
        ({"limit": "0"}, 400, None),
        ({"limit": "-3"}, 400, None),
        ({"order": "random"}, 400, None),
        ({"regex": "(a"}, 400, None),
        ({"regex": "(a)\\1"}, 400, None),  # a backreference: not RE2
        ({"grep": "x" * 51}, 400, "max_pattern_chars"),
        ({"field_": "1"}, 400, None),
        ({"field_a..b": "1"}, 400, None),
        ({"cursor": "not-a-cursor"}, 400, None),
        ({"cursor": encode_cursor(Position(H, 0, 5), "oldest")}, 400, None),  # newest walk
    ],
)
def test_records_query_refused(params: dict[str, str], status: int, limit: str | None) -> None:
    with pytest.raises(PeekError) as refused:
        _query(**params)
    assert refused.value.status == status
    assert refused.value.body().get("limit") == limit


def test_records_query_defaults() -> None:
    query = parse_records_query({}, {"status": "500"}, default_limit=100, max_limit=1000,
                                max_pattern_chars=50)  # fmt: skip
    assert (query.order, query.limit, query.cursor) == ("newest", 100, None)
    assert query.filter.fields[0].path == "status"


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("now", NOW),
        ("2h", NOW - 2 * H),
        ("90s", NOW - 90_000),
        ("1h30m", NOW - 90 * 60_000),
        ("3d", NOW - 72 * H),
        ("2025-05-01T10:00:00Z", NOW - 2 * H),
        ("2025-05-01T12:00:00+02:00", NOW - 2 * H),
        ("2025-05-01T10:00:00.250Z", NOW - 2 * H + 250),
    ],
)
def test_times(text: str, ms: int) -> None:
    assert parse_time(text, NOW, "since") == ms


@pytest.mark.parametrize("text", ["2025-05-01T10:00:00", "yesterday", "2x", "-2h", "10"])
def test_times_refused(text: str) -> None:
    with pytest.raises(PeekError) as refused:
        parse_time(text, NOW, "since")
    assert refused.value.status == 400
    assert "since" in refused.value.message


@pytest.mark.parametrize(
    ("since", "until", "expected"),
    [
        (None, None, (NOW - H, NOW)),
        ("2h", None, (NOW - 2 * H, NOW)),
        ("24h", None, (NOW - 24 * H, NOW)),
        ("30h", "6h", (NOW - 30 * H, NOW - 6 * H)),
        (None, "2025-05-01T06:00:00Z", (NOW - 7 * H, NOW - 6 * H)),
    ],
)
def test_ranges(since: str | None, until: str | None, expected: tuple[int, int]) -> None:
    span = decide_range(since, until, NOW, default_seconds=3600, max_seconds=86400,
                        limit="max_range")  # fmt: skip
    assert (span.start_ms, span.end_ms) == expected


def test_a_range_over_the_limit_names_it_and_how_to_narrow() -> None:
    with pytest.raises(LimitError) as refused:
        decide_range("25h", None, NOW, default_seconds=3600, max_seconds=86400, limit="max_range")
    assert refused.value.status == 413
    assert refused.value.body() == {
        "error": "the time range 25h is longer than the 24h one request may read",
        "limit": "max_range", "value": "25h", "max": "24h",
        "hint": "narrow --since/--until to at most 24h",
    }  # fmt: skip


@pytest.mark.parametrize(("since", "until"), [("1h", "2h"), ("1h", "1h")])
def test_an_empty_range_is_refused(since: str, until: str) -> None:
    with pytest.raises(PeekError) as refused:
        decide_range(since, until, NOW, default_seconds=3600, max_seconds=86400, limit="r")
    assert refused.value.status == 400


def test_record_times_are_rfc3339_utc() -> None:
    assert format_time(NOW + 7) == "2025-05-01T12:00:00.007Z"


@pytest.mark.parametrize(
    "position", [Position(NOW, 0, 0), Position(NOW, 11, 2**62), hour_end(NOW, "oldest")]
)
@pytest.mark.parametrize("order", ["newest", "oldest"])
def test_cursors_round_trip(position: Position, order: Order) -> None:
    assert decode_cursor(encode_cursor(position, order), order) == position


@pytest.mark.parametrize(
    ("position", "cursor", "oldest", "newest"),
    [
        (Position(H, 0, 5), None, True, True),
        (Position(H, 0, 6), Position(H, 0, 5), True, False),
        (Position(H, 0, 5), Position(H, 0, 5), False, False),
        (Position(H, 1, 0), Position(H, 0, 99), True, False),
        (Position(2 * H, 0, 0), Position(H, 1, 99), True, False),
        (Position(H, 0, 0), hour_end(H, "oldest"), False, True),
        (Position(H, 0, 0), hour_end(H, "newest"), True, False),
    ],
)
def test_positions_walk_in_order(
    position: Position, cursor: Position | None, oldest: bool, newest: bool
) -> None:
    assert is_after(position, cursor, "oldest") is oldest
    assert is_after(position, cursor, "newest") is newest
