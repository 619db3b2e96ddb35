"""The archive of Spark's classes the stack made for consumer processes (consumers'
classarchive.py), with real JVMs: a consumer's JVM maps it when mapping is required
(`-Xshare:on`), and a JVM whose class path differs (a batch run's extra jars first) cannot, so
the check is one that can fail. Consumers themselves never require it (`-Xshare:auto`): their
start is only slower without it."""

from __future__ import annotations

import subprocess
import sys

from metricpipe_devstack.env import StackEnv

OTHER_CLASS_PATH = """
import sys
from pathlib import Path
from metricpipe_consumers.classarchive import build_archive_options, end_jvm, start_like_a_consumer
archive = Path(sys.argv[1])
sys.exit(end_jvm(start_like_a_consumer(build_archive_options("verify", archive), archive,
                                       jars=sys.argv[2])))
"""


def test_a_consumer_s_jvm_maps_the_archive_and_another_class_path_cannot(stack: StackEnv) -> None:
    archive = stack.spark_class_archive
    assert archive is not None, ".stack/env names no SPARK_CLASS_ARCHIVE"
    assert archive.is_file(), archive
    mapped = subprocess.run(
        [sys.executable, "-m", "metricpipe_consumers.classarchive", "verify", str(archive)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert mapped.returncode == 0, mapped.stdout[-2000:] + mapped.stderr[-2000:]
    assert "is mapped by a consumer's JVM" in mapped.stdout
    other = subprocess.run(
        [sys.executable, "-c", OTHER_CLASS_PATH, str(archive), ",".join(stack.spark_kafka_jars)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    said = other.stdout + other.stderr
    assert other.returncode != 0, said[-2000:]
    assert "shared archive" in said.lower() or "JAVA_GATEWAY_EXITED" in said, said[-2000:]
