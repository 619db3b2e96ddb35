"""Benchmark: the log archive on the stack's real HDFS.

1. Live: records/s of one archiver with the deployed defaults (native rows, zstd level 3,
   64 MiB / 60 s rolls) against a raw consume loop on the same topic in the same run (goal
   >= 0.5x; the baseline is the faster of two raw runs, one before and one after the
   archivers), and the same archiver with every row made in Python. The topic holds
   `--records` records (default 1,000,000: the Apache log 100 times, as Fluentd sends it,
   {"message": line}), stamped as they are sent, as a live stream is: a batch spans an hour or
   two. A million records is what it takes to measure consuming rather than copying out of
   librdkafka's prefetch queue (64 MiB, which holds a 100,000-record topic whole).
2. Replay: the Apache log `--copies` times with its own times (84 hours in 10,000 records, so
   every batch writes a file per hour: the catch-up of an old log), archived the same way;
   bytes on HDFS / raw bytes of the lines for both (goal <= 0.25 for the Apache log).
3. Encoding: the archiver's rows encoded at zstd 3 (deployed) and 6, records/s and bytes.
4. The peek API's reader (consumers/peek/scan.py, in-process: no HTTP, no auth, no edge) on the
   replay's busiest hour: first page (100 records), p50 and p95 over 20 warm requests (goal
   p95 <= 1 s), and a grep over the whole hour in MB/s of Parquet read.

Each archiver's clock runs from its first record to the end of the flush that commits the
last one (a graceful stop writes what it holds, so the 60 s roll is not waited for). Results:
bench/results/archive-*.json; figures in docs/archive.md ("Measured").
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import requests
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from consumer_throughput import ensure_stack

from metricpipe_consumers.archive.columnar import build_record_batch
from metricpipe_consumers.archive.document import ArchiveDocument, ArchiverConfig
from metricpipe_consumers.archive.loop import Archiver
from metricpipe_consumers.archive.store import ArchiveStore
from metricpipe_consumers.kafka_access import build_plaintext_access
from metricpipe_consumers.peek.match import RecordFilter
from metricpipe_consumers.peek.request import RecordsQuery
from metricpipe_consumers.peek.scan import ArchiveReader, ScanBudget, Trailer
from metricpipe_consumers.peek.timerange import TimeRange
from metricpipe_consumers.webhdfs import WebHdfs
from metricpipe_contract.archive import parse_hour_key
from metricpipe_devstack.datasets import iter_access_log_lines
from metricpipe_devstack.env import StackEnv

PARTITIONS = 3
USER = "metricpipe-archiver"
REPO = Path(__file__).resolve().parents[1]


def say(text: str) -> None:
    print(text, flush=True)


def clf_ms(line: str) -> int:
    stamp = line.split("[", 1)[1].split("]", 1)[0]
    return int(datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").timestamp() * 1000)


def native_lib() -> Path:
    """The native row maker the deployed archiver loads (`make bench` exports its path)."""
    configured = os.environ.get("METRICPIPE_ARCHIVE_NATIVE_LIB")
    if configured:
        return Path(configured)
    built = subprocess.run(["bash", str(REPO / "hack" / "build-native.sh")], check=True,
                           capture_output=True, text=True)  # fmt: skip
    return Path(built.stdout.strip())


def produce_log(
    stack: StackEnv, topic: str, data_dir: Path, copies: int, *, live: bool
) -> tuple[int, int]:
    """(records, raw bytes of their lines); live: stamped as sent, else with the log's times."""
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1, config={"retention.ms": "-1"})])[
        topic
    ].result(30)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 50,
                         "compression.type": "lz4"})  # fmt: skip
    lines = list(iter_access_log_lines(data_dir))
    count = size = 0
    last = 0
    for copy in range(copies):
        for line in lines:
            if not live:
                with contextlib.suppress(IndexError, ValueError):  # a cut line: its predecessor's
                    last = clf_ms(line)
            value = json.dumps({"message": line, "stream": "stdout"}).encode()
            stamp = 0 if live else last + copy  # 0: librdkafka stamps it as sent
            while True:
                try:
                    producer.produce(topic, value=value, timestamp=stamp)
                    break
                except BufferError:
                    producer.poll(0.1)
            count += 1
            size += len(line.encode())
    producer.flush(60)
    return count, size


def raw_consume_rate(stack: StackEnv, topic: str, total: int) -> float:
    """The peer: a confluent-kafka loop that does nothing with the records, consuming as the
    archiver does (2,000 records a call), timed from its first record to its last."""
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap,
                         "group.id": f"raw-{uuid.uuid4()}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([topic])
    seen, started = 0, 0.0
    while seen < total:
        batch = consumer.consume(2000, timeout=0.5)
        if batch and not started:
            started = time.perf_counter()
        seen += sum(1 for m in batch if m.error() is None)
    elapsed = time.perf_counter() - started
    consumer.close()
    return seen / elapsed


def zstd_levels(stack: StackEnv, topic: str, total: int, raw_bytes: int) -> dict[str, Any]:
    """Records/s and bytes per byte of line of the archiver's own rows (the real log, parsed as
    it parses them) encoded at zstd levels 3 (the deployed one) and 6, outside Kafka and HDFS."""
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap,
                         "group.id": f"levels-{uuid.uuid4()}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([topic])
    values: list[bytes | None] = []
    while len(values) < total:
        values += [m.value() for m in consumer.consume(2000, timeout=0.5) if m.error() is None]
    consumer.close()
    count = len(values)
    table = pa.Table.from_batches([build_record_batch(
        0, list(range(count)), [0] * count, [None] * count, values,
        source_format="apache_combined")])  # fmt: skip
    found: dict[str, Any] = {}
    for level in (3, 6):
        sink = io.BytesIO()
        began = time.perf_counter()
        pq.write_table(table, sink, compression="zstd", compression_level=level)
        seconds = time.perf_counter() - began
        found[f"zstd_{level}"] = {"records_per_s": count / seconds,
                                  "bytes_over_raw": len(sink.getvalue()) / raw_bytes}  # fmt: skip
    return found


def run_archiver(
    stack: StackEnv, topic: str, root: str, total: int, *, name: str, native: Path | None
) -> tuple[float, float, Any]:
    """(records/s from the first record to the end of the last commit, seconds spent turning
    consumed records into rows, the archiver's stats) of archive bench/<name>."""
    document = ArchiveDocument.model_validate({
        "archive": {"namespace": "bench", "name": name}, "topic": topic,
        "consumerGroup": f"bench-{uuid.uuid4()}", "kafka": {"bootstrap": stack.kafka_bootstrap},
        "hdfs": {"webhdfsUrl": stack.webhdfs_url, "user": USER, "root": root},
        "format": "apache_combined", "retentionDays": 36500,
    })  # fmt: skip
    config = ArchiverConfig(archive_native_lib=native)  # the deployed defaults otherwise
    store = ArchiveStore(WebHdfs(document.hdfs.webhdfs_url, USER), document.directory)
    kafka = build_plaintext_access(stack.kafka_bootstrap)
    archiver = Archiver(document, config, store, kafka_settings=dict(kafka.settings))
    stop = threading.Event()
    started: list[float] = []
    reading = [0.0]
    read = archiver._read  # the bench times the loop from its first record

    def timed_read(messages: list[Any]) -> None:
        if messages and not started:
            started.append(time.perf_counter())
        began = time.perf_counter()
        read(messages)
        reading[0] += time.perf_counter() - began

    archiver._read = timed_read  # type: ignore[method-assign]

    def held() -> int:
        return archiver.stats.records + sum(p.records for p in archiver.pending.values())

    worker = threading.Thread(target=archiver.run, args=(stop,))
    worker.start()
    while held() < total:
        time.sleep(0.05)
    stop.set()
    worker.join()
    return total / (time.perf_counter() - started[0]), reading[0], archiver.stats


def hdfs_bytes(stack: StackEnv, directory: str) -> int:
    summary = requests.get(f"{stack.webhdfs_url}{directory}", timeout=30, params={
        "op": "GETCONTENTSUMMARY", "user.name": USER}).json()  # fmt: skip
    return int(summary["ContentSummary"]["length"])


def peek_timings(stack: StackEnv, root: str) -> dict[str, Any]:
    reader = ArchiveReader(WebHdfs(stack.webhdfs_url or "", "metricpipe-peek"), root)
    busiest = max(reader.hours("bench", "edge", TimeRange(0, 2**62)), key=lambda h: h["bytes"])
    start = parse_hour_key(busiest["dir"])
    hour = TimeRange(start, start + 3_600_000)

    def page(record_filter: RecordFilter, limit: int) -> tuple[float, int, int]:
        query = RecordsQuery(None, None, "newest", limit, None, record_filter)
        budget = ScanBudget(2**40, time.monotonic() + 600, time.monotonic, 1 << 20)
        began, rows, scanned = time.perf_counter(), 0, 0
        for item in reader.records("bench", "edge", query, hour, budget):
            if isinstance(item, Trailer):
                scanned = item.scanned_bytes
            else:
                rows += len(item)
        return time.perf_counter() - began, rows, scanned

    page(RecordFilter(), 100)  # warm
    firsts = sorted(page(RecordFilter(), 100)[0] for _ in range(20))
    grep_seconds, found, scanned = page(RecordFilter(grep="no such text at all"), 1000)
    return {
        "hour": busiest["dir"], "hour_bytes": busiest["bytes"], "hour_files": busiest["files"],
        "first_page_p50_s": statistics.median(firsts), "first_page_p95_s": firsts[18],
        "grep_hour_seconds": grep_seconds, "grep_hour_scanned_bytes": scanned,
        "grep_mb_per_s": scanned / grep_seconds / 1e6, "grep_found": found,
    }  # fmt: skip


def archive_once(
    stack: StackEnv, topic: str, root: str, total: int, *, name: str, native: Path | None
) -> dict[str, Any]:
    rate, reading, stats = run_archiver(stack, topic, root, total, name=name, native=native)
    stored = hdfs_bytes(stack, f"{root}/bench/{name}")
    return {"records_per_s": rate, "seconds": total / rate, "rows_seconds": reading,
            "files": stats.files, "batches": stats.batches, "hdfs_bytes": stored,
            "rows": "native" if native else "python"}  # fmt: skip


def report(label: str, found: dict[str, Any], raw_rate: float, raw_bytes: int) -> None:
    say(
        f"   {label}: {found['records_per_s']:,.0f} records/s = "
        f"{found['records_per_s'] / raw_rate:.3f} x the raw loop; {found['seconds']:.1f} s, of "
        f"which {found['rows_seconds']:.2f} s making rows; {found['files']} files, "
        f"{found['hdfs_bytes'] / raw_bytes:.3f} bytes on HDFS per byte of line"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records of the live run")
    parser.add_argument("--copies", type=int, default=10, help="replays of the Apache log")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    stack = ensure_stack()
    if not stack.webhdfs_url:
        raise SystemExit("the stack has no HDFS (METRICPIPE_WEBHDFS_URL); run 'make stack-up'")
    native = native_lib()
    run = uuid.uuid4().hex[:8]
    root = f"/bench-archive-{run}"
    superuser = requests.get(f"{stack.webhdfs_url}/", params={"op": "GETFILESTATUS"},
                             timeout=10).json()["FileStatus"]["owner"]  # fmt: skip
    for op, extra in (("MKDIRS", {}), ("SETOWNER", {"owner": USER})):
        requests.put(f"{stack.webhdfs_url}{root}", timeout=10,
                     params={"op": op, "user.name": superuser, **extra})  # fmt: skip
    lines = len(list(iter_access_log_lines(stack.data_dir)))
    live_topic, replay_topic = f"bench-archive-{run}-live", f"bench-archive-{run}-replay"
    say(f"== live: producing {args.records:,} records (the Apache log, stamped as sent)")
    total, raw_bytes = produce_log(stack, live_topic, stack.data_dir,
                                   -(-args.records // lines), live=True)  # fmt: skip
    say(f"== raw consume loop over {total:,} records")
    raw_before = raw_consume_rate(stack, live_topic, total)
    say(f"   {raw_before:,.0f} records/s")
    say("== one archiver, deployed defaults (native rows)")
    live = archive_once(stack, live_topic, root, total, name="live", native=native)
    report("archiver", live, raw_before, raw_bytes)
    say("== one archiver, every row made in Python")
    python = archive_once(stack, live_topic, root, total, name="live-python", native=None)
    report("archiver", python, raw_before, raw_bytes)
    say("== raw consume loop again")
    raw_after = raw_consume_rate(stack, live_topic, total)
    raw_rate = max(raw_before, raw_after)
    say(
        f"   {raw_after:,.0f} records/s; baseline {raw_rate:,.0f}: the archiver "
        f"{live['records_per_s'] / raw_rate:.3f} x, with rows in Python "
        f"{python['records_per_s'] / raw_rate:.3f} x"
    )
    say(f"== replay: the Apache log x{args.copies} with its own times")
    replay_total, replay_bytes = produce_log(stack, replay_topic, stack.data_dir, args.copies,
                                             live=False)  # fmt: skip
    replay_raw = raw_consume_rate(stack, replay_topic, replay_total)
    replay = archive_once(stack, replay_topic, root, replay_total, name="edge", native=native)
    report("archiver", replay, replay_raw, replay_bytes)
    levels = zstd_levels(stack, replay_topic, replay_total, replay_bytes)
    for level, figures in levels.items():
        say(
            f"   the archiver's rows encoded with {level}: "
            f"{figures['records_per_s']:,.0f} records/s, "
            f"{figures['bytes_over_raw']:.3f} bytes per byte of line"
        )
    say("== peek reader on the replay's busiest hour")
    peek = peek_timings(stack, root)
    say(
        f"   first page p50 {peek['first_page_p50_s'] * 1000:.0f} ms, p95 "
        f"{peek['first_page_p95_s'] * 1000:.0f} ms; grep over the hour "
        f"{peek['grep_mb_per_s']:.1f} MB/s ({peek['grep_hour_scanned_bytes']:,} bytes)"
    )
    result = {
        "when": datetime.now(UTC).isoformat(), "native_lib": str(native),
        "live": {"records": total, "raw_bytes": raw_bytes,
                 "raw_loop_records_per_s": [raw_before, raw_after], "baseline": raw_rate,
                 "archiver": live, "archiver_python_rows": python,
                 "archiver_vs_raw": live["records_per_s"] / raw_rate,
                 "archiver_python_rows_vs_raw": python["records_per_s"] / raw_rate,
                 "hdfs_over_raw": live["hdfs_bytes"] / raw_bytes},
        "replay": {"records": replay_total, "raw_bytes": replay_bytes,
                   "raw_loop_records_per_s": replay_raw, "archiver": replay,
                   "archiver_vs_raw": replay["records_per_s"] / replay_raw,
                   "hdfs_over_raw": replay["hdfs_bytes"] / replay_bytes},
        "encoding_levels": levels, "peek": peek,
        "goals": {"archiver_vs_raw": ">= 0.5 (live)", "hdfs_over_raw": "<= 0.25",
                  "first_page_p95_s": "<= 1"},
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"archive-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    met = live["records_per_s"] >= 0.5 * raw_rate
    say(f"== archiver goal (>= 0.5 x the raw loop, live): {'met' if met else 'NOT met'}")
    say(f"== results written to {path}")
    return 0  # a benchmark reports; `make bench` goes on to the next one either way


if __name__ == "__main__":
    raise SystemExit(main())
