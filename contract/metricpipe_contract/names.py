"""The metric names the exporters expose: one place, read by the rules, dashboards and tests.

Every name starts with `metricpipe_`, the Kafka lag series too: in a Prometheus that also
scrapes kafka_exporter (Strimzi's Kafka Exporter), whose `kafka_consumergroup_*` series cover
every consumer group, metricpipe's rules and the ResourceManager read metricpipe's series only.
Names follow Prometheus' conventions: base units (`_seconds`, `_bytes`), `_total` on counters,
`_ratio` for shares, `_timestamp_seconds` for Unix times. Every per-pipeline series carries a
`pipeline` label (`<namespace>/<name>`, the same value the consumers use); the recording rules
add `namespace` from it (rules.py). docs/exporters.md lists the names of 0.1.0 that changed.
"""

from __future__ import annotations

from typing import Final

# -- Kafka, per consumer group and partition (labels: pipeline, consumergroup, topic, partition)
GROUP_CURRENT_OFFSET: Final = "metricpipe_consumergroup_committed_offset"
GROUP_LAG: Final = "metricpipe_consumergroup_lag_records"  # log-end - committed offset
GROUP_TIME_LAG: Final = "metricpipe_consumergroup_time_lag_seconds"  # exact, see DESIGN §3
# -- Kafka, per topic partition (labels: pipeline, topic, partition)
TOPIC_PARTITION_OFFSET: Final = "metricpipe_topic_partition_end_offset"  # log-end offset
# -- Kafka, per topic / group (labels: pipeline, topic | pipeline, consumergroup)
TOPIC_PARTITIONS: Final = "metricpipe_topic_partitions"
GROUP_MEMBERS: Final = "metricpipe_consumergroup_members"

# -- per pipeline (label: pipeline)
PIPELINE_FRESHNESS_TARGET: Final = "metricpipe_pipeline_freshness_target_seconds"
SINK_WATERMARK: Final = "metricpipe_sink_watermark_timestamp_seconds"  # min partition's in sink
SINK_FRESHNESS: Final = "metricpipe_sink_freshness_seconds"  # now - SINK_WATERMARK
SINK_FINAL_WINDOW_END: Final = "metricpipe_sink_final_window_end_timestamp_seconds"  # newest
PIPELINE_REPLICAS: Final = "metricpipe_pipeline_replicas"  # status.replicas
PIPELINE_DESIRED_REPLICAS: Final = "metricpipe_pipeline_desired_replicas"  # status.desiredReplicas

# -- the exporter itself
SCRAPE_SECONDS: Final = "metricpipe_exporter_scrape_duration_seconds"
SCRAPE_ERRORS: Final = "metricpipe_exporter_scrape_errors_total"  # label: source
TIMESTAMP_LOOKUPS: Final = "metricpipe_exporter_timestamp_lookups_total"  # label: result

# -- the Redis log cache (exporters/metricpipe_exporters/cache.py, from INFO), label: redis
CACHE_UP: Final = "metricpipe_cache_up"  # 1: INFO answered at this scrape, 0: not
CACHE_MEMORY_USED: Final = "metricpipe_cache_memory_used_bytes"  # used_memory
CACHE_MEMORY_LIMIT: Final = "metricpipe_cache_memory_limit_bytes"  # maxmemory; 0 = none
# writes refused for memory (errorstat_OOM: maxmemory reached, noeviction); Fluentd retries them
CACHE_REFUSED_WRITES: Final = "metricpipe_cache_refused_writes_total"
CACHE_AOF_LAST_WRITE_OK: Final = "metricpipe_cache_aof_last_write_ok"  # only with AOF on

# -- written by the consumers (consumers/metricpipe_consumers/metrics.py), label: pipeline
CONSUMER_RECORDS_CONSUMED: Final = "metricpipe_consumer_records_consumed_total"
CONSUMER_DEAD_LETTER: Final = "metricpipe_consumer_dead_letter_total"  # + reason
# Reasons a consumer starts at 0 (a counter first seen above 0 shows no `increase` in
# Prometheus: the first burst of dead letters would be invisible). Others appear when used.
DEAD_LETTER_REASONS: Final = (
    "oversize", "not_utf8", "malformed_json", "malformed_line", "missing_field", "bad_type",
    "bad_time", "late", "future", "oversize_key", "ambiguous", "sink_rejected",
)  # fmt: skip
# Records that arrived after their window was final (or too far ahead of the clock): windows
# were finalised without them, so the freshness SLO is not met.
LATE_REASONS: Final = ("late", "future")
CONSUMER_WATERMARK: Final = "metricpipe_consumer_watermark_timestamp_seconds"  # + partition
PIPELINE_WATERMARK: Final = "metricpipe_pipeline_watermark_timestamp_seconds"  # the finalizer's
CONSUMER_BUSY_FRACTION: Final = "metricpipe_consumer_busy_ratio"  # last cycle only
CONSUMER_BUSY_SECONDS: Final = "metricpipe_consumer_busy_seconds_total"
CONSUMER_PROCESSING_RATE: Final = "metricpipe_consumer_processing_records_per_second"
CONSUMER_PHASE_SECONDS: Final = "metricpipe_consumer_phase_seconds_total"  # + phase

EXPORTER_JOB: Final = "metricpipe-exporter"
CONSUMER_JOB: Final = "metricpipe-consumer"

# -- written by the archivers (consumers/metricpipe_consumers/archive/metrics.py), label: archive
ARCHIVE_RECORDS: Final = "metricpipe_archive_records_total"  # records committed to HDFS
ARCHIVE_BYTES: Final = "metricpipe_archive_bytes_total"  # bytes of committed files
ARCHIVE_FILES: Final = "metricpipe_archive_files_total"
# a histogram: scraped as _bucket, _sum and _count; its family name:
ARCHIVE_COMMIT_SECONDS_BUCKET: Final = "metricpipe_archive_commit_duration_seconds_bucket"
ARCHIVE_COMPACTED_FILES: Final = "metricpipe_archive_compacted_files_total"
# + partition: the next offset to archive and the newest committed record's Kafka time
ARCHIVE_NEXT_OFFSET: Final = "metricpipe_archive_next_offset"
ARCHIVE_NEWEST_RECORD: Final = "metricpipe_archive_newest_record_timestamp_seconds"
# seconds spent reading, encoding and writing (not waiting for Kafka): busy fraction by rate()
ARCHIVE_BUSY_SECONDS: Final = "metricpipe_archive_busy_seconds_total"
ARCHIVE_INDEX_REFUSED: Final = "metricpipe_archive_index_refused_total"  # spec.index's refusals

# -- written by the exporter for each LogArchive's archiver group, label: archive (+ partition)
ARCHIVE_LAG: Final = "metricpipe_archive_lag_records"  # log end - the group's committed offset
ARCHIVE_TOPIC_OFFSET: Final = "metricpipe_archive_topic_end_offset"  # log-end offset
ARCHIVE_TOPIC_PARTITIONS: Final = "metricpipe_archive_topic_partitions"
# one series per archive, only when every partition is known: every record whose Kafka time is
# before it is on HDFS (the oldest record not archived; the cycle's time on a caught-up one)
ARCHIVE_THROUGH: Final = "metricpipe_archive_archived_through_timestamp_seconds"
