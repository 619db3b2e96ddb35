"""The agent's one typed configuration (environment variables METRICPIPE_NODEAGENT_*)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

TAINT_KEY = "metricpipe.io/dev-node"  # pods must tolerate this to land on the agent's Node
TAINT_VALUE = "local-processes"


def _default_cpu() -> str:
    return str(4 * (os.cpu_count() or 1))  # overcommitted 4x: requests are sizes, not cores


def _default_memory() -> str:
    pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return f"{pages * size // 2**20}Mi"


class AgentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="METRICPIPE_NODEAGENT_", frozen=True)

    node_name: str = Field(default="metricpipe-dev-node", description="The Node it registers.")
    work_dir: Path = Field(
        default=Path(".stack/nodeagent"),
        description="Per-pod directories: volumes, logs (<ns>_<pod>/<container>.log).",
    )
    cpu: str = Field(default_factory=_default_cpu, description="Node allocatable cpu.")
    memory: str = Field(default_factory=_default_memory, description="Node allocatable memory.")
    pods: int = Field(default=40, ge=1, description="Node allocatable pods.")
    local_images: tuple[str, ...] = Field(
        default=("ghcr.io/metricpipe/",),
        description="Image prefixes this agent runs from the local install; others fail to start.",
    )
    python: str = Field(
        default="", description="Interpreter for a container command 'python' (default: own)."
    )
    file_sd_dir: Path | None = Field(
        default=None,
        description="Prometheus file_sd directory: pods with a port named 'metrics' are "
        "registered there (default: $PROMETHEUS_FILE_SD_DIR).",
    )
    sync_seconds: float = Field(default=1.0, gt=0, description="How often pods are compared.")
    heartbeat_seconds: float = Field(default=10.0, gt=0, description="Node Lease renewal.")
