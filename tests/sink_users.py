"""Sink users for tests of the secured search engines, made the way their administrators make
them: a role limited to one pipeline's indices and a user holding only that role. On the
secured Elasticsearch 8.x node they live in its file realm (`FileRealm`; its integ-test
distribution cannot hold the native realm's index); on the secured OpenSearch 2.x node they are
made through the security plugin's REST API as its admin. Requests are checked by the servers
themselves; this module only waits until a server enforces what was written."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import requests

from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.secure_search import FileRealm

# The roles docs/sink-security.md documents for a pipeline's sink user, on its index and its
# -state index: create them, look them up, write and read documents, refresh.
ELASTICSEARCH_PRIVILEGES = ["create_index", "view_index_metadata", "write", "read", "maintenance"]
ELASTICSEARCH_READ_ONLY = ["view_index_metadata", "read"]
OPENSEARCH_ACTIONS = ["create_index", "crud", "indices:admin/get", "indices:admin/refresh*"]
OPENSEARCH_CLUSTER_ACTIONS = ["indices:data/write/bulk"]  # checked again per index and item
OPENSEARCH_READ_ONLY = ["read", "indices:admin/get"]


@dataclass(frozen=True)
class SinkUser:
    backend: str
    name: str
    password: str
    indices: tuple[str, ...]

    @property
    def auth(self) -> tuple[str, str]:
        return self.name, self.password


def secured_url(stack: StackEnv, backend: str) -> str:
    return stack.elasticsearch_secure_url if backend == "elasticsearch" else (
        stack.opensearch_secure_url
    )  # fmt: skip


def super_auth(stack: StackEnv, backend: str = "elasticsearch") -> tuple[str, str]:
    if backend == "elasticsearch":
        return stack.elasticsearch_secure_user, stack.elasticsearch_secure_password_file.read_text()
    return stack.opensearch_secure_user, stack.opensearch_secure_password_file.read_text()


def secure_request(
    stack: StackEnv, method: str, path: str, auth: tuple[str, str], *,
    backend: str = "elasticsearch", **kwargs: Any,
) -> requests.Response:  # fmt: skip
    """One plain HTTPS request to a secured node, verified against the stack's CA (passed per
    request: a session's `verify` loses to REQUESTS_CA_BUNDLE)."""
    return requests.request(method, f"{secured_url(stack, backend)}{path}", auth=auth,
                            verify=str(stack.ca_file), timeout=30, **kwargs)  # fmt: skip


def create_sink_user(
    stack: StackEnv, name: str, indices: list[str], *, backend: str = "elasticsearch",
    read_only: bool = False,
) -> SinkUser:  # fmt: skip
    """A user whose only role is the pipeline role on `indices` (read_only: only reading)."""
    # OpenSearch's default password rules want length and several character classes
    user = SinkUser(backend, name, f"Mp-{secrets.token_urlsafe(16)}-9", tuple(indices))
    if backend == "elasticsearch":
        realm = FileRealm(stack.elasticsearch_secure_config_dir)
        realm.put_role(name, {"indices": []})
        realm.put_user(name, user.password, [name])
    else:  # a mapping needs its role first
        grant_sink_role(stack, user, indices, read_only=read_only)
        admin = super_auth(stack, backend)
        _checked(
            secure_request(
                stack,
                "PUT",
                f"/_plugins/_security/api/internalusers/{name}",
                admin,
                backend=backend,
                json={"password": user.password, "backend_roles": []},
            )
        )
        _checked(secure_request(stack, "PUT", f"/_plugins/_security/api/rolesmapping/{name}",
                                admin, backend=backend, json={"users": [name]}))  # fmt: skip
    path = "/_security/_authenticate" if backend == "elasticsearch" else (
        "/_plugins/_security/authinfo"
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while secure_request(stack, "GET", path, user.auth, backend=backend).status_code != 200:
        assert time.monotonic() < deadline, f"the secured {backend} never loaded user {name}"
        time.sleep(0.2)
    grant_sink_role(stack, user, indices, read_only=read_only)
    return user


def grant_sink_role(
    stack: StackEnv, user: SinkUser, indices: list[str], *, read_only: bool = False
) -> None:
    """(Re)define the user's role: the pipeline role (or only reading) on `indices`, waiting
    until the server enforces it."""
    if user.backend == "opensearch":
        actions = OPENSEARCH_READ_ONLY if read_only else OPENSEARCH_ACTIONS
        body = {
            "cluster_permissions": [] if read_only else OPENSEARCH_CLUSTER_ACTIONS,
            "index_permissions": [{"index_patterns": indices, "allowed_actions": actions}],
        }
        # the plugin applies a changed role before it answers
        _checked(secure_request(stack, "PUT", f"/_plugins/_security/api/roles/{user.name}",
                                super_auth(stack, "opensearch"), backend="opensearch",
                                json=body))  # fmt: skip
        return
    wanted = ELASTICSEARCH_READ_ONLY if read_only else ELASTICSEARCH_PRIVILEGES
    FileRealm(stack.elasticsearch_secure_config_dir).put_role(
        user.name, {"indices": [{"names": indices, "privileges": wanted}]}
    )
    _wait_for_role(stack, user, indices, wanted)


def _checked(response: requests.Response) -> None:
    assert response.status_code in (200, 201), response.text[:500]


def _wait_for_role(
    stack: StackEnv, user: SinkUser, indices: list[str], privileges: list[str]
) -> None:
    """Until Elasticsearch tells the user (users may ask only about themselves) that it holds
    exactly these of the pipeline role's privileges on these indices (the file realm's files
    are re-read within a second)."""
    body = {"index": [{"names": indices, "privileges": ELASTICSEARCH_PRIVILEGES}]}
    deadline = time.monotonic() + 30
    while True:
        answer = secure_request(stack, "GET", "/_security/user/_has_privileges", user.auth,
                                json=body)  # fmt: skip
        if answer.status_code == 200:
            held = [
                {privilege for privilege, granted in by_privilege.items() if granted}
                for by_privilege in answer.json()["index"].values()
            ]
            if all(h == set(privileges) for h in held):
                return
        assert time.monotonic() < deadline, f"role of {user.name}: {answer.text[:500]}"
        time.sleep(0.2)
