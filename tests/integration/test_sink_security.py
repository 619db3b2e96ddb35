"""The sink on the secured search engines (the stack's Elasticsearch 8.x node and OpenSearch
2.x node with its security plugin: HTTPS from the stack's CA, users and roles enforced by the
servers): a pipeline's user with the documented role writes and reads its own indices and
nothing else, each refusal is told by its SinkReady reason, and the client speaks the REST API
version of each Elasticsearch server."""

from __future__ import annotations

import elasticsearch
import pytest
import requests

from metricpipe_consumers.documents import SinkDoc
from metricpipe_consumers.sink import SearchSink, SinkError, build_sink
from metricpipe_devstack.env import StackEnv
from sink_users import create_sink_user, grant_sink_role, secure_request, secured_url, super_auth

BACKENDS = ["elasticsearch", "opensearch"]


def user_sink(
    stack: StackEnv, index: str, user: str, password: str, *, backend: str = "elasticsearch",
    trust_stack_ca: bool = True,
) -> SearchSink:  # fmt: skip
    return build_sink(backend, secured_url(stack, backend), index, user, password,
                      ca_file=str(stack.ca_file) if trust_stack_ca else None)  # fmt: skip


def docs_for(index: str, n: int) -> list[SinkDoc]:
    return [SinkDoc(index, f"d{i}", {"window_start": i, "count": i}) for i in range(n)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_pipeline_user_writes_and_reads_only_its_own_indices(
    stack: StackEnv, unique_name: str, backend: str
) -> None:
    own, other = f"{unique_name}-a", f"{unique_name}-b"
    user = create_sink_user(stack, f"{unique_name}-a", [own, f"{own}-state"], backend=backend)
    admin = super_auth(stack, backend)
    sink = user_sink(stack, own, user.name, user.password, backend=backend)
    sink.ensure_indices()
    assert sink.write(docs_for(own, 5)).written == 5
    sink.refresh()
    assert sorted(d["_id"] for d in sink.search(own, {"match_all": {}})) == [
        f"d{i}" for i in range(5)
    ]
    # What the server holds, read by the super user over plain HTTPS.
    counted = secure_request(stack, "GET", f"/{own}/_count", admin, backend=backend)
    assert counted.json()["count"] == 5
    # Another pipeline's index: the server refuses the user (403), as a sink and as a request.
    secure_request(stack, "PUT", f"/{other}", admin, backend=backend).raise_for_status()
    raw = secure_request(stack, "POST", f"/{other}/_doc", user.auth, backend=backend,
                         json={"x": 1})  # fmt: skip
    assert raw.status_code == 403, raw.text
    assert "security_exception" in raw.text
    with pytest.raises(SinkError) as refused:
        user_sink(stack, own, *user.auth, backend=backend).write(docs_for(other, 1))
    assert refused.value.reason == "SinkForbidden"
    assert other in str(refused.value)
    with pytest.raises(SinkError) as unseen:
        user_sink(stack, own, *user.auth, backend=backend).search(other, {"match_all": {}})
    assert unseen.value.reason == "SinkForbidden"
    secure_request(stack, "POST", f"/{other}/_refresh", admin, backend=backend)
    others = secure_request(stack, "GET", f"/{other}/_count", admin, backend=backend)
    assert others.json()["count"] == 0


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_refusal_is_told_by_its_reason(
    stack: StackEnv, unique_name: str, backend: str
) -> None:
    index = f"{unique_name}-r"
    user = create_sink_user(stack, f"{unique_name}-r", [index, f"{index}-state"],
                            backend=backend, read_only=True)  # fmt: skip
    cases = {
        "SinkAuthFailed": user_sink(stack, index, user.name, "not-the-password", backend=backend),
        # may read, not create: the state index is missing
        "SinkForbidden": user_sink(stack, index, *user.auth, backend=backend),
        # no CA given: the system's CAs do not know the stack's CA
        "TLSVerificationFailed": user_sink(stack, index, *user.auth, backend=backend,
                                           trust_stack_ca=False),
    }  # fmt: skip
    for reason, sink in cases.items():
        with pytest.raises(SinkError) as refused:
            sink.ensure_indices()
        assert refused.value.reason == reason, str(refused.value)
        assert str(refused.value).startswith(f"{reason}: ")
        assert user.password not in str(refused.value)
    assert "spec.sink.caSecretRef" in str(_refusal(cases["TLSVerificationFailed"]))
    assert "spec.sink.credentialsSecretRef" in str(_refusal(cases["SinkAuthFailed"]))
    # Granted the pipeline role, the same user and sink go through.
    grant_sink_role(stack, user, [index, f"{index}-state"])
    user_sink(stack, index, *user.auth, backend=backend).ensure_indices()
    held = secure_request(stack, "HEAD", f"/{index}-state", super_auth(stack, backend),
                          backend=backend)  # fmt: skip
    assert held.status_code == 200


def _refusal(sink: SearchSink) -> SinkError:
    try:
        sink.ensure_indices()
    except SinkError as error:
        return error
    raise AssertionError("the sink was not refused")


def test_the_client_speaks_each_servers_api_version(stack: StackEnv, unique_name: str) -> None:
    nodes = secure_request(stack, "GET", "/_nodes/_local", super_auth(stack)).json()["nodes"]
    (version,) = {node["version"] for node in nodes.values()}
    assert version.startswith("8."), version
    # The client's own version, unchanged, is refused by the 8.x server...
    user, password = super_auth(stack)
    plain = elasticsearch.Elasticsearch(stack.elasticsearch_secure_url, basic_auth=(user, password),
                                        ca_certs=str(stack.ca_file))  # fmt: skip
    with pytest.raises(elasticsearch.BadRequestError, match="media_type_header_exception"):
        plain.search(index="*", size=0)
    # ...the sink asks once, hears which version the server speaks, and uses it.
    on_8 = user_sink(stack, f"{unique_name}-v8", user, password)
    on_8.ensure_indices()
    assert on_8.write(docs_for(f"{unique_name}-v8", 2)).written == 2
    on_8.refresh()
    assert len(on_8.search(f"{unique_name}-v8", {"match_all": {}})) == 2
    # The 9.x node keeps the client's own version.
    on_9 = build_sink("elasticsearch", stack.elasticsearch_url, f"{unique_name}-v9", None, None)
    on_9.ensure_indices()
    assert on_9.write(docs_for(f"{unique_name}-v9", 2)).written == 2
    on_9.refresh()
    assert len(on_9.search(f"{unique_name}-v9", {"match_all": {}})) == 2
    nine = requests.get(f"{stack.elasticsearch_url}/_nodes/_local", timeout=10).json()["nodes"]
    assert all(node["version"].startswith("9.") for node in nine.values())
