"""A LogArchive applied to the real stack, with the operator running as a process: the operator
creates the archive topic, the Fluentd route objects (no filter) and the archiver Deployment;
the kubelet runs the archiver in the real consumer image, confined as consumer pods are; the
records produced to the topic land on the real HDFS as Parquet; the status counts the committed
files; deleting the archive removes the topic (deletionPolicy Delete), the route and the
Deployment and keeps the files. The test reads HDFS through plain WebHDFS calls (no product
code) and prints the time from apply to the first file. With the exporter and the operator's
ResourceManager on the stack's Prometheus, status.archivedThrough comes after every record the
test produced, with lagRecords 0.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pyarrow.parquet as pq
import pytest
import requests
from kubernetes import client
from kubernetes.client.rest import ApiException

from archives import archive_condition, create_archive, get_archive
from consumers import produce
from helpers import present, wait_for
from metricpipe_contract.archive_model import PLURAL
from metricpipe_contract.model import GROUP, VERSION
from metricpipe_devstack.env import StackEnv
from pipelines import topic_state

ARCHIVER_USER = "metricpipe-archiver"
FLUENTD = ("fluentd.fluent.io", "v1alpha1")
RECORDS = 300
SPEC: dict[str, Any] = {
    "source": {"tag": "edge.nginx.**", "format": "json"},
    "topic": {"partitions": 2, "deletionPolicy": "Delete"},
    "roll": {"maxAge": "2s"},
    "scaling": {"enabled": False},
    "index": {"enabled": True, "backend": "opensearch", "retentionDays": 7},
}

IDLE: dict[str, Any] = {
    "source": {"tag": "idle.**", "format": "text"},
    "topic": {"partitions": 2, "deletionPolicy": "Delete"},
    "roll": {"maxAge": "2s"},
    "replicas": 2,
    "scaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 2,
                "scaleDownStabilization": "0s"},
}  # fmt: skip


class Hdfs:
    """Plain WebHDFS as the NameNode's superuser (the OS user that runs the stack)."""

    def __init__(self, url: str) -> None:
        self.url = url
        found = self.call("GET", "/", "GETFILESTATUS", "nobody").json()
        self.superuser = str(found["FileStatus"]["owner"])

    def call(self, method: str, path: str, op: str, user: str, **params: Any) -> requests.Response:
        return requests.request(method, f"{self.url}{path}", timeout=30,
                                params={"op": op, "user.name": user, **params})  # fmt: skip

    def parquet_files(self, path: str) -> list[str]:
        listed = self.call("GET", path, "LISTSTATUS", self.superuser)
        if listed.status_code == 404:
            return []
        found = []
        for entry in listed.json()["FileStatuses"]["FileStatus"]:
            child = f"{path}/{entry['pathSuffix']}"
            if entry["type"] == "DIRECTORY" and not entry["pathSuffix"].startswith("_"):
                found += self.parquet_files(child)
            elif child.endswith(".parquet"):
                found.append(child)
        return found

    def rows(self, files: list[str]) -> list[dict[str, Any]]:
        rows = []
        for path in files:
            data = self.call("GET", path, "OPEN", self.superuser).content
            rows += pq.read_table(io.BytesIO(data)).to_pylist()
        return rows


@pytest.fixture
def hdfs_root(stack: StackEnv, unique_name: str) -> Iterator[tuple[Hdfs, str]]:
    assert stack.webhdfs_url, ".stack/env lacks METRICPIPE_WEBHDFS_URL; run 'make stack-up'"
    hdfs = Hdfs(stack.webhdfs_url)
    root = f"/{unique_name}-archives"
    assert hdfs.call("PUT", root, "MKDIRS", hdfs.superuser).status_code == 200
    hdfs.call("PUT", root, "SETOWNER", hdfs.superuser, owner=ARCHIVER_USER)
    yield hdfs, root
    hdfs.call("DELETE", root, "DELETE", hdfs.superuser, recursive="true")


def _fetch(kube: client.ApiClient, kind: str, name: str, namespace: str | None = None) -> Any:
    try:
        if kind == "Deployment":
            return client.AppsV1Api(kube).read_namespaced_deployment(name, str(namespace))
        if kind == "ConfigMap":
            return client.CoreV1Api(kube).read_namespaced_config_map(name, str(namespace))
        return client.CustomObjectsApi(kube).get_cluster_custom_object(
            *FLUENTD, kind.lower() + "s", name
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise


@pytest.mark.usefixtures("fluent_operator_crds", "logarchive_crd")
def test_a_log_archive_reaches_hdfs_and_is_removed_keeping_its_files(
    stack: StackEnv, kube: client.ApiClient, namespace: str, start_operator: Any,
    hdfs_root: tuple[Hdfs, str], start_exporter: Any,
) -> None:  # fmt: skip
    hdfs, root = hdfs_root
    operator = start_operator(
        namespace, METRICPIPE_WEBHDFS_URL=str(stack.webhdfs_url), METRICPIPE_ARCHIVE_ROOT=root,
        METRICPIPE_ARCHIVE_STATUS_INTERVAL_SECONDS="5",
        METRICPIPE_PROMETHEUS_URL=stack.prometheus_url, METRICPIPE_SCALING_INTERVAL_SECONDS="3",
        METRICPIPE_SCALING_NAMESPACE=namespace,
    )  # fmt: skip
    start_exporter(namespace=namespace)  # the archiver group's positions, for archivedThrough
    applied = time.monotonic()
    create_archive(kube, namespace, "edge", SPEC)
    create_archive(kube, namespace, "idle", IDLE)  # no records: the ResourceManager's to shrink
    topic = f"metricpipe.{namespace}.edge.archive"

    def topic_ready() -> dict[str, Any]:
        archive = get_archive(kube, namespace, "edge")
        return archive if archive_condition(archive, "TopicReady").get("status") == "True" else {}

    wait_for(topic_ready, 60, "TopicReady")
    assert topic_state(stack.kafka_bootstrap, topic) is not None
    # -- the route: every record of the tag into the archive topic, no filter ------------------
    route = f"mp-{namespace}.edge.archive"
    output = wait_for(lambda: _fetch(kube, "ClusterOutput", route), 30, "the ClusterOutput")
    (forward,) = output["spec"]["outputs"]
    assert (forward["tag"], forward["kafka"]["defaultTopic"]) == ("edge.nginx.**", topic)
    assert _fetch(kube, "ClusterFluentdConfig", route) is not None
    assert _fetch(kube, "ClusterFilter", route) is None
    assert _fetch(kube, "ConfigMap", "edge-archive-route", namespace) is not None
    # -- the archiver: the consumer image, confined ----------------------------------------
    deployment = wait_for(lambda: _fetch(kube, "Deployment", "edge-archiver", namespace), 30,
                          "the archiver Deployment")  # fmt: skip
    pod_spec = deployment.spec.template.spec
    (container,) = pod_spec.containers
    assert container.command == ["python", "-m", "metricpipe_consumers.archive"]
    assert container.security_context.read_only_root_filesystem is True
    assert container.security_context.capabilities.drop == ["ALL"]
    assert pod_spec.security_context.run_as_user == 65532
    archive_json = _fetch(kube, "ConfigMap", "edge-archiver", namespace).data["archive.json"]
    assert json.loads(archive_json)["hdfs"]["root"] == root

    records = [(None, json.dumps({"message": f"GET /{i} 200", "host": f"h{i % 3}"}).encode())
               for i in range(RECORDS)]  # fmt: skip
    produce(stack, topic, records)
    produced_at = time.time()  # every record was acknowledged by Kafka before this
    directory = f"{root}/{namespace}/edge"

    def archiver_said(tail: int = 3000) -> str:
        pods = client.CoreV1Api(kube).list_namespaced_pod(
            namespace, label_selector="app.kubernetes.io/name=metricpipe-archiver"
        )
        said = []
        for pod in pods.items:
            name = str(present(pod.metadata).name)
            try:
                said.append(client.CoreV1Api(kube).read_namespaced_pod_log(
                    name, namespace, container="archiver"))  # fmt: skip
            except ApiException as error:
                said.append(f"{name}: no log ({error.status}) {pod.status}")
        return "\n".join(said)[-tail:]

    try:
        wait_for(lambda: hdfs.parquet_files(directory), 75, "a first file on HDFS", 0.5)
    except AssertionError as error:
        raise AssertionError(f"{error}\narchiver:\n{archiver_said()}\noperator:\n"
                             f"{operator.log()[-3000:]}") from error  # fmt: skip
    first_file = time.monotonic() - applied
    print(f"\napply -> first archive file on HDFS: {first_file:.1f} s")

    def everything() -> list[dict[str, Any]]:
        rows = hdfs.rows(hdfs.parquet_files(directory))
        return rows if len(rows) >= RECORDS else []

    rows = wait_for(everything, 30, f"all {RECORDS} records on HDFS", 1)
    coordinates = {(r["partition"], r["offset"]) for r in rows}
    assert len(rows) == len(coordinates) == RECORDS  # each record once
    assert {json.loads(r["raw"])["message"] for r in rows} == {
        f"GET /{i} 200" for i in range(RECORDS)
    }

    # the search copy, written by the archiver pod into the operator's OpenSearch: one
    # document per record, under its coordinates (read here by plain REST)
    index = f"{stack.opensearch_url}/metricpipe-logs-{namespace}.edge-*"
    requests.post(f"{index}/_refresh", timeout=30)
    hits = requests.post(f"{index}/_search", timeout=30, json={
        "size": RECORDS + 10, "_source": ["message", "kafka"]}).json()["hits"]["hits"]  # fmt: skip
    assert sorted(h["_id"] for h in hits) == sorted(f"{r['partition']}-{r['offset']}"
                                                    for r in rows)  # fmt: skip
    assert {h["_source"]["message"] for h in hits} == {r["raw"] for r in rows}

    # the pod makes rows with the image's native row maker (consumers/Dockerfile sets its path)
    said = archiver_said(tail=10**7)
    assert '"way": "native"' in said, said[-3000:]
    files = hdfs.parquet_files(directory)  # every record is in: no file comes any more

    def counted() -> dict[str, Any]:
        archive = get_archive(kube, namespace, "edge")
        status = archive.get("status") or {}
        done = status.get("files") == len(files) and status.get("bytes", 0) > 0
        return archive if done and archive_condition(archive, "Ready").get("status") == "True" \
            else {}  # fmt: skip

    archive = wait_for(counted, 30, f"status.files {len(files)} and bytes, Ready")
    status = archive["status"]

    # -- archivedThrough: from the exporter's positions of the archiver group, by the
    # ResourceManager; checked against this test's own clock and its scan of HDFS above
    def measured() -> dict[str, Any]:
        found = get_archive(kube, namespace, "edge")
        state = found.get("status") or {}
        done = state.get("lagRecords") == 0 and "archivedThrough" in state
        return found if done and archive_condition(found, "Archived").get("status") == "True" \
            else {}  # fmt: skip

    archive = wait_for(measured, 60, "archivedThrough with lagRecords 0 and Archived True")
    status = archive["status"]
    through = datetime.fromisoformat(status["archivedThrough"].replace("Z", "+00:00"))
    assert produced_at - 1 <= through.timestamp() <= time.time()  # every record was before it
    assert archive_condition(archive, "Archived")["reason"] == "WithinTarget"
    assert 0 <= status["timeLagSeconds"] <= 60

    # -- the idle archive: 2 archivers with nothing to do, scaled to its minimum of 1 by the
    # ResourceManager through /scale, with an Event saying why
    def scaled_down() -> list[Any]:
        events = client.CoreV1Api(kube).list_namespaced_event(
            namespace, field_selector="involvedObject.name=idle,reason=ScaledDown"
        )
        return list(events.items)  # fmt: skip

    (event,) = wait_for(scaled_down, 90, "a ScaledDown Event of the idle archive")
    assert event.source.component == "metricpipe-resourcemanager"
    assert event.message.startswith("2 → 1: ")
    idle = get_archive(kube, namespace, "idle")
    assert idle["spec"]["replicas"] == 1
    assert "lastScaleTime" in idle["status"]
    wait_for(lambda: (_fetch(kube, "Deployment", "idle-archiver", namespace).spec.replicas == 1),
             30, "the idle archiver Deployment at 1 replica")  # fmt: skip
    assert status["replicas"] == 1
    assert status["topic"] == topic
    # -- deletion: route, Deployment and topic go; the files stay -------------------------------
    kept = hdfs.parquet_files(directory)
    for name in ("edge", "idle"):
        client.CustomObjectsApi(kube).delete_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name
        )

    def absent(name: str) -> bool:
        try:
            get_archive(kube, namespace, name)
        except ApiException as error:
            return bool(error.status == 404)
        return False

    wait_for(lambda: absent("edge") and absent("idle"), 60, "the archives' finalizers")
    assert _fetch(kube, "ClusterOutput", route) is None
    assert _fetch(kube, "ClusterFluentdConfig", route) is None
    assert _fetch(kube, "Deployment", "edge-archiver", namespace) is None
    wait_for(lambda: topic_state(stack.kafka_bootstrap, topic) is None, 30, "topic deleted")
    assert hdfs.parquet_files(directory) == kept
    print(f"whole test: {time.monotonic() - applied:.1f} s after apply")
    # the daily indices stay too, as the files do (their retention deletes them); this test's
    # are removed here so that test runs do not pile up indices on the stack's OpenSearch
    for name in requests.get(index, timeout=30).json():
        requests.delete(f"{stack.opensearch_url}/{name}", timeout=30)
