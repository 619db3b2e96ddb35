"""The consumer and batch containers as the operator builds them, against what a real container
enforces: a read-only root filesystem (every place Spark, Java and Python write is an emptyDir),
a memory limit (Spark's heap is sized from it), the image's jars and user."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from metricpipe_consumers.sparkconf import (
    MIB,
    MIN_LIMIT_BYTES,
    SparkPaths,
    SparkSetupError,
    build_spark_conf,
    decide_direct_memory,
    decide_driver_memory,
    decide_memory_warning,
    decide_spark_jars,
    decide_spark_paths,
)
from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.batchjob import build_cronjob
from metricpipe_operator.reconcile.consumer import build_deployment

REF = PipelineRef("team-a", "http-5xx", "uid-1", 3)
CONFIG = OperatorConfig(kafka_bootstrap="kafka:9092")
GIB = 1024 * MIB
DOCKERFILE = Path(__file__).parents[2] / "consumers" / "Dockerfile"
TMP = "/tmp"  # noqa: S108 - the path the pod mounts an emptyDir at


def spec_of(mode: str = "stream", **consumer: Any) -> MetricPipelineSpec:
    return MetricPipelineSpec.model_validate({
        "mode": mode, "source": {"tag": "web.**"},
        "metric": {"aggregation": "count", "window": "1h"}, "consumer": consumer,
    })  # fmt: skip


def stream_pod(config: OperatorConfig = CONFIG, **consumer: Any) -> dict[str, Any]:
    deployment = build_deployment(REF, spec_of("stream", **consumer), config, "h", replicas=1)
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def batch_pod(config: OperatorConfig = CONFIG, **consumer: Any) -> dict[str, Any]:
    cronjob = build_cronjob(REF, spec_of("batch", **consumer), config, "h", parallelism=2)
    pod: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return pod


PODS = [pytest.param(stream_pod, id="stream"), pytest.param(batch_pod, id="batch")]


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    """The values a process sees (the last of a name wins), literal values only."""
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


# -- the heap from the memory limit ----------------------------------------------------------


@pytest.mark.parametrize(
    ("limit_bytes", "heap"),
    [
        (None, "1g"),  # no limit known: a process on a development host
        (0, "1g"),
        (2 * GIB, "1024m"),  # the builders' default limit: half of it
        (4 * GIB, "2048m"),
        (3 * GIB + 512 * MIB, "1792m"),
        (1536 * MIB + 1, "768m"),  # whole MiB, rounded down
        (1 * GIB, "512m"),
        (768 * MIB, "512m"),  # never below Spark's own floor (450 MiB of heap)...
        (64 * MIB, "512m"),  # ...even when the limit cannot hold it: the kernel decides
    ],
)
def test_driver_memory_is_half_the_limit_never_below_sparks_floor(
    limit_bytes: int | None, heap: str
) -> None:
    assert decide_driver_memory(limit_bytes) == heap


@pytest.mark.parametrize(
    ("limit_bytes", "direct"),
    [(None, None), (2 * GIB, "256m"), (1 * GIB, "128m"), (256 * MIB, "64m"), (8 * GIB, "1024m")],
)
def test_direct_buffers_get_an_eighth_of_the_limit(limit_bytes: int | None, direct: str) -> None:
    assert decide_direct_memory(limit_bytes) == direct


def test_heap_and_direct_buffers_leave_room_for_the_jvm_and_python() -> None:
    """What a 1 GiB limit held when measured (docs/consumer.md, "In a container"): heap and direct
    buffers never take more than 5/8 of a limit at or above the minimum."""
    for limit in (MIN_LIMIT_BYTES, 2 * GIB, 3 * GIB + 123, 16 * GIB):
        heap = int(decide_driver_memory(limit).removesuffix("m")) * MIB
        direct = int(str(decide_direct_memory(limit)).removesuffix("m")) * MIB
        assert heap + direct <= limit * 5 / 8


@pytest.mark.parametrize(
    ("limit_bytes", "warned"),
    [(None, False), (0, False), (2 * GIB, False), (MIN_LIMIT_BYTES, False),
     (MIN_LIMIT_BYTES - 1, True), (256 * MIB, True)],
)  # fmt: skip
def test_a_limit_too_small_for_spark_is_named_and_the_field_to_raise(
    limit_bytes: int | None, warned: bool
) -> None:
    warning = decide_memory_warning(limit_bytes)
    assert (warning is not None) is warned
    if warning is not None:
        assert f"({limit_bytes // MIB} MiB)" in warning  # type: ignore[operator]
        assert "spec.consumer.resources.limits.memory" in warning
        assert "OOMKilled" in warning


# -- paths: all on emptyDirs ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "paths"),
    [
        ({}, SparkPaths(TMP, TMP, TMP)),
        ({"TMPDIR": "/t", "HOME": "/h"}, SparkPaths("/t", "/t", "/h")),
        ({"SPARK_LOCAL_DIRS": " /a , /b", "TMPDIR": "/t"}, SparkPaths("/t", "/a", "/t")),
        ({"SPARK_LOCAL_DIRS": ",", "TMPDIR": " "}, SparkPaths(TMP, TMP, TMP)),
    ],
)
def test_spark_paths_come_from_the_environment(environ: dict[str, str], paths: SparkPaths) -> None:
    assert decide_spark_paths(environ) == paths


def paths_written(conf: dict[str, str], env: dict[str, str]) -> list[str]:
    """Every directory or file the processes write to, by the settings that name them."""
    found = [conf["spark.local.dir"], conf["spark.sql.warehouse.dir"], conf["spark.jars.ivy"]]
    for option in conf["spark.driver.extraJavaOptions"].split():
        match = re.fullmatch(r"-D(?:java\.io\.tmpdir|user\.home)=(.+)|-XX:ErrorFile=(.+)", option)
        if match:
            found.append(match.group(1) or match.group(2))
    found += [env["HOME"], env["TMPDIR"], *env["SPARK_LOCAL_DIRS"].split(",")]
    found.append(f"{TMP}/hsperfdata_metricpipe")  # the JVM's perf data: /tmp, whatever is set
    return found


@pytest.mark.parametrize("pod_of", PODS)
def test_every_path_spark_java_and_python_write_is_on_a_writable_empty_dir(pod_of: Any) -> None:
    """The root filesystem is read-only: what the consumer derives from its container's
    environment (sparkconf, the code the consumer runs) must all land on an emptyDir."""
    pod = pod_of()
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = plain_env(container)
    paths = decide_spark_paths(env)
    conf = build_spark_conf("1g", "128m", paths, ["/opt/metricpipe/jars/a.jar"])
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    writable = [
        PurePosixPath(m["mountPath"])
        for m in container["volumeMounts"]
        if m["name"] in empty_dirs and not m.get("readOnly")
    ]
    for path in paths_written(conf, env):
        assert any(PurePosixPath(path).is_relative_to(mount) for mount in writable), path
    assert conf["spark.local.dir"] != env["TMPDIR"]  # scratch has a volume of its own


@pytest.mark.parametrize("pod_of", PODS)
def test_both_empty_dirs_are_bounded_and_scratch_is_configurable(pod_of: Any) -> None:
    volumes = {v["name"]: v for v in pod_of()["volumes"]}
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "256Mi"}
    assert volumes["scratch"]["emptyDir"] == {"sizeLimit": "2Gi"}
    bigger = OperatorConfig(kafka_bootstrap="k:9092", consumer_scratch_size_limit="20Gi")
    volumes = {v["name"]: v for v in pod_of(bigger)["volumes"]}
    assert volumes["scratch"]["emptyDir"] == {"sizeLimit": "20Gi"}


@pytest.mark.parametrize("pod_of", PODS)
def test_the_container_learns_its_own_memory_limit_in_bytes(pod_of: Any) -> None:
    (container,) = pod_of(resources={"limits": {"memory": "3Gi"}})["containers"]
    (limit,) = [e for e in container["env"] if e["name"] == "METRICPIPE_MEMORY_LIMIT_BYTES"]
    # no containerName: the downward API then means this container (named consumer or job)
    assert limit["valueFrom"] == {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1"}}
    assert container["resources"]["limits"]["memory"] == "3Gi"


# -- the image's jars -----------------------------------------------------------------------


def test_batch_runs_take_the_connector_from_the_image_and_stream_consumers_none() -> None:
    (job,) = batch_pod()["containers"]
    assert plain_env(job)["METRICPIPE_SPARK_JARS"] == "/opt/metricpipe/jars/*.jar"
    (consumer,) = stream_pod()["containers"]
    assert "METRICPIPE_SPARK_JARS" not in plain_env(consumer)
    other = OperatorConfig(kafka_bootstrap="k:9092", batch_spark_jars="/jars/a.jar,/jars/b.jar")
    (job,) = batch_pod(other)["containers"]
    assert plain_env(job)["METRICPIPE_SPARK_JARS"] == "/jars/a.jar,/jars/b.jar"
    (job,) = batch_pod(OperatorConfig(kafka_bootstrap="k:9092", batch_spark_jars=""))["containers"]
    assert "METRICPIPE_SPARK_JARS" not in plain_env(job)


FILES = {
    "/opt/metricpipe/jars/*.jar": ["/opt/metricpipe/jars/b.jar", "/opt/metricpipe/jars/a.jar"],
    "/x/c.jar": ["/x/c.jar"],
    "/opt/metricpipe/jars/a.jar": ["/opt/metricpipe/jars/a.jar"],
}


@pytest.mark.parametrize(
    ("setting", "jars"),
    [
        ("", []),
        (" , ", []),
        ("/opt/metricpipe/jars/*.jar",
         ["/opt/metricpipe/jars/a.jar", "/opt/metricpipe/jars/b.jar"]),
        ("/x/c.jar, /opt/metricpipe/jars/*.jar,/opt/metricpipe/jars/a.jar",
         ["/x/c.jar", "/opt/metricpipe/jars/a.jar", "/opt/metricpipe/jars/b.jar"]),
    ],
)  # fmt: skip
def test_jar_settings_expand_globs_in_order_without_repeats(setting: str, jars: list[str]) -> None:
    assert decide_spark_jars(setting, lambda entry: FILES.get(entry, [])) == jars


def test_a_jar_entry_that_matches_nothing_says_which_and_what_to_set() -> None:
    with pytest.raises(SparkSetupError) as raised:
        decide_spark_jars("/x/c.jar,/home/u/.cache/jars/*.jar", lambda entry: FILES.get(entry, []))
    assert "'/home/u/.cache/jars/*.jar' matches no file" in str(raised.value)
    assert "METRICPIPE_BATCH_SPARK_JARS" in str(raised.value)


def test_jars_go_on_the_local_drivers_class_path_and_heap_reaches_the_jvm() -> None:
    paths = SparkPaths(TMP, "/scratch", TMP)
    conf = build_spark_conf("768m", "128m", paths, ["/j/a.jar", "/j/b.jar"])
    assert conf["spark.driver.extraClassPath"] == "/j/a.jar:/j/b.jar"
    assert "spark.jars" not in conf
    assert conf["spark.driver.memory"] == "768m"
    assert "-XX:MaxDirectMemorySize=128m" in conf["spark.driver.extraJavaOptions"].split()
    assert "-Xmx" not in conf["spark.driver.extraJavaOptions"]  # Spark refuses it there
    no_limit = build_spark_conf("1g", None, paths, [])
    assert "spark.driver.extraClassPath" not in no_limit
    assert "MaxDirectMemorySize" not in no_limit["spark.driver.extraJavaOptions"]


@pytest.mark.parametrize(
    ("jars", "archive", "mapped"),
    [([], "/opt/metricpipe/spark-classes.jsa", True),
     (["/j/a.jar"], "/opt/metricpipe/spark-classes.jsa", False),  # another class path
     ([], None, False)],
)  # fmt: skip
def test_the_class_archive_is_mapped_only_on_spark_s_own_class_path(
    jars: list[str], archive: str | None, mapped: bool
) -> None:
    conf = build_spark_conf("1g", None, SparkPaths(TMP, TMP, TMP), jars, archive)
    options = conf["spark.driver.extraJavaOptions"].split()
    assert (f"-XX:SharedArchiveFile={archive}" in options) is mapped
    assert not any(o.startswith("-Xshare") for o in options)  # a bad archive never stops it


def test_the_image_makes_verifies_and_names_its_class_archive() -> None:
    text = DOCKERFILE.read_text()
    (archive,) = re.findall(r"METRICPIPE_SPARK_CLASS_ARCHIVE=(\S+)", text)
    assert 'classarchive make "$METRICPIPE_SPARK_CLASS_ARCHIVE"' in text
    assert 'classarchive verify "$METRICPIPE_SPARK_CLASS_ARCHIVE"' in text
    assert archive.startswith("/opt/metricpipe/")  # in the image, read-only at run time
    assert text.index("classarchive make") < text.index("USER 65532")


# -- user, privileges, grace ----------------------------------------------------------------


def dockerfile_user() -> tuple[int, int]:
    users = re.findall(r"^USER\s+(\d+):(\d+)\s*$", DOCKERFILE.read_text(), flags=re.MULTILINE)
    uid, gid = users[-1]
    return int(uid), int(gid)


@pytest.mark.parametrize("pod_of", PODS)
def test_pods_run_as_the_images_non_root_user_without_privileges(pod_of: Any) -> None:
    pod = pod_of()
    uid, gid = dockerfile_user()
    assert uid != 0
    assert pod["securityContext"] == {
        "runAsNonRoot": True, "runAsUser": uid, "runAsGroup": gid, "fsGroup": gid,
        "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip
    (container,) = pod["containers"]
    assert container["securityContext"] == {
        "runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"},
    }  # fmt: skip


@pytest.mark.parametrize("pod_of", PODS)
def test_a_stopped_pod_gets_the_configured_grace_to_write_and_commit(pod_of: Any) -> None:
    assert pod_of()["terminationGracePeriodSeconds"] == CONFIG.consumer_termination_grace_seconds
    longer = OperatorConfig(kafka_bootstrap="k:9092", consumer_termination_grace_seconds=300)
    assert pod_of(longer)["terminationGracePeriodSeconds"] == 300
