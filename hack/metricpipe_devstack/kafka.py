"""Apache Kafka 4.x in KRaft mode (one combined broker+controller) from Maven Central jars.

Three client listeners on the pod bridge's host address:
- PLAINTEXT (ports.kafka): the quick path; its clients are User:ANONYMOUS, a super user.
- SASL_SSL (ports.kafka_sasl): TLS with the stack's CA, SCRAM-SHA-512/256 users; `admin` is
  made at storage-format time (its password in config/scram-admin.password), others by
  whoever administers the cluster (AdminClient.alter_user_scram_credentials).
- MTLS (ports.kafka_mtls): TLS with a client certificate from the stack's CA required; the
  certificate's CN is the user (`CN=alice` -> User:alice).
The ACL authorizer (StandardAuthorizer) is on: a user of the secured listeners may do only
what ACLs grant it (no ACL: denied).
"""

from __future__ import annotations

import base64
import logging
import secrets
import subprocess
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient

from .base import Component, Probe
from .errors import StackError
from .pki import ensure_pki, issue_certificate

SCRAM_ADMIN = "admin"
SCRAM_SERVER_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"

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
        ports = self.settings.ports
        return [ports.kafka, ports.kafka_sasl, ports.kafka_mtls, ports.kafka_controller]

    @property
    def bootstrap(self) -> str:
        return f"{self.bind_host()}:{self.settings.ports.kafka}"

    @property
    def sasl_bootstrap(self) -> str:
        return f"{self.bind_host()}:{self.settings.ports.kafka_sasl}"

    @property
    def mtls_bootstrap(self) -> str:
        return f"{self.bind_host()}:{self.settings.ports.kafka_mtls}"

    @property
    def admin_password_file(self) -> Path:
        return self.config_dir / "scram-admin.password"

    def _ensure_tls_files(self) -> Path:
        """The broker's PEM keystore (its key, then its certificate from the stack's CA)."""
        pki = self.settings.pki_dir
        ensure_pki(pki, extra_sans=f"IP:{self.settings.host_address}")
        crt, key = issue_certificate(
            pki, "kafka-server", "kafka", sans=f"IP:{self.bind_host()},IP:127.0.0.1,DNS:localhost"
        )
        keystore = self.config_dir / "server-keystore.pem"
        keystore.write_text(key.read_text() + crt.read_text())
        keystore.chmod(0o600)
        return keystore

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
        keystore = self._ensure_tls_files()
        log_dirs = self.data_dir / "kraft-logs"
        clients = (
            f"PLAINTEXT://{self.bootstrap},SASL_SSL://{self.sasl_bootstrap},"
            f"MTLS://{self.mtls_bootstrap}"
        )
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{ports.kafka_controller}",
            # clients (host processes and pods) on the bridge address; the controller stays on
            # loopback, only the broker itself talks to it
            "listeners": f"{clients},CONTROLLER://127.0.0.1:{ports.kafka_controller}",
            "advertised.listeners": clients,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,MTLS:SSL,CONTROLLER:PLAINTEXT"
            ),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.settings.pki_dir / "ca.crt"),
            "listener.name.mtls.ssl.client.auth": "required",
            "ssl.principal.mapping.rules": "RULE:^CN=([^,]+)$/$1/,DEFAULT",
            "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": SCRAM_SERVER_LOGIN,
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config": SCRAM_SERVER_LOGIN,
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # the plaintext listener's and the controller's clients are ANONYMOUS
            "super.users": f"User:ANONYMOUS;User:{SCRAM_ADMIN}",
            "allow.everyone.if.no.acl.found": "false",
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
        password = secrets.token_urlsafe(18)
        self.admin_password_file.write_text(password)
        self.admin_password_file.chmod(0o600)
        scram = f"SCRAM-SHA-512=[name={SCRAM_ADMIN},password={password}]"
        result = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(server_properties),
                "--add-scram",
                scram,
            ),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise StackError(self.name, f"storage format failed: {result.stdout}{result.stderr}")

    def argv(self) -> list[str]:
        return self._java("kafka.Kafka", str(self.config_dir / "server.properties"))

    def admin_settings(self) -> dict[str, str]:
        """librdkafka settings of the SCRAM admin on the SASL_SSL listener."""
        return {
            "bootstrap.servers": self.sasl_bootstrap,
            "security.protocol": "sasl_ssl",
            "ssl.ca.location": str(self.settings.pki_dir / "ca.crt"),
            "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": SCRAM_ADMIN,
            "sasl.password": self.admin_password_file.read_text().strip(),
        }

    def _probe_logger(self) -> logging.Logger:
        """Where the probes' Kafka clients log (`kafka-clients.log` beside the servers' logs):
        while the broker starts, librdkafka reports each refused connection, which is expected
        and belongs in a file, not on the screen; the probe's own result says what failed."""
        logger = logging.getLogger("metricpipe.devstack.kafka-clients")
        if not logger.handlers:
            self.settings.log_dir.mkdir(parents=True, exist_ok=True)
            logger.addHandler(logging.FileHandler(self.settings.log_dir / "kafka-clients.log"))
            logger.propagate = False
        return logger

    def probe(self) -> Probe:
        """Up when the plaintext listener answers and the SCRAM admin gets in over TLS."""
        quiet: dict[str, Any] = {"socket.timeout.ms": 3000, "logger": self._probe_logger()}
        try:
            admin = AdminClient({"bootstrap.servers": self.bootstrap, **quiet})
            metadata = admin.list_topics(timeout=3)
            if not metadata.brokers:
                return Probe(False, "no broker registered yet")
            secured = AdminClient({**self.admin_settings(), **quiet})
            secured.list_topics(timeout=3)
        except Exception as error:  # librdkafka raises KafkaException on timeouts
            return Probe(False, f"unreachable: {error}")
        return Probe(True, f"{len(metadata.brokers)} broker(s), SASL_SSL ok", self.version)

    def env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "KAFKA_SASL_BOOTSTRAP": self.sasl_bootstrap,
            "KAFKA_MTLS_BOOTSTRAP": self.mtls_bootstrap,
            "KAFKA_SCRAM_ADMIN": SCRAM_ADMIN,
            "KAFKA_SCRAM_ADMIN_PASSWORD_FILE": str(self.admin_password_file),
            "STACK_CA_FILE": str(self.settings.pki_dir / "ca.crt"),
            "STACK_PKI_DIR": str(self.settings.pki_dir),
        }
