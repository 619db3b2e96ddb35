"""Before Spark starts: can this process reach its topic and group with its credentials?

A consumer whose Kafka credentials, CA or ACLs are wrong would otherwise start Spark (tens of
seconds) and then poll nothing for ever, retrying in the background. Instead it asks Kafka
once (`fetch_kafka_errors`: metadata of its topic, its group's committed offsets), classifies
what Kafka answered (`decide_kafka_failure`, pure) and, on a failure that only a change of
settings can fix, stops with a termination message `<Reason>: <what to change>`. The kubelet
restarts it with its growing back-off (10 s, 20 s, ... 5 min), and each restart reads the
mounted Secret again, so a fixed Secret ends the failure by itself. The operator turns the
message into ConsumerReady=False with that reason (reconcile/health.py). A Kafka that is
merely unreachable is no such failure: the consumer starts and waits for it as before.

While it runs, the same refusals stop it the same way (`is_refusal`, `KafkaRefusedError`): an
ACL taken away (its fetches or commits refused), credentials or a certificate no longer
accepted when it reconnects. The stream loop raises, and the process classifies the answers
with `decide_kafka_failure` and leaves the same last words.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from metricpipe_contract.kafka import (
    KAFKA_AUTH_FAILED,
    KAFKA_FORBIDDEN,
    TLS_VERIFICATION_FAILED,
)

SERVER_CERTIFICATE_PROBLEMS = ("certificate verify failed", "certificate has expired",
                               "self-signed certificate", "unable to get local issuer")  # fmt: skip

KafkaAnswer = tuple[int, str]  # (KafkaError code, its text)
STEP_SECONDS = 1.0
# errors no retry cures: the credentials, the certificates
SETTINGS_ERRORS = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED,
                             KafkaError._SSL})  # fmt: skip


def is_settings_error(code: int, text: str) -> bool:
    """An error no retry cures: the credentials or the certificates, including the brokers
    refusing our certificate in the handshake (a receive failure carrying an SSL alert)."""
    return code in SETTINGS_ERRORS or (code == KafkaError._TRANSPORT and "ssl/tls alert" in text)


CREDENTIAL_ERRORS = frozenset({KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED})
# refusals of a running consumer's fetches and commits: an ACL taken away
AUTHORIZATION_ERRORS = frozenset({KafkaError.TOPIC_AUTHORIZATION_FAILED,
                                  KafkaError.GROUP_AUTHORIZATION_FAILED})  # fmt: skip


def is_refusal(code: int, text: str) -> bool:
    """An error that stops a running consumer: an ACL it lost, credentials refused, a
    certificate refused on either side. Narrower than at start-up: a TLS error without a
    certificate problem named (a broker restarting mid-handshake) is retried as before."""
    if code in AUTHORIZATION_ERRORS or code in CREDENTIAL_ERRORS:
        return True
    lowered = text.lower()
    named = "alert" in lowered or any(p in lowered for p in SERVER_CERTIFICATE_PROBLEMS)
    return code in (KafkaError._SSL, KafkaError._TRANSPORT) and named


class KafkaRefusedError(Exception):
    """Kafka refused a running consumer; `answers` as fetch_kafka_answers gives them."""

    def __init__(self, answers: Sequence[KafkaAnswer]) -> None:
        super().__init__("; ".join(text for _, text in answers))
        self.answers = list(answers)


def answers_of(error: KafkaException) -> list[KafkaAnswer]:
    """A client exception as answers: its KafkaError's code and text."""
    first = error.args[0] if error.args else None
    if isinstance(first, KafkaError):
        return [(first.code(), first.str())]
    return [(KafkaError._FAIL, str(error))]


@dataclass(frozen=True)
class KafkaFailure:
    reason: str  # one of metricpipe_contract.kafka.KAFKA_REASONS
    message: str  # what happened and what to change

    def last_words(self) -> str:
        """The container's termination message: the reason first, as health.py reads it."""
        return f"{self.reason}: {self.message}"


@dataclass(frozen=True)
class KafkaAccessFacts:
    """What a message needs to say what to change."""

    described: str  # KafkaConnection.describe(): bootstrap, protocol, mechanism, user
    topic: str
    group: str
    secret: str | None  # the credentials Secret's name, when the operator mounted one


def decide_kafka_failure(
    answers: Sequence[KafkaAnswer], facts: KafkaAccessFacts
) -> KafkaFailure | None:
    """The failure a change of settings must fix, from Kafka's answers; None when there is
    none (all well, or Kafka merely unreachable). Authentication and TLS come first: while
    they fail, authorization errors cannot be known."""
    where = f"the Secret {facts.secret!r}" if facts.secret else "the Kafka credentials Secret"
    for code, text in answers:
        lowered = text.lower()
        if code in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED) and (
            "ssl" not in lowered or "sasl" in lowered
        ):
            return KafkaFailure(KAFKA_AUTH_FAILED, (
                f"Kafka refused the credentials. Check the user and password in {where} and "
                f"that the user exists on the cluster ({facts.described}). Kafka said: "
                f"{_short(text)}"
            ))  # fmt: skip
        if code in (KafkaError._SSL, KafkaError._AUTHENTICATION) and any(
            problem in lowered for problem in SERVER_CERTIFICATE_PROBLEMS
        ):
            return KafkaFailure(TLS_VERIFICATION_FAILED, (
                f"the brokers' certificate could not be verified. Put the CA that signed the "
                f"brokers' certificates into {where} (key ca.crt), or renew an expired broker "
                f"certificate ({facts.described}). Kafka said: {_short(text)}"
            ))  # fmt: skip
        # the broker refused our side of the handshake (our certificate: expired, unknown CA);
        # librdkafka reports it as an SSL error or, once the connection is up, a receive failure
        if (code == KafkaError._SSL and "alert" in lowered) or (
            code == KafkaError._TRANSPORT and "ssl/tls alert" in lowered
        ):
            return KafkaFailure(KAFKA_AUTH_FAILED, (
                f"Kafka refused the TLS handshake. A listener that requires client "
                f"certificates needs tls.crt and tls.key in {where}, signed by a CA the brokers "
                f"trust and not expired ({facts.described}). Kafka said: {_short(text)}"
            ))  # fmt: skip
    for code, _ in answers:
        if code == KafkaError.TOPIC_AUTHORIZATION_FAILED:
            return KafkaFailure(KAFKA_FORBIDDEN, (
                f"the Kafka user may not read topic {facts.topic!r}: grant it Read and "
                "Describe on the topic (docs/kafka-security.md lists every ACL a pipeline's "
                f"user needs) ({facts.described})"
            ))  # fmt: skip
        if code == KafkaError.GROUP_AUTHORIZATION_FAILED:
            return KafkaFailure(KAFKA_FORBIDDEN, (
                f"the Kafka user may not use consumer group {facts.group!r}: grant it Read on "
                f"the group (docs/kafka-security.md) ({facts.described})"
            ))  # fmt: skip
    return None


def _short(text: str, limit: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def fetch_kafka_answers(
    settings: Mapping[str, str], topic: str, group: str | None, timeout: float = 15.0
) -> list[KafkaAnswer]:
    """Ask Kafka for the topic's metadata and (group given: stream mode; batch runs use no
    group) the group's committed offsets with the process's own settings; every error Kafka
    or the client reported on the way. Authentication and TLS errors arrive through the
    error callback while the metadata request waits: the request is retried in short steps
    and given up at the first of them, so a refused consumer knows in about a second."""
    answers: list[KafkaAnswer] = []

    def record(error: KafkaError) -> None:
        answers.append((error.code(), error.str()))

    admin = AdminClient({**settings, "error_cb": record})  # type: ignore[dict-item]
    deadline = time.monotonic() + timeout
    metadata = None
    while metadata is None and time.monotonic() < deadline:
        try:
            metadata = admin.list_topics(topic, timeout=STEP_SECONDS)
        except KafkaException as error:  # a timeout while the connection fails or waits
            admin.poll(0)  # serves the error callbacks
            if any(is_settings_error(code, text) for code, text in answers):
                return answers
            if time.monotonic() >= deadline:
                record(error.args[0])
    if metadata is None:
        return answers
    found = metadata.topics.get(topic)
    try:
        if found is not None and found.error is not None:
            record(found.error)
        elif found is not None and group is not None:
            request = [ConsumerGroupTopicPartitions(group)]
            for future in admin.list_consumer_group_offsets(
                request, request_timeout=timeout
            ).values():
                future.result(timeout=timeout)
    except KafkaException as error:
        record(error.args[0])
    admin.poll(0)
    return answers
