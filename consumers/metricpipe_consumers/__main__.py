"""`python -m metricpipe_consumers stream`: the consumer process of a pipeline's Deployment;
`... batch [--window-start ISO]`: one window of a batch pipeline (the CronJob's process)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import redis
import structlog
from confluent_kafka import KafkaException

from metricpipe_contract.kafka import KAFKA_SETTINGS_INVALID
from metricpipe_contract.logs import configure_logging

from .batch import BatchJob, BatchReport, build_run_summary, decide_local_parallelism
from .cachebatch import CacheBatchJob, CacheDeadLetters
from .config import ConsumerConfig
from .deadletters import DeadLetterWriter
from .document import PipelineDocument
from .documents import parse_iso_ms
from .engine import SparkAggregator
from .filters import SpecError
from .kafka_access import KafkaAccess, ensure_kafka_access
from .kafka_check import (
    KafkaAccessFacts,
    KafkaRefusedError,
    answers_of,
    decide_kafka_failure,
    fetch_kafka_answers,
)
from .metrics import ConsumerMetrics
from .records import RecordParser
from .sink import MetricSink, SinkError, build_sink
from .sparkconf import SparkSetupError, decide_spark_paths, spark_conf_from_environment
from .stream import StreamConsumer, StreamSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="metricpipe-consumer", description=__doc__)
    parser.add_argument("mode", choices=("stream", "batch"))
    parser.add_argument(
        "--window-start",
        help="batch: compute this one window (an ISO time at its start). Default: every closed "
        "window since the pipeline's progress (the newest one for a new pipeline)",
    )
    args = parser.parse_args(argv)
    # SIGTERM before the loop runs (the JVM start and warm-up take seconds) is a graceful stop.
    early_stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: early_stop.set())
    signal.signal(signal.SIGINT, lambda *_: early_stop.set())
    config = ConsumerConfig()
    configure_logging(config.log_level)
    log = structlog.get_logger("metricpipe.consumer")
    document = PipelineDocument.load(config.pipeline_config)
    overrides: dict[str, object] = {}
    if config.kafka_bootstrap:
        overrides["kafka"] = document.kafka.model_copy(update={"bootstrap": config.kafka_bootstrap})
    if config.sink_endpoint:
        overrides["sink"] = document.sink.model_copy(update={"endpoint": config.sink_endpoint})
    document = document.model_copy(update=overrides)
    try:  # a spec the consumer cannot apply fails here, in one line, before Spark starts
        RecordParser(document.spec, config.max_record_bytes, limits=config.record_limits())
    except SpecError as error:
        log.error("cannot apply the pipeline's spec", error=str(error))
        leave_last_words(config, f"spec refused: {error}")
        return 3
    if document.cache is not None and args.mode != "batch":
        log.error("source.store redis is read by batch runs only", mode=args.mode)
        leave_last_words(config, "source.store redis needs mode batch")
        return 3
    kafka = None if document.cache is not None else open_kafka(document, config, args.mode)
    if isinstance(kafka, int):
        return kafka
    sink = open_sink(document, config)
    if isinstance(sink, int):
        return sink
    if args.mode == "batch":
        return run_batch(document, sink, config, kafka, args.window_start)
    assert kafka is not None
    return run_stream(document, sink, config, kafka, early_stop)


def run_stream(
    document: PipelineDocument, sink: MetricSink, config: ConsumerConfig, kafka: KafkaAccess,
    early_stop: threading.Event,
) -> int:  # fmt: skip
    """The stream loop until SIGTERM; a sink or Kafka refusing it while it runs ends it with
    the reason as its last words (exit code 2: the sink, 4: Kafka)."""
    log = structlog.get_logger("metricpipe.consumer")
    metrics = ConsumerMetrics(document.pipeline.key)
    if config.metrics_port:
        metrics.serve(config.metrics_port)
    settings = StreamSettings(
        max_batch_records=config.max_batch_records,
        max_batch_seconds=config.max_batch_seconds,
        finalize_interval_seconds=config.finalize_interval_seconds,
        session_timeout_ms=config.session_timeout_ms,
        max_record_bytes=config.max_record_bytes,
        group_instance_id=config.group_instance_id,
        idle_timeout_seconds=config.idle_timeout_seconds,
        record_limits=config.record_limits(),
        fault_exit_at=config.fault_exit_at,
    )
    # Start-up (what the startup probe waits for, docs/consumer.md "Probes"): Spark's session
    # and its warm-up are most of it; the loop's first poll ends it (/startupz).
    begun = time.monotonic()
    engine = SparkAggregator(config.spark_master, conf=spark_conf(config, jars=False))
    session_up = time.monotonic()
    engine.warm_up(config.spark_warm_up_rounds)  # before joining the group: a fast 1st batch
    log.info("spark ready", session_seconds=round(session_up - begun, 1),
             warm_up_seconds=round(time.monotonic() - session_up, 1))  # fmt: skip
    try:
        StreamConsumer(document, sink, engine, metrics, kafka, settings=settings).run(early_stop)
    except SinkError as error:
        log.error("sink error; exiting so the pod restarts", error=str(error))
        # the ResourceManager reads it from the pod's status: SinkReady False with the reason
        leave_last_words(config, str(error))
        return 2
    except (KafkaRefusedError, KafkaException) as error:  # while consuming: like a crash, the
        # sink holds what was done; the kubelet's back-off paces the restarts
        answers = error.answers if isinstance(error, KafkaRefusedError) else answers_of(error)
        failure = decide_kafka_failure(answers, kafka_facts(document, kafka))
        words = failure.last_words() if failure else f"Kafka failed while consuming: {error}"
        log.error("kafka stopped this consumer", error=words)
        leave_last_words(config, words)
        return 4 if failure else 1
    finally:
        engine.stop()
    return 0


def open_sink(document: PipelineDocument, config: ConsumerConfig) -> MetricSink | int:
    """The sink, its indices made or found before Spark starts: a sink that refuses this
    consumer (credentials, privileges, TLS) stops it at once with the reason as its last
    words and exit code 2, and the kubelet's back-off paces the retries."""
    password = config.sink_password.get_secret_value() if config.sink_password else None
    api_key = config.sink_api_key.get_secret_value() if config.sink_api_key else None
    try:
        sink = build_sink(document.sink.backend, document.sink.endpoint, document.sink.index,
                          config.sink_username, password, ca_file=document.sink.ca_file,
                          api_key=api_key)  # fmt: skip
        sink.ensure_indices()
    except SinkError as error:
        log = structlog.get_logger("metricpipe.consumer")
        log.error("the sink refused this consumer", reason=error.reason, error=str(error))
        leave_last_words(config, str(error))
        return 2
    return sink


def open_kafka(document: PipelineDocument, config: ConsumerConfig, mode: str) -> KafkaAccess | int:
    """The process's Kafka settings, checked against Kafka before Spark starts; or the exit
    code when they cannot work (3: settings that do not fit together, 4: Kafka refused them),
    after writing why as the container's termination message (kafka_check.py)."""
    log = structlog.get_logger("metricpipe.consumer")
    try:  # the mounted credentials Secret is read here; batch runs also write Java's keystore
        temp_dir = Path(decide_spark_paths(os.environ).temp_dir)  # Spark's own TMPDIR
        kafka = ensure_kafka_access(
            document.kafka, keystore_dir=temp_dir if mode == "batch" else None
        )
    except ValueError as error:  # KafkaConnectionError, or the connection's own validation
        log.error("cannot connect to Kafka as configured", error=str(error))
        leave_last_words(config, f"{KAFKA_SETTINGS_INVALID}: {error}")
        return 3
    log.info("kafka connection", kafka=kafka.described)
    group = document.consumer_group if mode == "stream" else None  # batch runs use no group
    failure = decide_kafka_failure(
        fetch_kafka_answers(kafka.settings, document.topic, group), kafka_facts(document, kafka)
    )
    if failure is not None:  # only a change of settings fixes it: say which, stop (back-off)
        log.error("kafka refused this consumer", reason=failure.reason, error=failure.message)
        leave_last_words(config, failure.last_words())
        return 4
    return kafka


def kafka_facts(document: PipelineDocument, kafka: KafkaAccess) -> KafkaAccessFacts:
    return KafkaAccessFacts(kafka.described, document.topic, document.consumer_group,
                            document.kafka.credentials_secret)  # fmt: skip


def build_batch_job(
    document: PipelineDocument, sink: MetricSink, engine: SparkAggregator,
    config: ConsumerConfig, kafka: KafkaAccess | None,
) -> BatchJob:  # fmt: skip
    """A run over the pipeline's topic, or over the Redis log cache (`source.store: redis`)."""
    if document.cache is None:
        assert kafka is not None
        dead_letters = DeadLetterWriter(
            kafka.settings, document.dead_letter_topic, document.pipeline.key, mode="batch"
        )
        return BatchJob(document, sink, engine, dead_letters, kafka)
    password = config.redis_password.get_secret_value() if config.redis_password else None
    client = redis.Redis(host=document.cache.host, port=document.cache.port,
                         username=config.redis_username, password=password,
                         socket_timeout=30, socket_connect_timeout=10)  # fmt: skip
    letters = CacheDeadLetters(client, document.cache.dead_letter_key, document.pipeline.key)
    return CacheBatchJob(document, sink, engine, letters, None, client=client,
                         now_ms=int(time.time() * 1000))  # fmt: skip


def run_batch(
    document: PipelineDocument, sink: MetricSink, config: ConsumerConfig,
    kafka: KafkaAccess | None, window_start: str | None,
) -> int:  # fmt: skip
    """Computes the due windows (or the one asked for); logs and prints a JSON line per
    window as soon as it is computed and its progress saved; exits 0, or 2 on a sink error
    (the Job's backoff retries it)."""
    log = structlog.get_logger("metricpipe.batch")
    try:
        conf = spark_conf(config, jars=True)
    except SparkSetupError as error:
        log.error("cannot set up spark", error=str(error))
        leave_last_words(config, str(error))
        return 3
    engine = SparkAggregator(config.spark_master, conf=conf)
    job = build_batch_job(document, sink, engine, config, kafka)

    def computed(report: BatchReport) -> None:
        log.info("window computed", **report.to_dict())
        print(json.dumps(report.to_dict()), flush=True)

    try:
        if window_start:  # one window, on request (a rerun, a backfill): progress stays
            reports = [job.run(parse_iso_ms(window_start))]
            computed(reports[0])
        else:
            now_ms = int(time.time() * 1000)
            reports = job.run_due(now_ms, config.batch_max_windows, on_report=computed)
    except SinkError as error:
        log.error("sink error; the Job retries", error=str(error))
        return 2
    except redis.RedisError as error:  # the cache refused or is away: the Job retries
        log.error("redis cache error; the Job retries", error=str(error))
        leave_last_words(config, f"redis cache: {error}")
        return 4
    finally:
        engine.stop()
    if not reports:
        log.info("no window due")
    summary = build_run_summary(reports, decide_local_parallelism(config.spark_master))
    log.info("run finished", **summary)
    if config.termination_message_path is not None:
        write_termination_message(config.termination_message_path, json.dumps(summary))
    return 0


def spark_conf(config: ConsumerConfig, jars: bool) -> dict[str, str]:
    """Spark's settings for this container: heap from its memory limit, scratch and temporary
    directories from its environment; the extra jars in batch mode only (the stream consumer
    reads Kafka without Spark, and a start without them is shorter)."""
    return spark_conf_from_environment(
        config.memory_limit_bytes, config.spark_driver_memory, config.spark_jars if jars else "",
        class_archive=config.spark_class_archive,
    )  # fmt: skip


def leave_last_words(config: ConsumerConfig, text: str) -> None:
    """Why the process stops, as its container's termination message (when configured)."""
    if config.termination_message_path is not None:
        write_termination_message(config.termination_message_path, text)


def write_termination_message(path: Path, text: str) -> None:
    """The container's termination message (Kubernetes keeps at most 4 KiB of it in the pod's
    status, where the ResourceManager reads the run's report). Failing to write it is logged,
    never a failed run: the windows are computed and saved."""
    try:
        path.write_text(text[:4096])
    except OSError as error:
        structlog.get_logger("metricpipe.batch").warning(
            "termination message not written", path=str(path), error=str(error)
        )


if __name__ == "__main__":
    sys.exit(main())
