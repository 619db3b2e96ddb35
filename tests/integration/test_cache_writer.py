"""What Fluentd writes into the Redis log cache, on the stack's Redis.

The route is the operator's rendering (`build_cache_fluent_conf`), run by the named stand-in
of Fluentd + fluent-plugin-redis-store (hack/metricpipe_demo/fluentd_redis_store.rb, driven by
`CacheWriter`) as the cache's writer user. Redis is then read as the admin and compared with
what was sent. The members' JSON text is expected from Ruby's JSON rules, written out here
(`ruby_json`) and checked against `ruby -rjson` itself on the hostile lines, never through
the stand-in. Records are the shared real Apache log as Fluentd sends it ({"message": line}),
or the seeded generator's lines when the shared data is absent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from helpers import wait_for
from metricpipe_contract.cache import UID_FIELD
from metricpipe_demo.cache_writer import CacheWriter, Event
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.redis import Redis, RedisAccess
from metricpipe_operator.reconcile.cache_route import CacheRoute, build_cache_fluent_conf
from redis_faults import kill_redis, restart_redis
from shared_data import access_log_lines

TAG = "app.access"
HOSTILE_LINES = [
    "café naïve 日本語 😀 \u2013 €",
    '/path/with/slashes</script> & <b> "GET /a/b HTTP/1.1"',
    "controls \x00\x01\x07\x08\t\n\x0b\x0c\r\x1b\x1f\x7f end",
    "separators \u2028 line \u2029 paragraph",
    'quote " backslash \\ both \\" done',
    "",
]
ESCAPED = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
           "\t": "\\t"}  # fmt: skip


def ruby_json(value: Any) -> str:
    """Ruby's `to_json` with the json gem's defaults (no ascii_only, no script_safe): no
    spaces; a string escapes `"`, `\\` and the characters below U+0020 only (\\b \\f \\n \\r
    \\t by name, the others as \\u00xx in lower case), so `/`, DEL, U+2028/U+2029 and all
    non-ASCII characters stand as themselves in UTF-8. Floats are left out (Ruby writes them
    its own way)."""
    if isinstance(value, str):
        chars = (ESCAPED.get(c, f"\\u{ord(c):04x}" if ord(c) < 0x20 else c) for c in value)
        return f'"{"".join(chars)}"'
    if isinstance(value, dict):
        return "{" + ",".join(f"{ruby_json(k)}:{ruby_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(ruby_json(v) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    raise TypeError(f"ruby_json does not write {type(value).__name__}")


@pytest.fixture(scope="module")
def access(stack: StackEnv) -> RedisAccess:
    if stack.redis is None:
        pytest.skip(".stack/env has no Redis (METRICPIPE_REDIS_HOST): run 'make stack-up'")
    return stack.redis


@pytest.fixture
def admin(access: RedisAccess) -> Iterator[redis.Redis]:
    with access.connect("admin") as client:
        yield client


@pytest.fixture
def route(access: RedisAccess, admin: redis.Redis, unique_name: str) -> Iterator[CacheRoute]:
    """This test's own cache (its namespace is the test's unique name), deleted at the end."""
    cache = CacheRoute(unique_name, TAG, access.host, access.port, retention_seconds=3600)
    yield cache
    admin.delete(cache.key)


def writer(access: RedisAccess, route: CacheRoute, chunk_records: int = 1000) -> CacheWriter:
    conf = build_cache_fluent_conf(route)
    return CacheWriter(conf, access.password_files["writer"], chunk_records=chunk_records)


def real_events(data_dir: Path, count: int, start: float) -> list[Event]:
    """`count` Apache lines as Fluentd's records, at distinct sub-second event times."""
    lines = access_log_lines(data_dir)[:count]
    assert len(lines) == count, f"only {len(lines)} access-log lines"
    return [(TAG, start + i * 0.123456789, {"message": line}) for i, line in enumerate(lines)]


def assert_cache_holds(admin: redis.Redis, key: str, sent: Sequence[Event]) -> None:
    """Every sent record is its own member, once: the record's Ruby JSON with a fresh UUID
    as the last field, scored with its event time."""
    held = cast(list[tuple[str, float]], admin.zrange(key, 0, -1, withscores=True))
    assert cast(int, admin.zcard(key)) == len(held) == len(sent)
    found: Counter[tuple[str, float]] = Counter()
    uids = set()
    for member, score in held:
        pairs = json.loads(member, object_pairs_hook=list)
        field, uid = pairs[-1]
        assert field == UID_FIELD, member
        assert str(uuid.UUID(uid)) == uid, member
        assert uuid.UUID(uid).version == 4, member
        suffix = f',"{UID_FIELD}":"{uid}"}}'
        assert member.endswith(suffix), member
        found[member.removesuffix(suffix) + "}", score] += 1
        uids.add(uid)
    assert len(uids) == len(sent)
    assert found == Counter((ruby_json(record), time) for _, time, record in sent)


def used_memory(admin: redis.Redis) -> int:
    return int(cast(dict[str, Any], admin.info("memory"))["used_memory"])


def test_ruby_json_is_rubys(tmp_path: Path) -> None:
    """The expectation's JSON rules against Ruby's own json gem (not the stand-in)."""
    ruby = shutil.which("ruby")
    if ruby is None:
        pytest.fail("ruby is not installed: run `make prereqs`")
    records = [{"message": line, "n": 7, "ok": True, "no": None} for line in HOSTILE_LINES]
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    result = subprocess.run(
        [ruby, "-rjson", "-e", "STDIN.each_line { |line| puts JSON.parse(line).to_json }"],
        input=text.encode(), capture_output=True, check=True,
    )  # fmt: skip
    lines = result.stdout.decode().split("\n")  # not splitlines(): U+2028 is no line end
    assert lines == [*(ruby_json(r) for r in records), ""]


def test_every_record_is_a_member_as_fluentd_writes_it(
    access: RedisAccess, admin: redis.Redis, route: CacheRoute, data_dir: Path
) -> None:
    now = time.time()
    sent = real_events(data_dir, 3000, now - 1800)
    sent += [(TAG, now - 60 + i / 7, {"message": line}) for i, line in enumerate(HOSTILE_LINES)]
    twin = (TAG, now - 30.5, {"message": sent[0][2]["message"]})
    sent += [twin] * 25  # identical lines at the identical time: 25 records, 25 members
    other = [("app.other", now, {"message": "not this cache's"})] * 3
    with writer(access, route) as fluentd:
        fluentd.send_many(sent[:1500])
        fluentd.send_many(other)
        fluentd.send_many(sent[1500:])
        summary = fluentd.close()
    assert (summary.records, summary.retries, summary.unmatched) == (len(sent), 0, 3)
    assert_cache_holds(admin, route.key, sent)


def test_value_expire_trims_at_each_write(
    access: RedisAccess, admin: redis.Redis, route: CacheRoute
) -> None:
    """ZREMRANGEBYSCORE key -inf (now - value_expire) after each record: records older than
    the retention go, whoever wrote them; the recent ones stay."""
    short = CacheRoute(route.namespace, TAG, route.host, route.port, retention_seconds=60)
    now = time.time()
    admin.zadd(short.key, {'{"message":"already there, stale"}': now - 3600})
    old = [(TAG, now - 3600 + i, {"message": f"old {i}"}) for i in range(50)]
    recent = [(TAG, now - 5 + i / 100, {"message": f"recent {i}"}) for i in range(50)]
    mixed = [event for pair in zip(old, recent, strict=True) for event in pair]
    with writer(access, short, chunk_records=30) as fluentd:
        fluentd.send_many(mixed)
        summary = fluentd.close()
    assert summary.records == 100  # all were written ...
    assert_cache_holds(admin, short.key, recent)  # ... and only the recent ones remain


def test_a_refused_write_is_retried_not_dropped(
    access: RedisAccess, admin: redis.Redis, route: CacheRoute, data_dir: Path
) -> None:
    """Redis at maxmemory (noeviction) refuses the chunk: the stand-in, as Fluentd, retries it
    with backoff and writes nothing after it meanwhile; once there is room every record is
    there exactly once (the retried chunk's members carry the same UUIDs).

    maxmemory first goes just above used_memory, so the writes themselves fill the cache. At
    the limit a retry may still fit: Redis shrinks an idle client's query buffer (the refused
    pipeline's) within seconds, so the first refusal is followed by a limit well below
    used_memory, keeping the cache full while the stall is watched."""
    sent = real_events(data_dir, 2000, time.time() - 1200)
    configured = cast(dict[str, str], admin.config_get("maxmemory"))["maxmemory"]
    try:
        with writer(access, route, chunk_records=100) as fluentd:
            fluentd.send_many(sent[:200])
            fluentd.wait_acknowledged(200, timeout=10)
            admin.config_set("maxmemory", used_memory(admin) + 64 * 1024)  # ~200 records more
            fluentd.send_many(sent[200:])
            first = fluentd.wait_refusals(1, timeout=15)[0]
            assert "OOM" in first.error, first
            admin.config_set("maxmemory", used_memory(admin) // 2)
            stalled = fluentd.acknowledged
            fluentd.wait_refusals(len(fluentd.refusals) + 2, timeout=15)  # two retries later
            assert fluentd.acknowledged == stalled < len(sent)  # nothing after the chunk
            admin.config_set("maxmemory", configured)
            fluentd.wait_acknowledged(timeout=20)
            summary = fluentd.close()
    finally:
        admin.config_set("maxmemory", configured)
    assert (summary.records, fluentd.acknowledged) == (len(sent), len(sent))
    assert summary.retries >= 3
    assert_cache_holds(admin, route.key, sent)


def test_redis_killed_mid_write_loses_nothing_acknowledged(
    access: RedisAccess, admin: redis.Redis, route: CacheRoute, data_dir: Path,
    stack_redis: Redis,
) -> None:  # fmt: skip
    """kill -9 of the stack's redis-server in the middle of a chunk's pipeline (the stand-in
    writes 5,000 records in chunks of 1,000), then started again as stack-up starts it: every
    record acknowledged before the kill is there, and so is the part of the cut-off chunk that
    Redis had applied (AOF, appendfsync always); the failed chunk is retried whole with the
    same UUIDs, and at the end every record sent is in the cache exactly once."""
    began = time.monotonic()
    events = real_events(data_dir, 5000, time.time() - 1800)
    sent = [(tag, at, {**record, "seq": seq}) for seq, (tag, at, record) in enumerate(events)]
    with writer(access, route) as fluentd:
        feeder = threading.Thread(target=fluentd.send_many, args=(sent,), daemon=True)
        feeder.start()  # blocks while the stand-in's queue is full, as Fluentd's input would
        fluentd.wait_acknowledged(1000, timeout=20)
        seen = wait_for(lambda: mid_chunk(admin, route.key, fluentd.acknowledged), timeout=10,
                        what="a chunk's pipeline half applied", interval=0.0002)  # fmt: skip
        killed = kill_redis(stack_redis)  # the fault
        # down for three failed writes: the next retry comes ~4 s after the third, so the
        # cache is read back after the restart before any chunk is written again
        first = fluentd.wait_refusals(3, timeout=10)[0]
        acked_at_kill = fluentd.acknowledged  # no ack can come while Redis is down
        restart_redis(stack_redis, killed)
        held = {json.loads(m)["seq"] for m in cast(list[str], admin.zrange(route.key, 0, -1))}
        # chunks are written in order: the acknowledged records are the first ones sent, and
        # the cut-off chunk's records that ZCARD counted were logged before that reply
        assert set(range(acked_at_kill)) <= held, "acknowledged records lost by the restart"
        assert len(held) >= seen > acked_at_kill, "the kill did not cut a chunk off"
        fluentd.wait_acknowledged(len(sent), timeout=60)
        feeder.join(10)
        summary = fluentd.close()
    refusals, took = fluentd.refusals, time.monotonic() - began
    print(f"{acked_at_kill} of {len(sent)} records acknowledged at the kill, {seen} applied, "
          f"{len(held)} held after the restart; {len(refusals)} failed writes retried, the "
          f"first {first.error_class}: {first.error}; {took:.1f} s")  # fmt: skip
    assert (summary.records, fluentd.acknowledged) == (len(sent), len(sent))
    assert summary.retries == len(refusals) >= 3
    seqs = Counter(json.loads(m)["seq"] for m in cast(list[str], admin.zrange(route.key, 0, -1)))
    assert seqs == Counter(range(len(sent)))  # each record once: the retried chunk added none
    assert_cache_holds(admin, route.key, sent)  # ... each as sent, with a UUID of its own


def mid_chunk(admin: redis.Redis, key: str, acknowledged: int) -> int | None:
    """ZCARD while a chunk of 1,000 is part applied (well before its end), else None."""
    count = cast(int, admin.zcard(key))
    return count if acknowledged < count < acknowledged + 800 else None
