"""Readers of the shared real data (../shared/data, or METRICPIPE_DATA_DIR) for tests, the
benchmark and the demo. Nothing here is copied into the repository."""

from __future__ import annotations

import csv
import io
import sys
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

RTT_ARCHIVE = "rtt/ripe_atlas_rtt_labelled_50traces_2016q4.tar.gz"
ACCESS_LOG = "access_logs/apache_combined_2015-05.log"
LOST_PING_MARKERS = (-3.0, -4.0)


class DatasetMissingError(FileNotFoundError):
    pass


def require(data_dir: Path, relative: str) -> Path:
    path = data_dir / relative
    if not path.exists():
        raise DatasetMissingError(f"{path} is absent (set METRICPIPE_DATA_DIR to the shared data)")
    return path


def parse_rtt_timestamp(text: str) -> datetime:
    """The archive mixes two formats: '14/10/2016 21:17' (day first) and '2016-11-03 14:47:59'.
    Each is parsed explicitly; guessing would swap day and month on the ISO rows."""
    text = text.strip()
    layout = "%Y-%m-%d %H:%M:%S" if text[:4].isdigit() and text[4] == "-" else "%d/%m/%Y %H:%M"
    return datetime.strptime(text, layout).replace(tzinfo=UTC)


def iter_rtt_records(data_dir: Path) -> Iterator[dict[str, object]]:
    """RIPE Atlas pings as JSON-ready records, probe by probe in file order:
    {"time": RFC 3339, "probe": id, "rtt": ms (-3/-4 mark lost pings)}."""
    archive = require(data_dir, RTT_ARCHIVE)
    with tarfile.open(archive) as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            if not member.name.endswith(".csv"):
                continue
            probe = Path(member.name).stem
            handle = tar.extractfile(member)
            if handle is None:
                continue
            reader = csv.DictReader(io.TextIOWrapper(handle, "utf-8"), delimiter=";")
            for row in reader:
                when = parse_rtt_timestamp(row["epoch"])
                yield {
                    "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "probe": probe,
                    "rtt": float(row["rtt"]),
                }


def iter_access_log_lines(data_dir: Path) -> Iterator[str]:
    path = require(data_dir, ACCESS_LOG)
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.strip():
                yield line.rstrip("\n")


TEST_DATASETS = (RTT_ARCHIVE, ACCESS_LOG)  # what the integration and e2e tiers read


def missing_datasets(data_dir: Path) -> list[Path]:
    return [
        data_dir / relative for relative in TEST_DATASETS if not (data_dir / relative).is_file()
    ]


def main() -> int:
    """`python -m metricpipe_devstack.datasets`: exit 1 naming each file the tests need that
    the shared data directory lacks (CI runs it first: there, the data must be present)."""
    from .settings import StackSettings  # noqa: PLC0415  (only the command needs the settings)

    data_dir = StackSettings().data_dir
    missing = missing_datasets(data_dir)
    for path in missing:
        print(f"ERROR: {path} is missing: CI runs the tests on the shared real data "
              "(METRICPIPE_DATA_DIR names its directory)", file=sys.stderr)  # fmt: skip
    if not missing:
        print(f"shared data: {len(TEST_DATASETS)} files present in {data_dir}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
