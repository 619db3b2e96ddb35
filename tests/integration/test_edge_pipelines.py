"""The edge's access log as a real log source: a bounded load test through HAProxy -> Nginx, its
JSON lines shipped to Kafka, and the example pipelines' hourly numbers computed by real consumer
processes.

A generator sends RATE requests/s for DURATION_S seconds (4,000 requests) over HTTPS through the
stack's HAProxy to its two Nginx servers (TLS verified with the stack's CA), from CLIENTS
kept-alive connections on ADDRESSES loopback addresses of this run's own (the PROXY protocol
carries them; each stays far below the per-client limit, and no 429 may come back), to an
upstream this test serves on the peek API's port: it answers 500/502/503 for a known share of
requests on purpose and sleeps a known, varying time on others, so request_time varies.

Fluentd cannot run here, so a named stand-in does its part: `FluentdStandIn` follows both Nginx
access logs from where they ended before the load, as `in_tail` does, and produces each new
line of this run (the edge may serve other tests meanwhile: the run's request ids select its
lines) to the pipeline topic as `out_kafka2` with a JSON formatter would: the record's JSON as
the value, no key. The three pipelines (the requests per hour, and examples edge-5xx-share.yaml
and edge-p95-request-time.yaml) run as the product's stream consumer processes, started
before the load, reading while the lines arrive.

Checked: (a) every window equals the independent oracle over the shipped lines (finals for
finalized windows, merged partials for the open current hour), and (b) what the generator and
Nginx's own log say: the hourly request count is the number of requests the generator sent,
the 5xx count (the ratio's numerator) the number of 5xx answers it got, and the hourly p95
request time is within the sketch's 1 % of the exact p95 of request_time in Nginx's lines
(read with plain json). The generator's p95 of its own measured durations is printed beside it
(it includes TLS and the client, so it is not asserted equal).
"""

from __future__ import annotations

import http.client
import json
import math
import random
import ssl
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml
from confluent_kafka import Producer

import oracle
from consumers import (
    ConsumerProcesses,
    Pipeline,
    compare_pipelines,
    create_topics,
    read_topic,
    sink_results,
    start_pipelines,
)
from edge_harness import LogMark, UpstreamHandler, serve_on_peek_port
from helpers import wait_for
from metricpipe_devstack.env import StackEnv

RATE = 200  # requests per second, all clients together
DURATION_S = 20
CLIENTS = 16  # kept-alive connections (HAProxy balances per connection: 8 per Nginx)
ADDRESSES = 4  # distinct client addresses, CLIENTS / ADDRESSES connections each
SHARE_5XX = {500: 0.03, 502: 0.02, 503: 0.02}  # answered on purpose by the upstream
SLOW_SHARE, SLOW_MS = 0.12, (10, 250)  # requests the upstream delays, uniformly in SLOW_MS
HOUR_MS = 3_600_000
EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"


@dataclass(frozen=True)
class Planned:
    path: str
    status: int
    sleep_ms: int


def _plan(run: str, seed: int) -> list[Planned]:
    """Each request's status and delay, drawn once: the shares above, known per request."""
    draw = random.Random(seed)
    planned = []
    for i in range(RATE * DURATION_S):
        roll, status = draw.random(), 200
        for code, share in SHARE_5XX.items():
            if roll < share:
                status = code
                break
            roll -= share
        sleep_ms = draw.randint(*SLOW_MS) if draw.random() < SLOW_SHARE else 0
        path = f"/load/{run}/{i}?status={status}&sleep_ms={sleep_ms}"
        planned.append(Planned(path, status, sleep_ms))
    return planned


class _Handler(UpstreamHandler):
    """The upstream: the status and delay the path's query asks for."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        query = parse_qs(urlsplit(self.path).query)
        time.sleep(int(query.get("sleep_ms", ["0"])[0]) / 1000)
        self.answer(int(query.get("status", ["200"])[0]), b'{"ok": true}\n')


@dataclass(frozen=True)
class Sent:
    index: int
    status: int
    seconds: float  # measured by the client: request written to response read


def _generate(stack: StackEnv, run: str, planned: list[Planned]) -> tuple[list[Sent], float]:
    """Sends the planned requests at RATE per second on a fixed schedule (request i is due at
    start + i / RATE), CLIENTS threads each on one kept-alive HTTPS connection. Returns what
    came back and the seconds it took."""
    assert stack.edge_url, ".stack/env lacks METRICPIPE_EDGE_URL; run 'make stack-up'"
    host, port = stack.edge_url.removeprefix("https://").rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(stack.ca_file))
    net = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}"
    sent: list[Sent] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = time.monotonic() + 0.5  # all threads connected before the first is due

    def client(number: int) -> None:
        source = f"{net}.{2 + number % ADDRESSES}"
        connection = http.client.HTTPSConnection(
            host, int(port), context=context, timeout=10, source_address=(source, 0)
        )
        mine = []
        try:
            for index in range(number, len(planned), CLIENTS):
                delay = start + index / RATE - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                began = time.perf_counter()
                connection.request("GET", planned[index].path,
                                   headers={"X-Request-Id": f"{run}-{index:05d}",
                                            "User-Agent": "metricpipe-edge-load"})  # fmt: skip
                response = connection.getresponse()
                response.read()
                mine.append(Sent(index, response.status, time.perf_counter() - began))
        except BaseException as error:  # reported by the test's thread below
            errors.append(error)
        finally:
            connection.close()
            with lock:
                sent.extend(mine)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    assert errors == [], errors[:3]
    return sorted(sent, key=lambda s: s.index), elapsed


@dataclass
class FluentdStandIn:
    """Fluentd's in_tail + out_kafka2 for the two Nginx access logs (see the module's doc):
    complete new lines since the mark, this run's only, each line the message's value."""

    stack: StackEnv
    topic: str
    mark: LogMark
    run: str
    shipped: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def follow(self) -> None:
        producer = Producer({"bootstrap.servers": self.stack.kafka_bootstrap, "linger.ms": 50,
                             "enable.idempotence": True})  # fmt: skip
        offsets = dict(self.mark.sizes)
        mine = f'"request_id":"{self.run}-'.encode()
        while True:
            stopping = self.stop.is_set()  # read before the files: a last round after it
            for path, offset in offsets.items():
                with path.open("rb") as log:
                    log.seek(offset)
                    chunk = log.read()
                complete = chunk[: chunk.rfind(b"\n") + 1]  # a line being written waits
                offsets[path] = offset + len(complete)
                for line in complete.splitlines():
                    if mine in line:
                        producer.produce(self.topic, value=line)
                        self.shipped += 1
            producer.poll(0)
            if stopping:
                break
            time.sleep(0.2)
        assert producer.flush(30) == 0


def _specs() -> dict[str, dict[str, Any]]:
    """The examples' source and metric; the request count is a count over the same source."""
    examples = {
        name: yaml.safe_load((EXAMPLES / f"edge-{name}.yaml").read_text())["spec"]
        for name in ("5xx-share", "p95-request-time")
    }
    share = examples["5xx-share"]
    count = {"aggregation": "count", "window": share["metric"]["window"],
             "allowedLateness": share["metric"]["allowedLateness"],
             "eventTime": share["metric"]["eventTime"]}  # fmt: skip
    specs = {"requests": {"source": share["source"], "metric": count}}
    for name, spec in examples.items():
        specs[name] = {"source": spec["source"], "metric": spec["metric"]}
    return specs


def _hourly(pipeline: Pipeline) -> dict[int, tuple[int, float, float | None]]:
    """(count, sum, value) per hour from the sink: the final document of a finalized hour,
    else the hour's partial documents merged (the current hour is still open)."""
    finals, partials = sink_results(pipeline)
    metric = pipeline.spec.metric
    out = {}
    for (start, _group), agg in partials.items():
        value = agg.value(metric.aggregation, HOUR_MS / 1000, metric.percentile_interpolation)
        out[start] = (agg.count, agg.total, value)
    for (start, _group), doc in finals.items():
        out[start] = (int(doc["count"]), float(doc["sum"] or 0), doc["value"])
    return out


def test_edge_load_gives_the_generators_and_nginxs_numbers(
    stack: StackEnv, processes: ConsumerProcesses, tmp_path: Path, unique_name: str
) -> None:
    began = time.monotonic()
    assert len(stack.edge_access_logs) == 2
    run = uuid.uuid4().hex[:8]
    planned = _plan(run, seed=int(run, 16))
    topic = f"{unique_name}-edge"
    create_topics(stack, topic, 3)
    pipelines = start_pipelines(stack, processes, tmp_path, unique_name, topic, _specs(),
                                "elasticsearch")  # fmt: skip
    mark = LogMark.take(stack.edge_access_logs)
    fluentd = FluentdStandIn(stack, topic, mark, run)
    shipper = threading.Thread(target=fluentd.follow)
    with serve_on_peek_port(_Handler, wait_seconds=30):
        shipper.start()
        try:
            sent, elapsed = _generate(stack, run, planned)
            wait_for(lambda: fluentd.shipped >= len(planned), timeout=15, interval=0.2,
                     what="every request's access-log line shipped")  # fmt: skip
        finally:
            fluentd.stop.set()
            shipper.join(timeout=60)
    load_done = time.monotonic()

    # The generator: every request answered as planned (no 429 from the rate limit).
    statuses = Counter(s.status for s in sent)
    assert len(sent) == len(planned)
    assert 429 not in statuses, statuses
    assert [s.status for s in sent] == [p.status for p in planned]
    sent_5xx = sum(1 for s in sent if s.status >= 500)
    client_p95 = oracle.quantile(sorted(s.seconds for s in sent), 0.95, "linear")

    # Nginx's own log, read with plain json: each request exactly once.
    lines = [json.loads(line) for line in mark.lines()]
    logged = [r for r in lines if str(r["request_id"]).startswith(f"{run}-")]
    assert fluentd.shipped == len(logged) == len(sent)
    assert sorted(r["request_id"] for r in logged) == [f"{run}-{i:05d}" for i in range(len(sent))]
    by_hour: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for record in logged:
        by_hour[round(record["msec"] * 1000) // HOUR_MS * HOUR_MS].append(record)

    # (a) each pipeline against the oracle over the shipped lines
    records = read_topic(stack, topic)
    assert len(records) == len(sent)
    references = {name: pipeline.expected(records) for name, pipeline in pipelines.items()}
    compare_pipelines(stack, processes, topic, pipelines, references, finals_required=False)
    compared = time.monotonic()

    # (b) against the generator and Nginx's own log
    requests = _hourly(pipelines["requests"])
    share = _hourly(pipelines["5xx-share"])
    p95 = _hourly(pipelines["p95-request-time"])
    assert sorted(requests) == sorted(share) == sorted(p95) == sorted(by_hour)
    assert sum(count for count, _, _ in requests.values()) == len(sent)
    assert sum(round(numerator) for _, numerator, _ in share.values()) == sent_5xx
    report = []
    for hour, hour_records in sorted(by_hour.items()):
        times = sorted(float(r["request_time"]) for r in hour_records)
        exact_p95 = oracle.quantile(times, 0.95, "linear")
        errors = sum(1 for r in hour_records if r["status"] >= 500)
        assert requests[hour][0] == len(hour_records)
        assert (share[hour][0], round(share[hour][1])) == (len(hour_records), errors)
        got_share = share[hour][2]
        assert got_share is not None
        assert math.isclose(got_share, errors / len(hour_records), rel_tol=1e-9)
        got_p95 = p95[hour][2]
        assert got_p95 is not None
        assert abs(got_p95 - exact_p95) <= 0.01 * exact_p95, (got_p95, exact_p95)
        report.append(
            f"hour {time.strftime('%Y-%m-%dT%H:00Z', time.gmtime(hour / 1000))}: "
            f"{len(hour_records)} requests, {errors} 5xx (share {got_share:.4f}), "
            f"p95 request_time Nginx {exact_p95:.4f} s, pipeline {got_p95:.4f} s"
        )
    servers = Counter(r["server"] for r in logged)
    print(
        f"\nedge load: {len(sent)} requests in {elapsed:.1f} s ({len(sent) / elapsed:.1f}/s) "
        f"from {CLIENTS} connections on {ADDRESSES} addresses; statuses {dict(statuses)}; "
        f"served {dict(servers)}; generator's p95 (TLS and client included) "
        f"{client_p95:.4f} s\n" + "\n".join(report) + "\n"
        f"wall time: topic, consumers started, load and shipping {load_done - began:.1f} s, "
        f"then consumed, finalized as far as possible and compared {compared - load_done:.1f} s,"
        f" total {time.monotonic() - began:.1f} s"
    )
    assert min(servers.values()) >= len(sent) // 4  # both Nginx served
