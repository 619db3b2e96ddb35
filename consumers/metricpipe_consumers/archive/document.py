"""What an archiver process is told (`archive.json`, like a pipeline's `pipeline.json`), and
its one typed configuration from the environment (METRICPIPE_*)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from metricpipe_contract.archive import DEFAULT_ROOT, build_archive_dir
from metricpipe_contract.kafka import KafkaEndpoint

from .plan import Format


class _Doc(BaseModel):
    model_config = ConfigDict(populate_by_name=True, frozen=True, extra="forbid")


class ArchiveIdentity(_Doc):
    namespace: str
    name: str


class HdfsTarget(_Doc):
    webhdfs_url: str = Field(alias="webhdfsUrl")  # http://namenode:port/webhdfs/v1
    user: str = "metricpipe-archiver"  # HDFS simple authentication's user name
    root: str = DEFAULT_ROOT


class IndexTarget(_Doc):
    """spec.index, resolved by the operator: where the daily indices go."""

    backend: Literal["elasticsearch", "opensearch"]
    endpoint: str
    prefix: str  # indices <prefix>-YYYY.MM.DD
    retention_days: int = Field(ge=1, alias="retentionDays")
    ca_file: str | None = Field(default=None, alias="caFile")


class ArchiveDocument(_Doc):
    archive: ArchiveIdentity
    topic: str
    consumer_group: str = Field(alias="consumerGroup")
    kafka: KafkaEndpoint
    hdfs: HdfsTarget
    format: Format = "json"
    retention_days: int = Field(default=30, ge=1, alias="retentionDays")  # on HDFS, by dt=
    index: IndexTarget | None = None

    @property
    def directory(self) -> str:
        return build_archive_dir(self.hdfs.root, self.archive.namespace, self.archive.name)

    @property
    def key(self) -> str:
        return f"{self.archive.namespace}/{self.archive.name}"

    @classmethod
    def load(cls, path: Path) -> ArchiveDocument:
        return cls.model_validate(json.loads(path.read_text()))


class ArchiverConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METRICPIPE_", frozen=True)

    archive_config: Path = Field(default=Path("/etc/metricpipe/archive.json"))
    metrics_port: int = Field(default=9400, ge=0, le=65535, description="0: no endpoints.")
    archive_roll_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1, description="A partition's batch is written at this size."
    )
    archive_roll_seconds: float = Field(
        default=60.0, gt=0, description="... or once its oldest record waited this long."
    )
    archive_compact_grace_seconds: float = Field(
        default=600.0, ge=0,
        description="An hour is compacted once records this much past its end were written.",
    )  # fmt: skip
    archive_retention_interval_seconds: float = Field(
        default=3600.0, gt=0, description="How often the retention is enforced."
    )
    session_timeout_ms: int = Field(
        default=30_000, ge=1000,
        description="Kafka group session: how long a dead archiver's partitions wait.",
    )  # fmt: skip
    archive_native_lib: Path | None = Field(
        default=None,
        description="The native row maker (consumers/native); unset: every row made in Python.",
    )
    sink_username: str | None = Field(default=None, description="spec.index's, by Secret.")
    sink_password: SecretStr | None = None
    sink_api_key: SecretStr | None = None  # Elasticsearch: instead of user name and password
    fault_exit_at: str | None = Field(
        default=None, description="Tests only: kill -9 this process at this point (store.py)."
    )
