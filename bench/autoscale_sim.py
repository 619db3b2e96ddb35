"""Benchmark: metricpipe's freshness-SLO autoscaler against KEDA-style lag-threshold policies and
a fixed maximum, on replayed real arrival traces, in a deterministic simulator (bench/sim_*.py).

Every policy drives the same simulated consumer group (32 partitions, start-up and rebalance
pauses, scrapes seen one scrape late); the metricpipe policy is the operator's own
`metricpipe_operator.scaling.policy.decide`. Per trace x freshness target x policy it reports
SLO-violation minutes, maximum freshness, replica-hours and their ratio to the work bound
(total records / per-replica throughput: the replica-hours of perfectly busy replicas, which no
schedule beats), scale events and events per hour; it writes bench/results/autoscale-<stamp>.json
and one PNG per trace x target. Same inputs, same outputs. See docs/autoscaling.md.

    .venv/bin/python bench/autoscale_sim.py                  # both real traces, targets 1h and 5m
    .venv/bin/python bench/autoscale_sim.py --trace my.csv --hours 48 --targets 900
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sim_acceptance import acceptance
from sim_engine import PolicyFn, RunResult, SimParams, simulate
from sim_robustness import build_robustness_jobs, report_robustness
from sim_trace import (
    DEFAULT_WINDOWS,
    NAMED_TRACES,
    Trace,
    TraceError,
    cut,
    generated_trace,
    read_trace,
    rescale,
    step_arrivals,
)
from sim_zero import build_zero_jobs, report_zero

from metricpipe_operator.scaling.baselines import KedaConfig, decide_fixed, decide_keda
from metricpipe_operator.scaling.model import MetricSample, PipelineScaling, PolicyConfig
from metricpipe_operator.scaling.policy import decide
from metricpipe_operator.scaling.sleep import decide_with_sleep

REPO = Path(__file__).resolve().parents[1]
REAL_TRACES = ("worldcup98_requests_per_minute.csv", "nab_elb_request_count_5min_2014-04.csv")


@dataclass(frozen=True)
class Setup:
    """The pipeline every policy scales (the same for all, so the figures compare)."""

    min_replicas: int = 1
    max_replicas: int = 32
    target_utilization: float = 0.7  # spec.scaling.targetUtilization (the CRD default)
    stabilization_seconds: float = 600.0  # spec.scaling.scaleDownStabilization (default 10m)


@dataclass(frozen=True)
class Job:
    trace: str
    policy: str  # metricpipe | keda <label> | fixed
    target: float  # freshness target, seconds
    lag_seconds: float  # KEDA only: lagThreshold = this many seconds of one replica's work
    arrivals: list[float]
    params: SimParams
    setup: Setup
    belief: float = 1.0  # the policy is told startup/rebalance x this (robustness runs)
    initial: int | None = None  # replicas at the start (None: sized for the first arrivals)
    variant: str = ""  # the robustness variant's label ("" for the clean runs)


def keda_variants(spec: str, target: float) -> list[tuple[str, float]]:
    """(label, seconds of one replica's work per lagThreshold) for each `--keda-lag` entry:
    `target/N` scales with the freshness target, a number is fixed."""
    variants = []
    for item in (x.strip() for x in spec.split(",") if x.strip()):
        if item.startswith("target/"):
            variants.append((f"keda t/{item.split('/', 1)[1]}", target / float(item.split("/")[1])))
        else:
            variants.append((f"keda {float(item):g}s", float(item)))
    return variants


def make_policy(job: Job) -> tuple[PolicyFn, float]:
    """The policy function the simulator calls, and how often (seconds)."""
    params, setup = job.params, job.setup
    config = PolicyConfig(
        startup_seconds=params.startup_seconds * job.belief,
        rebalance_seconds=params.rebalance_seconds * job.belief,
    )
    keda = KedaConfig(lag_threshold=params.per_replica_rate * job.lag_seconds)

    known: list[float] = []  # the last capacity measured, as status.capacityPerReplica keeps it

    def call(history: Sequence[MetricSample], current: int, last: float | None, now: float) -> int:
        pipeline = PipelineScaling(
            current_replicas=current, min_replicas=setup.min_replicas,
            max_replicas=setup.max_replicas, target_utilization=setup.target_utilization,
            freshness_target_seconds=job.target, allowed_lateness_seconds=0.0,
            scale_down_stabilization_seconds=setup.stabilization_seconds, last_scale_at=last,
            known_capacity=known[-1] if known else None,
        )  # fmt: skip
        if job.policy == "metricpipe" and setup.min_replicas == 0:
            decision = decide_with_sleep(history, pipeline, config, now)
            known.extend([decision.per_replica_rate] if decision.per_replica_rate else [])
            return decision.replicas
        if job.policy == "metricpipe":
            return decide(history, pipeline, config, now).replicas
        if job.policy.startswith("keda"):
            return decide_keda(history, pipeline, keda, now).replicas
        return decide_fixed(history, pipeline, now).replicas

    keda_policy = job.policy.startswith("keda")
    return call, (keda.sync_period_seconds if keda_policy else params.scrape_seconds)


def run_job(job: Job) -> RunResult:
    policy, interval = make_policy(job)
    first = job.arrivals[0] / job.params.step_seconds if job.arrivals else 0.0
    needed = math.ceil(first / job.params.per_replica_rate / job.setup.target_utilization)
    initial = max(job.setup.min_replicas, needed, 1)
    if job.policy == "fixed":
        initial = job.setup.max_replicas
    if job.initial is not None:
        initial = job.initial
    return simulate(
        job.arrivals, job.params, policy, interval=interval, initial=initial, target=job.target
    )


def load_traces(args: argparse.Namespace) -> list[Trace]:
    """The traces to run: each `--trace` (a file, or a name in NAMED_TRACES); by default the
    real files under `--data-dir` (or a generated 3-day trace when there are none) and every
    named generated trace."""
    named = [NAMED_TRACES[t]() for t in args.trace if t in NAMED_TRACES]
    paths = [Path(p) for p in args.trace if p not in NAMED_TRACES]
    if not args.trace:
        named = [make() for make in NAMED_TRACES.values()]
        folder = Path(args.data_dir) / "arrival_rates"
        paths = [folder / n for n in REAL_TRACES if (folder / n).exists()]
        if not paths:
            print(
                f"NOTE: no --trace given and no real trace in {args.data_dir}/arrival_rates: "
                "running on a GENERATED synthetic trace (3 days, daily cycle and bursts)"
            )
            return [generated_trace(), *named]
    traces = []
    for path in paths:
        trace = read_trace(path)
        for note in trace.notes:
            print(f"NOTE: {path}: {note}")
        start, hours = args.start, args.hours
        if trace.name in DEFAULT_WINDOWS:
            start = start or DEFAULT_WINDOWS[trace.name][0]
            hours = hours or DEFAULT_WINDOWS[trace.name][1]
        traces.append(cut(trace, start, hours))
    return traces + named


def fmt_time(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    return f"{seconds // 3600:.0f}h{seconds % 3600 // 60:02.0f}m"


def summarise(result: RunResult, work_hours: float) -> dict[str, float]:
    hours = result.seconds / 3600.0
    replica_hours = result.replica_seconds / 3600.0
    return {
        "slo_violation_minutes": round(result.violation_seconds / 60.0, 2),
        "max_freshness_seconds": round(result.max_freshness, 1),
        "replica_hours": round(replica_hours, 2),
        "ratio_to_work_bound": round(replica_hours / work_hours, 4) if work_hours else math.nan,
        "scale_events": result.events,
        "events_per_hour": round(result.events / hours, 3) if hours else 0.0,
        "hours": round(hours, 2),
    }


def plot(path: Path, trace: Trace, target: float, runs: dict[str, RunResult], rate: float) -> None:
    import matplotlib  # noqa: PLC0415 (only when plotting)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(14, 9), sharex=True)
    some = next(iter(runs.values()))
    hours = [t / 3600.0 for t in some.times]
    step = some.times[1] - some.times[0] if len(some.times) > 1 else 60.0
    per_step = step_arrivals(trace, step)[: len(hours)]
    top.plot(hours[: len(per_step)], [a / step for a in per_step], lw=0.6, color="black")
    top.set_ylabel("input (records/s)")
    twin = top.secondary_yaxis("right", functions=(lambda x: x / rate, lambda x: x * rate))
    twin.set_ylabel("replicas' worth")
    top.set_title(f"{trace.name}: freshness target {fmt_time(target)}")
    ordered = sorted(runs.items(), key=lambda item: item[0] == "metricpipe")  # metricpipe on top
    for name, run in ordered:
        ours = name == "metricpipe"
        style: dict[str, Any] = {"lw": 1.1 if ours else 0.7, "alpha": 1.0 if ours else 0.75}
        style.update(label=name, **({"color": "tab:red"} if ours else {}))
        middle.step(hours, run.replicas, where="post", **style)
        bottom.plot(hours, [f / 60.0 for f in run.freshness], **style)
    bottom.axhline(target / 60.0, color="black", ls="--", lw=1, label="target")
    middle.set_ylabel("replicas")
    bottom.set_ylabel("freshness (min, max per minute)")
    bottom.set_xlabel("hours into the window")
    middle.legend(loc="upper right")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    data = os.environ.get("METRICPIPE_DATA_DIR", str(REPO.parent / "shared" / "data"))
    add = (parser := argparse.ArgumentParser(description=__doc__.split("\n\n")[0])).add_argument
    add("--trace", action="append", default=[], help="CSV timestamp,count, or one of "
        f"{', '.join(NAMED_TRACES)} (repeatable)")  # fmt: skip
    add("--data-dir", default=data, help="holds arrival_rates/ (default: %(default)s)")
    add("--start", help="window start, ISO or epoch (default: the WorldCup98 knockout stage)")
    add("--hours", type=float, help="window length (default: 384 for WorldCup98, else all)")
    add("--time-scale", type=float, default=1.0, help="replay this many times faster")
    add("--amplitude", type=float, help="multiply counts by this (instead of --peak-replicas)")
    add("--peak-replicas", type=float, default=16.0, help="scale counts so the peak bucket "
        "needs this many replicas (default %(default)s)")  # fmt: skip
    add("--targets", default="3600,300", help="freshness targets, seconds (%(default)s)")
    add("--partitions", type=int, default=SimParams.partitions)
    add("--per-replica-rate", type=float, default=SimParams.per_replica_rate, help="records/s")
    add("--startup", type=float, default=SimParams.startup_seconds, help="seconds")
    add("--rebalance", type=float, default=SimParams.rebalance_seconds, help="seconds")
    add("--target-utilization", type=float, default=Setup.target_utilization)
    add("--keda-lag", default="target/6,60", help="KEDA lagThreshold in seconds of one "
        "replica's work, one variant each: target/N or a number (%(default)s)")  # fmt: skip
    add("--policies", default="metricpipe,keda,fixed", help="which to run (%(default)s)")
    add("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="processes")
    add("--out", default=str(REPO / "bench" / "results"))
    add("--no-plots", action="store_true")
    add("--no-robustness", action="store_true", help="skip the robustness variants")
    add("--no-zero", action="store_true", help="skip the scale-to-zero runs (sim_zero.py)")
    return parser.parse_args(argv)


def build_jobs(args: argparse.Namespace, traces: list[Trace], params: SimParams) -> list[Job]:
    setup = Setup(max_replicas=args.partitions, target_utilization=args.target_utilization)
    kinds = {k.strip() for k in args.policies.split(",")}
    jobs = []
    for trace in traces:
        arrivals = step_arrivals(trace, params.step_seconds)
        for target in (float(x) for x in args.targets.split(",") if x.strip()):
            named: list[tuple[str, float]] = [("metricpipe", 0.0)] if "metricpipe" in kinds else []
            if "keda" in kinds:
                named += keda_variants(args.keda_lag, target)
            if "fixed" in kinds:
                named.append(("fixed", 0.0))
            jobs += [Job(trace.name, n, target, lag, arrivals, params, setup) for n, lag in named]
    return jobs


def report_trace(
    trace: Trace, jobs: list[Job], results: list[RunResult], rate: float, plots: Path | None
) -> dict[str, Any]:
    work = trace.total / rate / 3600.0
    entry: dict[str, Any] = {
        "name": trace.name, "source": trace.source,
        "generated": trace.source.startswith("generated"),
        "window_start": datetime.fromtimestamp(trace.start, UTC).isoformat(),
        "hours": round(trace.duration / 3600.0, 2), "total_records": round(trace.total),
        "peak_replicas": round(trace.peak_rate / rate, 2),
        "mean_replicas": round(trace.total / trace.duration / rate, 3),
        "work_bound_replica_hours": round(work, 2), "runs": [],
    }  # fmt: skip
    for target in sorted({j.target for j in jobs if j.trace == trace.name}, reverse=True):
        mine = [(j, r) for j, r in zip(jobs, results, strict=True) if j.trace == trace.name
                and j.target == target]  # fmt: skip
        stats = {j.policy: summarise(r, work) for j, r in mine}
        keda = next((s["replica_hours"] for p, s in stats.items() if p.startswith("keda")), None)
        for (job, _), (name, s) in zip(mine, stats.items(), strict=True):
            vs_keda = round(s["replica_hours"] / keda, 4) if keda else math.nan
            entry["runs"].append({"target_seconds": target, "policy": name, **s,
                                  "keda_lag_seconds": job.lag_seconds or None,
                                  "ratio_to_keda": vs_keda})  # fmt: skip
            print(
                f"{trace.name[:34]:<34} {fmt_time(target):>5} {name:<12} "
                f"{s['slo_violation_minutes']:>8.1f} {fmt_time(s['max_freshness_seconds']):>9} "
                f"{s['replica_hours']:>8.1f} {s['ratio_to_work_bound']:>7.3f} {vs_keda:>7.3f} "
                f"{s['scale_events']:>6} {s['events_per_hour']:>5.2f}"
            )
        if plots is not None:
            png = plots.parent / f"{plots.name}-{trace.name}-{int(target)}s.png"
            plot(png, trace, target, {j.policy: r for j, r in mine}, rate)
    print(
        f"{trace.name[:34]:<34} work bound {work:,.1f} replica-hours over "
        f"{trace.duration / 3600:.0f} h (mean {entry['mean_replicas']} replicas' worth, "
        f"peak {entry['peak_replicas']})"
    )
    return entry


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    params = SimParams(
        partitions=args.partitions, per_replica_rate=args.per_replica_rate,
        startup_seconds=args.startup, rebalance_seconds=args.rebalance,
    )  # fmt: skip
    try:
        traces, timed = [], []
        for trace in load_traces(args):
            timed.append(rescale(trace, args.time_scale, 1.0))
            factor = (
                args.amplitude or args.peak_replicas * params.per_replica_rate / timed[-1].peak_rate
            )
            traces.append(rescale(timed[-1], 1.0, factor))
    except (OSError, TraceError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    jobs = build_jobs(args, traces, params)
    variants = [] if args.no_robustness else build_robustness_jobs(jobs)
    setup = Setup(max_replicas=args.partitions, target_utilization=args.target_utilization)
    lows = [t for t in timed if t.name not in NAMED_TRACES]  # scale to zero: not spike and step
    zero = [] if args.no_zero else build_zero_jobs(lows, params, Job, setup)
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        everything = list(pool.map(run_job, jobs + variants + zero))
    results, robust = everything[: len(jobs)], everything[len(jobs) : len(jobs) + len(variants)]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = f"autoscale-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}"
    header = (
        f"{'trace':<34} {'target':>5} {'policy':<12} {'viol min':>8} {'max fresh':>9} "
        f"{'repl-h':>8} {'x work':>7} {'x keda':>7} {'events':>6} {'ev/h':>5}"
    )
    print(header + "\n" + "-" * len(header))
    plots = None if args.no_plots else out / stamp
    entries = [report_trace(t, jobs, results, params.per_replica_rate, plots) for t in traces]
    print("x work: replica-hours / work bound;  x keda: replica-hours / the first KEDA variant's")
    clean = {(e["name"], r["target_seconds"]): r for e in entries for r in e["runs"]
             if r["policy"] == "metricpipe"}  # fmt: skip
    work = {t.name: t.total / params.per_replica_rate / 3600.0 for t in traces}
    robustness = report_robustness(variants, robust, clean, summarise, work) if variants else []
    low_work = {j.trace: sum(j.arrivals) / params.per_replica_rate / 3600.0 for j in zero}
    zero_report = report_zero(zero, everything[len(jobs) + len(variants) :], summarise,
                              low_work) if zero else {}  # fmt: skip
    report = {
        "when": datetime.now(UTC).isoformat(), "simulator": asdict(params),
        "pipeline": asdict(jobs[0].setup) if jobs else {}, "policy_config": asdict(
            PolicyConfig(startup_seconds=args.startup, rebalance_seconds=args.rebalance)
        ), "time_scale": args.time_scale, "keda_lag": args.keda_lag, "traces": entries,
        "acceptance": acceptance(entries), "robustness": robustness, "scale_to_zero": zero_report,
        "runtime_seconds": round(time.perf_counter() - began, 1),
    }  # fmt: skip
    path = out / f"{stamp}.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path} and its plots ({report['runtime_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
