"""The archive on the real HDFS, exactly once: the shared Apache log (as Fluentd sends it) and
RTT records through Kafka into archiver processes that are killed with SIGKILL five times —
four times by their own fault hook at the commit's and the compaction's points (each proven
by its log line), once from outside mid-replay — and rescaled 1 → 3 → 1. Then the records
in the committed files, read here with pyarrow from WebHDFS, are exactly the records Kafka
holds: each (partition, offset) once, with its line, and no closed hour holds more than two
files per partition. The archive's search copy in Elasticsearch, written through the same
kills, holds one document per record under its coordinates, with its line; the retention
deletes the 2015 days on HDFS and their daily indices."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import requests
from confluent_kafka import Consumer, TopicPartition

from consumers import create_topics, fetch_end_offsets, produce, with_kafka_times
from helpers import free_port
from metricpipe_devstack.env import StackEnv
from shared_data import access_log_lines, rtt_records

PARTITIONS = 3
RTT_SAMPLE = 20_000  # the first RTT records in time order (the whole set is 408k)
ARCHIVER_USER = "metricpipe-archiver"
HOUR = 3_600_000
Stamped = list[tuple[bytes | None, bytes, int]]  # (key, value, Kafka timestamp)


class Hdfs:
    """What the test reads HDFS with: plain WebHDFS calls, nothing of the product's client."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.superuser = self.call("GET", "/", "GETFILESTATUS", "nobody").json()["FileStatus"][
            "owner"
        ]

    def call(self, method: str, path: str, op: str, user: str, **params: Any) -> requests.Response:
        return requests.request(method, f"{self.url}{path}", params={
            "op": op, "user.name": user, **params}, timeout=30)  # fmt: skip

    def walk(self, path: str) -> Iterator[tuple[str, int]]:
        """(path, length) of every file under a directory."""
        listed = self.call("GET", path, "LISTSTATUS", self.superuser)
        if listed.status_code == 404:
            return
        for entry in listed.json()["FileStatuses"]["FileStatus"]:
            child = f"{path}/{entry['pathSuffix']}"
            if entry["type"] == "DIRECTORY":
                yield from self.walk(child)
            else:
                yield child, int(entry["length"])

    def read(self, path: str) -> bytes:
        response = self.call("GET", path, "OPEN", self.superuser)
        assert response.status_code == 200, response.text
        return response.content


def kafka_records(stack: StackEnv, topic: str) -> dict[tuple[int, int], bytes]:
    """(partition, offset) -> value of every record of the topic, read by offset."""
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": "it-reader",
                         "enable.auto.commit": False})  # fmt: skip
    out: dict[tuple[int, int], bytes] = {}
    try:
        for partition in range(PARTITIONS):
            tp = TopicPartition(topic, partition, 0)
            _, high = consumer.get_watermark_offsets(tp, timeout=10)
            consumer.assign([tp])
            while sum(1 for p, _ in out if p == partition) < high:
                message = consumer.poll(5)
                assert message is not None, "the topic did not give every record back"
                assert message.error() is None, message.error()
                out[(partition, int(message.offset() or 0))] = message.value() or b""
    finally:
        consumer.close()
    return out


def archived(hdfs: Hdfs, directory: str) -> tuple[Counter[tuple[int, int]], dict[Any, str],
                                                      dict[str, list[str]]]:  # fmt: skip
    """Counted (partition, offset) of every committed file's rows, each row's raw line, and
    the committed files of each hour directory."""
    seen: Counter[tuple[int, int]] = Counter()
    raws: dict[tuple[int, int], str] = {}
    hours: dict[str, list[str]] = {}
    for path, _ in hdfs.walk(directory):
        relative = path.removeprefix(directory + "/")
        if relative.startswith("_"):  # the writer's staging and offsets: not committed data
            continue
        hour, name = relative.rsplit("/", 1)
        hours.setdefault(hour, []).append(name)
        table = pq.read_table(io.BytesIO(hdfs.read(path)), columns=["partition", "offset", "raw"])
        for partition, offset, raw in zip(*table.to_pydict().values(), strict=True):
            seen[(partition, offset)] += 1
            raws[(partition, offset)] = raw
    return seen, raws, hours


def committed(stack: StackEnv, topic: str, config: Path) -> dict[int, int]:
    """The archivers' group's committed offsets (they follow HDFS's commits)."""
    group = json.loads(config.read_text())["consumerGroup"]
    consumer = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": group})
    try:
        offsets = consumer.committed([TopicPartition(topic, p) for p in range(PARTITIONS)], 10)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in offsets}


def indexed(url: str, prefix: str) -> dict[str, str]:
    """Document id -> message of every document in the archive's daily indices (plain REST:
    nothing of the product's sink client), page by page."""
    assert requests.post(f"{url}/{prefix}-*/_refresh", timeout=60).status_code == 200
    found: dict[str, str] = {}
    after: list[Any] | None = None
    while True:
        body: dict[str, Any] = {"size": 10_000, "sort": [{"kafka.partition": "asc"},
                                                         {"kafka.offset": "asc"}],
                                "_source": ["message"]}  # fmt: skip
        if after is not None:
            body["search_after"] = after
        hits = requests.post(f"{url}/{prefix}-*/_search", json=body, timeout=60).json()
        page = hits["hits"]["hits"]
        for hit in page:
            assert hit["_id"] not in found, hit["_id"]
            found[hit["_id"]] = hit["_source"]["message"]
        if len(page) < body["size"]:
            return found
        after = page[-1]["sort"]


def listing(hdfs: Hdfs, directory: str) -> list[str]:
    listed = hdfs.call("GET", directory, "LISTSTATUS", hdfs.superuser).json()
    return [entry["pathSuffix"] for entry in listed["FileStatuses"]["FileStatus"]]


class Archivers:
    def __init__(self, tmp_path: Path, config: Path, native: Path) -> None:
        self.tmp_path = tmp_path
        self.config = config
        self.native = native  # the deployed way: rows made by the native row maker
        self.running: list[tuple[subprocess.Popen[bytes], Path]] = []
        self.ports: dict[int, int] = {}  # pid -> metrics port

    def start(self, **env: str) -> tuple[subprocess.Popen[bytes], Path]:
        log = self.tmp_path / f"archiver-{len(self.running)}.log"
        port = free_port()
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "metricpipe_consumers.archive"],
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                env={**os.environ, "METRICPIPE_ARCHIVE_CONFIG": str(self.config),
                     "METRICPIPE_ARCHIVE_NATIVE_LIB": str(self.native),
                     "METRICPIPE_ARCHIVE_ROLL_SECONDS": "0.5",
                     "METRICPIPE_ARCHIVE_ROLL_BYTES": "400000",
                     "METRICPIPE_ARCHIVE_COMPACT_GRACE_SECONDS": "0",
                     "METRICPIPE_SESSION_TIMEOUT_MS": "6000",  # the broker's least
                     "METRICPIPE_METRICS_PORT": str(port), **env},
            )  # fmt: skip
        self.running.append((process, log))
        self.ports[process.pid] = port
        return process, log

    def stop(self, process: subprocess.Popen[bytes]) -> int:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        return process.wait(timeout=60)

    def stop_all(self) -> None:
        for process, _ in self.running:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)

    def logs(self) -> str:
        return "\n".join(f"== {log}\n{log.read_text(errors='replace')[-3000:]}"
                         for _, log in self.running)  # fmt: skip


def wait_for(what: str, check: Any, timeout: float, archivers: Archivers) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{archivers.logs()}")
        time.sleep(0.5)


def test_every_record_on_hdfs_exactly_once_through_kills_and_rescaling(
    stack: StackEnv, tmp_path: Path, unique_name: str, native_rows_path: Path
) -> None:
    assert stack.webhdfs_url, ".stack/env lacks METRICPIPE_WEBHDFS_URL; run 'make stack-up'"
    hdfs = Hdfs(stack.webhdfs_url)
    root = f"/{unique_name}-archives"
    made = hdfs.call("PUT", root, "MKDIRS", hdfs.superuser)
    assert made.status_code == 200, made.text
    hdfs.call("PUT", root, "SETOWNER", hdfs.superuser, owner=ARCHIVER_USER)

    topic = f"{unique_name}-archive"
    create_topics(stack, topic, PARTITIONS, keep_forever=True)
    web: Stamped = [
        (None, json.dumps({"message": line.decode(), "stream": "stdout"}).encode(), at)
        for _, line, at in with_kafka_times(access_log_lines(stack.data_dir))
    ]
    rtt = sorted(rtt_records(stack.data_dir), key=lambda r: str(r["time"]))[:RTT_SAMPLE]
    probes: Stamped = [
        (str(r["probe"]).encode(), json.dumps(r).encode(), web[i % len(web)][2])
        for i, r in enumerate(rtt)
    ]
    in_time: Stamped = sorted(web + probes, key=lambda record: record[2])
    later = in_time[len(in_time) * 2 // 3 :]  # produced once three archivers share the topic
    produce(stack, topic, in_time[: len(in_time) - len(later)])

    config = tmp_path / "archive.json"
    prefix = f"metricpipe-logs-it.{unique_name}"  # the search copy: daily indices
    config.write_text(json.dumps({
        "archive": {"namespace": "it", "name": unique_name}, "topic": topic,
        "consumerGroup": f"metricpipe.it.{unique_name}",
        "kafka": {"bootstrap": stack.kafka_bootstrap},
        "hdfs": {"webhdfsUrl": stack.webhdfs_url, "user": ARCHIVER_USER, "root": root},
        "format": "apache_combined", "retentionDays": 36500,  # the log is from 2015
        "index": {"backend": "elasticsearch", "endpoint": stack.elasticsearch_url,
                  "prefix": prefix, "retentionDays": 36500},
    }))  # fmt: skip
    directory = f"{root}/it/{unique_name}"
    archivers = Archivers(tmp_path, config, native_rows_path)
    marks = {"produced": time.monotonic()}
    try:
        # -- four crashes at the points that matter, each the process's own SIGKILL; each
        # next process finds what its predecessor left on HDFS and finishes it
        recovered = {"after_batch_staged": "rolled forward", "after_first_rename":
                     "rolled forward", "after_next_offset": "rolled forward",
                     "after_compaction_rename": "interrupted compaction resumed"}  # fmt: skip
        previous = None
        for point in recovered:
            process, log = archivers.start(METRICPIPE_FAULT_EXIT_AT=point)
            assert process.wait(timeout=120) == -signal.SIGKILL, archivers.logs()
            said = log.read_text(errors="replace")
            assert '"way": "native"' in said, said[
                -3000:
            ]  # rows as the deployed archiver makes them
            assert "fault injected" in said, said[-3000:]
            assert point in said, said[-3000:]
            if previous is not None:
                assert recovered[previous] in said, said[-3000:]
            previous = point
        marks["four crashes"] = time.monotonic()
        # small batches (~200 records): the kill from outside lands while most of the replay
        # is still to be archived, however fast HDFS answers
        first, first_log = archivers.start(METRICPIPE_ARCHIVE_ROLL_BYTES="40000")
        wait_for("the interrupted compaction finished", lambda: recovered[point] in
                 first_log.read_text(errors="replace"), 60, archivers)  # fmt: skip
        # -- one kill from outside, mid-replay -----------------------------------------
        wait_for("some batches", lambda: first_log.read_text().count("batch archived") >= 5, 60,
                 archivers)  # fmt: skip
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        replayed = fetch_end_offsets(stack, topic, PARTITIONS)
        assert committed(stack, topic, config) != replayed, "the kill came after the replay"
        marks["outside kill"] = time.monotonic()
        # -- 1 -> 3 -> 1 ---------------------------------------------------------------
        one, one_log = archivers.start()
        wait_for("the one archiving", lambda: "batch archived" in one_log.read_text(), 60,
                 archivers)  # fmt: skip
        more = [archivers.start() for _ in range(2)]
        wait_for("three members", lambda: all("partition assigned" in log.read_text()
                                               for _, log in more), 90, archivers)  # fmt: skip
        produce(stack, topic, later)
        wait_for("the two more archiving their share", lambda: all(
            "batch archived" in log.read_text() for _, log in more), 90, archivers)  # fmt: skip
        for process, _ in more:
            assert archivers.stop(process) == 0, archivers.logs()
        produced = kafka_records(stack, topic)
        assert len(produced) == len(in_time)
        ends = {p: 1 + max(o for q, o in produced if q == p) for p in range(PARTITIONS)}
        wait_for("every record archived", lambda: committed(stack, topic, config) == ends, 300,
                 archivers)  # fmt: skip
        # the survivor's own metrics say the same next offsets (it holds every partition now)
        scraped = requests.get(f"http://127.0.0.1:{archivers.ports[one.pid]}/metrics", timeout=10)
        offsets = {
            int(m.group(1)): int(float(m.group(2)))
            for m in re.finditer(
                r'metricpipe_archive_next_offset\{[^}]*partition="(\d+)"\} (\S+)', scraped.text
            )
        }
        assert offsets == ends, scraped.text[-2000:]
        assert archivers.stop(one) == 0, archivers.logs()
        marks["rescaled, all archived"] = time.monotonic()
    finally:
        archivers.stop_all()

    seen, raws, hours = archived(hdfs, directory)
    steps = list(marks.items())
    print(", ".join(f"{name} +{at - steps[i - 1][1]:.0f} s" for i, (name, at) in
                    enumerate(steps) if i))  # fmt: skip
    twice = [key for key, count in seen.items() if count > 1]
    lost = set(produced) - set(seen)
    assert twice == [], f"{len(twice)} records in two files, e.g. {twice[:5]}"
    assert lost == set(), f"{len(lost)} records lost, e.g. {sorted(lost)[:5]}"
    assert set(seen) == set(produced)
    for key, value in produced.items():  # content: the line (Apache) or the record (RTT)
        record = json.loads(value)
        expected = record["message"] if "message" in record else value.decode()
        assert raws[key] == expected, key
    closed = sorted(hours)[:-1]  # the newest hour is still open
    worst = max(Counter(n.split("-")[0] for n in hours[h]).most_common(1)[0][1] for h in closed)
    print(f"{len(seen)} records in {sum(map(len, hours.values()))} files over {len(hours)} hours; "
          f"at most {worst} files per partition in a closed hour")  # fmt: skip
    assert worst <= 2
    # -- the search copy in Elasticsearch: one document per record, under its coordinates,
    # with its line, through the same kills (each batch is indexed before its HDFS commit)
    documents = indexed(stack.elasticsearch_url, prefix)
    assert len(documents) == len(produced)  # no document twice: ids are the coordinates
    assert set(documents) == {f"{p}-{o}" for p, o in produced}
    assert all(documents[f"{p}-{o}"] == raws[(p, o)] for p, o in produced)

    # -- the retention, enforced: with 1 day, an archiver deletes every day of 2015 and its index
    before = json.loads(config.read_text())
    config.write_text(json.dumps({**before, "retentionDays": 1,
                                  "index": {**before["index"], "retentionDays": 1}}))  # fmt: skip
    process, log = archivers.start()
    try:
        wait_for("the 2015 days expired", lambda: "day expired" in log.read_text(), 60,
                 archivers)  # fmt: skip
        wait_for("no day left", lambda: not any(
            n.startswith("dt=") for n in listing(hdfs, directory)), 60, archivers)  # fmt: skip
        wait_for("no 2015 index left", lambda: not requests.get(
            f"{stack.elasticsearch_url}/{prefix}-*", timeout=10).json(), 60,
            archivers)  # fmt: skip
    finally:
        archivers.stop(process)
