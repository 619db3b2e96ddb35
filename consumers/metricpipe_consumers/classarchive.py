"""The class-data-sharing archive of Spark's classes that consumers map at start-up
(sparkconf.py, "Class archive").

`python -m metricpipe_consumers.classarchive make PATH` starts Spark the way a stream consumer
does (its session and its warm-up) in a JVM run with `-XX:ArchiveClassesAtExit`; when that JVM
exits, the classes it loaded are written to the archive. It is made where it is used, by the
same JVM and with the same class path: the consumer image's build, the development stack's
cache. `... verify PATH` starts a session that must map it (`-Xshare:on`: a JVM that cannot,
because the JVM or the class path differ, refuses to start), which the image build runs after
`make`.

Measured on the development machine (2 cores; `.venv/bin/python bench/consumer_start.py
--runs 3`, medians): a consumer's Spark session starts in 2.7 s instead of 4.7 s and its
warm-up takes 4.8 s instead of 6.4 s, 7.7 s instead of 11.1 s in all (ratio 0.70).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from .engine import SparkAggregator
from .sparkconf import DEFAULT_DRIVER_MEMORY, spark_conf_from_environment

# the archive's own log: a few hundred "Skipping ... Signed JAR" warnings otherwise
QUIET = "-Xlog:cds=error,cds+dynamic=error"


def build_archive_options(mode: str, archive: Path) -> list[str]:
    """The JVM options that make (`make`) or strictly map (`verify`) the archive."""
    if mode == "make":
        return [f"-XX:ArchiveClassesAtExit={archive}", QUIET]
    return [f"-XX:SharedArchiveFile={archive}", "-Xshare:on"]


def start_like_a_consumer(
    java_options: list[str], class_archive: Path | None = None, jars: str = ""
) -> Any:
    """Spark's session and warm-up, as `__main__.run_stream` starts them (`jars`: as a batch
    run's); returns the JVM's process (PySpark's gateway), still running."""
    conf = spark_conf_from_environment(None, DEFAULT_DRIVER_MEMORY, jars,
                                       class_archive=class_archive)  # fmt: skip
    conf["spark.driver.extraJavaOptions"] += " " + " ".join(java_options)
    engine = SparkAggregator("local[1]", conf=conf)
    engine.warm_up()
    gateway = engine.session.sparkContext._gateway
    engine.stop()
    if gateway is None:
        raise RuntimeError("PySpark started no gateway JVM")
    return gateway.proc


def end_jvm(process: Any) -> int:
    """PySpark's gateway JVM exits when its standard input closes (and then writes an archive
    it was told to)."""
    process.stdin.close()
    return int(process.wait(timeout=300))


def make(target: Path) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")  # never half-read
    partial.unlink(missing_ok=True)
    began = time.monotonic()
    code = end_jvm(start_like_a_consumer(build_archive_options("make", partial)))
    if code != 0 or not partial.is_file():
        print(f"class archive: the JVM exited with {code} and wrote no archive", file=sys.stderr)
        return 1
    os.replace(partial, target)
    size = target.stat().st_size / 1024 / 1024
    print(f"class archive: {target} ({size:.0f} MiB) in {time.monotonic() - began:.0f} s")
    return 0


def verify(archive: Path) -> int:
    if not archive.is_file():
        print(f"class archive: no file {archive}", file=sys.stderr)
        return 1
    code = end_jvm(start_like_a_consumer(build_archive_options("verify", archive), archive))
    print(f"class archive: {archive} is mapped by a consumer's JVM" if code == 0 else
          f"class archive: a JVM exited with {code}", flush=True)  # fmt: skip
    return code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m metricpipe_consumers.classarchive",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("mode", choices=("make", "verify"))
    parser.add_argument("archive", type=Path)
    args = parser.parse_args(argv)
    return make(args.archive) if args.mode == "make" else verify(args.archive)


if __name__ == "__main__":
    sys.exit(main())
