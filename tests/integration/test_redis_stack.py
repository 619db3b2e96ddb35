"""The stack's Redis is the log cache the batch path trusts: its ACLs are enforced by the real
server, an acknowledged write survives a kill -9, and a full cache refuses writes (OOM)
instead of evicting records."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import cast

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from helpers import wait_for
from metricpipe_contract.cache import build_cache_key, build_dead_letter_key
from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.redis import ROLE_USERS, Redis, RedisAccess
from redis_faults import kill_redis, restart_redis

NO_RETRY = Retry(NoBackoff(), 0)  # every failed command reaches the writer


@pytest.fixture(scope="module")
def access(stack: StackEnv) -> RedisAccess:
    assert stack.redis, ".stack/env lacks METRICPIPE_REDIS_HOST; run 'make stack-up'"
    return stack.redis


@pytest.fixture
def cache_key(access: RedisAccess, unique_name: str) -> Iterator[str]:
    """A cache of this test's own namespace, deleted (with its dead letters) at the end."""
    key = build_cache_key(unique_name, "app.web")
    yield key
    with access.connect("admin") as admin:
        admin.delete(key, build_dead_letter_key(unique_name, "pipeline"))


def refused(call: Callable[[], object]) -> str:
    with pytest.raises(redis.exceptions.NoPermissionError) as error:
        call()
    return str(error.value)


def test_each_user_may_do_its_work_and_nothing_else(
    access: RedisAccess, cache_key: str, unique_name: str
) -> None:
    dead_letters = build_dead_letter_key(unique_name, "pipeline")
    with (
        access.connect("writer") as writer,
        access.connect("batch") as batch,
        access.connect("exporter") as exporter,
    ):
        assert writer.zadd(cache_key, {"record-1": 1.0}) == 1
        assert writer.expire(cache_key, 3600)
        assert "zrangebyscore" in refused(lambda: writer.zrangebyscore(cache_key, "-inf", "+inf"))
        assert "key" in refused(lambda: writer.zadd(f"{unique_name}:elsewhere", {"x": 1.0}))
        refused(lambda: writer.config_get("maxmemory"))
        refused(writer.flushall)

        assert batch.zrangebyscore(cache_key, "-inf", "+inf") == ["record-1"]
        assert batch.zcard(cache_key) == 1
        refused(lambda: batch.zadd(cache_key, {"record-2": 2.0}))  # reads the cache only
        assert batch.hset(dead_letters, "1.0/abc", "{}") == 1
        assert batch.hgetall(dead_letters) == {"1.0/abc": "{}"}
        refused(lambda: batch.hset(f"{unique_name}:elsewhere", "f", "v"))

        assert int(exporter.info("memory")["used_memory"]) > 0
        refused(lambda: exporter.zcard(cache_key))
        refused(lambda: exporter.hlen(dead_letters))

    for role in ("writer", "batch"):
        stranger = redis.Redis(  # no retry: redis-py retries a refused AUTH for ~8 s
            host=access.host,
            port=access.port,
            username=ROLE_USERS[role],
            password="wrong",
            retry=NO_RETRY,
        )
        with stranger, pytest.raises(redis.exceptions.AuthenticationError):
            stranger.ping()


def test_fluentds_redis_client_writes_with_a_password_alone(
    access: RedisAccess, cache_key: str
) -> None:
    """redis-rb 4.8 (Debian's ruby-redis, what fluent-plugin-redis-store uses) sends AUTH
    with the password only: it is the `default` user, the writer."""
    script = (
        'require "redis"\n'
        'r = Redis.new(host: ENV["HOST"], port: ENV["PORT"].to_i, password: ENV["PASSWORD"])\n'
        'r.pipelined { |p| p.zadd(ENV["KEY"], 5, "from-ruby"); p.expire(ENV["KEY"], 60) }\n'
        "begin\n"
        '  r.zrange(ENV["KEY"], 0, -1)\n'
        "rescue Redis::CommandError => e\n"
        "  puts e.message\n"
        "end\n"
    )
    env = {"HOST": access.host, "PORT": str(access.port), "KEY": cache_key,
           "PASSWORD": access.password("writer"), "PATH": os.environ["PATH"]}  # fmt: skip
    result = subprocess.run(
        ["ruby", "-e", script], env=env, capture_output=True, text=True, timeout=20
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("NOPERM"), result.stdout
    with access.connect("batch") as batch:
        assert batch.zrange(cache_key, 0, -1) == ["from-ruby"]


@dataclass
class AckedWriter:
    """ZADDs in a thread, one at a time and in pipelines of three; `acked` holds exactly the
    members whose ZADD was answered with a reply, `errors` every error answered or raised."""

    client: redis.Redis
    key: str
    payload: str = ""
    acked: list[str] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def write_once(self, n: int) -> None:
        members = [f"m{n}-{i}{self.payload}" for i in range(1 if n % 4 else 3)]
        try:
            if len(members) == 1:
                replies: list[object] = [self.client.zadd(self.key, {members[0]: float(n)})]
            else:
                pipe = self.client.pipeline(transaction=False)
                for member in members:
                    pipe.zadd(self.key, {member: float(n)})
                replies = pipe.execute(raise_on_error=False)  # one reply or error per command
        except redis.RedisError as error:  # no reply at all (connection lost)
            replies = [error]
        for member, reply in zip(members, replies, strict=False):
            if isinstance(reply, Exception):
                self.errors.append(reply)
            else:
                self.acked.append(member)
        if self.errors and self.errors[-1] is replies[-1]:
            time.sleep(0.02)

    def run(self) -> None:
        n = 0
        while not self.stop.is_set() and n < 200_000:
            n += 1
            self.write_once(n)


@pytest.fixture
def writer_thread(access: RedisAccess, cache_key: str) -> Iterator[Callable[..., AckedWriter]]:
    started: list[tuple[AckedWriter, threading.Thread]] = []

    def start(payload: str = "") -> AckedWriter:
        client = access.connect("writer", retry=NO_RETRY, socket_timeout=2.0)
        writer = AckedWriter(client, cache_key, payload)
        thread = threading.Thread(target=writer.run, daemon=True)
        thread.start()
        started.append((writer, thread))
        return writer

    yield start
    for writer, thread in started:
        writer.stop.set()
        thread.join(timeout=10)
        writer.client.close()


def members(access: RedisAccess, key: str) -> set[str]:
    with access.connect("admin") as admin:
        return set(admin.zrange(key, 0, -1))


def test_acknowledged_writes_survive_kill_9(
    access: RedisAccess, cache_key: str, writer_thread: Callable[..., AckedWriter],
    stack_redis: Redis,
) -> None:  # fmt: skip
    writer = writer_thread()
    wait_for(
        lambda: len(writer.acked) >= 300, timeout=10, what="300 acknowledged ZADDs", interval=0.05
    )

    killed = kill_redis(stack_redis)  # the fault: mid-write, no shutdown, no final fsync
    acked_at_kill = len(writer.acked)
    wait_for(lambda: writer.errors, timeout=5, what="the writer's connection errors", interval=0.05)
    assert all(isinstance(e, redis.ConnectionError) for e in writer.errors), writer.errors

    restart_redis(stack_redis, killed)  # as stack-up starts it: the same config, data, pid file
    wait_for(lambda: len(writer.acked) > acked_at_kill + 50, timeout=10,
             what="acknowledged writes after the restart", interval=0.05)  # fmt: skip
    writer.stop.set()
    time.sleep(0.2)  # the thread's last command returns (or fails) before the count below

    present = members(access, cache_key)
    lost = set(writer.acked) - present
    assert not lost, f"{len(lost)} acknowledged members lost, e.g. {sorted(lost)[:5]}"


def test_a_full_cache_refuses_writes_and_drops_nothing(
    access: RedisAccess, cache_key: str, writer_thread: Callable[..., AckedWriter]
) -> None:
    with access.connect("admin") as admin:
        configured = admin.config_get("maxmemory")["maxmemory"]
        refusals_before = _oom_count(admin)
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", used + 2 * 2**20)  # 2 MiB of room
        try:
            writer = writer_thread(payload="x" * 4096)
            wait_for(lambda: len(writer.errors) >= 20, timeout=15, what="20 refused writes",
                     interval=0.05)  # fmt: skip
            writer.stop.set()
            time.sleep(0.2)
            assert writer.acked, "nothing was written before the cache was full"
            assert all(isinstance(e, redis.exceptions.OutOfMemoryError) for e in writer.errors)
            # noeviction: every acknowledged member is there, and no refused one
            assert members(access, cache_key) == set(writer.acked)
            assert _oom_count(admin) >= refusals_before + len(writer.errors)
        finally:
            admin.config_set("maxmemory", configured)
        assert admin.config_get("maxmemory")["maxmemory"] == configured
    with access.connect("writer") as client:
        assert client.zadd(cache_key, {"after-restore": 1.0}) == 1


def _oom_count(admin: redis.Redis) -> int:
    stats = cast(dict[str, dict[str, int]], admin.info("errorstats"))
    return int(stats.get("errorstat_OOM", {}).get("count", 0))
