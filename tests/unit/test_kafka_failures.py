"""Kafka refusing a consumer's settings: which of Kafka's answers is which failure (tables of
the codes and texts librdkafka gives), what the message tells the user to change, and how the
operator turns the consumer's last words into ConsumerReady's reason."""

from __future__ import annotations

from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from metricpipe_consumers.kafka_check import (
    KafkaAccessFacts,
    KafkaRefusedError,
    answers_of,
    decide_kafka_failure,
    is_refusal,
    is_settings_error,
)
from metricpipe_operator.reconcile.health import (
    build_pods_view,
    classify_kafka_error,
    decide_consumer_ready,
)

FACTS = KafkaAccessFacts("k:9094 SASL_SSL SCRAM-SHA-512 user team-a", "logs.web",
                         "metricpipe.team-a.web", "team-a-kafka")  # fmt: skip
SASL_FAILED = (KafkaError._AUTHENTICATION, "sasl_ssl://k:9094/bootstrap: SASL authentication "
               "error: Authentication failed during authentication due to invalid credentials "
               "with SASL mechanism SCRAM-SHA-512")  # fmt: skip
UNKNOWN_CA = (KafkaError._SSL, "ssl://k:9095/bootstrap: SSL handshake failed: error:0A000086:"
              "SSL routines::certificate verify failed: broker certificate could not be "
              "verified, verify that ssl.ca.location is correctly configured")  # fmt: skip
EXPIRED = (KafkaError._SSL, "SSL handshake failed: certificate verify failed: certificate has "
           "expired")  # fmt: skip
NO_CLIENT_CERT = (KafkaError._SSL, "ssl://k:9095/bootstrap: SSL handshake failed: "
                  "error:0A00045C:SSL routines::tlsv13 alert certificate required")  # fmt: skip
# the broker refusing our certificate once the connection is up (as librdkafka 2.x reports it)
CLIENT_CERT_EXPIRED = (KafkaError._TRANSPORT, "ssl://k:9095/bootstrap: Receive failed: "
                       "error:0A000416:SSL routines::ssl/tls alert certificate unknown: SSL "
                       "alert number 46 (after 0ms in state APIVERSION_QUERY)")  # fmt: skip
CLIENT_CERT_FOREIGN = (KafkaError._TRANSPORT, "ssl://k:9095/bootstrap: Receive failed: "
                       "error:0A000412:SSL routines::ssl/tls alert bad certificate: SSL alert "
                       "number 42")  # fmt: skip
DOWN = (KafkaError._TRANSPORT, "k:9094/bootstrap: Connect to ipv4#10.0.0.1:9094 failed: "
        "Connection refused")  # fmt: skip
ALL_DOWN = (KafkaError._ALL_BROKERS_DOWN, "1/1 brokers are down")
TOPIC_DENIED = (KafkaError.TOPIC_AUTHORIZATION_FAILED, "Broker: Topic authorization failed")
GROUP_DENIED = (KafkaError.GROUP_AUTHORIZATION_FAILED, "Broker: Group authorization failed")


@pytest.mark.parametrize(
    ("answers", "reason", "says"),
    [
        ([], None, None),
        ([DOWN, ALL_DOWN], None, None),  # unreachable: start and wait, as without security
        (
            [SASL_FAILED],
            "KafkaAuthFailed",
            "Check the user and password in the Secret 'team-a-kafka'",
        ),
        ([DOWN, SASL_FAILED], "KafkaAuthFailed", "Kafka said: sasl_ssl://k:9094/bootstrap"),
        ([UNKNOWN_CA], "TLSVerificationFailed", "the Secret 'team-a-kafka' (key ca.crt)"),
        ([EXPIRED], "TLSVerificationFailed", "renew an expired broker certificate"),
        ([NO_CLIENT_CERT], "KafkaAuthFailed", "needs tls.crt and tls.key"),
        ([CLIENT_CERT_EXPIRED], "KafkaAuthFailed", "trust and not expired"),
        ([DOWN, CLIENT_CERT_FOREIGN], "KafkaAuthFailed", "signed by a CA the brokers trust"),
        ([TOPIC_DENIED], "KafkaForbidden", "may not read topic 'logs.web'"),
        ([GROUP_DENIED], "KafkaForbidden", "consumer group 'metricpipe.team-a.web'"),
        ([TOPIC_DENIED, SASL_FAILED], "KafkaAuthFailed", "Kafka refused the credentials"),
    ],
)
def test_kafkas_answers_classified(
    answers: list[tuple[int, str]], reason: str | None, says: str | None
) -> None:
    failure = decide_kafka_failure(answers, FACTS)
    if reason is None:
        assert failure is None
        return
    assert failure is not None
    assert failure.reason == reason
    assert says is not None
    assert says in failure.message
    assert failure.last_words().startswith(f"{reason}: ")


def test_without_a_named_secret_the_message_still_says_where() -> None:
    facts = KafkaAccessFacts("k:9094 SASL_SSL", "t", "g", None)
    failure = decide_kafka_failure([SASL_FAILED], facts)
    assert failure is not None
    assert "the Kafka credentials Secret" in failure.message


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("KafkaAuthFailed: Kafka (k) refused the credentials", "KafkaAuthFailed"),
        ("TLSVerificationFailed: the broker's certificate ...", "TLSVerificationFailed"),
        ("KafkaForbidden: the Kafka user ...", "KafkaForbidden"),
        ("KafkaSettingsInvalid: the Kafka credentials Secret has no key", "KafkaSettingsInvalid"),
        ("sink request failed: HTTP 403", None),
        ("Traceback (most recent call last):\n  KafkaAuthFailed", None),
        ("", None),
    ],
)
def test_last_words_to_a_reason(message: str, reason: str | None) -> None:
    assert classify_kafka_error(message) == reason


def crashed(message: str) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-1", "namespace": "team-a"},
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [{
                "name": "consumer", "ready": False, "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
                "lastState": {"terminated": {"exitCode": 4, "reason": "Error",
                                             "message": message}},
            }],
        },
    }  # fmt: skip


def test_consumer_ready_names_the_kafka_reason_and_quotes_what_to_change() -> None:
    words = "KafkaAuthFailed: Kafka (k) refused the credentials: check the user and password"
    view = build_pods_view([crashed(words)])
    condition = decide_consumer_ready(1, view.ready, view)
    assert (condition.status, condition.reason) == (False, "KafkaAuthFailed")
    assert "check the user and password" in condition.message
    assert "last exit code 4" in condition.message
    other = build_pods_view([crashed("something else broke")])
    assert decide_consumer_ready(1, other.ready, other).reason == "CrashLoopBackOff"


def test_the_instruction_survives_the_operators_300_character_quote() -> None:
    """health.py quotes the first 300 characters of a consumer's last words: what to change
    comes before Kafka's own (long) text."""
    for answers in ([SASL_FAILED], [UNKNOWN_CA], [NO_CLIENT_CERT], [TOPIC_DENIED]):
        failure = decide_kafka_failure(answers, FACTS)
        assert failure is not None
        quoted = failure.last_words()[:300]
        assert "team-a-kafka" in quoted or "docs/kafka-security.md" in quoted, quoted


def test_a_container_that_just_ended_is_quoted_once() -> None:
    words = "KafkaForbidden: the Kafka user may not read topic 'logs.web': grant it Read"
    ended = crashed(words)
    status = ended["status"]["containerStatuses"][0]
    status["state"] = {"terminated": {"exitCode": 4, "reason": "Error", "message": words}}
    view = build_pods_view([ended])
    condition = decide_consumer_ready(1, view.ready, view)
    assert condition.reason == "KafkaForbidden"
    assert condition.message.count("grant it Read") == 1, condition.message


@pytest.mark.parametrize(
    ("answer", "final"),
    [(SASL_FAILED, True), (UNKNOWN_CA, True), (CLIENT_CERT_EXPIRED, True),
     (CLIENT_CERT_FOREIGN, True), (DOWN, False), (ALL_DOWN, False)],
)  # fmt: skip
def test_which_answers_end_the_start_up_check_at_once(answer: tuple[int, str], final: bool) -> None:
    """Settings errors stop the wait for Kafka's metadata; an unreachable Kafka is waited for."""
    assert is_settings_error(*answer) is final


# a broker restarting while the client's TLS handshake runs: no certificate problem named
HANDSHAKE_CUT = (KafkaError._SSL, "ssl://k:9095/1: SSL handshake failed: Disconnected: connection "
                 "reset by peer (after 3ms in state SSL_HANDSHAKE)")  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "stops"),
    [(TOPIC_DENIED, True), (GROUP_DENIED, True), (SASL_FAILED, True), (UNKNOWN_CA, True),
     (EXPIRED, True), (NO_CLIENT_CERT, True), (CLIENT_CERT_EXPIRED, True),
     (CLIENT_CERT_FOREIGN, True),
     (HANDSHAKE_CUT, False), (DOWN, False), (ALL_DOWN, False),
     ((KafkaError._PARTITION_EOF, "Fetch from broker 1 reached end of partition"), False)],
)  # fmt: skip
def test_which_errors_stop_a_running_consumer(answer: tuple[int, str], stops: bool) -> None:
    """A running consumer stops on a refusal only; whatever a reconnect can cure is retried."""
    assert is_refusal(*answer) is stops


@pytest.mark.parametrize(
    ("answer", "reason"),
    [(TOPIC_DENIED, "KafkaForbidden"), (GROUP_DENIED, "KafkaForbidden"),
     (SASL_FAILED, "KafkaAuthFailed"), (CLIENT_CERT_EXPIRED, "KafkaAuthFailed")],
)  # fmt: skip
def test_a_running_consumer_s_refusal_gets_the_start_up_check_s_reason(
    answer: tuple[int, str], reason: str
) -> None:
    """What the loop raises is classified as the start-up check's answers are: the same
    condition reason and message, from the same pure function."""
    raised = KafkaRefusedError([answer])
    failure = decide_kafka_failure(raised.answers, FACTS)
    assert failure is not None
    assert failure.reason == reason
    assert answer[1] in str(raised)


def test_a_client_exception_becomes_an_answer() -> None:
    error = KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED, "Broker: Group authorization failed")
    assert answers_of(KafkaException(error)) == [(error.code(), error.str())]
    assert answers_of(KafkaException("no KafkaError")) == [(KafkaError._FAIL, "no KafkaError")]
