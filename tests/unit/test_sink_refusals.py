"""The sink's decisions about refusals and REST API versions, on hand-made answers (the real
servers' answers are tests/integration/test_sink_security.py's subject)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import elastic_transport
import pytest

from metricpipe_consumers.sink import (
    SearchSink,
    SinkError,
    build_elasticsearch_client,
    build_sink,
    decide_api_version,
    decide_status_reason,
    is_tls_verification_error,
)
from metricpipe_operator.reconcile.health import classify_kafka_error, classify_sink_error

REFUSED_9 = ("BadRequestError(400, 'media_type_header_exception', 'Invalid media-type value on "
             "headers [Accept, Content-Type]', Accept version must be either version 8 or 7, but "
             "found 9. Accept=application/vnd.elasticsearch+json; compatible-with=9)")  # fmt: skip


@pytest.mark.parametrize(
    ("status", "text", "version"),
    [
        (400, REFUSED_9, 8),
        (400, REFUSED_9.replace("version 8 or 7", "version 9 or 8").replace("found 9", "found 10"),
         9),
        (400, "media_type_header_exception: no version named", None),
        (400, "mapper_parsing_exception: failed to parse", None),  # another 400
        (401, REFUSED_9, None),  # only a 400 says which version
        (None, "ConnectionError(connection refused)", None),
        (405, "Incorrect HTTP method for uri [/]", None),  # speaks our version, no GET /
    ],
)  # fmt: skip
def test_the_version_a_server_refused_ours_for(
    status: int | None, text: str, version: int | None
) -> None:
    assert decide_api_version(status, text) == version


@pytest.mark.parametrize(
    ("status", "reason"),
    [(401, "SinkAuthFailed"), (403, "SinkForbidden"), (400, "SinkRefused"), (404, "SinkRefused"),
     (None, "SinkRefused")],
)  # fmt: skip
def test_http_refusals_and_their_reasons(status: int | None, reason: str) -> None:
    assert decide_status_reason(status) == reason


@pytest.mark.parametrize(
    ("text", "tls"),
    [
        ("SSLError([SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get "
         "local issuer certificate (_ssl.c:1006))", True),
        ("certificate verify failed: Hostname mismatch, certificate is not valid for 'x'", True),
        ("certificate verify failed: certificate has expired", True),
        ("ConnectionError(Connection refused)", False),
        ("ConnectionTimeout(timed out)", False),
    ],
)  # fmt: skip
def test_tls_verification_failures_are_told_apart(text: str, tls: bool) -> None:
    assert is_tls_verification_error(RuntimeError(text)) is tls


class FakeError(Exception):
    def __init__(self, text: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(text)
        self.status_code = status
        self.body = body


class FakeIndices:
    def __init__(self, answers: list[Any]) -> None:
        self.answers = answers
        self.calls = 0

    def exists(self, index: str) -> bool:
        self.calls += 1
        answer = self.answers.pop(0) if self.answers else True
        if isinstance(answer, BaseException):
            raise answer
        return answer


class FakeClient:
    def __init__(self, answers: list[Any], first: BaseException | None = None) -> None:
        self.indices = FakeIndices(answers)
        self.first = first  # what the version question is answered with

    def perform_request(self, method: str, path: str, **_: Any) -> None:
        if self.first is not None:
            raise self.first


def fake_sink(client: FakeClient, *, speak_version: Any = None) -> tuple[SearchSink, list[float]]:
    slept: list[float] = []
    sink = SearchSink(client, "m", keyword_bodies=True, transport_errors=(FakeError,),
                      max_attempts=3, sleep=slept.append, speak_version=speak_version)  # fmt: skip
    return sink, slept


@pytest.mark.parametrize(
    ("error", "reason", "says"),
    [
        (FakeError("AuthenticationException(401)", 401), "SinkAuthFailed",
         "spec.sink.credentialsSecretRef"),
        (FakeError("AuthorizationException(403)", 403, {"error": {
            "reason": "action [indices:admin/get] is unauthorized for user [u]"}}),
         "SinkForbidden", "action [indices:admin/get] is unauthorized for user [u]"),
        (FakeError("SSLError(certificate verify failed: unable to get local issuer "
                   "certificate (_ssl.c:1006))"), "TLSVerificationFailed", "spec.sink.caSecretRef"),
    ],
)  # fmt: skip
def test_a_refusal_stops_at_once_with_its_reason(error: FakeError, reason: str, says: str) -> None:
    sink, slept = fake_sink(FakeClient([error]))
    with pytest.raises(SinkError) as refused:
        sink.ensure_indices()
    assert (refused.value.reason, slept) == (reason, [])  # no retry: only a change fixes it
    assert str(refused.value).startswith(f"{reason}: ")
    assert says in str(refused.value)


def test_an_unavailable_sink_is_retried_then_unreachable() -> None:
    busy = [FakeError("ConnectionError(refused)"), FakeError("TransportError(503)", 503)] * 2
    sink, slept = fake_sink(FakeClient(busy))
    with pytest.raises(SinkError) as refused:
        sink.ensure_indices()
    assert refused.value.reason == "SinkUnreachable"
    assert len(slept) == 3


def test_an_older_server_switches_the_sink_to_its_version_once() -> None:
    older = FakeClient([], first=FakeError(REFUSED_9, 400))
    newer_client = FakeClient([True, True])
    asked: list[int] = []

    def speak(version: int) -> FakeClient:
        asked.append(version)
        return newer_client

    sink, _ = fake_sink(older, speak_version=speak)
    sink.ensure_indices()
    sink.ensure_indices()
    assert asked == [8]
    assert (older.indices.calls, newer_client.indices.calls) == (0, 4)  # index and state


def test_a_server_that_speaks_our_version_keeps_the_client() -> None:
    same = FakeClient([True, True], first=FakeError("Incorrect HTTP method for uri [/]", 405))
    sink, _ = fake_sink(same, speak_version=lambda version: pytest.fail("no switch expected"))
    sink.ensure_indices()
    assert sink.client is same


@pytest.mark.parametrize(("api_version", "header"), [(None, "compatible-with=9"),
                                                      (8, "compatible-with=8")])  # fmt: skip
def test_the_client_asks_for_its_api_version_in_both_headers(
    monkeypatch: pytest.MonkeyPatch, api_version: int | None, header: str
) -> None:
    sent: dict[str, str] = {}

    def capture(self: Any, method: str, target: str, **kwargs: Any) -> Any:
        sent.update({k.lower(): v for k, v in kwargs["headers"].items()})
        raise RuntimeError("not sent")

    monkeypatch.setattr(elastic_transport.Transport, "perform_request", capture)
    client = build_elasticsearch_client("http://127.0.0.1:9", api_version=api_version)
    with pytest.raises(RuntimeError, match="not sent"):
        client.search(index="m", query={"match_all": {}})
    assert header in sent["accept"]
    assert header in sent["content-type"]


@pytest.mark.parametrize("backend", ["elasticsearch", "opensearch"])
def test_a_missing_sink_ca_is_a_tls_reason_naming_its_field(tmp_path: Path, backend: str) -> None:
    """Pods mount the CA Secret as optional: when it does not exist there is no ca.crt, and
    the consumer's last words name the field; the operator reads SinkReady's reason from them."""
    missing = tmp_path / "sink-ca" / "ca.crt"
    with pytest.raises(SinkError) as raised:
        build_sink(backend, "https://es:9200", "i", "u", "p", ca_file=str(missing))
    assert raised.value.reason == "TLSVerificationFailed"
    said = str(raised.value)
    assert said.startswith("TLSVerificationFailed: no CA certificate at ")
    assert "spec.sink.caSecretRef" in said
    assert classify_sink_error(said) == "TLSVerificationFailed"
    assert classify_kafka_error(said) is None  # not Kafka's TLS failure
