"""The typed view of `.stack/env` that tests, the demo and benchmarks use to reach the stack."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .redis import RedisAccess


@dataclass(frozen=True)
class StackEnv:
    kubeconfig: Path
    kafka_bootstrap: str
    elasticsearch_url: str
    opensearch_url: str
    prometheus_url: str
    prometheus_file_sd_dir: Path
    prometheus_rules_dir: Path
    promtool: Path
    spark_kafka_jars: tuple[str, ...]
    data_dir: Path
    kube_version_expected: str
    kafka_sasl_bootstrap: str  # SASL_SSL, SCRAM users, ACLs (kafka.py)
    kafka_mtls_bootstrap: str  # SSL with client certificates, ACLs
    kafka_scram_admin: str  # the SCRAM super user made at storage-format time
    kafka_scram_admin_password_file: Path
    pki_dir: Path  # the stack's CA (ca.crt, ca.key) and the certificates it issued
    elasticsearch_secure_url: str  # 8.x, HTTPS with the stack's CA, users (secure_search.py)
    elasticsearch_secure_user: str  # its super user, for tests that make users and roles
    elasticsearch_secure_password_file: Path
    elasticsearch_secure_config_dir: Path  # its file realm (secure_search.FileRealm)
    opensearch_secure_url: str  # 2.19 with the security plugin, HTTPS with the stack's CA
    opensearch_secure_user: str  # its admin (all_access), for tests that make users and roles
    opensearch_secure_password_file: Path
    kubectl: Path = Path("kubectl")  # the pinned build (KUBECTL in .stack/env), else PATH's
    spark_class_archive: Path | None = None  # Spark's classes for consumer processes (spark.py)
    hdfs_url: str | None = None  # hdfs://host:port of the NameNode (hdfs.py)
    webhdfs_url: str | None = None  # http://host:port/webhdfs/v1 on the NameNode
    edge_url: str | None = None  # https://127.0.0.1:port of the edge's HAProxy (edge.py)
    prometheus3_url: str | None = None  # Prometheus 3 beside 2.x, same targets and rules
    edge_access_logs: tuple[Path, ...] = ()  # the edge Nginx servers' JSON access logs
    edge_haproxy_log: Path | None = None  # HAProxy's JSON session log
    redis: RedisAccess | None = None  # the log cache and its users (redis.py)

    @property
    def ca_file(self) -> Path:
        return self.pki_dir / "ca.crt"

    @classmethod
    def from_entries(cls, entries: dict[str, str], kube_version: str) -> StackEnv:
        missing = [
            key
            for key in (
                "KUBECONFIG",
                "KAFKA_BOOTSTRAP",
                "ELASTICSEARCH_URL",
                "OPENSEARCH_URL",
                "PROMETHEUS_URL",
                "METRICPIPE_DATA_DIR",
                "KAFKA_SASL_BOOTSTRAP",
                "KAFKA_MTLS_BOOTSTRAP",
                "KAFKA_SCRAM_ADMIN_PASSWORD_FILE",
                "STACK_PKI_DIR",
                "ELASTICSEARCH_SECURE_URL",
                "ELASTICSEARCH_SECURE_PASSWORD_FILE",
                "ELASTICSEARCH_SECURE_CONFIG_DIR",
                "OPENSEARCH_SECURE_URL",
                "OPENSEARCH_SECURE_PASSWORD_FILE",
            )
            if key not in entries
        ]
        if missing:
            raise KeyError(f".stack/env lacks {', '.join(missing)}; run 'make stack-up' again")
        jars = tuple(j for j in entries.get("SPARK_KAFKA_JARS", "").split(",") if j)
        return cls(
            kubeconfig=Path(entries["KUBECONFIG"]),
            kafka_bootstrap=entries["KAFKA_BOOTSTRAP"],
            elasticsearch_url=entries["ELASTICSEARCH_URL"],
            opensearch_url=entries["OPENSEARCH_URL"],
            prometheus_url=entries["PROMETHEUS_URL"],
            prometheus_file_sd_dir=Path(entries["PROMETHEUS_FILE_SD_DIR"]),
            prometheus_rules_dir=Path(entries["PROMETHEUS_RULES_DIR"]),
            promtool=Path(entries["PROMTOOL"]),
            spark_kafka_jars=jars,
            data_dir=Path(entries["METRICPIPE_DATA_DIR"]),
            kube_version_expected=kube_version,
            kafka_sasl_bootstrap=entries["KAFKA_SASL_BOOTSTRAP"],
            kafka_mtls_bootstrap=entries["KAFKA_MTLS_BOOTSTRAP"],
            kafka_scram_admin=entries.get("KAFKA_SCRAM_ADMIN", "admin"),
            kafka_scram_admin_password_file=Path(entries["KAFKA_SCRAM_ADMIN_PASSWORD_FILE"]),
            pki_dir=Path(entries["STACK_PKI_DIR"]),
            elasticsearch_secure_url=entries["ELASTICSEARCH_SECURE_URL"],
            elasticsearch_secure_user=entries.get("ELASTICSEARCH_SECURE_USER", "elastic"),
            elasticsearch_secure_password_file=Path(entries["ELASTICSEARCH_SECURE_PASSWORD_FILE"]),
            elasticsearch_secure_config_dir=Path(entries["ELASTICSEARCH_SECURE_CONFIG_DIR"]),
            opensearch_secure_url=entries["OPENSEARCH_SECURE_URL"],
            opensearch_secure_user=entries.get("OPENSEARCH_SECURE_USER", "admin"),
            opensearch_secure_password_file=Path(entries["OPENSEARCH_SECURE_PASSWORD_FILE"]),
            kubectl=Path(entries.get("KUBECTL", "kubectl")),
            prometheus3_url=entries.get("PROMETHEUS3_URL"),
            spark_class_archive=Path(archive) if (archive := entries.get("SPARK_CLASS_ARCHIVE"))
            else None,
            hdfs_url=entries.get("METRICPIPE_HDFS_URL"),
            webhdfs_url=entries.get("METRICPIPE_WEBHDFS_URL"),
            edge_url=entries.get("METRICPIPE_EDGE_URL"),
            edge_access_logs=tuple(
                Path(p) for p in entries.get("METRICPIPE_EDGE_ACCESS_LOGS", "").split(",") if p
            ),
            edge_haproxy_log=Path(log) if (log := entries.get("METRICPIPE_EDGE_HAPROXY_LOG"))
            else None,
            redis=RedisAccess.from_entries(entries),
        )  # fmt: skip
