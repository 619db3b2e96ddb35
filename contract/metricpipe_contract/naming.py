"""Default names outside Kubernetes: the Kafka topic, consumer group and sink index (pure).

A namespace never contains a dot, so in `metricpipe.<namespace>.<name>` and
`metricpipe-<namespace>.<name>.metrics` the first dot after the prefix ends the namespace:
`team/a-x` and `team-a/x` get different names. The default index ends in `.metrics` so that no
default index ends in `-state`, the suffix of each index's state index (`<index>-state`, written
by the consumers): pipeline `x` and pipeline `x-state` cannot share an index either.
"""

from __future__ import annotations

TOPIC_PREFIX = "metricpipe."
INDEX_PREFIX = "metricpipe-"
INDEX_SUFFIX = ".metrics"
STATE_INDEX_SUFFIX = "-state"
DEAD_LETTER_SUFFIX = ".dlq"


def build_default_topic(namespace: str, name: str) -> str:
    return f"{TOPIC_PREFIX}{namespace}.{name}"


def build_consumer_group(namespace: str, name: str) -> str:
    return f"{TOPIC_PREFIX}{namespace}.{name}"


def build_default_index(namespace: str, name: str) -> str:
    return f"{INDEX_PREFIX}{namespace}.{name}{INDEX_SUFFIX}".lower()


def build_index_names(index: str) -> tuple[str, str]:
    """The indices a pipeline writes: its metrics index and its state index."""
    return (index, f"{index}{STATE_INDEX_SUFFIX}")


def decide_reserved_name(namespace: str, topic: str | None, index: str | None) -> str | None:
    """Why an explicit topic or index is refused because it lies in another namespace's default
    names (`metricpipe.<ns>.*`, `metricpipe-<ns>.*`), or None. Without this a tenant could take
    the default names of a pipeline another namespace has not created yet."""
    for kind, value, prefix, field in (
        ("topic", topic, TOPIC_PREFIX, "spec.topic.name"),
        ("index", index, INDEX_PREFIX, "spec.sink.index"),
    ):
        if value is None or not value.startswith(prefix):
            continue
        owner, dot, _ = value[len(prefix) :].partition(".")
        if dot and owner != namespace:
            return (
                f"{field} {value!r} lies in the default {kind} names of namespace {owner!r} "
                f"({prefix}{owner}.*); choose a name outside {prefix}<another namespace>.* or "
                f"omit {field} for the default"
            )
    return None


# -- LogArchive (archive_refs.py): the same prefix, one more dot-separated part. Namespaces and
# MetricPipeline names never contain a dot, so `metricpipe.<ns>.<name>.archive` is no
# pipeline's default topic (`metricpipe.<ns>.<name>`) nor its dead-letter topic (`... .dlq`),
# and no pipeline can be named `<name>.archive`.
ARCHIVE_SUFFIX = ".archive"


def build_archive_topic(namespace: str, name: str) -> str:
    return f"{TOPIC_PREFIX}{namespace}.{name}{ARCHIVE_SUFFIX}"


def build_log_index_prefix(namespace: str, name: str) -> str:
    """A LogArchive's daily indices are `<prefix>-YYYY.MM.DD`."""
    return f"metricpipe-logs-{namespace}.{name}"


def build_archive_group(namespace: str, name: str) -> str:
    return f"{TOPIC_PREFIX}{namespace}.{name}{ARCHIVE_SUFFIX}"
