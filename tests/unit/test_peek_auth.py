"""The peek API's gate (TokenReview, SubjectAccessReview, their cache) with fake reviews, and
the kubectl plugin's pure parts."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from metricpipe_consumers.peek.auth import (
    Gate,
    Identity,
    build_access_review,
    build_token_review,
    decide_identity,
    parse_bearer,
)
from metricpipe_consumers.peek.cli import CliError, build_params, build_parser, describe_refusal
from metricpipe_consumers.peek.errors import PeekError
from metricpipe_consumers.peek.server import error_response


class FakeReviews:
    def __init__(self, users: dict[str, str], allowed: set[tuple[str, str]]) -> None:
        self.users, self.allowed = users, allowed
        self.calls: list[str] = []

    def token_review(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("token")
        user = self.users.get(body["spec"]["token"])
        if user is None:
            return {"authenticated": False, "error": "invalid bearer token"}
        return {"authenticated": True, "user": {"username": user, "uid": "u1",
                                                "groups": ["system:authenticated"]}}  # fmt: skip

    def access_review(self, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append("access")
        spec = body["spec"]
        key = (spec["user"], spec["resourceAttributes"]["namespace"])
        return {"allowed": key in self.allowed}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("header", "token"),
    [(None, None), ("", None), ("Bearer abc", "abc"), ("bearer  abc ", "abc"),
     ("Basic abc", None), ("Bearer", None), ("Bearer ", None)],
)  # fmt: skip
def test_bearer_header(header: str | None, token: str | None) -> None:
    assert parse_bearer(header) == token


def test_reviews_are_the_ones_rbac_understands() -> None:
    assert build_token_review("t", ("peek",))["spec"] == {"token": "t", "audiences": ["peek"]}
    identity = decide_identity({"authenticated": True, "user": {
        "username": "alice", "uid": "1", "groups": ["dev"], "extra": {"k": ["v"]}}})  # fmt: skip
    assert identity == Identity("alice", "1", ("dev",), (("k", ("v",)),))
    assert build_access_review(identity, "team-a", "web")["spec"] == {
        "user": "alice", "uid": "1", "groups": ["dev"], "extra": {"k": ["v"]},
        "resourceAttributes": {"group": "metricpipe.io", "resource": "logarchives",
                               "subresource": "logs", "verb": "get", "namespace": "team-a",
                               "name": "web"},
    }  # fmt: skip
    assert decide_identity({"authenticated": False}) is None


@pytest.mark.parametrize(
    ("token", "namespace", "status", "words"),
    [
        (None, "team-a", 401, "no bearer token"),
        ("forged", "team-a", 401, "not valid"),
        ("bob-token", "team-a", 403, "bob may not get logarchives/logs in namespace team-a"),
        ("alice-token", "team-b", 403, "get logarchives/logs in namespace team-b"),
        ("alice-token", "team-a", 200, ""),
    ],
)
def test_gate(token: str | None, namespace: str, status: int, words: str) -> None:
    reviews = FakeReviews({"alice-token": "alice", "bob-token": "bob"}, {("alice", "team-a")})
    gate = Gate(reviews, cache_seconds=10)
    if status == 200:
        assert gate.authorize(token, namespace, "web").username == "alice"
        return
    with pytest.raises(PeekError) as refused:
        gate.authorize(token, namespace, "web")
    assert refused.value.status == status
    assert words in refused.value.message
    response = error_response(refused.value)
    assert response.status == status
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("Bearer ")
    if status == 403:
        assert (
            refused.value.body()["permission"] == f"get logarchives/logs in namespace {namespace}"
        )


def test_answers_are_cached_briefly_and_by_a_hash_of_the_token() -> None:
    reviews, clock = FakeReviews({"alice-token": "alice"}, {("alice", "team-a")}), Clock()
    gate = Gate(reviews, cache_seconds=10, clock=clock)
    for _ in range(5):
        gate.authorize("alice-token", "team-a", "web")
    assert reviews.calls == ["token", "access"]
    gate.authorize("alice-token", "team-a", "other")  # another archive: another access review
    assert reviews.calls == ["token", "access", "access"]
    clock.now += 10.5
    gate.authorize("alice-token", "team-a", "web")
    assert reviews.calls[-2:] == ["token", "access"]
    assert all("alice-token" not in key for key in map(str, gate._cache))


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["peek", "web", *argv])


@pytest.mark.parametrize(
    ("argv", "params"),
    [
        ((), {"since": "1h", "order": "newest", "limit": "100"}),
        (("--since", "2h", "--until", "1h", "--oldest-first", "--grep", "status=5"),
         {"since": "2h", "until": "1h", "order": "oldest", "limit": "100", "grep": "status=5"}),
        (("--regex", "5..", "--field", "status=500", "--field", "req.path=/a=b"),
         {"since": "1h", "order": "newest", "limit": "100", "regex": "5..",
          "field.status": "500", "field.req.path": "/a=b"}),
    ],
)  # fmt: skip
def test_plugin_queries(argv: tuple[str, ...], params: dict[str, str]) -> None:
    assert build_params(_args(*argv), 100, None) == params
    assert build_params(_args(*argv), 7, "c1")["cursor"] == "c1"


def test_plugin_refuses_grep_with_regex_and_a_field_without_value() -> None:
    with pytest.raises(SystemExit):
        _args("--grep", "a", "--regex", "b")
    with pytest.raises(CliError):
        build_params(_args("--field", "status"), 10, None)


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (401, {"error": "the bearer token is not valid"}, "not authenticated (401)"),
        (403, {"error": "bob may not get logarchives/logs in namespace a"}, "forbidden (403)"),
        (413, {"error": "too long", "limit": "max_range", "hint": "narrow --since/--until"},
         "over the limit max_range (413): too long. narrow --since/--until"),
        (404, {"error": "log archive a/web has no files"}, "refused (404)"),
    ],
)  # fmt: skip
def test_plugin_refusals_in_words(status: int, body: dict[str, Any], words: str) -> None:
    assert words in describe_refusal(status, body)
