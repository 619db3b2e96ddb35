"""The peek service's one typed configuration object (environment variables METRICPIPE_PEEK_*)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from metricpipe_contract.archive import DEFAULT_ROOT

from .forwarded import parse_trusted


class PeekConfig(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METRICPIPE_PEEK_", frozen=True)

    host: str = Field(default="0.0.0.0", description="Address to listen on.")  # noqa: S104
    port: int = Field(default=8443, ge=0, le=65535, description="0: any free port.")
    tls_cert_file: Path | None = Field(
        default=None, description="Serve HTTPS with this certificate (and tls_key_file)."
    )
    tls_key_file: Path | None = None
    trusted_proxies: tuple[str, ...] = Field(
        default=(),
        description="Addresses or CIDRs of the proxies in front (JSON list, e.g. "
        "[\"127.0.0.1\"] for the stack's edge Nginx, the ingress controller pods' range in a "
        "cluster): a request from one is logged with the client address of its X-Real-IP "
        "(else the last X-Forwarded-For entry); from any other peer, the peer's own.",
    )
    webhdfs_url: str = Field(description="The NameNode's WebHDFS: http://host:port/webhdfs/v1.")
    hdfs_user: str = Field(
        default="metricpipe-peek",
        description="The HDFS user it reads as (simple authentication); read access to the "
        "archive root is all it needs.",
    )
    archive_root: str = Field(default=DEFAULT_ROOT, description="The archives' root on HDFS.")
    kubeconfig: Path | None = Field(
        default=None,
        description="Kubeconfig of the service's own identity; unset: the in-cluster "
        "ServiceAccount (or KUBECONFIG when not in a cluster).",
    )
    token_audiences: tuple[str, ...] = Field(
        default=(), description="Audiences callers' tokens must carry; empty: the API server's."
    )
    review_cache_seconds: float = Field(
        default=10.0, ge=0, description="How long a TokenReview/SubjectAccessReview is reused."
    )
    max_range_seconds: float = Field(
        default=86_400.0, gt=0, description="Longest since..until of one records request."
    )
    default_range_seconds: float = Field(
        default=3_600.0, gt=0, description="since's default: this long before until."
    )
    max_hours_range_seconds: float = Field(
        default=31 * 86_400.0, gt=0, description="Longest since..until of one hours listing."
    )
    max_scan_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1,
        description="Bytes one records request may read from HDFS; past it the page ends "
        "with more=true and a cursor (413 when not one group of files fits).",
    )  # fmt: skip
    max_page_records: int = Field(default=1000, ge=1, description="Most records of one page.")
    default_page_records: int = Field(default=100, ge=1, description="limit's default.")
    max_pattern_chars: int = Field(default=1024, ge=1, description="Longest grep or regex.")
    request_timeout_seconds: float = Field(
        default=30.0, gt=0,
        description="A records request stops reading new files after this long (more=true, "
        "cursor); also the socket timeout towards a slow client.",
    )  # fmt: skip
    whole_file_bytes: int = Field(
        default=1024 * 1024, ge=0,
        description="Files up to this size are read whole in one WebHDFS call; larger ones "
        "by ranges (only the columns a request needs).",
    )  # fmt: skip
    hdfs_timeout_seconds: float = Field(default=30.0, gt=0)
    log_level: str = "INFO"

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_trusted(value)  # a ValueError names the entry that is not an address or CIDR
        return value
