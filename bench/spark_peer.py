"""Benchmark peer: the consumer benchmark's metric as a Spark Structured Streaming job.

The metric is consumer_throughput.SPEC's: the average `rtt` per `probe` per 1-hour event-time
window, 5 minutes of allowed lateness. The job is what a competent Spark user would write for
the benchmark's two cores: `local[2]` with 2 shuffle partitions; the Kafka source from the
earliest offsets in micro-batches of at most MAX_OFFSETS_PER_TRIGGER records (the tuned
consumer's batch size), trigger availableNow (read what the topic holds, then stop);
`from_json` with an explicit schema; a watermark of the lateness on the event time; a
tumbling-window aggregation in append mode, so a window is emitted once, when the watermark
passes its end; a checkpoint directory of its own; and `foreachBatch` writing each batch's
windows to Elasticsearch with `_bulk`, under ids made of the window start and the probe, so
a rerun overwrites instead of adding.

Spark keeps one watermark per query: the newest event time seen in any partition less the
lateness, moved between micro-batches. Records that arrive for a window it has already closed
are dropped (`numRowsDroppedByWatermark`, reported: 567 of 816,174 records in 5 micro-batches
over two copies of the data, 561 windows lost; docs/consumer.md), and the windows within the
lateness of the newest event time stay open when the data ends.

`run_peer` runs the job in a child process (its own JVM, with the Kafka connector on its class
path): once untimed into another index, as the consumer benchmark warms its consumer, then
timed, from the query's start until a search counts every window written.
`compare_documents` compares its windows with metricpipe's final documents.

    .venv/bin/python bench/spark_peer.py --topic TOPIC --index INDEX --out result.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as sf
from pyspark.sql.types import DoubleType, StringType, StructField, StructType, TimestampType

from metricpipe_consumers.documents import metrics_index_body
from metricpipe_consumers.sink import build_sink
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.settings import StackSettings
from metricpipe_devstack.stack import read_env_file

MASTER = "local[2]"
SHUFFLE_PARTITIONS = 2
MAX_OFFSETS_PER_TRIGGER = 200_000
WINDOW, LATENESS = "1 hour", "5 minutes"  # consumer_throughput.SPEC's window and lateness
RECORD_SCHEMA = StructType([StructField("time", TimestampType()),
                            StructField("probe", StringType()),
                            StructField("rtt", DoubleType())])  # fmt: skip
BULK_DOCS = 5_000  # documents per _bulk request
RELATIVE_TOLERANCE = 1e-9  # two sums of the same doubles in another order differ in the last bits
CHILD_TIMEOUT_SECONDS = 1_800
PEER_SETTINGS = {"master": MASTER, "shuffle_partitions": SHUFFLE_PARTITIONS,
                 "max_offsets_per_trigger": MAX_OFFSETS_PER_TRIGGER, "trigger": "availableNow",
                 "output_mode": "append", "watermark": LATENESS, "window": WINDOW}  # fmt: skip
WindowKey = tuple[int, str]  # (window start ms, probe)


class PeerError(RuntimeError):
    """The peer job could not run or write its windows; the message says what failed."""


# -- pure ------------------------------------------------------------------------------------
def build_doc_id(window_start_ms: int, probe: str) -> str:
    """One id per (window, probe): a rerun overwrites the window's document."""
    return f"{window_start_ms}-{probe}"


def iso_seconds(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_window_doc(
    window_start_ms: int, window_end_ms: int, probe: str, value: float, count: int
) -> dict[str, Any]:
    """A finalised window in the fields metricpipe's final documents carry for it."""
    return {
        "window_start": iso_seconds(window_start_ms),
        "window_end": iso_seconds(window_end_ms),
        "window_start_ms": window_start_ms,
        "window_end_ms": window_end_ms,
        "group": {"probe": probe},
        "group_key": f"probe={probe}",
        "metric": "avg",
        "value": value,
        "count": count,
        "final": True,
    }


def build_bulk_body(index: str, docs: Iterable[Mapping[str, Any]]) -> str:
    """An NDJSON `_bulk` body: an `index` action (create or overwrite) per document."""
    lines = []
    for doc in docs:
        doc_id = build_doc_id(int(doc["window_start_ms"]), str(doc["group"]["probe"]))
        lines.append(json.dumps({"index": {"_index": index, "_id": doc_id}}))
        lines.append(json.dumps(doc))
    return "\n".join(lines) + "\n"


def window_key(doc: Mapping[str, Any]) -> WindowKey:
    return int(doc["window_start_ms"]), str(doc["group"]["probe"])


def compare_documents(
    peer_docs: Sequence[Mapping[str, Any]], metricpipe_docs: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """Per (window start, probe) finalised by both: the value within RELATIVE_TOLERANCE and
    the count exactly. A window only one side has is missing from the other; it is `lost` by
    that other side when it starts before the last window start the other side finalised (the
    other side had closed its hour), else it lies beyond what the other side's watermark
    closed, or in its last hour, whose documents may still be on their way."""
    peer = {window_key(d): d for d in peer_docs}
    mine = {window_key(d): d for d in metricpipe_docs}
    both = sorted(peer.keys() & mine.keys())
    different = [
        {"window_start_ms": key[0], "probe": key[1],
         "peer": [peer[key]["value"], peer[key]["count"]],
         "metricpipe": [mine[key]["value"], mine[key]["count"]]}
        for key in both
        if int(peer[key]["count"]) != int(mine[key]["count"])
        or not math.isclose(float(peer[key]["value"]), float(mine[key]["value"]),
                            rel_tol=RELATIVE_TOLERANCE)
    ]  # fmt: skip
    from_peer = [k for k in mine if k not in peer]
    from_mine = [k for k in peer if k not in mine]
    return {
        "peer_windows": len(peer),
        "metricpipe_windows": len(mine),
        "both": len(both),
        "equal": len(both) - len(different),
        "different": len(different),
        "missing_from_peer": len(from_peer),
        "lost_by_peer": count_before(from_peer, peer),
        "missing_from_metricpipe": len(from_mine),
        "lost_by_metricpipe": count_before(from_mine, mine),
        "examples_different": different[:5],
    }  # fmt: skip


def count_before(keys: Iterable[WindowKey], side: Mapping[WindowKey, Any]) -> int:
    """How many of `keys` start before the last window start `side` holds."""
    last = max((key[0] for key in side), default=None)
    return sum(1 for key in keys if last is not None and key[0] < last)


def summarize_progress(progress: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals over a query's progress reports (StreamingQueryProgress as JSON): records read,
    records dropped as late, micro-batches with data, the last watermark, and when the first
    batch with data started."""
    with_data = [p for p in progress if int(p.get("numInputRows", 0)) > 0]
    dropped = sum(
        int(op.get("numRowsDroppedByWatermark", 0))
        for p in progress
        for op in p.get("stateOperators", [])
    )
    marks = [p["eventTime"]["watermark"] for p in progress if "watermark" in p.get("eventTime", {})]
    return {
        "records_read": sum(int(p.get("numInputRows", 0)) for p in progress),
        "records_dropped_late": dropped,
        "batches_with_data": len(with_data),
        "batches": len(progress),
        "last_watermark": marks[-1] if marks else None,
        "first_batch_started": with_data[0]["timestamp"] if with_data else None,
    }


def parse_progress_time(text: str) -> float:
    """Seconds since the epoch of a progress report's `timestamp` (`...T12:00:00.123Z`)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- the job (child process) -----------------------------------------------------------------
def build_session(jars: Sequence[str]) -> SparkSession:
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # local mode: loopback only
    return (
        SparkSession.builder.master(MASTER)
        .appName("metricpipe-bench-peer")
        # local mode: the driver is the executor; its class path is enough for the connector
        .config("spark.driver.extraClassPath", ":".join(jars))
        .config("spark.driver.memory", "1g")  # as the metricpipe consumer's default
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", str(SHUFFLE_PARTITIONS))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.streaming.numRecentProgressUpdates", "10000")  # all of a run
        .getOrCreate()
    )


def post_bulk(
    http: requests.Session, endpoint: str, index: str, docs: list[dict[str, Any]]
) -> None:
    for first in range(0, len(docs), BULK_DOCS):
        body = build_bulk_body(index, docs[first : first + BULK_DOCS])
        response = http.post(f"{endpoint}/_bulk", data=body.encode(), timeout=120,
                             headers={"Content-Type": "application/x-ndjson"})  # fmt: skip
        if response.status_code != 200:
            raise PeerError(
                f"_bulk into {index}: HTTP {response.status_code} {response.text[:300]}"
            )
        result = response.json()
        if result.get("errors"):
            failed = [i["index"] for i in result["items"] if i["index"].get("error")]
            raise PeerError(f"_bulk into {index}: {len(failed)} refused, first {failed[0]}")


def run_query(
    spark: SparkSession, bootstrap: str, topic: str, endpoint: str, index: str
) -> dict[str, Any]:
    """One availableNow run of the job over the whole topic, with a new checkpoint."""
    http = requests.Session()

    written: list[int] = []

    def write_batch(frame: DataFrame, _batch_id: int) -> None:
        docs = [build_window_doc(r["start_ms"], r["end_ms"], r["probe"], r["value"], r["count"])
                for r in frame.collect()]  # fmt: skip
        post_bulk(http, endpoint, index, docs)
        written.append(len(docs))

    checkpoint = tempfile.mkdtemp(prefix="bench-peer-checkpoint-")
    try:
        records = (
            spark.readStream.format("kafka")
            .option("kafka.bootstrap.servers", bootstrap)
            .option("subscribe", topic)
            .option("startingOffsets", "earliest")
            .option("maxOffsetsPerTrigger", MAX_OFFSETS_PER_TRIGGER)
            .load()
            .select(sf.from_json(sf.col("value").cast("string"), RECORD_SCHEMA).alias("r"))
            .select("r.*")
            .where(sf.col("time").isNotNull() & sf.col("rtt").isNotNull())
        )
        windows = (
            records.withWatermark("time", LATENESS)
            .groupBy(sf.window("time", WINDOW), "probe")
            .agg(sf.avg("rtt").alias("value"), sf.count("rtt").alias("count"))
        )
        columns: list[Column | str] = [
            sf.unix_millis(sf.col("window.start")).alias("start_ms"),
            sf.unix_millis(sf.col("window.end")).alias("end_ms"),
            *("probe", "value", "count"),
        ]
        started = time.perf_counter()
        query = (
            windows.select(*columns)
            .writeStream.outputMode("append")
            .foreachBatch(write_batch)
            .option("checkpointLocation", checkpoint)
            .trigger(availableNow=True)
            .start()
        )
        query.awaitTermination()
        to_query_end = time.perf_counter() - started
        wait_visible(http, endpoint, index, sum(written))
        seconds, ended = time.perf_counter() - started, time.time()
        summary = summarize_progress([json.loads(p.json) for p in query.recentProgress])
    finally:
        shutil.rmtree(checkpoint, ignore_errors=True)
    first = summary["first_batch_started"]
    from_first = ended - parse_progress_time(first) if first else seconds
    return {**summary, "windows_written": sum(written), "seconds": seconds,
            "seconds_to_query_end": to_query_end, "seconds_from_first_batch": from_first,
            "seconds_to_first_batch": seconds - from_first}  # fmt: skip


def wait_visible(http: requests.Session, endpoint: str, index: str, docs: int) -> None:
    """Until a search counts `docs` documents in `index` (Elasticsearch shows new documents
    at its next refresh, every second): the consumer benchmark stops metricpipe's clock the
    same way, polling `_count` every 0.25 s."""
    while True:
        response = http.post(f"{endpoint}/{index}/_count", timeout=10)
        if response.status_code == 200 and int(response.json()["count"]) >= docs:
            return
        time.sleep(0.25)


def child_main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--warm-index", help="an untimed run into this index first")
    parser.add_argument("--bootstrap", help="Kafka (default: the local stack's)")
    parser.add_argument("--elasticsearch", help="Elasticsearch's URL (default: the stack's)")
    parser.add_argument("--jars", help="the Kafka connector's jars, comma-separated")
    parser.add_argument("--out", type=Path, required=True, help="the run's figures (JSON)")
    args = parser.parse_args()
    if not (args.bootstrap and args.elasticsearch and args.jars):
        stack = stack_env()
        args.bootstrap = args.bootstrap or stack.kafka_bootstrap
        args.elasticsearch = args.elasticsearch or stack.elasticsearch_url
        args.jars = args.jars or ",".join(stack.spark_kafka_jars)
    spark = build_session(args.jars.split(","))
    spark.sparkContext.setLogLevel("WARN")
    try:
        if args.warm_index:
            run_query(spark, args.bootstrap, args.topic, args.elasticsearch, args.warm_index)
        result = run_query(spark, args.bootstrap, args.topic, args.elasticsearch, args.index)
    finally:
        spark.stop()
    args.out.write_text(json.dumps(result, indent=2))
    return 0


def stack_env() -> StackEnv:
    settings = StackSettings()
    return StackEnv.from_entries(read_env_file(settings), settings.versions["KUBE_VERSION"])


# -- the benchmark's side (parent process) ---------------------------------------------------
def ensure_index(endpoint: str, index: str) -> None:
    """The index with metricpipe's metrics mapping (one shard, no replica), made anew."""
    requests.delete(f"{endpoint}/{index}", timeout=30)
    response = requests.put(f"{endpoint}/{index}", json=metrics_index_body(), timeout=30)
    if response.status_code != 200:
        raise PeerError(f"creating {index}: HTTP {response.status_code} {response.text[:300]}")


def fetch_windows(endpoint: str, index: str) -> list[dict[str, Any]]:
    """Every final window document of an index (metricpipe's or the peer's)."""
    requests.post(f"{endpoint}/{index}/_refresh", timeout=60)
    sink = build_sink("elasticsearch", endpoint, index, None, None)
    order = [{"window_start_ms": "asc"}, {"group_key": "asc"}]  # unique per window document
    return sink.search_all(index, {"term": {"final": True}}, sort=order)


def run_peer(stack: StackEnv, topic: str, index: str, records_total: int) -> dict[str, Any]:
    """The peer over `topic` (warm run, then timed run) in a child process; its figures:
    records/s from the timed query's start until a search counts every window it wrote, and
    the windows finalised."""
    warm = f"{index}-warm"
    for name in (warm, index):
        ensure_index(stack.elasticsearch_url, name)
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as scratch:
        out = Path(scratch) / "peer.json"
        argv = [sys.executable, __file__, "--topic", topic, "--index", index, "--warm-index",
                warm, "--bootstrap", stack.kafka_bootstrap, "--elasticsearch",
                stack.elasticsearch_url, "--jars", ",".join(stack.spark_kafka_jars),
                "--out", str(out)]  # fmt: skip
        done = subprocess.run(argv, timeout=CHILD_TIMEOUT_SECONDS, check=False)
        if done.returncode != 0 or not out.is_file():
            raise PeerError(f"the peer job exited with {done.returncode} (its log is above)")
        run = json.loads(out.read_text())
    windows = len(fetch_windows(stack.elasticsearch_url, index))
    return {
        "settings": PEER_SETTINGS,
        "records_per_second": records_total / run["seconds"],
        "records_per_second_from_first_batch": records_total / run["seconds_from_first_batch"],
        "windows_finalised": windows,
        "index": index,
        **run,
    }


def format_peer_table(
    raw_rate: float, sides: Sequence[tuple[str, float, int | None]], comparison: Mapping[str, Any]
) -> list[str]:
    """The side-by-side lines: (label, records/s, windows finalised) per side, then the
    document comparison."""
    lines = [f"   {'':<22}{'records/s':>11}{'ratio':>8}{'windows':>10}",
             f"   {'raw loop':<22}{raw_rate:>11,.0f}{1:>8.3f}{'-':>10}"]  # fmt: skip
    for label, rate, windows in sides:
        shown = "-" if windows is None else f"{windows:,}"
        lines.append(f"   {label:<22}{rate:>11,.0f}{rate / raw_rate:>8.3f}{shown:>10}")
    c = comparison
    lines.append(
        f"   windows both finalised: {c['both']:,}, equal {c['equal']:,}, different "
        f"{c['different']:,}; only metricpipe's {c['missing_from_peer']:,} (lost by the peer "
        f"{c['lost_by_peer']:,}), only the peer's {c['missing_from_metricpipe']:,} (lost by "
        f"metricpipe {c['lost_by_metricpipe']:,})"
    )
    return lines


if __name__ == "__main__":
    sys.exit(child_main())
