"""The Redis configuration builder: durability, memory limit and one ACL user per role."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from metricpipe_devstack.redis import (
    ROLE_USERS,
    ROLES,
    RedisAccess,
    RedisLayout,
    build_acl_rules,
    build_redis_config,
)

PASSWORDS = {role: f"secret-{role}" for role in ROLES}


def _layout(maxmemory: str = "512mb", version: tuple[int, ...] = (7, 0, 15)) -> RedisLayout:
    return RedisLayout(
        host="10.77.0.1",
        port=39379,
        data_dir=Path("/s/data/redis"),
        log_file=Path("/s/logs/redis.log"),
        maxmemory=maxmemory,
        passwords=PASSWORDS,
        version=version,
    )


def _directives(text: str) -> dict[str, str]:
    pairs = (line.split(" ", 1) for line in text.splitlines() if not line.startswith(("#", "user")))
    return dict(pairs)


def test_aof_fsynced_on_every_write_and_no_snapshots() -> None:
    config = _directives(build_redis_config(_layout()))
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "always"
    assert config["no-appendfsync-on-rewrite"] == "no"
    assert config["save"] == '""'
    assert config["dir"] == "/s/data/redis"
    assert config["logfile"] == "/s/logs/redis.log"
    assert (config["bind"], config["port"], config["daemonize"]) == ("10.77.0.1", "39379", "no")


def test_maxmemory_refuses_rather_than_evicts() -> None:
    config = _directives(build_redis_config(_layout("2gb")))
    assert (config["maxmemory"], config["maxmemory-policy"]) == ("2gb", "noeviction")


@pytest.mark.parametrize("size", ["", "lots", "512 mb", "-1", "1tb"])
def test_a_maxmemory_redis_would_not_take_is_refused(size: str) -> None:
    with pytest.raises(ValueError, match="METRICPIPE_REDIS_MAXMEMORY"):
        build_redis_config(_layout(size))


def test_one_user_per_role_with_a_hashed_password() -> None:
    text = build_redis_config(_layout())
    users = {line.split()[1]: line for line in text.splitlines() if line.startswith("user ")}
    assert set(users) == set(ROLE_USERS.values())
    assert ROLE_USERS["writer"] == "default"  # Fluentd's plugin sends no user name
    for role, password in PASSWORDS.items():
        line = users[ROLE_USERS[role]]
        assert f" reset on #{hashlib.sha256(password.encode()).hexdigest()} " in line
        assert password not in line


def test_roles_grant_only_their_work() -> None:
    rules = build_acl_rules((7, 0, 15))
    assert rules["writer"].split() == [
        "~metricpipe:cache:*", "-@all", "+ping", "+zadd", "+zremrangebyscore", "+expire", "+select"
    ]  # fmt: skip
    assert rules["batch"].startswith("%R~metricpipe:cache:* ~metricpipe:dlq:* -@all ")
    assert "+zadd" not in rules["batch"]
    assert "~" not in rules["exporter"]
    assert rules["admin"] == "~* &* +@all"


def test_client_setinfo_granted_only_where_the_server_has_it() -> None:
    assert "client|setinfo" not in build_acl_rules((7, 0, 15))["batch"]
    for role in ("batch", "exporter"):
        assert "+client|setinfo" in build_acl_rules((7, 2, 4))[role]


def test_access_is_read_back_from_the_env_entries() -> None:
    assert RedisAccess.from_entries({}) is None
    entries = {
        "METRICPIPE_REDIS_HOST": "10.77.0.1",
        "METRICPIPE_REDIS_POD_HOST": "10.77.0.1",
        "METRICPIPE_REDIS_PORT": "39379",
        **{f"METRICPIPE_REDIS_{r.upper()}_PASSWORD_FILE": f"/s/secrets/redis-{r}" for r in ROLES},
    }
    access = RedisAccess.from_entries(entries)
    assert access is not None
    assert (access.host, access.port) == ("10.77.0.1", 39379)
    assert access.password_files["batch"] == Path("/s/secrets/redis-batch")
