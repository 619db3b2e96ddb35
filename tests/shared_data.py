"""The records the data-driven tests replay: the shared real data when present (CI requires
it: `.ci/run` checks first), else the demo's seeded synthetic generator of the same shape —
said in a warning, never a silent skip. The synthetic volume matches the real files': about
408,000 RTT points of 50 probes and about 10,000 access-log lines over 84 hours."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from pathlib import Path

from metricpipe_demo.generator import (
    SyntheticSettings,
    describe_synthetic,
    iter_synthetic_access_lines,
    iter_synthetic_rtt,
)
from metricpipe_devstack.datasets import (
    DatasetMissingError,
    iter_access_log_lines,
    iter_rtt_records,
)

SYNTHETIC_RTT_HOURS = 544  # x 50 probes x 15 pings/h: the real archive's 408,087 points
SYNTHETIC_LOG_HOURS = 84  # x ~120 lines/h: the real log's 10,000 lines over 84 hours


def rtt_records(data_dir: Path) -> list[dict[str, object]]:
    """{"time": RFC 3339, "probe": id, "rtt": ms (-3/-4: lost)}, probe by probe or in time."""
    try:
        return list(iter_rtt_records(data_dir))
    except DatasetMissingError:
        warnings.warn(describe_synthetic(data_dir), stacklevel=2)
    return [
        {"time": datetime.fromtimestamp(p.time, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
         "probe": p.probe, "rtt": p.rtt}
        for p in iter_synthetic_rtt(SyntheticSettings(), SYNTHETIC_RTT_HOURS)
    ]  # fmt: skip


def access_log_lines(data_dir: Path) -> list[str]:
    """Apache combined lines, in file (time) order."""
    try:
        return list(iter_access_log_lines(data_dir))
    except DatasetMissingError:
        warnings.warn(describe_synthetic(data_dir), stacklevel=2)
    return [
        line.line.decode()
        for line in iter_synthetic_access_lines(SyntheticSettings(), SYNTHETIC_LOG_HOURS)
    ]
