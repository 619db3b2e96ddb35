"""Spark's session settings in a container (pure decisions; `engine.SparkAggregator` applies
them, `spark_conf_from_environment` is the thin shell that reads the process environment).

- **Heap from the memory limit.** The container's limit (`METRICPIPE_MEMORY_LIMIT_BYTES`, the
  downward API's `limits.memory`) holds the whole pod's processes: the JVM's heap, the JVM's
  memory outside the heap (metaspace, code cache, thread stacks, GC structures, direct buffers
  for Arrow and Netty) and the Python process (pyarrow, the Kafka client, the batch being
  built). Half the limit goes to the heap (`-Xmx`, as `spark.driver.memory`), at most an
  eighth to direct buffers (`-XX:MaxDirectMemorySize`; the JVM's default would be the heap's
  size again), and the rest (at least 3/8) is left to the JVM's other native memory and to
  Python. The heap is never below `MIN_HEAP_MIB`: Spark refuses to start with less than
  450 MiB of heap (300 MiB reserved x 1.5). Under `MIN_LIMIT_BYTES` the consumer warns and
  starts anyway: the kernel's OOM killer, not the consumer, says that the limit is too small
  (docs/consumer.md, "In a container").
- **Writable places only.** The root filesystem is read-only. Spark's scratch space
  (`spark.local.dir`: shuffle and spill files, PySpark's Arrow hand-over files; the SQL
  warehouse directory under it) goes to the first of `SPARK_LOCAL_DIRS`; Java's and Python's
  temporary files, and the JVM's crash log, to `TMPDIR` (`/tmp` when unset). The operator
  mounts an emptyDir at each.
- **Extra jars** (Spark's Kafka connector, for batch runs) are named by paths or globs
  (`/opt/metricpipe/jars/*.jar`); an entry that matches no file is an error that says so.
- **Class archive.** A JVM start loads and verifies some 15,000 of Spark's classes. An
  application class-data-sharing archive of them (`classarchive.py`, made once where the JVM
  and Spark's jars are installed: the consumer image, the development cache) is mapped
  instead (`-XX:SharedArchiveFile`) when the class path is Spark's own (stream mode). A
  missing or mismatched archive only costs the time it would have saved: the JVM loads the
  classes itself.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog

MIB = 1024 * 1024
HEAP_FRACTION = 0.5
DIRECT_MEMORY_FRACTION = 0.125
MIN_HEAP_MIB = 512  # Spark's own floor is 450 MiB of heap; Runtime.maxMemory is a bit below -Xmx
MIN_DIRECT_MIB = 64
# Below this limit Spark cannot run with MIN_HEAP_MIB of heap beside its native memory and
# Python (measured: docs/consumer.md, "In a container").
MIN_LIMIT_BYTES = 1024 * MIB
DEFAULT_DRIVER_MEMORY = "1g"  # no limit known: a process on a development host
REDACTION_REGEX = "(?i)secret|password|token|access[.]?key|jaas|keystore"
DEFAULT_TEMP_DIR = "/tmp"  # noqa: S108 - the pod mounts an emptyDir there


class SparkSetupError(ValueError):
    """Spark cannot be set up as configured; the message says which setting to change."""


def decide_driver_memory(limit_bytes: int | None) -> str:
    """The driver JVM's heap (`spark.driver.memory`) for a container memory limit in bytes:
    HEAP_FRACTION of it in whole MiB, at least MIN_HEAP_MIB; DEFAULT_DRIVER_MEMORY when no
    limit is known (None or 0)."""
    if not limit_bytes or limit_bytes <= 0:
        return DEFAULT_DRIVER_MEMORY
    return f"{max(MIN_HEAP_MIB, int(limit_bytes * HEAP_FRACTION) // MIB)}m"


def decide_direct_memory(limit_bytes: int | None) -> str | None:
    """The JVM's cap on direct buffers (`-XX:MaxDirectMemorySize`), or None without a limit."""
    if not limit_bytes or limit_bytes <= 0:
        return None
    return f"{max(MIN_DIRECT_MIB, int(limit_bytes * DIRECT_MEMORY_FRACTION) // MIB)}m"


def decide_memory_warning(limit_bytes: int | None) -> str | None:
    """What to tell the user when the limit is too small for Spark (None when it is not)."""
    if not limit_bytes or limit_bytes <= 0 or limit_bytes >= MIN_LIMIT_BYTES:
        return None
    return (
        f"the container's memory limit ({limit_bytes // MIB} MiB) is below the "
        f"{MIN_LIMIT_BYTES // MIB} MiB a consumer needs (a {MIN_HEAP_MIB} MiB Spark heap, the "
        "JVM's native memory and the Python process): expect the kernel to kill it "
        "(OOMKilled); raise spec.consumer.resources.limits.memory"
    )


@dataclass(frozen=True)
class SparkPaths:
    temp_dir: str  # TMPDIR: Python's and Java's temporary files, the JVM's crash log
    local_dir: str  # spark.local.dir: Spark's scratch space
    home_dir: str  # HOME: Java's user.home, under which Spark keeps its Ivy directory


def decide_spark_paths(environ: Mapping[str, str]) -> SparkPaths:
    """Where Spark and Python write, from the environment the pod gives the process."""
    temp_dir = environ.get("TMPDIR", "").strip() or DEFAULT_TEMP_DIR
    local_dirs = [d.strip() for d in environ.get("SPARK_LOCAL_DIRS", "").split(",") if d.strip()]
    return SparkPaths(
        temp_dir=temp_dir,
        local_dir=local_dirs[0] if local_dirs else temp_dir,
        home_dir=environ.get("HOME", "").strip() or temp_dir,
    )


def build_spark_conf(
    driver_memory: str, direct_memory: str | None, paths: SparkPaths, jars: Sequence[str],
    class_archive: str | None = None,
) -> dict[str, str]:  # fmt: skip
    """The session settings that must be known before Spark's JVM starts (PySpark passes them
    to spark-submit, which sizes and launches the JVM from them). The class archive is used
    only without extra jars: they go before Spark's own on the class path, which then no
    longer matches the archive's."""
    java_options = [
        f"-Djava.io.tmpdir={paths.temp_dir}",
        # Java takes user.home from the user database, not HOME: a user the image's
        # /etc/passwd does not name gets '?', and spark-submit then stops on a relative Ivy path
        f"-Duser.home={paths.home_dir}",
        f"-XX:ErrorFile={paths.temp_dir}/hs_err_pid%p.log",  # the working directory is read-only
    ]
    if direct_memory is not None:
        java_options.append(f"-XX:MaxDirectMemorySize={direct_memory}")
    if class_archive and not jars:
        java_options.append(f"-XX:SharedArchiveFile={class_archive}")
    conf = {
        "spark.driver.memory": driver_memory,
        "spark.driver.extraJavaOptions": " ".join(java_options),
        "spark.local.dir": paths.local_dir,
        "spark.jars.ivy": f"{paths.home_dir}/.ivy2",  # spark-submit sets up Ivy even unused
        # relative to the working directory otherwise; Spark may create it at start-up
        "spark.sql.warehouse.dir": f"{paths.local_dir}/spark-warehouse",
        # Spark's default, plus the Kafka source's JAAS line (it holds the SCRAM password)
        # and keystore settings: never shown in logs, the UI or the event log
        "spark.redaction.regex": REDACTION_REGEX,
    }
    if jars:
        # Local mode: the driver is the executor, so the driver's class path is enough. Unlike
        # spark.jars it needs no Hadoop file system at submit time (nor the user lookup that
        # comes with it) and no copy through Spark's file server.
        conf["spark.driver.extraClassPath"] = ":".join(jars)
    return conf


def decide_spark_jars(setting: str, expand: Callable[[str], list[str]]) -> list[str]:
    """The jars of a comma-separated setting whose entries are paths or globs; `expand` lists
    an entry's matching files (`glob.glob`). An entry that matches nothing is an error."""
    jars: list[str] = []
    for entry in (e.strip() for e in setting.split(",")):
        if not entry:
            continue
        found = sorted(expand(entry))
        if not found:
            raise SparkSetupError(
                f"METRICPIPE_SPARK_JARS entry {entry!r} matches no file: the image does not "
                "carry Spark's Kafka connector there; set the operator's "
                "METRICPIPE_BATCH_SPARK_JARS to where the consumer image keeps its jars"
            )
        jars.extend(jar for jar in found if jar not in jars)
    return jars


def spark_conf_from_environment(
    memory_limit_bytes: int | None,
    driver_memory: str | None,
    jars_setting: str,
    environ: Mapping[str, str] | None = None,
    class_archive: Path | None = None,
) -> dict[str, str]:
    """The session settings of this process: the heap from its memory limit (or the explicit
    `driver_memory`), its paths from TMPDIR/SPARK_LOCAL_DIRS, its jars expanded. Logs the
    decision, and a warning when the limit is too small (it starts anyway)."""
    log = structlog.get_logger("metricpipe.engine")
    heap = driver_memory or decide_driver_memory(memory_limit_bytes)
    direct = decide_direct_memory(memory_limit_bytes)
    paths = decide_spark_paths(os.environ if environ is None else environ)
    jars = decide_spark_jars(jars_setting, glob.glob)
    warning = decide_memory_warning(memory_limit_bytes)
    if warning:
        log.warning("memory limit too small for spark", detail=warning)
    log.info("spark memory and paths", memory_limit_bytes=memory_limit_bytes, heap=heap,
             max_direct_memory=direct, local_dir=paths.local_dir, temp_dir=paths.temp_dir,
             jars=len(jars))  # fmt: skip
    archive = str(class_archive) if class_archive and class_archive.is_file() else None
    if class_archive and archive is None:
        log.warning("no class archive: Spark's classes are loaded one by one",
                    missing=str(class_archive))  # fmt: skip
    return build_spark_conf(heap, direct, paths, jars, archive)
