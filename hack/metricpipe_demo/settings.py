"""The demo's one typed configuration (environment variables METRICPIPE_DEMO_*)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class DemoSettings(BaseSettings):
    """Freshness only means something on the wall clock, so the data is re-timed onto the
    demo's clock at `speed`, and the pipelines are scaled the same way: a window of
    `window` stands for one hour of the source, and the freshness target is scaled alike."""

    model_config = SettingsConfigDict(env_prefix="METRICPIPE_DEMO_", frozen=True)

    namespace: str = "metricpipe-demo"
    speed: float = Field(default=60.0, gt=0, description="Source seconds per demo second.")
    hours: float = Field(default=8.0, gt=0, description="Source hours replayed.")
    rtt_start: str = Field(
        default="2016-12-12", description="Where the RTT replay starts (22 probes overlap there)."
    )
    burst_start_hours: float = 3.0
    burst_hours: float = 2.0
    burst_factor: int = Field(default=20, ge=1, description="Each burst record sent this often.")
    window: str = "1m"  # one source hour at speed 60
    allowed_lateness: str = "10s"
    freshness_target: str = Field(
        default="3m",
        description="3 source hours at speed 60: a 1-hour target would scale to 1 minute, less "
        "than a consumer's start-up on this machine.",
    )
    max_batch_records: int = Field(
        default=20,
        ge=1,
        description="Small batches make one replica slow enough (≈100 records/s here) that "
        "the burst needs more than one; the default (100000) carries ~50,000/s.",
    )
    max_replicas: int = 4
    sample_seconds: float = Field(default=10.0, gt=0, description="Progress output interval.")
    drain_timeout_seconds: float = Field(
        default=600.0, gt=0, description="After the replay: wait this long for lag 0."
    )
    archive_roll_age: str = Field(
        default="10s",
        description="The LogArchive's roll.maxAge: its archivers write a partition's records "
        "at least this often (the example's 60s is a source hour at speed 60).",
    )
    archive_wait_seconds: float = Field(
        default=120.0, gt=0, description="After the drain: wait this long for the archive."
    )
    peek_status: int = Field(
        default=404, ge=100, le=599,
        description="The peek's question: lines answered with this HTTP status (the replayed "
        "8 hours have no 5xx; their 404s are missing pages).",
    )  # fmt: skip
    peek_limit: int = Field(default=10, ge=1, le=1000, description="Records the peek prints.")
