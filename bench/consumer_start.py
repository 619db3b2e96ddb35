"""Benchmark: a stream consumer's Spark start (session, then warm-up) with the class archive the
deployed image maps (the headline) against the same start without it (the baseline), in
alternating runs of the same process code (consumers' classarchive.start_like_a_consumer) on
the stack's archive. A consumer's start is what a scale-up, a restart and every batch run pay
before the first record. Results: bench/results/consumer-start-*.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from consumer_throughput import ensure_stack, say

ONE_START = """
import json, sys, time
from pathlib import Path
from metricpipe_consumers.engine import SparkAggregator
from metricpipe_consumers.sparkconf import spark_conf_from_environment
archive = Path(sys.argv[1]) if sys.argv[1] else None
conf = spark_conf_from_environment(None, "1g", "", class_archive=archive)
began = time.monotonic()
engine = SparkAggregator("local[1]", conf=conf)
session = time.monotonic()
engine.warm_up()
ready = time.monotonic()
engine.stop()
print(json.dumps({"session": session - began, "warm_up": ready - session}))
"""


def one_start(archive: Path | None) -> dict[str, float]:
    """One process, one JVM: its session and warm-up seconds."""
    done = subprocess.run([sys.executable, "-c", ONE_START, str(archive or "")],
                          capture_output=True, text=True, timeout=300, check=True)  # fmt: skip
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def summarize(runs: list[dict[str, float]]) -> dict[str, float]:
    medians = {key: round(statistics.median(r[key] for r in runs), 2)
               for key in ("session", "warm_up")}  # fmt: skip
    medians["total"] = round(statistics.median(r["session"] + r["warm_up"] for r in runs), 2)
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="starts of each kind (alternating)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    stack = ensure_stack()
    archive = stack.spark_class_archive
    if archive is None or not archive.is_file():
        say(f"!! no class archive at {archive}: run 'make stack-up' (it makes one)")
        return 1
    mapped: list[dict[str, float]] = []
    loaded: list[dict[str, float]] = []
    for run in range(args.runs):
        mapped.append(one_start(archive))
        loaded.append(one_start(None))
        say(f"-- run {run + 1}/{args.runs}: with the archive {mapped[-1]}, without {loaded[-1]}")
    headline, baseline = summarize(mapped), summarize(loaded)
    result = {
        "benchmark": "consumer-start",
        "archive": str(archive),
        "runs": args.runs,
        "with_archive": headline,
        "without_archive": baseline,
        "total_ratio": round(headline["total"] / baseline["total"], 2),
        "session_ratio": round(headline["session"] / baseline["session"], 2),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"consumer-start-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    say(f"== start, median of {args.runs}: {headline['total']} s with the archive (session "
        f"{headline['session']} s), {baseline['total']} s without (session "
        f"{baseline['session']} s): ratio {result['total_ratio']}")  # fmt: skip
    say(f"== results written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
