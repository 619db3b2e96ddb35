"""Sink users for tests of the secured Elasticsearch node, made the way its administrator makes
them: a role limited to one pipeline's indices and a user holding only that role (the node's
file realm, `metricpipe_devstack.secure_search.FileRealm`). Requests are checked by the server
itself; this module only waits until it has loaded what was written."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import requests

from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.secure_search import FileRealm

# The role docs/sink-security.md documents for a pipeline's sink user, on its index and its
# -state index: create them, look them up, write and read documents, refresh.
PIPELINE_SINK_PRIVILEGES = ["create_index", "view_index_metadata", "write", "read", "maintenance"]


@dataclass(frozen=True)
class SinkUser:
    name: str
    password: str
    indices: tuple[str, ...]


def super_auth(stack: StackEnv) -> tuple[str, str]:
    return stack.elasticsearch_secure_user, stack.elasticsearch_secure_password_file.read_text()


def secure_request(
    stack: StackEnv, method: str, path: str, auth: tuple[str, str], **kwargs: Any
) -> requests.Response:
    """One plain HTTPS request to the secured node, verified against the stack's CA (passed
    per request: a session's `verify` loses to REQUESTS_CA_BUNDLE)."""
    return requests.request(method, f"{stack.elasticsearch_secure_url}{path}", auth=auth,
                            verify=str(stack.ca_file), timeout=30, **kwargs)  # fmt: skip


def grant_sink_role(
    stack: StackEnv, user: SinkUser, indices: list[str], privileges: list[str] | None = None
) -> None:
    """(Re)define the user's role: `privileges` (default: the pipeline role) on `indices`,
    waiting until the server enforces it."""
    wanted = PIPELINE_SINK_PRIVILEGES if privileges is None else privileges
    FileRealm(stack.elasticsearch_secure_config_dir).put_role(
        user.name, {"indices": [{"names": indices, "privileges": wanted}]}
    )
    _wait_for_role(stack, user, indices, wanted)


def create_sink_user(
    stack: StackEnv, name: str, indices: list[str], privileges: list[str] | None = None
) -> SinkUser:
    """A user whose only role grants `privileges` (default: the pipeline role) on `indices`."""
    user = SinkUser(name, secrets.token_urlsafe(16), tuple(indices))
    realm = FileRealm(stack.elasticsearch_secure_config_dir)
    realm.put_role(name, {"indices": []})
    realm.put_user(name, user.password, [name])
    deadline = time.monotonic() + 30
    auth = (name, user.password)
    while secure_request(stack, "GET", "/_security/_authenticate", auth).status_code != 200:
        assert time.monotonic() < deadline, f"the secured node never loaded user {name}"
        time.sleep(0.2)
    grant_sink_role(stack, user, indices, privileges)
    return user


def _wait_for_role(
    stack: StackEnv, user: SinkUser, indices: list[str], privileges: list[str]
) -> None:
    """Until the server tells the user (users may ask only about themselves) that it holds
    exactly these of the pipeline role's privileges on these indices."""
    body = {"index": [{"names": indices, "privileges": PIPELINE_SINK_PRIVILEGES}]}
    expected = set(privileges) & set(PIPELINE_SINK_PRIVILEGES)
    deadline = time.monotonic() + 30
    while True:
        answer = secure_request(stack, "GET", "/_security/user/_has_privileges",
                                (user.name, user.password), json=body)  # fmt: skip
        if answer.status_code == 200:
            held = [
                {privilege for privilege, granted in by_privilege.items() if granted}
                for by_privilege in answer.json()["index"].values()
            ]
            if all(h == expected for h in held):
                return
        assert time.monotonic() < deadline, f"role of {user.name}: {answer.text[:500]}"
        time.sleep(0.2)
