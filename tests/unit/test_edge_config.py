"""The edge's configuration builders: what each Nginx and HAProxy are told, and that the real
binaries accept it (`nginx -t`, `haproxy -c`)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from metricpipe_devstack.edge_config import (
    ACCESS_LOG_FIELDS,
    HAPROXY_LOG_FIELDS,
    HaproxyEdge,
    NginxServer,
    build_access_log_format,
    build_haproxy_config,
    build_nginx_config,
)
from metricpipe_devstack.settings import EdgeLimits

LIMITS = EdgeLimits(
    rate_per_s=300, burst=600, strict_prefix="/slow/", strict_rate_per_min=12, strict_burst=2
)


def _server(root: Path, name: str = "edge-nginx-a", port: int = 41444) -> NginxServer:
    return NginxServer(
        name=name,
        port=port,
        prefix=root / name,
        certificate=root / "edge.crt",
        key=root / "edge.key",
        access_log=root / "logs" / f"{name}.access.log",
        upstream_port=41480,
        limits=LIMITS,
    )


def _edge(root: Path) -> HaproxyEdge:
    return HaproxyEdge(
        port=41443,
        servers=(("edge-nginx-a", 41444), ("edge-nginx-b", 41445)),
        ca_file=root / "ca.crt",
    )


def _directives(config: str) -> list[str]:
    return [line.strip() for line in config.splitlines() if line.strip()]


def test_nginx_runs_in_the_foreground_with_everything_under_its_prefix() -> None:
    directives = _directives(build_nginx_config(_server(Path("/s"))))
    assert "daemon off;" in directives
    assert "pid /s/edge-nginx-a/nginx.pid;" in directives
    assert "error_log stderr warn;" in directives
    temp_paths = [d for d in directives if "_temp_path " in d]
    assert len(temp_paths) == 5  # Debian's compiled-in /var/lib/nginx is never used
    assert all(" /s/edge-nginx-a/" in d for d in temp_paths)


def test_nginx_terminates_tls_and_trusts_the_proxy_header_from_haproxy_only() -> None:
    directives = _directives(build_nginx_config(_server(Path("/s"))))
    assert "listen 127.0.0.1:41444 ssl proxy_protocol;" in directives
    assert "ssl_certificate /s/edge.crt;" in directives
    assert "ssl_certificate_key /s/edge.key;" in directives
    assert "set_real_ip_from 127.0.0.1;" in directives
    assert "real_ip_header proxy_protocol;" in directives
    assert [d for d in directives if d.startswith("set_real_ip_from")] == [
        "set_real_ip_from 127.0.0.1;"
    ]


def test_nginx_proxies_to_the_peek_port_with_forwarding_headers_and_authorization() -> None:
    config = build_nginx_config(_server(Path("/s")))
    directives = _directives(config)
    assert "server 127.0.0.1:41480;" in directives
    assert directives.count("proxy_pass http://peek;") == 2  # the strict location and /
    assert "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;" in directives
    assert "proxy_set_header X-Request-Id $edge_request_id;" in directives
    assert "add_header X-Request-Id $edge_request_id always;" in directives
    assert "Authorization" not in config  # passed through untouched, as Nginx does by default


def test_nginx_limits_each_client_by_its_address_with_429() -> None:
    config = build_nginx_config(_server(Path("/s")))
    directives = _directives(config)
    assert "limit_req_zone $binary_remote_addr zone=per_client:10m rate=300r/s;" in directives
    assert "limit_req_zone $binary_remote_addr zone=per_client_strict:10m rate=12r/m;" in directives
    assert "limit_req_status 429;" in directives
    strict = re.search(r"location /slow/ \{(.*?)\}", config, re.S)
    default = re.search(r"location / \{(.*?)\}", config, re.S)
    assert strict is not None
    assert default is not None
    assert "limit_req zone=per_client_strict burst=2 nodelay;" in strict.group(1)
    assert "limit_req zone=per_client burst=600 nodelay;" in default.group(1)


def test_nginx_health_location_answers_itself_and_is_not_logged() -> None:
    config = build_nginx_config(_server(Path("/s")))
    health = re.search(r"location = /healthz \{(.*?)\}", config, re.S)
    assert health is not None
    assert "access_log off;" in health.group(1)
    assert "return 200" in health.group(1)
    assert "proxy_pass" not in health.group(1)


SAMPLE_VALUES = {  # what Nginx substitutes, as escape=json writes it
    "$time_iso8601": "2026-12-05T17:00:13+00:00",
    "$msec": "1796490013.450",
    "$remote_addr": "127.0.0.2",
    "$remote_port": "58596",
    "$request_method": "GET",
    "$request_uri": '/x?q=\\"a\\"',
    "$uri": "/x",
    "$server_protocol": "HTTP/1.1",
    "$status": "200",
    "$body_bytes_sent": "283",
    "$request_length": "176",
    "$request_time": "0.001",
    "$upstream_addr": "127.0.0.1:41480",
    "$upstream_status": "200",
    "$upstream_response_time": "",
    "$http_user_agent": "curl/8",
    "$http_referer": "",
    "$http_x_forwarded_for": "",
    "$ssl_protocol": "TLSv1.3",
    "$edge_request_id": "abc",
}


def _substitute(template: str, values: dict[str, str]) -> str:
    for variable in sorted(values, key=len, reverse=True):  # $uri after $request_uri
        template = template.replace(variable, values[variable])
    return template


def test_access_log_line_is_json_with_the_documented_fields_and_types() -> None:
    template = build_access_log_format("edge-nginx-b")
    assert "'" not in template  # it sits between single quotes in log_format
    record = json.loads(_substitute(template, SAMPLE_VALUES))
    assert list(record) == [name for name, _, _ in ACCESS_LOG_FIELDS]
    assert record["server"] == "edge-nginx-b"
    assert record["status"] == 200
    assert record["request_time"] == 0.001
    assert record["msec"] == 1796490013.45
    assert record["uri"] == '/x?q="a"'
    assert record["upstream_response_time"] == ""  # may be empty: a string, never bare


def test_access_log_declares_json_escaping() -> None:
    config = build_nginx_config(_server(Path("/s")))
    assert "log_format metricpipe_edge escape=json '{" in config
    assert "access_log /s/logs/edge-nginx-a.access.log metricpipe_edge;" in config


def test_every_possibly_empty_nginx_value_is_a_string() -> None:
    numbers = {variable for _, variable, kind in ACCESS_LOG_FIELDS if kind == "number"}
    assert numbers == {
        "$msec",
        "$remote_port",
        "$status",
        "$body_bytes_sent",
        "$request_length",
        "$request_time",
    }


def test_haproxy_balances_tcp_over_both_nginx_with_proxy_v2_and_tls_health_checks() -> None:
    directives = _directives(build_haproxy_config(_edge(Path("/s"))))
    assert "mode tcp" in directives
    assert "bind 127.0.0.1:41443" in directives
    assert "balance roundrobin" in directives
    assert "server edge-nginx-a 127.0.0.1:41444" in directives
    assert "server edge-nginx-b 127.0.0.1:41445" in directives
    default_server = next(d for d in directives if d.startswith("default-server "))
    for option in ("send-proxy-v2", "check", "check-send-proxy", "check-ssl", "verify required"):
        assert f" {option} " in f" {default_server} "
    assert "ca-file /s/ca.crt" in default_server
    assert "http-check send meth GET uri /healthz ver HTTP/1.1 hdr Host localhost" in directives
    assert "http-check expect status 200" in directives
    assert "log stdout format raw local0 info" in directives


def test_haproxy_session_log_is_json_with_the_documented_fields() -> None:
    config = build_haproxy_config(_edge(Path("/s")))
    match = re.search(r'^\s*log-format "(.*)"$', config, re.M)
    assert match is not None
    template = match.group(1).replace('\\"', '"')
    values = {
        "%[date,utime(%Y-%m-%dT%H:%M:%SZ)]": "2026-12-05T17:00:13Z",
        "%Ts%ms": "1796490013442",
        "%ci": "127.0.0.2",
        "%cp": "58588",
        "%f": "edge",
        "%b": "edge-nginx",
        "%s": "edge-nginx-b",
        "%Tw": "1",
        "%Tc": "0",
        "%Tt": "7",
        "%B": "2528",
        "%U": "795",
        "%ts": "--",
        "%ac": "2",
        "%sc": "0",
    }
    record = json.loads(_substitute(template, values))
    assert list(record) == [name for name, _, _ in HAPROXY_LOG_FIELDS]
    assert record["server"] == "edge-nginx-b"
    assert record["accept_ms"] == 1796490013442


def _self_signed(root: Path) -> None:
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-keyout", str(root / "edge.key"),
            "-out", str(root / "edge.crt"),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    (root / "ca.crt").write_bytes((root / "edge.crt").read_bytes())


@pytest.mark.skipif(
    not (Path("/usr/sbin/nginx").exists() and Path("/usr/sbin/haproxy").exists()),
    reason="Debian's nginx and haproxy are installed by 'make prereqs'",
)
def test_the_real_binaries_accept_the_configurations(tmp_path: Path) -> None:
    _self_signed(tmp_path)
    for name, port in (("edge-nginx-a", 41444), ("edge-nginx-b", 41445)):
        server = _server(tmp_path, name, port)
        server.prefix.mkdir(parents=True)
        server.access_log.parent.mkdir(parents=True, exist_ok=True)
        conf = server.prefix / "nginx.conf"
        conf.write_text(build_nginx_config(server))
        argv = ["/usr/sbin/nginx", "-t", "-p", str(server.prefix), "-c", str(conf), "-e", "stderr"]
        result = subprocess.run(argv, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(build_haproxy_config(_edge(tmp_path)))
    haproxy = subprocess.run(["/usr/sbin/haproxy", "-c", "-f", str(cfg)], capture_output=True)
    assert haproxy.returncode == 0, haproxy.stderr
