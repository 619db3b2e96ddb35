"""Apache Kafka 4.x in KRaft mode (one combined broker+controller) from Maven Central jars."""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

from confluent_kafka.admin import AdminClient

from .base import Component, Probe
from .errors import StackError

LOG4J2_PROPERTIES = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class Kafka(Component):
    name = "kafka"
    startup_timeout = 120.0

    def port(self) -> int:
        return self.settings.ports.kafka

    def listen_ports(self) -> list[int]:
        return [self.settings.ports.kafka, self.settings.ports.kafka_controller]

    @property
    def bootstrap(self) -> str:
        return f"{self.bind_host()}:{self.settings.ports.kafka}"

    @property
    def config_dir(self) -> Path:
        return self.data_dir / "config"

    def _classpath(self) -> str:
        libs = self.settings.kafka_libs
        if not (libs / f"kafka-server-common-{self.version}.jar").exists():
            raise StackError(self.name, f"jars missing in {libs}; run 'make stack-deps'")
        return f"{libs}/*"

    @property
    def version(self) -> str:
        return self.settings.versions["KAFKA_VERSION"]

    def _java(self, main: str, *args: str) -> list[str]:
        return [
            "java",
            "-Xms256m",
            f"-Xmx{self.settings.heap_mb}m",
            f"-Dlog4j2.configurationFile={self.config_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
            "-cp",
            self._classpath(),
            main,
            *args,
        ]

    def prepare(self) -> None:
        ports = self.settings.ports
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "log4j2.properties").write_text(LOG4J2_PROPERTIES)
        log_dirs = self.data_dir / "kraft-logs"
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{ports.kafka_controller}",
            # clients (host processes and pods) on the bridge address; the controller stays on
            # loopback, only the broker itself talks to it
            "listeners": (
                f"PLAINTEXT://{self.bootstrap},CONTROLLER://127.0.0.1:{ports.kafka_controller}"
            ),
            "advertised.listeners": f"PLAINTEXT://{self.bootstrap}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(log_dirs),
            "num.partitions": "1",
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "10",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "delete.topic.enable": "true",
        }
        server_properties = self.config_dir / "server.properties"
        server_properties.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        if (log_dirs / "meta.properties").exists():
            return
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        result = subprocess.run(
            self._java(
                "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(server_properties)
            ),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(self.name, f"storage format failed: {result.stdout}{result.stderr}")

    def argv(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_dir / "server.properties"))

    def probe(self) -> Probe:
        try:
            admin = AdminClient({"bootstrap.servers": self.bootstrap, "socket.timeout.ms": 3000})
            metadata = admin.list_topics(timeout=3)
        except Exception as error:  # librdkafka raises KafkaException on timeouts
            return Probe(False, f"unreachable: {error}")
        ok = bool(metadata.brokers)
        return Probe(ok, f"{len(metadata.brokers)} broker(s)", self.version)

    def env(self) -> dict[str, str]:
        return {"KAFKA_BOOTSTRAP": self.bootstrap}
