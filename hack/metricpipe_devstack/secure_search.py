"""Elasticsearch 8.x with its security on, beside the plaintext 9.x node: what a production
cluster (ECK) looks like to a client, in the stack.

- HTTPS and transport TLS with a certificate from the stack's CA (`pki/`), so a client must
  be given that CA to connect;
- the `elastic` super user, its password set through the keystore's `bootstrap.password`
  (written to `<stack>/secrets/elasticsearch-secure.password`, root only);
- least-privilege users and roles in the file realm (`FileRealm`: config/users, users_roles,
  roles.yml, reloaded by the server within a second). The integ-test distribution lacks the
  analysis module the `.security` index needs, so the native realm's user, role and API-key
  APIs answer HTTP 400 here; the file realm's users and roles are enforced the same way;
- the 8.x line, so the client's choice by server major version is tested against a real 8.x
  server (the plaintext node is 9.x).

It runs on Java 17 (Elasticsearch 8 supports 17 and later, and 17 keeps the security manager
its 8.x line is built around).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import bcrypt
import requests

from .base import Probe, http_get_json
from .errors import StackError
from .pki import ensure_pki, issue_certificate
from .search import SearchEngine, _chown_tree
from .settings import StackSettings

SUPER_USER = "elastic"
JAVA_17 = Path("/usr/lib/jvm/java-17-openjdk-amd64")


class SecuredElasticsearch(SearchEngine):
    name = "elasticsearch-secure"
    product = "elasticsearch"
    launcher = "elasticsearch"
    env_prefix = "ES"

    @property
    def version_key(self) -> str:
        return "ELASTICSEARCH8_VERSION"

    @property
    def http_port(self) -> int:
        return self.settings.ports.elasticsearch_secure

    @property
    def transport_port(self) -> int:
        return self.settings.ports.elasticsearch_secure_transport

    @property
    def url(self) -> str:
        return f"https://{self.bind_host()}:{self.http_port}"

    @property
    def runtime(self) -> Path:
        return self.settings.search_root / f"run-{self.name}"

    @property
    def password_file(self) -> Path:
        return self.settings.stack_dir / "secrets" / f"{self.name}.password"

    @property
    def java_home(self) -> Path:
        return JAVA_17

    def settings_yaml(self) -> dict[str, str]:
        certs = self.runtime / "config" / "certs"
        tls = {
            "certificate": str(certs / "server.crt"),
            "key": str(certs / "server.key"),
            "certificate_authorities": str(certs / "ca.crt"),
        }
        return {
            **super().settings_yaml(),
            "cluster.name": "metricpipe-dev-elasticsearch-secure",
            "node.name": "elasticsearch-secure-1",
            "xpack.security.enabled": "true",
            "resource.reload.interval.high": "1s",  # the file realm's files, re-read
            "xpack.security.http.ssl.enabled": "true",
            "xpack.security.transport.ssl.enabled": "true",
            "xpack.security.transport.ssl.verification_mode": "certificate",
            **{f"xpack.security.http.ssl.{key}": value for key, value in tls.items()},
            **{f"xpack.security.transport.ssl.{key}": value for key, value in tls.items()},
        }

    def prepare(self) -> None:
        super().prepare()
        certs = self.runtime / "config" / "certs"  # Elasticsearch reads TLS files from config/
        install_server_certificate(self.settings, self.name, self.bind_host(), certs)
        password = write_new_password(self.password_file)
        self._keystore("create")
        self._keystore("add", "-x", "bootstrap.password", stdin=password)
        user = self.run_as()
        if user:
            _chown_tree(self.runtime, user)
            (certs / "server.key").chmod(0o600)

    def _keystore(self, *args: str, stdin: str | None = None) -> None:
        user = self.run_as()
        if user:
            _chown_tree(self.runtime, user)
        result = subprocess.run(
            [str(self.home / "bin" / "elasticsearch-keystore"), *args], input=stdin,
            capture_output=True, text=True, timeout=120, user=user, cwd=self.runtime,
            env={**self.process_env(), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(self.name, f"elasticsearch-keystore {args[0]}: {result.stderr[-500:]}")

    def _auth(self) -> tuple[str, str]:
        return SUPER_USER, self.password_file.read_text().strip()

    def probe(self) -> Probe:
        if not self.password_file.exists():
            return Probe(False, "not prepared")
        verify = str(self.settings.pki_dir / "ca.crt")
        try:
            status, health = http_get_json(
                f"{self.url}/_cluster/health", auth=self._auth(), verify=verify
            )
            # GET / is not in the integ-test distribution (its rest-root module is missing)
            _, local = http_get_json(f"{self.url}/_nodes/_local", auth=self._auth(), verify=verify)
        except requests.RequestException as error:
            return Probe(False, f"unreachable: {type(error).__name__}")
        state = health.get("status") if isinstance(health, dict) else None
        nodes = local.get("nodes", {}) if isinstance(local, dict) else {}
        version = next((node.get("version", "?") for node in nodes.values()), "?")
        ok = status == 200 and state in ("green", "yellow")
        return Probe(ok, f"cluster {state}, HTTPS" if state else f"HTTP {status}", str(version))

    def env(self) -> dict[str, str]:
        return {
            "ELASTICSEARCH_SECURE_URL": self.url,
            "ELASTICSEARCH_SECURE_USER": SUPER_USER,
            "ELASTICSEARCH_SECURE_PASSWORD_FILE": str(self.password_file),
            "ELASTICSEARCH_SECURE_CONFIG_DIR": str(self.runtime / "config"),
        }


def install_server_certificate(settings: StackSettings, name: str, host: str, certs: Path) -> None:
    """A server certificate for `name` at `host` from the stack's CA, as certs/server.crt,
    server.key and ca.crt (search engines read TLS files from their config directory)."""
    pki = settings.pki_dir
    ensure_pki(pki, extra_sans=f"IP:{settings.host_address}")
    crt, key = issue_certificate(pki, name, name, sans=f"IP:{host},IP:127.0.0.1,DNS:localhost")
    certs.mkdir(parents=True, exist_ok=True)
    for source, target in ((crt, "server.crt"), (key, "server.key"), (pki / "ca.crt", "ca.crt")):
        shutil.copyfile(source, certs / target)


def write_new_password(path: Path) -> str:
    """A new random password, written to `path` for root only."""
    password = secrets.token_urlsafe(18)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.write_text(password)
    path.chmod(0o600)
    return password


class FileRealm:
    """The secured node's file realm: users (bcrypt hashes), their roles, and the roles'
    privileges, in the node's config directory. The server re-reads the files by itself."""

    _lock = threading.Lock()

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir

    def put_role(self, name: str, body: dict[str, Any]) -> None:
        """A role as the role API takes it (`{"indices": [{"names": [...], "privileges":
        [...]}], "cluster": [...]}`); roles.yml is YAML, of which JSON is a subset."""
        with self._lock:
            roles = self._read_roles()
            roles[name] = body
            self._write("roles.yml", "".join(f"{json.dumps(n)}: {json.dumps(b)}\n"
                                             for n, b in sorted(roles.items())))  # fmt: skip

    def put_user(self, name: str, password: str, roles: list[str]) -> None:
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10, prefix=b"2a"))
        with self._lock:
            users = self._read_pairs("users")
            users[name] = hashed.decode()
            self._write("users", "".join(f"{n}:{h}\n" for n, h in sorted(users.items())))
            by_role: dict[str, set[str]] = {}
            for user, user_roles in self._user_roles().items():
                if user != name:
                    for role in user_roles:
                        by_role.setdefault(role, set()).add(user)
            for role in roles:
                by_role.setdefault(role, set()).add(name)
            lines = [f"{r}:{','.join(sorted(us))}\n" for r, us in sorted(by_role.items()) if us]
            self._write("users_roles", "".join(lines))

    def _read_pairs(self, file: str) -> dict[str, str]:
        path = self.config_dir / file
        lines = path.read_text().splitlines() if path.exists() else []
        return dict(line.split(":", 1) for line in lines if ":" in line)

    def _user_roles(self) -> dict[str, list[str]]:
        users: dict[str, list[str]] = {}
        for role, names in self._read_pairs("users_roles").items():
            for user in filter(None, names.split(",")):
                users.setdefault(user, []).append(role)
        return users

    def _read_roles(self) -> dict[str, Any]:
        path = self.config_dir / "roles.yml"
        roles: dict[str, Any] = {}
        for line in path.read_text().splitlines() if path.exists() else []:
            if line.startswith('"'):
                name, _, body = line.partition(": ")
                roles[json.loads(name)] = json.loads(body)
        return roles

    def _write(self, file: str, text: str) -> None:
        path = self.config_dir / file
        staging = path.with_name(f".{file}.new")
        staging.write_text(text)
        owner = path.stat() if path.exists() else self.config_dir.stat()
        os.chown(staging, owner.st_uid, owner.st_gid)
        staging.chmod(0o640)
        staging.replace(path)  # atomic: the server never reads half a file
