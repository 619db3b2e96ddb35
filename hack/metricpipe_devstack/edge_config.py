"""The edge's configuration files, built purely from settings (edge.py writes and runs them).

HAProxy (TCP, L4) spreads connections over two Nginx servers (L7) and opens each with a PROXY
protocol v2 header; Nginx terminates TLS, takes the client's address from that header, limits
each client's request rate, and proxies to the peek API's plain HTTP port. Each Nginx writes
one JSON object per request (ACCESS_LOG_FIELDS), HAProxy one per TCP session
(HAPROXY_LOG_FIELDS): both are log sources for pipelines, so their field names are stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .settings import EdgeLimits

# (field, Nginx variable, JSON type): one access-log line per request, time at its end.
ACCESS_LOG_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("time", "$time_iso8601", "string"),  # local time with offset, seconds
    ("msec", "$msec", "number"),  # the same instant: Unix seconds with milliseconds
    ("remote_addr", "$remote_addr", "string"),  # the client's, from the PROXY protocol
    ("remote_port", "$remote_port", "number"),
    ("request_method", "$request_method", "string"),
    ("uri", "$request_uri", "string"),  # as sent: path and query string
    ("path", "$uri", "string"),  # decoded and normalised path, no query string
    ("protocol", "$server_protocol", "string"),
    ("status", "$status", "number"),
    ("body_bytes_sent", "$body_bytes_sent", "number"),
    ("request_length", "$request_length", "number"),  # bytes received, headers included
    ("request_time", "$request_time", "number"),  # seconds, first byte read to last sent
    ("upstream_addr", "$upstream_addr", "string"),  # "" when Nginx answered itself
    ("upstream_status", "$upstream_status", "string"),
    ("upstream_response_time", "$upstream_response_time", "string"),  # seconds; "" likewise
    ("user_agent", "$http_user_agent", "string"),
    ("referer", "$http_referer", "string"),
    ("x_forwarded_for", "$http_x_forwarded_for", "string"),  # as the client sent it
    ("tls_protocol", "$ssl_protocol", "string"),
    ("request_id", "$edge_request_id", "string"),  # the client's X-Request-Id, else Nginx's
    ("server", "", "string"),  # which Nginx: the component's name (filled in per server)
)

# (field, HAProxy log-format item, JSON type): one line per TCP session, at its end.
HAPROXY_LOG_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("time", "%[date,utime(%Y-%m-%dT%H:%M:%SZ)]", "string"),  # session end, UTC, seconds
    ("accept_ms", "%Ts%ms", "number"),  # when the connection was accepted: Unix milliseconds
    ("client_addr", "%ci", "string"),
    ("client_port", "%cp", "number"),
    ("frontend", "%f", "string"),
    ("backend", "%b", "string"),
    ("server", "%s", "string"),  # the Nginx that got the connection: edge-nginx-a or -b
    ("queue_ms", "%Tw", "number"),  # -1 when the session ended before
    ("connect_ms", "%Tc", "number"),  # -1 likewise
    ("duration_ms", "%Tt", "number"),  # accept to close
    ("bytes_to_client", "%B", "number"),
    ("bytes_from_client", "%U", "number"),
    ("termination_state", "%ts", "string"),  # "--" for a normal close
    ("active_connections", "%ac", "number"),
    ("server_connections", "%sc", "number"),
)

HEALTH_PATH = "/healthz"
TRUSTED_PROXY = "127.0.0.1"  # HAProxy's source address towards Nginx


@dataclass(frozen=True)
class NginxServer:
    """Everything one edge Nginx's configuration depends on."""

    name: str  # the component: edge-nginx-a or edge-nginx-b
    port: int
    prefix: Path  # its own directory: pid file and temporary files
    certificate: Path
    key: Path
    access_log: Path
    upstream_port: int
    limits: EdgeLimits


@dataclass(frozen=True)
class HaproxyEdge:
    port: int
    servers: tuple[tuple[str, int], ...]  # (name, port) of each Nginx on 127.0.0.1
    ca_file: Path  # health checks verify each Nginx's certificate with the stack's CA


def build_json_format(fields: tuple[tuple[str, str, str], ...]) -> str:
    """One JSON object from (field, item, type) rows: strings quoted, numbers bare."""
    parts = []
    for name, item, kind in fields:
        value = f'"{item}"' if kind == "string" else item
        parts.append(f'"{name}":{value}')
    return "{" + ",".join(parts) + "}"


def build_access_log_format(server_name: str) -> str:
    rows = tuple((n, server_name if n == "server" else v, t) for n, v, t in ACCESS_LOG_FIELDS)
    return build_json_format(rows)


def build_nginx_config(server: NginxServer) -> str:
    """nginx.conf of one edge Nginx: master in the foreground, TLS + PROXY protocol on
    127.0.0.1, per-client limits, JSON access log, everything else under its prefix."""
    limits, prefix = server.limits, server.prefix
    proxy = "            proxy_pass http://peek;\n"  # the upstream block below
    strict_rate = f"{limits.strict_rate_per_min}r/m"
    return f"""\
# {server.name}: written by metricpipe_devstack (edge_config.py) at every start; do not edit.
daemon off;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log stderr warn;

events {{
    worker_connections 1024;
}}

http {{
    server_tokens off;
    default_type application/octet-stream;
    client_body_temp_path {prefix / "client_body"};
    proxy_temp_path {prefix / "proxy"};
    fastcgi_temp_path {prefix / "fastcgi"};
    uwsgi_temp_path {prefix / "uwsgi"};
    scgi_temp_path {prefix / "scgi"};
    client_max_body_size 1m;

    # The client's address is the one HAProxy read, sent in the PROXY protocol header; only
    # HAProxy's address may send one.
    set_real_ip_from {TRUSTED_PROXY};
    real_ip_header proxy_protocol;

    # A request id the client chose (X-Request-Id) is kept; otherwise Nginx makes one.
    map $http_x_request_id $edge_request_id {{
        default $http_x_request_id;
        "" $request_id;
    }}

    log_format metricpipe_edge escape=json '{build_access_log_format(server.name)}';
    access_log {server.access_log} metricpipe_edge;

    limit_req_zone $binary_remote_addr zone=per_client:10m rate={limits.rate_per_s}r/s;
    limit_req_zone $binary_remote_addr zone=per_client_strict:10m rate={strict_rate};
    limit_req_status 429;
    limit_req_log_level warn;

    upstream peek {{
        server 127.0.0.1:{server.upstream_port};
        keepalive 16;
    }}

    server {{
        listen 127.0.0.1:{server.port} ssl proxy_protocol;
        server_name _;
        ssl_certificate {server.certificate};
        ssl_certificate_key {server.key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache shared:tls_sessions:1m;

        add_header X-Request-Id $edge_request_id always;
        add_header X-Edge-Server {server.name} always;

        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto https;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Request-Id $edge_request_id;
        proxy_buffering off;
        proxy_connect_timeout 2s;
        proxy_read_timeout 60s;
        proxy_send_timeout 60s;

        location = {HEALTH_PATH} {{
            access_log off;
            default_type text/plain;
            return 200 "ok\\n";
        }}

        location {limits.strict_prefix} {{
            limit_req zone=per_client_strict burst={limits.strict_burst} nodelay;
{proxy}        }}

        location / {{
            limit_req zone=per_client burst={limits.burst} nodelay;
{proxy}        }}
    }}
}}
"""


def build_haproxy_config(edge: HaproxyEdge) -> str:
    """haproxy.cfg: one TCP frontend on 127.0.0.1, round robin over the Nginx servers with a
    PROXY v2 header on every connection, HTTPS health checks of /healthz, a JSON line per
    session on stdout."""
    log_format = build_json_format(HAPROXY_LOG_FIELDS).replace('"', '\\"')
    default_server = (
        f"send-proxy-v2 check check-send-proxy check-ssl verify required ca-file {edge.ca_file} "
        "inter 2s fall 2 rise 1"
    )
    servers = "".join(f"    server {name} 127.0.0.1:{port}\n" for name, port in edge.servers)
    return f"""\
# edge-haproxy: written by metricpipe_devstack (edge_config.py) at every start; do not edit.
global
    maxconn 4096

defaults
    mode tcp
    log stdout format raw local0 info
    log-format "{log_format}"
    timeout connect 2s
    timeout client 65s
    timeout server 65s
    timeout check 2s
    retries 2
    option redispatch

frontend edge
    bind 127.0.0.1:{edge.port}
    default_backend edge-nginx

backend edge-nginx
    balance roundrobin
    option httpchk
    http-check send meth GET uri {HEALTH_PATH} ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    default-server {default_server}
{servers}"""
