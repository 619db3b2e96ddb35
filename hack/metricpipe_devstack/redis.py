"""Redis: the batch architecture's log cache, Debian's redis-server run as a stack process.

The configuration (`.stack/data/redis/redis.conf`, root only) is written at every start by
the pure builders below:
- it listens on the pod bridge's host address, like the stack's other servers, so host
  processes and pods reach it at the same address;
- durability: AOF only, `appendfsync always`: each write is written to the AOF and fsynced
  before its reply, so nothing acknowledged is lost by a restart, a kill -9 or (by the fsync)
  an OS crash; no RDB snapshots;
- memory: `maxmemory` (METRICPIPE_REDIS_MAXMEMORY, 512mb) with `noeviction`, so a full cache
  refuses writes with an OOM error instead of dropping records silently;
- ACL users, one per role (ROLE_USERS), passwords made once per stack (a fresh data
  directory) into `<stack>/secrets/redis-<role>.password`; the config holds their SHA-256.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

import redis

from metricpipe_contract.cache import CACHE_KEY_PREFIX, DEAD_LETTER_KEY_PREFIX

from .base import Component, Probe
from .errors import StackError
from .secure_search import write_new_password

REDIS_SERVER = "/usr/bin/redis-server"
Role = Literal["writer", "batch", "exporter", "admin"]
ROLES: tuple[Role, ...] = ("writer", "batch", "exporter", "admin")
# The writer is `default`: Fluentd's fluent-plugin-redis-store sends a password, no user name.
ROLE_USERS: Mapping[Role, str] = {
    "writer": "default",
    "batch": "metricpipe-batch",
    "exporter": "metricpipe-exporter",
    "admin": "metricpipe-admin",
}
MEMORY_SIZE = re.compile(r"^[0-9]+(?:[kmg]b?|b)?$", re.IGNORECASE)


@dataclass(frozen=True)
class RedisLayout:
    """The inputs of the configuration builders."""

    host: str
    port: int
    data_dir: Path
    log_file: Path
    maxmemory: str  # a Redis memory size: 512mb, 1gb, 268435456
    passwords: Mapping[Role, str]
    version: tuple[int, ...]  # redis-server's, e.g. (7, 0, 15)


def build_acl_rules(version: tuple[int, ...]) -> dict[Role, str]:
    """Each role's ACL rules after `reset on <password>`: only what its work needs.

    CLIENT SETINFO, which redis-py sends on connect (and ignores when refused), exists from
    Redis 7.2 on; 7.0 refuses an ACL naming it, so it is granted only where it exists."""
    setinfo = " +client|setinfo" if version >= (7, 2) else ""
    cache, dead_letters = f"{CACHE_KEY_PREFIX}*", f"{DEAD_LETTER_KEY_PREFIX}*"
    return {
        "writer": f"~{cache} -@all +ping +zadd +zremrangebyscore +expire +select",
        "batch": (
            f"%R~{cache} ~{dead_letters} -@all +ping +zrangebyscore +zrange +zcount +zcard "
            f"+hset +hsetnx +hget +hgetall +hlen +hscan +client|setname{setinfo}"
        ),
        "exporter": f"-@all +ping +info{setinfo}",  # no key pattern: no key
        "admin": "~* &* +@all",
    }


def build_redis_config(layout: RedisLayout) -> str:
    """redis.conf for the stack. Raises ValueError for a maxmemory Redis would not take."""
    if not MEMORY_SIZE.match(layout.maxmemory):
        raise ValueError(
            f"METRICPIPE_REDIS_MAXMEMORY={layout.maxmemory!r} is not a Redis memory size; "
            "use e.g. 512mb, 2gb or a number of bytes"
        )
    users = []
    for role, rules in build_acl_rules(layout.version).items():
        digest = hashlib.sha256(layout.passwords[role].encode()).hexdigest()
        users.append(f"user {ROLE_USERS[role]} reset on #{digest} {rules}")
    lines = [
        "# Written by metricpipe_devstack (redis.py) at every start: change the builder.",
        f"bind {layout.host}",
        f"port {layout.port}",
        # inactive anyway: a bind address is given and every user has a password
        "protected-mode yes",
        "daemonize no",
        f"logfile {layout.log_file}",
        f"dir {layout.data_dir}",
        # Durability is the AOF's alone: every write fsynced before its reply. RDB snapshots
        # would add forks and copy-on-write memory, and nothing a restart needs (with
        # appendonly on, Redis loads the AOF, never dump.rdb).
        'save ""',
        "appendonly yes",
        "appendfsync always",
        "no-appendfsync-on-rewrite no",
        # A full cache refuses writes (OOM error to the writer) and never evicts a record.
        f"maxmemory {layout.maxmemory}",
        "maxmemory-policy noeviction",
        *users,
    ]
    return "\n".join(lines) + "\n"


@cache
def server_version(binary: str = REDIS_SERVER) -> tuple[int, ...]:
    """`redis-server --version`'s v=X.Y.Z as numbers; () when the binary is missing."""
    try:
        result = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except OSError:
        return ()
    match = re.search(r"v=(\d+)\.(\d+)\.(\d+)", result.stdout)
    return tuple(int(part) for part in match.groups()) if match else ()


@dataclass(frozen=True)
class RedisAccess:
    """How a client reaches the stack's Redis as one of its users (from .stack/env)."""

    host: str  # for host processes
    pod_host: str  # for pods on the stack's node
    port: int
    password_files: Mapping[Role, Path]

    def password(self, role: Role) -> str:
        return self.password_files[role].read_text().strip()

    def connect(self, role: Role, **options: object) -> redis.Redis:
        """A redis-py client logged in as the role's user (responses decoded as text)."""
        settings: dict[str, object] = {"socket_timeout": 5.0, "decode_responses": True}
        settings.update(options)
        return redis.Redis(
            host=self.host,
            port=self.port,
            username=ROLE_USERS[role],
            password=self.password(role),
            **settings,  # type: ignore[arg-type]
        )

    @classmethod
    def from_entries(cls, entries: Mapping[str, str]) -> RedisAccess | None:
        if "METRICPIPE_REDIS_HOST" not in entries:
            return None
        return cls(
            host=entries["METRICPIPE_REDIS_HOST"],
            pod_host=entries["METRICPIPE_REDIS_POD_HOST"],
            port=int(entries["METRICPIPE_REDIS_PORT"]),
            password_files={r: Path(entries[_password_key(r)]) for r in ROLES},
        )


def _password_key(role: Role) -> str:
    return f"METRICPIPE_REDIS_{role.upper()}_PASSWORD_FILE"


class Redis(Component):
    name = "redis"
    startup_timeout = 30.0

    def port(self) -> int:
        return self.settings.ports.redis

    @property
    def config_path(self) -> Path:
        return self.data_dir / "redis.conf"

    def password_file(self, role: Role) -> Path:
        return self.settings.stack_dir / "secrets" / f"redis-{role}.password"

    def access(self) -> RedisAccess:
        host = self.bind_host()
        files = {role: self.password_file(role) for role in ROLES}
        return RedisAccess(host=host, pod_host=host, port=self.port(), password_files=files)

    def _passwords(self) -> dict[Role, str]:
        """New passwords for a new stack (no data yet), the stack's own on a restart."""
        fresh = not (self.data_dir / "appendonlydir").exists()
        if fresh or not all(self.password_file(r).exists() for r in ROLES):
            return {role: write_new_password(self.password_file(role)) for role in ROLES}
        return {role: self.password_file(role).read_text().strip() for role in ROLES}

    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.settings.log_dir.mkdir(parents=True, exist_ok=True)
        version = server_version()
        if not version:
            raise StackError(self.name, f"{REDIS_SERVER} is missing; run 'make prereqs' as root")
        layout = RedisLayout(
            host=self.bind_host(),
            port=self.port(),
            data_dir=self.data_dir,
            log_file=self.log_path,
            maxmemory=self.settings.redis_maxmemory,
            passwords=self._passwords(),
            version=version,
        )
        try:
            text = build_redis_config(layout)
        except ValueError as error:
            raise StackError(self.name, str(error)) from error
        self.config_path.touch(mode=0o600)
        self.config_path.chmod(0o600)  # it holds the password hashes
        self.config_path.write_text(text)

    def argv(self) -> list[str]:
        return [REDIS_SERVER, str(self.config_path)]

    def probe(self) -> Probe:
        """Up when PING is answered to the admin user; the version from INFO server."""
        installed = ".".join(map(str, server_version())) or "?"
        if not self.password_file("admin").exists():
            return Probe(False, "not prepared", installed)
        try:
            with self.access().connect("admin", socket_timeout=3.0) as client:
                client.ping()
                version = str(client.info("server")["redis_version"])
                config = client.config_get("maxmemory*") | client.config_get("appendfsync")
        except redis.RedisError as error:
            return Probe(False, f"unreachable: {type(error).__name__}", installed)
        memory = int(config["maxmemory"]) / 2**20
        detail = (
            f"PING ok; appendfsync {config['appendfsync']}, "
            f"maxmemory {memory:.0f} MiB {config['maxmemory-policy']}"
        )
        return Probe(True, detail, version)

    def env(self) -> dict[str, str]:
        access = self.access()
        return {
            "METRICPIPE_REDIS_HOST": access.host,
            "METRICPIPE_REDIS_POD_HOST": access.pod_host,
            "METRICPIPE_REDIS_PORT": str(access.port),
            **{_password_key(r): str(path) for r, path in access.password_files.items()},
        }
