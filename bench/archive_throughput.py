"""Benchmark: the log archive on the stack's real HDFS.

1. records/s of one archiver (the deployed defaults: 64 MiB / 60 s rolls, zstd level 6)
   against a raw consume loop on the same topic in the same run (goal >= 0.5x), and the part
   of its time spent turning records into rows. The archiver's clock runs from its first
   record to the end of the flush that commits the last one (a graceful stop writes what it
   holds, so the 60 s roll is not waited for). Two runs on the 2-core stack: 4,511 and 4,810
   records/s = 0.007 and 0.005 x the raw loop (671,451 and 951,079 records/s), of which 1.48
   and 1.13 s rows; the rest is mostly HDFS (docs/archive.md, "Measured");
   The ceiling beside it: consuming as the archiver does, its four calls per record and one
   Parquet encoding at the deployed level, nothing parsed and nothing written (two runs:
   0.246 and 0.211 x the raw loop, 0.34-0.35 s of ~0.45 s encoding), and the archiver's own
   rows encoded at zstd 3 and 6 (1,130,369 and 334,585 records/s; 0.212 and 0.177 bytes per
   byte of line);
2. bytes on HDFS / raw bytes of the lines (goal <= 0.25 for the Apache log; 0.154 and 0.157);
3. the peek API's reader (consumers/peek/scan.py, in-process: no HTTP, no auth, no edge):
   first page (100 records) of one hour, p50 and p95 over 20 warm requests (goal p95 <= 1 s),
   and a grep over a whole hour in MB/s of Parquet read.

Data: the shared Apache log (10,000 lines), replayed `--copies` times with its own times, as
Fluentd sends it ({"message": line}), into 3 partitions. Results: bench/results/archive-*.json.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
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
from metricpipe_consumers.archive.parquet import encode_table
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


def say(text: str) -> None:
    print(text, flush=True)


def clf_ms(line: str) -> int:
    stamp = line.split("[", 1)[1].split("]", 1)[0]
    return int(datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").timestamp() * 1000)


def produce_log(stack: StackEnv, topic: str, data_dir: Path, copies: int) -> tuple[int, int]:
    """(records, raw bytes of their lines)."""
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
            with contextlib.suppress(IndexError, ValueError):  # a cut line: its predecessor's
                last = clf_ms(line)
            value = json.dumps({"message": line, "stream": "stdout"}).encode()
            while True:
                try:
                    producer.produce(topic, value=value, timestamp=last + copy)
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


def ceiling_rate(stack: StackEnv, topic: str, total: int) -> tuple[float, float]:
    """(records/s, seconds encoding) of the least any archiver of this format does in Python:
    consume as the archiver does (2,000 a call), gather each record's partition, offset, time
    and value (the loop's per-record calls), make the rows' columns with the raw value as the
    line and empty fields (no JSON, no parsing), and encode them as one Parquet file at the
    deployed compression; no HDFS. Timed from the first record to the end of the encoding."""
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap,
                         "group.id": f"ceiling-{uuid.uuid4()}", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})  # fmt: skip
    consumer.subscribe([topic])
    partitions: list[int | None] = []
    offsets: list[int | None] = []
    times: list[int] = []
    values: list[bytes | None] = []
    started = 0.0
    while len(values) < total:
        batch = [m for m in consumer.consume(2000, timeout=0.5) if m.error() is None]
        if batch and not started:
            started = time.perf_counter()
        partitions += [m.partition() for m in batch]
        offsets += [m.offset() for m in batch]
        times += [m.timestamp()[1] for m in batch]
        values += [m.value() for m in batch]
    encoding = time.perf_counter()
    raw = pa.array(values, pa.binary()).cast(pa.string())
    table = pa.table({
        "partition": pa.array(partitions, pa.int32()), "offset": pa.array(offsets, pa.int64()),
        "time_ms": pa.array(times, pa.int64()), "key": pa.nulls(len(values), pa.string()),
        "raw": raw, "fields": pa.array([""] * len(values), pa.string()),
    })  # fmt: skip
    encoded = encode_table(table)
    ended = time.perf_counter()
    consumer.close()
    assert encoded, "nothing encoded"
    return len(values) / (ended - started), ended - encoding


def zstd_levels(stack: StackEnv, topic: str, total: int, raw_bytes: int) -> dict[str, Any]:
    """Records/s and bytes per byte of line of the archiver's own rows (the real log, parsed as
    it parses them) encoded at zstd levels 3 and 6 (the deployed one), outside Kafka and HDFS."""
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


def run_archiver(stack: StackEnv, topic: str, root: str, total: int) -> tuple[float, float, Any]:
    """(records/s from the first record to the end of the last commit, seconds spent turning
    consumed records into rows, the archiver's stats)."""
    document = ArchiveDocument.model_validate({
        "archive": {"namespace": "bench", "name": "edge"}, "topic": topic,
        "consumerGroup": f"bench-{uuid.uuid4()}", "kafka": {"bootstrap": stack.kafka_bootstrap},
        "hdfs": {"webhdfsUrl": stack.webhdfs_url, "user": USER, "root": root},
        "format": "apache_combined", "retentionDays": 36500,
    })  # fmt: skip
    config = ArchiverConfig()  # the deployed defaults
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=10, help="replays of the Apache log")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    stack = ensure_stack()
    if not stack.webhdfs_url:
        raise SystemExit("the stack has no HDFS (METRICPIPE_WEBHDFS_URL); run 'make stack-up'")
    run = uuid.uuid4().hex[:8]
    topic, root = f"bench-archive-{run}", f"/bench-archive-{run}"
    superuser = requests.get(f"{stack.webhdfs_url}/", params={"op": "GETFILESTATUS"},
                             timeout=10).json()["FileStatus"]["owner"]  # fmt: skip
    for op, extra in (("MKDIRS", {}), ("SETOWNER", {"owner": USER})):
        requests.put(f"{stack.webhdfs_url}{root}", timeout=10,
                     params={"op": op, "user.name": superuser, **extra})  # fmt: skip
    say(f"== producing the Apache log x{args.copies} into {topic}")
    total, raw_bytes = produce_log(stack, topic, stack.data_dir, args.copies)
    say(f"== raw consume loop over {total} records")
    raw_rate = raw_consume_rate(stack, topic, total)
    say(f"   {raw_rate:,.0f} records/s")
    say("== the ceiling: the archiver's per-record calls and Parquet, nothing else")
    ceiling, encoding = ceiling_rate(stack, topic, total)
    say(
        f"   {ceiling:,.0f} records/s = {ceiling / raw_rate:.3f} x the raw loop "
        f"({encoding:.2f} s of it encoding Parquet at the deployed zstd level)"
    )
    levels = zstd_levels(stack, topic, total, raw_bytes)
    for name, figures in levels.items():
        say(
            f"   the archiver's rows encoded with {name}: "
            f"{figures['records_per_s']:,.0f} records/s, "
            f"{figures['bytes_over_raw']:.3f} bytes per byte of line"
        )
    say("== one archiver, deployed defaults")
    rate, reading, stats = run_archiver(stack, topic, root, total)
    stored = hdfs_bytes(stack, f"{root}/bench/edge")
    say(
        f"   {rate:,.0f} records/s = {rate / raw_rate:.3f} x the raw loop; {stats.files} files, "
        f"{stored:,} bytes on HDFS for {raw_bytes:,} bytes of lines = {stored / raw_bytes:.3f}"
    )
    say(
        f"   of its {total / rate:.1f} s: {reading:.2f} s turning records into rows "
        f"({total / reading:,.0f} records/s), the rest encoding, writing to HDFS, compacting"
    )
    say("== peek reader on the busiest hour")
    peek = peek_timings(stack, root)
    say(
        f"   first page p50 {peek['first_page_p50_s'] * 1000:.0f} ms, p95 "
        f"{peek['first_page_p95_s'] * 1000:.0f} ms; grep over the hour "
        f"{peek['grep_mb_per_s']:.1f} MB/s ({peek['grep_hour_scanned_bytes']:,} bytes)"
    )
    result = {
        "when": datetime.now(UTC).isoformat(), "records": total, "raw_bytes": raw_bytes,
        "raw_loop_records_per_s": raw_rate, "archiver_records_per_s": rate,
        "ceiling_records_per_s": ceiling, "ceiling_vs_raw": ceiling / raw_rate,
        "ceiling_encoding_seconds": encoding, "encoding_levels": levels,
        "archiver_vs_raw": rate / raw_rate, "archiver_seconds": total / rate,
        "rows_seconds": reading, "rows_records_per_s": total / reading,
        "files": stats.files, "hdfs_bytes": stored,
        "hdfs_over_raw": stored / raw_bytes, "peek": peek,
        "goals": {"archiver_vs_raw": ">= 0.5", "hdfs_over_raw": "<= 0.25",
                  "first_page_p95_s": "<= 1"},
    }  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"archive-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    path.write_text(json.dumps(result, indent=2))
    say(f"== results written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
