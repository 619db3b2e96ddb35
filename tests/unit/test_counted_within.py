"""The ResourceManager's dead-letter and input counts, evaluated by Prometheus's own PromQL engine
(`promtool test rules`) on series written out by hand: a consumer that counted before its first
scrape is counted, a counter older than the window is counted from the window's start only, a
counter seen at 0 and then once more is not extrapolated, a restarted one is not lost.

The expected numbers are read off the series below, not computed by the code under test."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from metricpipe_contract import names
from metricpipe_devstack.settings import StackSettings
from metricpipe_operator.scaling.collect import QUERIES, REJECTED_WINDOW

DEAD = names.CONSUMER_DEAD_LETTER
READ = names.CONSUMER_RECORDS_CONSUMED
SCRAPE = "15s"
# Samples every 15 s from t=0; `_` is no sample. At 10m the window is [5m, 10m].
SERIES = [
    # first scraped at 7m, already at 180 (dead-lettered a backlog before its first scrape)
    (f'{DEAD}{{pipeline="t/burst",reason="malformed_json",pod="a"}}', "_x28 180x12"),
    (f'{READ}{{pipeline="t/burst",pod="a"}}', "_x28 0 200x11"),
    # scraped since 3m, +10 per scrape: 80 at 5m, 280 at 10m; 200 of it within the window
    (f'{DEAD}{{pipeline="t/steady",reason="late",pod="b"}}', "_x12 0+10x28"),
    # one pipeline, two replicas: one steady since 3m (200 in the window), one first seen at
    # 10m with 30 (a single sample: increase() has nothing, its first value counts)
    (f'{DEAD}{{pipeline="t/two",reason="bad_time",pod="c"}}', "_x12 0+10x28"),
    (f'{DEAD}{{pipeline="t/two",reason="bad_time",pod="d"}}', "_x40 30"),
    # first scraped at 9m30s mid-batch: its dead letters already sent, its reads not yet
    # counted; 200 read at the next scrape, 15 s before the evaluation
    (f'{DEAD}{{pipeline="t/fresh",reason="malformed_json",pod="e"}}', "_x38 180 180"),
    (f'{READ}{{pipeline="t/fresh",pod="e"}}', "_x38 0 200"),
    # +10 per scrape since 3m (80 at 5m), restarted at 8m (the counter back to 0), +10 since
    (f'{READ}{{pipeline="t/restart",pod="f"}}', "_x12 0+10x19 0+10x8"),
]


def promtool() -> Path:
    path = StackSettings().prometheus_bin / "promtool"
    if not path.is_file():
        pytest.fail(f"promtool not found at {path}: run `make stack-deps`")
    return path


def run_promql_tests(tmp_path: Path, cases: list[dict[str, object]]) -> None:
    (tmp_path / "empty.yml").write_text("groups: []\n")
    spec = {
        "rule_files": ["empty.yml"],
        "evaluation_interval": SCRAPE,
        "tests": [{
            "interval": SCRAPE,
            "input_series": [{"series": s, "values": v} for s, v in SERIES],
            "promql_expr_test": cases,
        }],
    }  # fmt: skip
    test_file = tmp_path / "counted.yml"
    test_file.write_text(yaml.safe_dump(spec))
    done = subprocess.run(
        [str(promtool()), "test", "rules", test_file.name], cwd=tmp_path,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def case(expr: str, expected: dict[str, float]) -> dict[str, object]:
    return {
        "expr": expr, "eval_time": "10m",
        "exp_samples": [{"labels": f'{{pipeline="{p}"}}', "value": v}
                        for p, v in expected.items()],
    }  # fmt: skip


def test_counts_include_what_a_consumer_counted_before_its_first_scrape(tmp_path: Path) -> None:
    assert REJECTED_WINDOW == "5m"  # the windows the series above were written for
    run_promql_tests(tmp_path, [
        case(QUERIES["dead_letters"],
             {"t/burst": 180, "t/steady": 200, "t/two": 230, "t/fresh": 180}),
        # the restarted one: increase(), 80 -> 190 before the restart + 80 since (its samples
        # span the whole window, 5m..10m inclusive: nothing to extrapolate)
        case(QUERIES["records_read"],
             {"t/burst": 200, "t/fresh": 200, "t/restart": 110 + 80}),
    ])  # fmt: skip


def test_increase_alone_misses_and_inflates_them(tmp_path: Path) -> None:
    """The pitfalls the queries avoid, shown by the same engine: 0 for the burst, nothing at
    all for a replica seen once, and 200 records read twice over (0 then 200 extrapolated to
    the evaluation time): a 90 % malformed backlog would read as 45 % dead-lettered."""
    run_promql_tests(tmp_path, [
        case(f"sum by (pipeline) (increase({DEAD}[5m]))",
             {"t/burst": 0, "t/steady": 200, "t/two": 200, "t/fresh": 0}),
        case(f"sum by (pipeline) (increase({READ}[5m]))",
             {"t/burst": 200, "t/fresh": 400, "t/restart": 110 + 80}),
    ])  # fmt: skip
