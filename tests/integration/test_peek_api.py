"""The peek API on the real stack, through its edge: archive files written straight to the real
HDFS by this test (its own small writer, in the documented layout), the API as a real process on
the stack's peek port reading them as a read-only HDFS user, real ServiceAccount tokens checked
by the real API server, and every query, refusal and path-escape attempt sent as HTTPS to
HAProxy (TCP, PROXY protocol v2) -> one of the two Nginx (TLS with the stack's CA, rate limits)
-> the API, from the test's own loopback address (so the client address the API logs is
provably the one that came through HAProxy and Nginx, not their own).

Every expected answer is computed here from the test's own records (no product code): order
(hour, partition, offset), each (partition, offset) once, filters as docs/peek.md states them.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import os
import random
import re
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
import yaml
from kubernetes import client, config
from requests.adapters import HTTPAdapter

from edge_harness import LogMark
from helpers import wait_for
from metricpipe_consumers.webhdfs import WebHdfs
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.settings import StackSettings

ROOT = "/metricpipe/archives"
HOUR = 3_600_000
SCHEMA = pa.schema([
    ("partition", pa.int32()), ("offset", pa.int64()), ("time_ms", pa.int64()),
    ("key", pa.string()), ("raw", pa.string()), ("fields", pa.string()),
])  # fmt: skip
PER_HOUR = 30  # records per partition and hour
PEEK_PORT = StackSettings().ports.peek  # the edge's Nginx proxy to 127.0.0.1 on this port
PORT_WAIT_SECONDS = 60  # the edge's own test may hold the port briefly with a stand-in
EDGE_PROXY = "127.0.0.1"  # where the edge's Nginx reach the API from
PEEK_RBAC = Path(__file__).resolve().parents[2] / "manifests" / "base" / "peek-rbac.yaml"


@dataclass(frozen=True)
class Rec:
    partition: int
    offset: int
    time_ms: int
    key: str
    raw: str
    fields: dict[str, Any]

    @property
    def hour(self) -> int:
        return self.time_ms - self.time_ms % HOUR

    def sort_key(self) -> tuple[int, int, int]:
        return self.hour, self.partition, self.offset

    def as_answer(self) -> dict[str, Any]:
        moment = datetime.fromtimestamp(self.time_ms / 1000, UTC)
        time_text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.time_ms % 1000:03d}Z"
        return {"time": time_text, "partition": self.partition, "offset": self.offset,
                "key": self.key, "raw": self.raw, "fields": self.fields}  # fmt: skip


def make_records(first_hour: int, hours: int, salt: str) -> list[Rec]:
    records = []
    methods, statuses = ("GET", "POST", "PUT"), (200, 200, 404, 500, 503, 200, 301)
    for partition in (0, 1):
        offset = 1000 * partition + 17
        for h in range(hours):
            for i in range(PER_HOUR):
                time_ms = first_hour + h * HOUR + i * (HOUR // PER_HOUR) + 7 * partition
                status = statuses[(i + h + partition) % len(statuses)]
                method = methods[(i * 7 + partition) % len(methods)]
                path = f"/{salt}/item/{i % 5}"
                raw = f'10.0.{partition}.{i} "{method} {path} HTTP/1.1" status={status} t={i}ms'
                fields = {"status": status, "method": method, "req": {"path": path},
                          "slow": i % 4 == 0}  # fmt: skip
                records.append(Rec(partition, offset, time_ms, f"k{i % 3}", raw, fields))
                offset += 1
    return records


def parquet_bytes(records: list[Rec], row_group_size: int | None = None) -> bytes:
    table = pa.Table.from_pylist(
        [{"partition": r.partition, "offset": r.offset, "time_ms": r.time_ms, "key": r.key,
          "raw": r.raw, "fields": json.dumps(r.fields)} for r in records],
        schema=SCHEMA,
    )  # fmt: skip
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", row_group_size=row_group_size)
    return sink.getvalue()


def file_name(partition: int, first: int, last: int) -> str:
    return f"p{partition}-{first:020d}-{last:020d}.parquet"


def hour_dir(hour_ms: int) -> str:
    moment = datetime.fromtimestamp(hour_ms / 1000, UTC)
    return f"dt={moment:%Y-%m-%d}/hour={moment:%H}"


def write_archive(hdfs: WebHdfs, base: str, records: list[Rec]) -> dict[str, tuple[int, int]]:
    """Each (hour, partition) in two files (the second with small row groups), one record
    duplicated into an overlapping third file, plus staging/offsets litter that must never be
    read. Returns (bytes, files) per hour directory."""
    sizes: dict[str, tuple[int, int]] = {}
    cells: dict[tuple[int, int], list[Rec]] = {}
    for record in records:
        cells.setdefault((record.hour, record.partition), []).append(record)
    for (hour, partition), cell in sorted(cells.items()):
        halves = [cell[: len(cell) // 2], cell[len(cell) // 2 :]]
        files = [(file_name(partition, h[0].offset, h[-1].offset + 3), parquet_bytes(h, 4))
                 for h in halves]  # fmt: skip
        if partition == 0:  # a writer's duplicate: an overlapping batch holding one record again
            dup = halves[1][2]
            files.append((file_name(partition, dup.offset, dup.offset + 1), parquet_bytes([dup])))
        for name, data in files:
            hdfs.create(f"{base}/{hour_dir(hour)}/{name}", data)
        size, count = sizes.get(hour_dir(hour), (0, 0))
        sizes[hour_dir(hour)] = (size + sum(len(d) for _, d in files), count + len(files))
    bogus = [Rec(0, 5, records[0].time_ms, "x", "STAGING-NEVER-READ", {})]
    first = sorted(cells)[0][0]
    hdfs.create(f"{base}/_staging/p0-{0:020d}-{9:020d}/{file_name(0, 0, 9)}", parquet_bytes(bogus))
    hdfs.create(f"{base}/_offsets/p0", b"12345")
    hdfs.create(f"{base}/{hour_dir(first)}/notes.txt", b"not an archive file")
    return sizes


# -- the oracle: the test's own reading of the documented semantics ---------------------------


def field_text(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return None


def lookup(fields: dict[str, Any], path: str) -> Any:
    value: Any = fields
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return object()
        value = value[part]
    return value


def expected(
    records: list[Rec], since: int, until: int, order: str = "newest", grep: str | None = None,
    regex: str | None = None, fields: dict[str, str] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    unique = {(r.partition, r.offset): r for r in records}.values()
    chosen = [
        r for r in unique
        if since <= r.time_ms < until
        and (grep is None or grep in r.raw)
        and (regex is None or re.search(regex, r.raw))
        and all(field_text(lookup(r.fields, p)) == v for p, v in (fields or {}).items())
    ]  # fmt: skip
    chosen.sort(key=Rec.sort_key, reverse=order == "newest")
    return [r.as_answer() for r in chosen]


# -- the cluster side: ServiceAccounts, roles, the peek process --------------------------------


def sa_token(core: client.CoreV1Api, namespace: str, name: str) -> str:
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    request: Any = {"spec": {"audiences": [], "expirationSeconds": 3600}}
    answer = core.create_namespaced_service_account_token(name, namespace, request)
    assert answer.status is not None
    return str(answer.status.token)


def rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class SourceAddress(HTTPAdapter):
    """Connections from one loopback address of the test's own (127.x.y.z)."""

    def __init__(self, source: str) -> None:
        self.source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)


@dataclass
class Peek:
    """The API through the edge (url: METRICPIPE_EDGE_URL), from the address `source`; `direct`
    is its own port, for the checks that must bypass the edge."""

    url: str
    direct: str
    source: str
    ca_file: Path
    log_path: Path
    session: requests.Session

    def get(self, path: str, token: str | None, **params: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.session.get(
            f"{self.url}{path}",
            params=params,
            headers=headers,
            timeout=30,
            verify=str(self.ca_file),
        )  # (REQUESTS_CA_BUNDLE would win)

    def page(self, path: str, token: str, **params: Any) -> tuple[list[Any], dict[str, Any]]:
        response = self.get(path, token, **params)
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"] == "application/x-ndjson"
        assert response.headers["X-Edge-Server"] in ("edge-nginx-a", "edge-nginx-b")
        lines = [json.loads(line) for line in response.text.splitlines()]
        return lines[:-1], lines[-1]

    def walk(self, path: str, token: str, **params: Any) -> tuple[list[Any], int]:
        """Every record of a query, following cursors; the number of pages."""
        found: list[Any] = []
        pages = 0
        while True:
            records, trailer = self.page(path, token, **params)
            found += records
            pages += 1
            if not trailer["more"]:
                return found, pages
            params["cursor"] = trailer["cursor"]

    def raw(self, target: str, token: str, request_id: str) -> tuple[int, str, str]:
        """A request target sent through the edge exactly as written (no client normalises
        `..` away): status, Content-Type, body."""
        host, port = self.url.removeprefix("https://").rsplit(":", 1)
        context = ssl.create_default_context(cafile=str(self.ca_file))
        connection = http.client.HTTPSConnection(host, int(port), context=context, timeout=30,
                                                 source_address=(self.source, 0))  # fmt: skip
        connection.putrequest("GET", target, skip_accept_encoding=True)
        connection.putheader("Authorization", f"Bearer {token}")
        connection.putheader("X-Request-Id", request_id)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read().decode()
        connection.close()
        return response.status, response.getheader("Content-Type", ""), body

    def logged(self, request_ids: set[str]) -> dict[str, dict[str, Any]] | None:
        """The API's log line of each of these requests (by X-Request-Id), once all are there."""
        lines = [json.loads(line) for line in self.log_path.read_text().splitlines()
                 if line.startswith("{")]  # fmt: skip
        found = {str(line["request_id"]): line for line in lines
                 if line.get("event") == "peek.request" and "request_id" in line}  # fmt: skip
        return found if request_ids <= set(found) else None


def wait_until_port_free(port: int) -> None:
    """The peek port is shared with the edge's own test (a stand-in upstream there): wait for it
    to be let go, and say who to ask when it is not."""

    def free() -> bool:
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

    deadline = time.monotonic() + PORT_WAIT_SECONDS
    while not free():
        if time.monotonic() > deadline:
            pytest.fail(
                f"127.0.0.1:{port}, the stack's peek port (the edge's Nginx proxy to it), has "
                f"been taken for {PORT_WAIT_SECONDS} s by another process (`ss -ltnp "
                f"sport = :{port}` names it; tests/integration/test_edge.py serves a stand-in "
                "there while it runs): stop it, or wait for it, and run this test again"
            )
        time.sleep(0.5)


def start_peek(stack: StackEnv, kubeconfig: Path, log_path: Path, **env: str) -> Iterator[Peek]:
    """The API on the stack's peek port behind the edge, trusting only the edge's address for
    X-Real-IP / X-Forwarded-For."""
    assert stack.edge_url, ".stack/env lacks METRICPIPE_EDGE_URL: the stack predates its edge"
    wait_until_port_free(PEEK_PORT)
    process_env = {
        **os.environ,
        "METRICPIPE_PEEK_HOST": "127.0.0.1",
        "METRICPIPE_PEEK_PORT": str(PEEK_PORT),
        "METRICPIPE_PEEK_TRUSTED_PROXIES": json.dumps([EDGE_PROXY]),
        "METRICPIPE_PEEK_WEBHDFS_URL": str(stack.webhdfs_url),
        "METRICPIPE_PEEK_HDFS_USER": "metricpipe-peek",
        "METRICPIPE_PEEK_ARCHIVE_ROOT": ROOT,
        "METRICPIPE_PEEK_KUBECONFIG": str(kubeconfig),
        "METRICPIPE_PEEK_WHOLE_FILE_BYTES": "1500",  # the larger files go by ranged reads
        **env,
    }
    with log_path.open("wb") as log:
        argv = [sys.executable, "-m", "metricpipe_consumers.peek"]
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=process_env)
    direct = f"http://127.0.0.1:{PEEK_PORT}"

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"peek exited:\n{log_path.read_text()}")
        try:  # directly: the edge's Nginx answer /healthz themselves
            return requests.get(f"{direct}/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    source = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    try:
        wait_for(up, timeout=30, interval=0.1, what="peek API /healthz")
        with requests.Session() as session:
            session.mount("https://", SourceAddress(source))
            yield Peek(stack.edge_url, direct, source, stack.ca_file, log_path, session)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def cluster_side(
    kube: client.ApiClient, stack: StackEnv, namespace: str, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    """Namespace B, the peek service's ServiceAccount (bound to the rules of the manifests'
    ClusterRole, the review permissions only) and its kubeconfig, and the callers' tokens."""
    core, rbac = client.CoreV1Api(kube), client.RbacAuthorizationV1Api(kube)
    other = f"{namespace}-b"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=other)))
    review_role = f"{namespace}-peek-review"
    (shipped,) = [
        d for d in yaml.safe_load_all(PEEK_RBAC.read_text()) if d["kind"] == "ClusterRole"
    ]
    rbac.create_cluster_role(cast(Any, {"metadata": {"name": review_role},
                                        "rules": shipped["rules"]}))  # fmt: skip
    try:
        service_token = sa_token(core, namespace, "peek")
        rbac.create_cluster_role_binding(cast(Any, {
            "metadata": {"name": review_role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                        "name": review_role},
            "subjects": [{"kind": "ServiceAccount", "name": "peek", "namespace": namespace}],
        }))  # fmt: skip
        for ns in (namespace, other):  # the ordinary Role docs/peek.md shows, in each namespace
            rule = {"apiGroups": ["metricpipe.io"], "resources": ["logarchives/logs"],
                    "verbs": ["get"]}  # fmt: skip
            role = {"metadata": {"name": "log-reader"}, "rules": [rule]}
            rbac.create_namespaced_role(ns, cast(Any, role))
        tokens = {}
        for ns, sa in ((namespace, "reader"), (namespace, "nobody"), (other, "reader")):
            tokens[(ns, sa)] = sa_token(core, ns, sa)
            if sa == "reader":
                rbac.create_namespaced_role_binding(ns, cast(Any, {
                    "metadata": {"name": f"log-reader-{sa}"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                "name": "log-reader"},
                    "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
                }))  # fmt: skip
        admin = client.Configuration()
        config.load_kube_config(config_file=str(stack.kubeconfig), client_configuration=admin)
        kubeconfig = tmp_path / "peek.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "peek",
            "clusters": [{"name": "local", "cluster": {
                "server": admin.host, "certificate-authority": admin.ssl_ca_cert}}],
            "users": [{"name": "peek", "user": {"token": service_token}}],
            "contexts": [{"name": "peek", "context": {"cluster": "local", "user": "peek"}}],
        }))  # fmt: skip
        yield {"other": other, "tokens": tokens, "kubeconfig": kubeconfig}
    finally:
        rbac.delete_cluster_role(review_role)
        with contextlib.suppress(client.ApiException):
            rbac.delete_cluster_role_binding(review_role)
        core.delete_namespace(other)


def test_peek_api(
    stack: StackEnv, namespace: str, cluster_side: dict[str, Any], tmp_path: Path
) -> None:
    started = time.monotonic()
    assert stack.webhdfs_url
    params = {"op": "GETFILESTATUS", "user.name": "nobody"}
    root = requests.get(f"{stack.webhdfs_url}/", params=params, timeout=10).json()
    root_owner = root["FileStatus"]["owner"]
    hdfs = WebHdfs(stack.webhdfs_url, root_owner)  # the NameNode's superuser writes
    other = cluster_side["other"]
    tokens: dict[tuple[str, str], str] = cluster_side["tokens"]
    reader = tokens[(namespace, "reader")]
    now = int(time.time() * 1000)
    first_hour = now - now % HOUR - 5 * HOUR
    mine = make_records(first_hour, 4, "a")
    theirs = make_records(first_hour, 2, "b")
    hdfs.mkdirs(ROOT)
    base, other_base = f"{ROOT}/{namespace}/web", f"{ROOT}/{other}/web"
    edge_logs = LogMark.take(stack.edge_access_logs)
    try:
        sizes = write_archive(hdfs, base, mine)
        write_archive(hdfs, other_base, theirs)
        for peek in start_peek(stack, cluster_side["kubeconfig"], tmp_path / "peek.log"):
            check_queries(peek, namespace, other, reader, mine, theirs, tokens, first_hour)
            check_hours(peek, namespace, reader, sizes, first_hour)
            check_refusals(peek, namespace, other, tokens, first_hour)
            check_path_escapes(peek, namespace, other, reader)
            check_client_address(peek, namespace, reader)
            check_plugin(peek, stack, namespace, tokens, mine, first_hour)
        budget = {"METRICPIPE_PEEK_MAX_SCAN_BYTES": "20000"}  # about three files per page
        for peek in start_peek(stack, cluster_side["kubeconfig"], tmp_path / "b.log", **budget):
            check_scan_budget(peek, namespace, reader, mine, first_hour)
        too_big = {"METRICPIPE_PEEK_MAX_SCAN_BYTES": "1000"}
        for peek in start_peek(stack, cluster_side["kubeconfig"], tmp_path / "c.log", **too_big):
            one_hour = {"since": rfc3339(first_hour), "until": rfc3339(first_hour + HOUR)}
            response = peek.get(f"/v1/namespaces/{namespace}/logarchives/web/records", reader,
                                **one_hour)  # fmt: skip
            assert response.status_code == 413, response.text
            assert response.json()["limit"] == "max_scan_bytes"
        logs = "".join(p.read_text() for p in tmp_path.glob("*.log"))
        logs += b"\n".join(edge_logs.lines()).decode()  # the edge's lines of this test's time
        assert not [t for t in tokens.values() if t in logs], "a token reached a log"
    finally:
        hdfs.delete(f"{ROOT}/{namespace}", recursive=True)
        hdfs.delete(f"{ROOT}/{other}", recursive=True)
    assert time.monotonic() - started < 60


def check_queries(
    peek: Peek, namespace: str, other: str, reader: str, mine: list[Rec], theirs: list[Rec],
    tokens: dict[tuple[str, str], str], first_hour: int,
) -> None:  # fmt: skip
    path = f"/v1/namespaces/{namespace}/logarchives/web/records"
    start, end = rfc3339(first_hour), rfc3339(first_hour + 4 * HOUR)
    everything = expected(mine, first_hour, first_hour + 4 * HOUR, "oldest")
    assert len(everything) == len(mine) == 4 * 2 * PER_HOUR  # the duplicate came out once
    # 1. the whole range, oldest first, one page
    found, trailer = peek.page(path, reader, since=start, until=end, order="oldest", limit=1000)
    assert found == everything
    assert trailer["more"] is False
    assert "STAGING-NEVER-READ" not in json.dumps(found)
    # 2. newest first by pages of 50, across hours by cursor
    found, pages = peek.walk(path, reader, since=start, until=end, limit=50)
    assert found == expected(mine, first_hour, first_hour + 4 * HOUR, "newest")
    assert pages >= 5
    queries: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"grep": "status=500"}, {"grep": "status=500"}),  # 3
        ({"regex": r"status=5\d\d t=1"}, {"regex": r"status=5\d\d t=1"}),  # 4
        ({"field.status": "404"}, {"fields": {"status": "404"}}),  # 5
        ({"field.req.path": "/a/item/3", "grep": "POST"},
         {"fields": {"req.path": "/a/item/3"}, "grep": "POST"}),  # 6
        ({"field.slow": "true", "field.method": "GET", "order": "oldest"},
         {"fields": {"slow": "true", "method": "GET"}, "order": "oldest"}),  # 7
        ({"regex": "^10\\.0\\.1\\.", "field.status": "200", "order": "oldest"},
         {"regex": "^10\\.0\\.1\\.", "fields": {"status": "200"}, "order": "oldest"}),  # 8
    ]  # fmt: skip
    for params, oracle in queries:
        found, _ = peek.walk(path, reader, since=start, until=end, limit=7, **params)
        want = expected(mine, first_hour, first_hour + 4 * HOUR, **oracle)
        assert found == want, params
        assert want, params
    # 9. a range inside hours: from 10 minutes into the 2nd hour to 20 minutes into the 3rd
    since, until = first_hour + HOUR + 600_000, first_hour + 2 * HOUR + 1_200_000
    found, _ = peek.walk(path, reader, since=rfc3339(since), until=rfc3339(until), limit=9,
                         order="oldest")  # fmt: skip
    assert found == expected(mine, since, until, "oldest")
    # 10. a relative range (durations back from now) and the default order (newest)
    found, _ = peek.walk(path, reader, since="4h", limit=1000)
    assert found[:10] == expected(mine, int(time.time() * 1000) - 4 * HOUR + 5000,
                                  first_hour + 4 * HOUR)[:10]  # fmt: skip
    # 11. another namespace's archive with its own reader: its own records only
    found, _ = peek.walk(f"/v1/namespaces/{other}/logarchives/web/records",
                         tokens[(other, "reader")], since=start, until=end, grep="/b/")  # fmt: skip
    assert found == expected(theirs, first_hour, first_hour + 4 * HOUR, grep="/b/")
    # 12. nothing matches: an empty page that says so
    found, trailer = peek.page(path, reader, since=start, until=end, grep="no-such-line")
    assert (found, trailer["more"]) == ([], False)


def check_hours(
    peek: Peek, namespace: str, reader: str, sizes: dict[str, tuple[int, int]], first_hour: int
) -> None:
    span = {"since": rfc3339(first_hour + HOUR), "until": rfc3339(first_hour + 3 * HOUR)}
    response = peek.get(f"/v1/namespaces/{namespace}/logarchives/web/hours", reader, **span)
    assert response.status_code == 200, response.text
    listed = {hour["dir"]: (hour["bytes"], hour["files"]) for hour in response.json()}
    assert listed == {key: sizes[key] for key in
                      (hour_dir(first_hour + HOUR), hour_dir(first_hour + 2 * HOUR))}  # fmt: skip


def check_refusals(
    peek: Peek, namespace: str, other: str, tokens: dict[tuple[str, str], str], first_hour: int
) -> None:
    path = f"/v1/namespaces/{namespace}/logarchives/web/records"
    reader = tokens[(namespace, "reader")]
    anonymous = peek.get(path, None)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Bearer")
    assert peek.get(path, "not-a-token").status_code == 401
    denied = peek.get(path, tokens[(namespace, "nobody")])
    assert denied.status_code == 403
    assert f"get logarchives/logs in namespace {namespace}" in denied.json()["error"]
    elsewhere = peek.get(f"/v1/namespaces/{other}/logarchives/web/records", reader)
    assert elsewhere.status_code == 403  # its Role is in its own namespace only
    assert elsewhere.json()["permission"] == f"get logarchives/logs in namespace {other}"
    too_long = peek.get(path, reader, since=rfc3339(first_hour - 30 * HOUR),
                        until=rfc3339(first_hour))  # fmt: skip
    assert too_long.status_code == 413, too_long.text
    assert too_long.json()["limit"] == "max_range"
    assert "narrow --since/--until to at most 24h" in too_long.json()["hint"]
    too_many = peek.get(path, reader, limit=5000)
    assert too_many.status_code == 400
    assert too_many.json()["limit"] == "max_page_records"


# Each path-escape attempt, sent through the edge as written: what answers it (the API behind
# Nginx, or Nginx itself) and with what status. Nginx normalises `..`, `%2e%2e` and `//` only
# for its own location matching and its log's `path`; proxy_pass without a URI forwards the
# target as the client sent it, `..` and %-escapes included, so the API's own raw-target
# checks decide. Nginx answers 400 itself when the normalised path climbs above `/` (`..` or
# `%2e%2e` one time too many) or holds %00; an absolute-form target (http://host/path) is
# forwarded as its path alone (and Host: host), so it reaches the API as an ordinary path.
ESCAPES: tuple[tuple[str, int, str], ...] = (
    ("/v1/namespaces/{ns}/logarchives/../records", 400, "api"),
    ("/v1/namespaces/{ns}/logarchives/%2e%2e/records", 400, "api"),
    ("/v1/namespaces/%2e%2e/logarchives/web/records", 400, "api"),
    ("/v1/namespaces/{ns}/logarchives/web%2F..%2F..%2F{other}/records", 400, "api"),
    ("/v1/namespaces/{ns}/logarchives/web/../../{other}/logarchives/web/records", 400, "api"),
    ("/v1/namespaces/{ns}/logarchives/web/%2e%2e/%2e%2e/{other}/logarchives/web/records", 400,
     "api"),
    ("/v1/namespaces/{ns}/logarchives/web\\..\\..\\{other}/records", 400, "api"),
    ("/v1/namespaces//{root}/logarchives/web/records", 400, "api"),
    ("{root}/{ns}/web/records", 404, "api"),
    ("/v1/namespaces/{ns}/logarchives/Web/records", 400, "api"),
    ("/v1/namespaces/{ns}/logarchives/nothing-here/records", 404, "api"),
    ("/v1/namespaces/{ns}/logarchives/web/records?since=1h&grep=..%2F..%2F{other}", 200, "api"),
    ("/v1/namespaces/{ns}/logarchives/web/records/../../../../../../../../etc/passwd", 400,
     "nginx"),
    ("/v1/%2e%2e/%2e%2e/%2e%2e/{other}/logarchives/web/records", 400, "nginx"),
    ("/v1/namespaces/{ns}/logarchives/web%00/records", 400, "nginx"),
    ("http://evil/v1/namespaces/{other}/logarchives/web/records", 403, "api"),
)  # fmt: skip


def check_path_escapes(peek: Peek, namespace: str, other: str, reader: str) -> None:
    """No escape attempt gets data (its own archive's records answered with 200, the grep of
    `..%2F..` is an ordinary search); the API sees exactly what the client sent and the
    client's own address."""
    run = uuid.uuid4().hex[:8]
    sent = {}
    for i, (pattern, status, answers) in enumerate(ESCAPES):
        target = pattern.format(ns=namespace, other=other, root=ROOT)
        request_id = f"{run}-{i}"
        got, content_type, body = peek.raw(target, reader, request_id)
        assert got == status, (target, got, body)
        if status != 200:
            assert '"raw"' not in body, target
        if answers == "nginx":
            assert content_type.startswith("text/html"), (target, body)
            assert "<center>nginx</center>" in body, (target, body)
        else:
            assert content_type.startswith(("application/json", "application/x-ndjson"))
            sent[request_id] = (target.removeprefix("http://evil").split("?")[0], status)
    assert json.loads(body)["permission"] == f"get logarchives/logs in namespace {other}"

    lines = wait_for(lambda: peek.logged(set(sent)), timeout=5, interval=0.1,
                     what="the API's log of each request")  # fmt: skip
    for request_id, (path, status) in sent.items():
        line = lines[request_id]
        assert (line["path"], line["status"]) == (path, status), line  # passed on as sent
        assert (line["client"], line["via"]) == (peek.source, EDGE_PROXY), line
    answered_by_nginx = {f"{run}-{i}" for i, row in enumerate(ESCAPES) if row[2] == "nginx"}
    assert not answered_by_nginx & set(lines)  # they never reached the API


def check_client_address(peek: Peek, namespace: str, reader: str) -> None:
    """Through the edge the API logs the client's address (HAProxy's PROXY header -> Nginx's
    X-Real-IP), whatever X-Forwarded-For the client made up, and the token's user (the
    Authorization header got through); directly, from an address it does not trust, the
    API ignores those headers and logs the peer."""
    path = f"/v1/namespaces/{namespace}/logarchives/web/hours"
    forged = {"Authorization": f"Bearer {reader}", "X-Forwarded-For": "6.6.6.6",
              "X-Real-IP": "6.6.6.6"}  # fmt: skip
    through = peek.session.get(f"{peek.url}{path}", timeout=30, verify=str(peek.ca_file),
                               headers={**forged, "X-Request-Id": "edge-forged"})  # fmt: skip
    assert through.status_code == 200, through.text
    direct_source = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.1"
    with requests.Session() as direct:
        direct.mount("http://", SourceAddress(direct_source))
        answer = direct.get(f"{peek.direct}{path}", timeout=30,
                            headers={**forged, "X-Request-Id": "direct-forged"})  # fmt: skip
    assert answer.status_code == 200, answer.text

    lines = wait_for(lambda: peek.logged({"edge-forged", "direct-forged"}), timeout=5,
                     interval=0.1, what="the API's log of both requests")  # fmt: skip
    user = f"system:serviceaccount:{namespace}:reader"
    assert lines["edge-forged"]["client"] == peek.source
    assert lines["edge-forged"]["via"] == EDGE_PROXY
    assert lines["edge-forged"]["user"] == user
    assert lines["direct-forged"]["client"] == direct_source
    assert "via" not in lines["direct-forged"]
    assert lines["direct-forged"]["user"] == user


def check_scan_budget(
    peek: Peek, namespace: str, reader: str, mine: list[Rec], first_hour: int
) -> None:
    """With a scan budget of a few files, a page stops early (more=true, stopped named) and
    the cursors still walk the whole range exactly once."""
    path = f"/v1/namespaces/{namespace}/logarchives/web/records"
    start, end = rfc3339(first_hour), rfc3339(first_hour + 4 * HOUR)
    records, trailer = peek.page(path, reader, since=start, until=end,
                                 grep="status=503", order="oldest")  # fmt: skip
    assert trailer["more"] is True
    assert trailer["stopped"] == "max_scan_bytes"
    assert trailer["scanned_bytes"] <= 20000
    found, pages = peek.walk(path, reader, since=start, until=end, grep="status=503",
                             order="oldest")  # fmt: skip
    assert found == expected(mine, first_hour, first_hour + 4 * HOUR, "oldest", grep="status=503")
    assert pages > 3
    assert records == found[: len(records)]


def check_plugin(
    peek: Peek, stack: StackEnv, namespace: str, tokens: dict[tuple[str, str], str],
    mine: list[Rec], first_hour: int,
) -> None:  # fmt: skip
    """`kubectl metricpipe peek` as a process, through the edge (its URL and the stack's CA):
    raw lines across pages up to --limit, and the 403 in words."""

    def plugin(token: str, *args: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "metricpipe_consumers.peek.cli", "peek", "web",
                "-n", namespace, "--server", peek.url, "--ca-file", str(stack.ca_file),
                "--token", token, "--kubeconfig", "/nonexistent",
                "--since", rfc3339(first_hour), "--until", rfc3339(first_hour + 4 * HOUR),
                *args]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    done = plugin(tokens[(namespace, "reader")], "--regex", "status=5..", "--limit", "1500",
                  "--oldest-first")  # fmt: skip
    assert done.returncode == 0, done.stderr
    want = expected(mine, first_hour, first_hour + 4 * HOUR, "oldest", regex="status=5..")
    assert done.stdout.splitlines() == [r["raw"] for r in want]
    done = plugin(tokens[(namespace, "reader")], "--field", "status=404", "--limit", "3",
                  "-o", "json")  # fmt: skip
    assert [json.loads(line) for line in done.stdout.splitlines()] == expected(
        mine, first_hour, first_hour + 4 * HOUR, fields={"status": "404"})[:3]  # fmt: skip
    done = plugin(tokens[(namespace, "nobody")])
    assert done.returncode == 1
    assert f"forbidden (403): system:serviceaccount:{namespace}:nobody may not get " in done.stderr
