"""`python -m metricpipe_demo.replay` (or `python -m metricpipe_demo.cli`): load the sources,
print what the replay will do, and replay it to Kafka with a progress line every few seconds."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from threading import Event

from confluent_kafka import KafkaException

from metricpipe_devstack.settings import Ports, StackSettings

from .generator import SyntheticSettings, describe_synthetic
from .replay import KafkaConfig, ReplayProgress, fetch_missing_topics, replay
from .schedule import HTTP, RTT, Emission, PlanSettings, build_plan_summary, iter_demo_plan
from .sources import load_demo_sources


def format_progress(progress: ReplayProgress) -> str:
    times = " ".join(f"{k}@{v:%Y-%m-%d %H:%M}Z" for k, v in sorted(progress.source_times.items()))
    head = "done" if progress.final else f"{progress.elapsed:6.0f}s"
    return (
        f"[replay] {head} sent={progress.sent:,} delivered={progress.delivered:,} "
        f"failed={progress.failed:,} rate={progress.rate:,.0f}/s behind={progress.behind:.1f}s "
        f"source {times}"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m metricpipe_demo.replay",
        description="Replay the shared real data (RIPE Atlas RTT points, an Apache access log) "
        "to Kafka, re-timed onto the current time and accelerated; without the data, a "
        "deterministic synthetic generator stands in (and says so).",
    )
    add = parser.add_argument
    add(
        "--data-dir",
        type=Path,
        default=StackSettings().data_dir,
        help="the shared data (default: $METRICPIPE_DATA_DIR or ../shared/data beside the repo)",
    )
    add(
        "--bootstrap",
        default=os.environ.get(
            "KAFKA_BOOTSTRAP", f"{StackSettings().host_address}:{Ports().kafka}"
        ),
        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP or the local stack's)",
    )
    add(
        "--speed",
        type=float,
        default=360.0,
        help="source seconds per demo second (360: a source hour every 10 s)",
    )
    add(
        "--hours",
        type=float,
        default=24.0,
        help="source hours to replay from the start of each source (0: all of it)",
    )
    add(
        "--rtt-start",
        type=_parse_utc,
        default=None,
        help="UTC source time to start the real RTT points at, e.g. 2016-12-12 (default: the "
        "archive's first point; its first day has 2 probes, mid-December about 20)",
    )
    add(
        "--burst-start",
        type=float,
        default=12.0,
        help="where the burst starts, in source hours from each source's start",
    )
    add("--burst-hours", type=float, default=2.0, help="burst length in source hours (0: none)")
    add(
        "--burst-factor",
        type=int,
        default=6,
        help="each record inside the burst is sent this many times (synthetic copies)",
    )
    add("--topic-rtt", default="avg-rtt", help="topic of the RTT JSON records")
    add("--topic-http", default="http-5xx-rate", help="topic of the Apache log lines")
    add("--seed", type=int, default=7, help="seed of the synthetic generator")
    add("--progress-every", type=float, default=5.0, help="seconds between progress lines")
    add(
        "--topic-wait",
        type=float,
        default=30.0,
        help="seconds to wait for the topics to exist (the operator creates them)",
    )
    add(
        "--dry-run",
        action="store_true",
        help="build and count the whole plan without Kafka (no sleeping)",
    )
    return parser


def _parse_utc(text: str) -> float:
    when = datetime.fromisoformat(text)
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    hours = args.hours if args.hours > 0 else None
    settings = PlanSettings(
        args.speed, hours, args.burst_start, args.burst_hours, args.burst_factor
    )
    started = time.perf_counter()
    rtt, http = load_demo_sources(
        args.data_dir, hours, SyntheticSettings(seed=args.seed), args.rtt_start
    )
    if rtt.synthetic or http.synthetic:
        say(f"[replay] NOTE: {describe_synthetic(args.data_dir)}")
    say(f"[replay] sources loaded in {time.perf_counter() - started:.1f} s")
    demo_start = datetime.now(UTC)
    for line in build_plan_summary([rtt, http], demo_start=demo_start, settings=settings):
        say(f"[replay] {line}")
    plan = iter_demo_plan(rtt, http, demo_start=demo_start, settings=settings)
    if args.dry_run:
        return _count_plan(plan, started)
    topics = {RTT: args.topic_rtt, HTTP: args.topic_http}
    config: KafkaConfig = {
        "bootstrap.servers": args.bootstrap,
        "client.id": "metricpipe-demo-replay",
        "linger.ms": 20,
    }
    if not _wait_for_topics(config, topics.values(), args.topic_wait):
        return 2
    stop = Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    say(f"[replay] producing to {args.bootstrap}: RTT -> {args.topic_rtt}, "
        f"Apache lines -> {args.topic_http}")  # fmt: skip
    stats = replay(
        config, plan, topics=topics, stop=stop,
        progress=lambda p: say(format_progress(p)), progress_every=args.progress_every,
    )  # fmt: skip
    if stats.first_error:
        say(f"[replay] first delivery error: {stats.first_error}")
    ok = stats.failed == 0 and stats.undelivered == 0
    return 0 if ok and not stop.is_set() else 1


def _wait_for_topics(config: KafkaConfig, topics: Iterable[str], patience: float) -> bool:
    deadline = time.monotonic() + patience
    while True:
        try:
            missing = fetch_missing_topics(config, topics)
        except KafkaException as error:
            problem = f"Kafka at {config['bootstrap.servers']} does not answer ({error}); is the "
            problem += "local stack up (make stack-up)? or pass --bootstrap"
        else:
            if not missing:
                return True
            problem = f"topics {', '.join(missing)} do not exist; apply the MetricPipelines "
            problem += "(manifests/examples/) so the operator creates them"
        if time.monotonic() >= deadline:
            say(f"[replay] ERROR: {problem}")
            return False
        time.sleep(2.0)


def _count_plan(plan: Iterable[Emission], started: float) -> int:
    counts: dict[tuple[str, bool], int] = {}
    first = last = None
    for emission in plan:
        kind = (emission.topic_key, emission.copy > 0)
        counts[kind] = counts.get(kind, 0) + 1
        first = emission.due if first is None else first
        last = emission.due
    for (key, copy), count in sorted(counts.items()):
        what = "burst copies" if copy else "originals"
        say(f"[replay] dry run: {count:,} {key} records ({what})")
    if first is not None and last is not None:
        say(f"[replay] dry run: due over {last - first:,.0f} demo seconds")
    say(f"[replay] dry run: plan built and consumed in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
