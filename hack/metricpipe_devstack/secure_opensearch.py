"""OpenSearch 2.19 with its security plugin, beside the plaintext 3.x node: what a production
OpenSearch looks like to a client (the plugin is on by default in its distribution), and the
2.x line served by a real server.

- `org.opensearch.plugin:opensearch-security` is installed into the integ-test zip with
  `opensearch-plugin install`, once. The 2.19.4.0 plugin stands alone; the 3.x plugins on
  Maven Central (3.4.0.0 is the newest served) extend the `rule-framework` module, which the
  integ-test zips lack and Maven Central does not publish, so they refuse to install;
- Java 17 (OpenSearch 2.x runs on its security manager, which Java 24 and later removed);
- TLS on HTTP and transport with a certificate from the stack's CA;
- only the users and role mappings written here: `admin` (all_access, its password in
  `<stack>/secrets/opensearch-secure.password`, root only), none of the plugin's demo users and
  no `own_index` mapping; tests create least-privilege users and roles through the plugin's
  REST API as that admin, and the server enforces them.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import bcrypt
import requests

from .base import Probe, http_get_json
from .errors import StackError
from .search import SearchEngine, _chown_tree
from .secure_search import JAVA_17, install_server_certificate, write_new_password

ADMIN = "admin"


class SecuredOpenSearch(SearchEngine):
    name = "opensearch-secure"
    product = "opensearch"
    launcher = "opensearch"
    env_prefix = "OPENSEARCH"

    @property
    def version_key(self) -> str:
        return "OPENSEARCH_SECURE_VERSION"

    @property
    def java_home(self) -> Path:
        return JAVA_17

    @property
    def http_port(self) -> int:
        return self.settings.ports.opensearch_secure

    @property
    def transport_port(self) -> int:
        return self.settings.ports.opensearch_secure_transport

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
    def plugin_zip(self) -> Path:
        version = self.settings.versions["OPENSEARCH_SECURITY_PLUGIN_VERSION"]
        name = f"opensearch-security-{version}"
        return self.settings.cache_dir / "dist" / name / f"{name}.zip"

    def settings_yaml(self) -> dict[str, str]:
        tls = {"pemcert_filepath": "certs/server.crt", "pemkey_filepath": "certs/server.key",
               "pemtrustedcas_filepath": "certs/ca.crt"}  # fmt: skip
        return {
            **super().settings_yaml(),
            "cluster.name": "metricpipe-dev-opensearch-secure",
            "node.name": "opensearch-secure-1",
            "plugins.security.ssl.http.enabled": "true",
            **{f"plugins.security.ssl.http.{key}": value for key, value in tls.items()},
            **{f"plugins.security.ssl.transport.{key}": value for key, value in tls.items()},
            "plugins.security.ssl.transport.enforce_hostname_verification": "false",
            "plugins.security.nodes_dn": json.dumps(["CN=opensearch-secure"]),
            "plugins.security.allow_default_init_securityindex": "true",
            "plugins.security.restapi.roles_enabled": json.dumps(["all_access"]),
            "plugins.security.audit.type": "noop",
        }

    def prepare(self) -> None:
        self._extract()
        self._install_plugin()
        super().prepare()
        config = self.runtime / "config"
        install_server_certificate(self.settings, self.name, self.bind_host(), config / "certs")
        password = write_new_password(self.password_file)
        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10, prefix=b"2a"))
        security = config / "opensearch-security"
        (security / "internal_users.yml").write_text(
            _yaml_document("internalusers", {ADMIN: {"hash": hashed.decode(), "reserved": True,
                                                     "backend_roles": ["admin"]}})
        )  # fmt: skip
        (security / "roles_mapping.yml").write_text(
            _yaml_document("rolesmapping", {"all_access": {"reserved": True,
                                                           "backend_roles": ["admin"]}})
        )  # fmt: skip
        user = self.run_as()
        if user:
            _chown_tree(self.runtime, user)
            (config / "certs" / "server.key").chmod(0o600)

    def _install_plugin(self) -> None:
        marker = self.home / ".security-installed"
        if marker.exists():
            return
        if not self.plugin_zip.exists():
            raise StackError(self.name, f"{self.plugin_zip} missing; run 'make stack-deps'")
        result = subprocess.run(
            [str(self.home / "bin" / "opensearch-plugin"), "install", "--batch",
             self.plugin_zip.as_uri()],
            capture_output=True, text=True, timeout=300,
            env={"OPENSEARCH_JAVA_HOME": str(self.java_home), "JAVA_HOME": str(self.java_home),
                 "OPENSEARCH_PATH_CONF": str(self.home / "config"), "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        if result.returncode != 0:
            raise StackError(self.name, f"opensearch-plugin install: {result.stderr[-800:]}")
        marker.touch()

    def _auth(self) -> tuple[str, str]:
        return ADMIN, self.password_file.read_text().strip()

    def probe(self) -> Probe:
        if not self.password_file.exists():
            return Probe(False, "not prepared")
        verify = str(self.settings.pki_dir / "ca.crt")
        try:
            status, health = http_get_json(
                f"{self.url}/_cluster/health", auth=self._auth(), verify=verify
            )
            _, root = http_get_json(self.url, auth=self._auth(), verify=verify)
        except requests.RequestException as error:
            return Probe(False, f"unreachable: {type(error).__name__}")
        state = health.get("status") if isinstance(health, dict) else None
        version = root.get("version", {}).get("number", "?") if isinstance(root, dict) else "?"
        ok = status == 200 and state in ("green", "yellow")
        return Probe(ok, f"cluster {state}, HTTPS" if state else f"HTTP {status}", str(version))

    def env(self) -> dict[str, str]:
        return {
            "OPENSEARCH_SECURE_URL": self.url,
            "OPENSEARCH_SECURE_USER": ADMIN,
            "OPENSEARCH_SECURE_PASSWORD_FILE": str(self.password_file),
        }


def _yaml_document(kind: str, entries: dict[str, object]) -> str:
    """A security plugin configuration file (YAML; JSON values are YAML flow style)."""
    lines = ["_meta:", f"  type: {json.dumps(kind)}", "  config_version: 2"]
    lines += [f"{json.dumps(name)}: {json.dumps(body)}" for name, body in entries.items()]
    return "\n".join(lines) + "\n"
