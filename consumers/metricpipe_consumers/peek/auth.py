"""Who is asking and may they read this archive: the caller's Kubernetes bearer token checked
with a TokenReview, access with a SubjectAccessReview for `get` on `logarchives/logs`
(group metricpipe.io) in the archive's namespace, so ordinary RBAC Roles grant it.

Answers are cached for `cache_seconds`, keyed by a SHA-256 of the token (the token itself is
never kept in the cache nor logged); a denial is cached as long, so a new RoleBinding takes
effect within that time.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes import client

from .errors import PeekError

GROUP, RESOURCE, SUBRESOURCE, VERB = "metricpipe.io", "logarchives", "logs", "get"
CACHE_ENTRIES = 10_000


@dataclass(frozen=True)
class Identity:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())


class Reviews(Protocol):
    """The two reviews, as the API server answers them (raw `status` objects)."""

    def token_review(self, body: dict[str, Any]) -> dict[str, Any]: ...

    def access_review(self, body: dict[str, Any]) -> dict[str, Any]: ...


def parse_bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def permission(namespace: str) -> str:
    return f"{VERB} {RESOURCE}/{SUBRESOURCE} in namespace {namespace}"


def build_token_review(token: str, audiences: tuple[str, ...]) -> dict[str, Any]:
    spec: dict[str, Any] = {"token": token}
    if audiences:
        spec["audiences"] = list(audiences)
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}


def decide_identity(status: dict[str, Any]) -> Identity | None:
    """The authenticated user of a TokenReview's status, or None."""
    if not status.get("authenticated"):
        return None
    user = status.get("user") or {}
    extra = tuple(sorted((k, tuple(v)) for k, v in (user.get("extra") or {}).items()))
    return Identity(str(user.get("username", "")), str(user.get("uid") or ""),
                    tuple(user.get("groups") or ()), extra)  # fmt: skip


def build_access_review(identity: Identity, namespace: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "user": identity.username,
        "groups": list(identity.groups),
        "resourceAttributes": {"group": GROUP, "resource": RESOURCE, "subresource": SUBRESOURCE,
                               "verb": VERB, "namespace": namespace, "name": name},
    }  # fmt: skip
    if identity.uid:
        spec["uid"] = identity.uid
    if identity.extra:
        spec["extra"] = {key: list(values) for key, values in identity.extra}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


class Gate:
    """authorize(token, namespace, name): the caller's identity, or a 401/403 PeekError."""

    def __init__(
        self, reviews: Reviews, *, cache_seconds: float, audiences: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:  # fmt: skip
        self._reviews, self._ttl, self._audiences, self._clock = (
            reviews, cache_seconds, audiences, clock,
        )  # fmt: skip
        self._cache: dict[tuple[str, ...], tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _cached(self, key: tuple[str, ...], fetch: Callable[[], Any]) -> Any:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        value = fetch()
        with self._lock:
            if len(self._cache) >= CACHE_ENTRIES:
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                if len(self._cache) >= CACHE_ENTRIES:
                    self._cache.clear()
            self._cache[key] = (now + self._ttl, value)
        return value

    def authorize(self, token: str | None, namespace: str, name: str) -> Identity:
        if token is None:
            raise PeekError(401, "no bearer token: send 'Authorization: Bearer <token>' with "
                            "your Kubernetes token (kubectl metricpipe peek does)")  # fmt: skip
        digest = token_key(token)
        identity: Identity | None = self._cached(
            ("token", digest),
            lambda: decide_identity(
                self._reviews.token_review(build_token_review(token, self._audiences))
            ),
        )
        if identity is None:
            raise PeekError(401, "the bearer token is not valid (the Kubernetes API server's "
                            "TokenReview did not authenticate it): get a fresh one")  # fmt: skip
        status: dict[str, Any] = self._cached(
            ("access", digest, namespace, name),
            lambda: self._reviews.access_review(build_access_review(identity, namespace, name)),
        )
        if not status.get("allowed") or status.get("denied"):
            needed = permission(namespace)
            raise PeekError(
                403, f"{identity.username} may not {needed} (archive {name}): a Role in "
                f"{namespace} granting '{VERB}' on '{RESOURCE}/{SUBRESOURCE}' (apiGroup "
                f"{GROUP}) bound to you gives access", permission=needed,
            )  # fmt: skip
        return identity


class KubeReviews:
    """The reviews on the API server, as the peek service's own ServiceAccount (which needs
    `create` on tokenreviews and subjectaccessreviews, nothing else)."""

    def __init__(self, api: Any) -> None:
        self._authn = client.AuthenticationV1Api(api)
        self._authz = client.AuthorizationV1Api(api)
        self._api = api

    def _status(self, answer: Any) -> dict[str, Any]:
        status: Any = self._api.sanitize_for_serialization(answer).get("status") or {}
        return dict(status)

    def _call(self, what: str, create: Callable[[Any], Any], body: dict[str, Any]) -> Any:
        try:
            return self._status(create(body))
        except Exception as error:  # ApiException, urllib3's errors: the API server's answer
            reason = getattr(error, "reason", None) or type(error).__name__
            raise PeekError(503, f"the Kubernetes API server did not answer the {what}: "
                            f"{reason}; try again") from error  # fmt: skip

    def token_review(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("TokenReview", self._authn.create_token_review, body))

    def access_review(self, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self._call("SubjectAccessReview", self._authz.create_subject_access_review,
                               body))  # fmt: skip
