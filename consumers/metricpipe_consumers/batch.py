"""One window of a batch pipeline (`python -m metricpipe_consumers batch`), start to end.

The job reads the window's records from the pipeline's topic with Spark's Kafka batch source,
by Kafka record time: [window start, window end + allowed lateness), so that a record produced
up to `allowedLateness` after its window closed still counts, as in stream mode. Of those it
keeps the records whose event time lies in [start, end) — the ranges of two neighbouring jobs
overlap by the lateness, and each keeps only its own window, so nothing is counted twice.
Records without a usable event time (dead letters, filtered) belong to the job whose window
holds their Kafka time, so each is reported once too.
Parsing, aggregation and the final documents are the stream consumer's (same parser, same
Spark plan, same document model and ids), so a window has one final document per group
whichever mode computed it. The finals are written with `index` (not create-only): re-running
a window replaces its documents, never duplicates them.

Not done here (yet): dead letters are counted in the report, not produced to `<topic>.dlq`.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
from pyspark.sql import functions as sf

from .aggregate import PERCENTILES, Aggregate
from .document import PipelineDocument
from .documents import build_final_doc
from .engine import GROUP_SEPARATOR, SCHEMA, SparkAggregator
from .finalize import load_finalized_through, save_finalized_through
from .records import RecordParser, Rejected
from .sink import MetricSink


def decide_last_closed_window(now_ms: int, window_ms: int, lateness_ms: int) -> int:
    """Pure: start of the newest window whose end + lateness has passed at `now_ms`."""
    return (now_ms - lateness_ms) // window_ms * window_ms - window_ms


def decide_due_windows(
    finalized_through: int | None, now_ms: int, window_ms: int, lateness_ms: int, limit: int
) -> list[int]:
    """Pure: the windows a run computes, oldest first: every closed window after the pipeline's
    progress (a missed or failed run is made up by the next), at most `limit` of them (the
    rest go to the next run). Without progress (a new batch pipeline) only the newest closed
    window: older data is computed only when asked for (`--window-start`)."""
    last = decide_last_closed_window(now_ms, window_ms, lateness_ms)
    first = last if finalized_through is None else finalized_through
    return list(range(first, last + 1, window_ms))[:limit]


@dataclass
class BatchReport:
    pipeline: str
    window_start_ms: int
    window_end_ms: int
    records_read: int = 0
    counted: int = 0
    filtered: int = 0
    outside_window: int = 0  # other windows' records in the lateness overlap
    dead_letters: Counter[str] = field(default_factory=Counter)
    documents: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline, "window_start_ms": self.window_start_ms,
            "window_end_ms": self.window_end_ms, "records_read": self.records_read,
            "counted": self.counted, "filtered": self.filtered,
            "outside_window": self.outside_window, "dead_letters": dict(self.dead_letters),
            "documents": self.documents, "seconds": round(self.seconds, 3),
        }  # fmt: skip


class BatchJob:
    def __init__(self, doc: PipelineDocument, sink: MetricSink, engine: SparkAggregator) -> None:
        self.doc = doc
        self.sink = sink
        self.engine = engine
        self.parser = RecordParser(doc.spec)

    def run_due(self, now_ms: int, limit: int) -> list[BatchReport]:
        """Every window due (see `decide_due_windows`), each followed by the progress record,
        so a run stopped half-way resumes at the first window it did not finish."""
        state_index = f"{self.doc.sink.index}-state"
        self.sink.ensure_indices()
        self.sink.refresh()
        due = decide_due_windows(
            load_finalized_through(self.sink, state_index), now_ms, self.doc.window_ms,
            self.doc.lateness_ms, limit,
        )  # fmt: skip
        reports = []
        for start in due:
            reports.append(self.run(start))
            save_finalized_through(
                self.sink, state_index, self.doc.pipeline.key, start + self.doc.window_ms
            )
        return reports

    def run(self, window_start_ms: int) -> BatchReport:
        started = time.monotonic()
        window_ms, lateness_ms = self.doc.window_ms, self.doc.lateness_ms
        if window_start_ms % window_ms:
            raise ValueError(f"{window_start_ms} is not the start of a {window_ms} ms window")
        end = window_start_ms + window_ms
        report = BatchReport(self.doc.pipeline.key, window_start_ms, end)
        rows = self._read(window_start_ms, end + lateness_ms)
        table = self._scan(rows, window_start_ms, end, report)
        metric = self.doc.spec.metric
        aggregates = self.engine.aggregate(
            table, window_ms, metric.aggregation in PERCENTILES, len(metric.group_by)
        )
        merged: dict[tuple[str, ...], Aggregate] = {}
        for (_partition, _start, group), aggregate in aggregates.items():
            merged[group] = merged[group].merge(aggregate) if group in merged else aggregate
        now_ms = int(time.time() * 1000)
        docs = [
            replace(build_final_doc(
                self.doc.sink.index, pipeline=self.doc.pipeline.key,
                aggregation=metric.aggregation, group_by=metric.group_by,
                window=(window_start_ms, window_ms), group=group, agg=aggregate, now_ms=now_ms,
            ), create_only=False)  # a rerun replaces
            for group, aggregate in sorted(merged.items())
        ]  # fmt: skip
        self.sink.ensure_indices()
        if docs:
            self.sink.write(docs)
        report.documents = len(docs)
        report.seconds = time.monotonic() - started
        return report

    def _read(self, from_ms: int, until_ms: int) -> pa.Table:
        """(partition, offset, kafka_ms, value) of the records with Kafka time in
        [from_ms, until_ms)."""
        frame = (
            self.engine.session.read.format("kafka")
            .option("kafka.bootstrap.servers", self.doc.kafka_bootstrap)
            .option("subscribe", self.doc.topic)
            .option("startingTimestamp", str(from_ms))
            .option("endingTimestamp", str(until_ms))
            # a partition with nothing at or after the time: start at its end (nothing to read)
            .option("startingOffsetsByTimestampStrategy", "latest")
            .load()
            .select("partition", "offset", sf.unix_millis("timestamp").alias("kafka_ms"), "value")
        )
        table: pa.Table = frame.toArrow()
        return table

    def _scan(self, rows: pa.Table, start: int, end: int, report: BatchReport) -> pa.Table:
        columns: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
        parse = self.parser.parse
        names = ("partition", "offset", "kafka_ms", "value")
        partitions, offsets, stamps, values = (rows.column(n).to_pylist() for n in names)
        report.records_read = len(values)
        for partition, offset, kafka_ms, raw in zip(
            partitions, offsets, stamps, values, strict=True
        ):
            parsed = parse(raw)
            if parsed is None or isinstance(parsed, Rejected):
                if kafka_ms >= end:  # the next window's job reports it
                    continue
                if parsed is None:
                    report.filtered += 1
                else:
                    report.dead_letters[parsed.reason] += 1
                continue
            event_ms, group, value = parsed
            if not start <= event_ms < end:
                report.outside_window += 1
                continue
            columns["partition"].append(partition)
            columns["offset"].append(offset)
            columns["event_ms"].append(event_ms)
            columns["gkey"].append(GROUP_SEPARATOR.join(group))
            columns["value"].append(value)
        report.counted = len(columns["offset"])
        return pa.table(columns, schema=SCHEMA)
