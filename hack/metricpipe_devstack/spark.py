"""Spark: pyspark from PyPI in local mode on the machine's Java 17, plus the Kafka connector.

There is no long-running Spark server: every consumer or job starts its own local-mode session.
The probe checks that pyspark imports, Java runs, and the connector jars are in the cache.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess

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

    def env(self) -> dict[str, str]:
        return {"SPARK_KAFKA_JARS": ",".join(self.connector_jars())}
