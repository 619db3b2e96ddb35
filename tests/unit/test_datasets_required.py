"""CI requires the shared real data: `.ci/run` starts with `python -m
metricpipe_devstack.datasets`, which fails naming each missing file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from metricpipe_devstack.datasets import TEST_DATASETS

HACK = Path(__file__).resolve().parents[2] / "hack"


def check(data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "METRICPIPE_DATA_DIR": str(data_dir), "PYTHONPATH": str(HACK)}
    return subprocess.run([sys.executable, "-m", "metricpipe_devstack.datasets"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_each_missing_file_is_named_and_fails_the_check(tmp_path: Path) -> None:
    (tmp_path / TEST_DATASETS[0]).parent.mkdir(parents=True)
    (tmp_path / TEST_DATASETS[0]).write_bytes(b"x")
    result = check(tmp_path)
    assert result.returncode == 1
    assert str(tmp_path / TEST_DATASETS[1]) in result.stderr
    assert str(tmp_path / TEST_DATASETS[0]) not in result.stderr


def test_all_present_passes(tmp_path: Path) -> None:
    for relative in TEST_DATASETS:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"x")
    result = check(tmp_path)
    assert result.returncode == 0, result.stderr
    assert str(tmp_path) in result.stdout


def test_ci_runs_the_check_before_make_test() -> None:
    script = (HACK.parent / ".ci" / "run").read_text().splitlines()
    check_line = script.index("PYTHONPATH=hack python3 -m metricpipe_devstack.datasets")
    assert check_line < script.index("make test")
