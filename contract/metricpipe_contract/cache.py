"""The Redis log cache's names, shared by the operator (routes), batch jobs and exporter (pure).

One cache per (namespace, Fluentd tag): a sorted set whose members are the tag's records as
JSON and whose scores are their Fluentd event times (fluent-plugin-redis-store, `store_type
zset`). Every batch pipeline of the namespace over that tag reads the same set. The namespace
sits in braces (a Redis Cluster hash tag), so a tenant's keys share a slot and an ACL pattern
`metricpipe:cache:{<namespace>}:*` selects exactly one namespace's caches.
Dead letters of a pipeline over the cache go to a hash of its own (no Kafka topic is made for
it): field = the record's identity, so a rerun writes the same fields again, never a second
letter.
"""

from __future__ import annotations

import hashlib

CACHE_KEY_PREFIX = "metricpipe:cache:"
DEAD_LETTER_KEY_PREFIX = "metricpipe:dlq:"
UID_FIELD = "metricpipe_uid"  # added by the route: identical log lines stay separate members
DEFAULT_RETENTION_SECONDS = 3 * 3600


def build_cache_key(namespace: str, tag: str) -> str:
    return f"{CACHE_KEY_PREFIX}{{{namespace}}}:{tag}"


def build_dead_letter_key(namespace: str, name: str) -> str:
    return f"{DEAD_LETTER_KEY_PREFIX}{{{namespace}}}:{name}"


def build_cache_id(namespace: str, tag: str) -> str:
    """A short, stable name for the cache's route objects (a tag may hold `*`, `{`, `,`)."""
    return hashlib.sha256(f"{namespace}/{tag}".encode()).hexdigest()[:12]


def build_member_id(score: float, member: bytes) -> str:
    """A cached record's identity (its dead-letter field and its source in reports)."""
    return f"{score!r}/{hashlib.sha256(member).hexdigest()[:24]}"
