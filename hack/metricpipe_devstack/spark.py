"""Spark: pyspark from PyPI in local mode on the machine's Java 17, plus the Kafka connector.

There is no long-running Spark server: every consumer or job starts its own local-mode session.
The probe checks that pyspark imports, Java runs, and the connector jars are in the cache.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .base import Component, Probe


class Spark(Component):
    name = "spark"

    def argv(self) -> None:
        return None

    def connector_jars(self) -> list[str]:
        return sorted(str(p) for p in self.settings.spark_kafka_jars.glob("*.jar"))

    def probe(self) -> Probe:
        try:
            version = importlib.metadata.version("pyspark")
        except importlib.metadata.PackageNotFoundError:
            return Probe(False, "pyspark not installed (run 'make venv')")
        java = shutil.which("java")
        if java is None:
            return Probe(False, "no java on PATH", version)
        result = subprocess.run([java, "-version"], capture_output=True, text=True)
        java_line = (result.stderr.splitlines() or ["?"])[0]
        if not any("spark-sql-kafka" in jar for jar in self.connector_jars()):
            return Probe(False, "Kafka connector jars missing (run 'make stack-deps')", version)
        return Probe(result.returncode == 0, f"local mode; {java_line}", version)

    def class_archive(self) -> Path:
        """Where this checkout's archive of Spark's classes lies: it belongs to one JVM and
        one class path, and the JVM checks each jar's size and modification time against the
        archive's, so a virtualenv made anew (same path, same pyspark) needs a new one: the
        jars' names, sizes and times name it too."""
        java = subprocess.run(["java", "-version"], capture_output=True, text=True).stderr
        spec = importlib.util.find_spec("pyspark")
        jars_dir = Path(spec.origin).parent / "jars" if spec and spec.origin else None
        jars = sorted(jars_dir.glob("*.jar")) if jars_dir else []
        stamps = [f"{j.name} {j.stat().st_size} {j.stat().st_mtime_ns}" for j in jars]
        key = "\n".join([java, importlib.metadata.version("pyspark"), sys.prefix, *stamps])
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        return self.settings.cache_dir / "spark-classes" / f"{digest}.jsa"

    def ensure_class_archive(self, echo: Callable[[str], None]) -> Path:
        """Make the archive the consumer processes map (consumers' classarchive.py) unless
        it is there; about 20 s, once per virtualenv and JVM (class_archive names it)."""
        archive = self.class_archive()
        if archive.is_file():
            echo(f"   spark class archive: cached ({archive})")
            return archive
        echo("   spark class archive: making it (a consumer's start, about 20 s)")
        made = subprocess.run(
            [sys.executable, "-m", "metricpipe_consumers.classarchive", "make", str(archive)],
            capture_output=True, text=True,
        )  # fmt: skip
        if made.returncode != 0:  # consumers start without it, only slower: say so, go on
            echo(f"   spark class archive: not made ({made.stderr.strip()[-300:]})")
        else:
            echo(f"   {made.stdout.strip()}")
        # each virtualenv made anew needs its own (145 MiB): keep the newest few
        kept = sorted(archive.parent.glob("*.jsa"), key=lambda a: a.stat().st_mtime)[:-3]
        for old in kept:
            old.unlink(missing_ok=True)
        return archive

    def env(self) -> dict[str, str]:
        return {"SPARK_KAFKA_JARS": ",".join(self.connector_jars()),
                "SPARK_CLASS_ARCHIVE": str(self.class_archive())}  # fmt: skip
