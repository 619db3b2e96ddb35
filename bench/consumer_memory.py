"""Benchmark: the memory of one consumer replica (its Python process and its Spark JVM) at idle
and under load, against the memory limit the operator gives a default pipeline's container.

The replica runs as the container runs it: `python -m metricpipe_consumers stream` with the
environment `build_container` writes for a default pipeline (Spark threads, JVM options, batch
settings) and the memory limit the downward API would pass (METRICPIPE_MEMORY_LIMIT_BYTES, from
which the consumer sizes Spark's heap). Idle: started, then a minute with nothing to read. Load:
the consumer benchmark's RTT records produced while it runs, until it has committed them all.
Memory is the resident set (VmRSS) of the process and every descendant, sampled every 0.2 s and
summed per sample (what a cgroup charges at once, page cache aside), plus each process's own
high-water mark (VmHWM, kept by the kernel between samples).

Run with `make bench` (starts the local stack if needed). Results:
bench/results/consumer-memory-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka.admin import AdminClient, NewTopic
from consumer_throughput import SPEC, ensure_stack, lagging, load_records, produce, say
from kubernetes.utils import parse_quantity

from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.refs import PipelineRef
from metricpipe_devstack.env import StackEnv
from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.reconcile.consumer import build_container, build_pipeline_document

PARTITIONS = 6
IDLE_SECONDS = 60
SAMPLE_SECONDS = 0.2
MIB = 1024 * 1024
# The default limit fits when the measured peak leaves this share of it free: the peak here is
# one data set on one machine, and a JVM's heap use follows its load.
MARGIN = 0.25


@dataclass
class MemorySampler:
    """Samples the RSS of a process tree from /proc until stopped."""

    root: int
    samples: list[tuple[float, int]] = field(default_factory=list)  # (time, bytes summed)
    high_water: dict[int, tuple[str, int]] = field(default_factory=dict)  # pid -> (name, HWM)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            total = 0
            for pid in tree_of(self.root):
                status = read_status(pid)
                if status:
                    total += status.get("VmRSS", 0)
                    self.high_water[pid] = (str(status["Name"]), status.get("VmHWM", 0))
            self.samples.append((time.monotonic(), total))
            self.stop.wait(SAMPLE_SECONDS)

    def between(self, start: float, end: float) -> list[int]:
        return [rss for at, rss in self.samples if start <= at <= end]


def tree_of(root: int) -> list[int]:
    """The pid and its descendants, from /proc/<pid>/task/*/children."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
    return found


def read_status(pid: int) -> dict[str, Any]:
    """/proc/<pid>/status: Name, and the memory lines in bytes."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    status: dict[str, Any] = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key == "Name":
            status["Name"] = value.strip()
        elif key in ("VmRSS", "VmHWM"):
            status[key] = int(value.split()[0]) * 1024  # kB
    return status


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def deployed_container(topic: str) -> dict[str, Any]:
    spec = MetricPipelineSpec.model_validate({**SPEC, "topic": {"name": topic}})
    return build_container(PipelineRef("bench", "memory", "uid"), spec, OperatorConfig(), "h")


def replica_env(
    container: dict[str, Any], document: Path, scratch: Path, port: int
) -> dict[str, str]:
    """The container's environment on this host: its literal values, the downward API's memory
    limit and pod name, and the container's paths moved under `scratch`."""
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    limit = int(parse_quantity(container["resources"]["limits"]["memory"]))
    return {
        **os.environ, **env,
        "METRICPIPE_PIPELINE_CONFIG": str(document),
        "METRICPIPE_METRICS_PORT": str(port),
        "METRICPIPE_MEMORY_LIMIT_BYTES": str(limit),
        "METRICPIPE_TERMINATION_MESSAGE_PATH": str(scratch / "termination"),
        "POD_NAME": "memory-0", "HOME": str(scratch), "TMPDIR": str(scratch),
        "SPARK_LOCAL_DIRS": str(scratch / "spark"),
    }  # fmt: skip


def wait_started(port: int, process: subprocess.Popen[bytes], timeout: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"the consumer exited with {process.returncode} before starting")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/startupz", timeout=2) as answer:
                if answer.status == 200:
                    return time.monotonic() - began
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the consumer did not start within {timeout:.0f} s")


def summary(values: list[int]) -> dict[str, float]:
    ordered = sorted(values)
    return {"samples": len(ordered), "median_mib": round(ordered[len(ordered) // 2] / MIB, 1),
            "max_mib": round(ordered[-1] / MIB, 1)}  # fmt: skip


def measure(stack: StackEnv, copies: int, scratch: Path) -> dict[str, Any]:
    topic = f"bench-memory-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    topics = [NewTopic(topic, PARTITIONS, 1), NewTopic(f"{topic}.dlq", 1, 1)]
    for future in admin.create_topics(topics).values():
        future.result()
    records, source = load_records(stack, copies)
    container = deployed_container(topic)
    spec = MetricPipelineSpec.model_validate({**SPEC, "topic": {"name": topic}})
    config = OperatorConfig(kafka_bootstrap=stack.kafka_bootstrap,
                            elasticsearch_url=stack.elasticsearch_url)  # fmt: skip
    document = scratch / "pipeline.json"
    ref = PipelineRef("bench", f"memory-{topic[-8:]}", "uid")
    document.write_text(json.dumps(build_pipeline_document(ref, spec, topic, config)))
    port = free_port()
    log = (scratch / "consumer.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "metricpipe_consumers", "stream"], stdout=log,
        stderr=subprocess.STDOUT, env=replica_env(container, document, scratch, port),
    )  # fmt: skip
    sampler = MemorySampler(process.pid)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    try:
        started = wait_started(port, process, 300)
        say(f"-- consumer started in {started:.1f} s; idle for {IDLE_SECONDS} s")
        idle_from = time.monotonic()
        time.sleep(IDLE_SECONDS)
        idle_to = time.monotonic()
        say(f"-- producing {len(records):,} records while it runs")
        produce(stack, topic, records)
        group = json.loads(document.read_text())["consumerGroup"]
        while lagging(stack, group, topic) > 0:
            if process.poll() is not None:
                raise RuntimeError(f"the consumer exited with {process.returncode} under load")
            time.sleep(1)
        load_to = time.monotonic()
        time.sleep(5)  # the finalisation after the last commit
    except RuntimeError:
        say((scratch / "consumer.log").read_text(errors="replace")[-3000:])
        raise
    finally:
        sampler.stop.set()
        thread.join()
        process.terminate()
        process.wait(120)
        log.close()
    limit = int(parse_quantity(container["resources"]["limits"]["memory"]))
    request = int(parse_quantity(container["resources"]["requests"]["memory"]))
    idle, load = sampler.between(idle_from, idle_to), sampler.between(idle_to, load_to + 5)
    peak = max(load)
    return {
        "records": len(records), "source": source, "load_seconds": round(load_to - idle_to, 1),
        "idle": summary(idle), "load": summary(load),
        "high_water_mib": {f"{name} ({pid})": round(hwm / MIB, 1)
                           for pid, (name, hwm) in sampler.high_water.items() if hwm},
        "limit_mib": limit // MIB, "request_mib": request // MIB,
        "peak_share_of_limit": round(peak / limit, 3), "margin_goal": MARGIN,
        "limit_fits": peak <= (1 - MARGIN) * limit,
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--copies", type=int, default=1, help="copies of the RTT records")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    stack = ensure_stack()
    with tempfile.TemporaryDirectory(prefix="metricpipe-memory-") as scratch:
        result = measure(stack, args.copies, Path(scratch))
    say(f"\n{'':<22}{'median MiB':>12}{'max MiB':>10}")
    for phase in ("idle", "load"):
        say(f"{phase:<22}{result[phase]['median_mib']:>12}{result[phase]['max_mib']:>10}")
    say(f"{result['records']:,} records in {result['load_seconds']} s under load; per-process "
        f"high-water marks (MiB): {result['high_water_mib']}")  # fmt: skip
    say(f"limit {result['limit_mib']} MiB (request {result['request_mib']} MiB): peak "
        f"{result['peak_share_of_limit']:.0%} of it; fits with {MARGIN:.0%} free: "
        f"{result['limit_fits']}")  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"consumer-memory-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"when": datetime.now(UTC).isoformat(), **result}, indent=1))
    say(f"wrote {path}")
    return 0 if result["limit_fits"] else 1


if __name__ == "__main__":
    sys.exit(main())
