"""`kubectl metricpipe peek ARCHIVE`: the peek API's client, as a kubectl plugin (docs/peek.md).

The token is the kubeconfig's current context's (or --token); the peek API's URL comes from
--server or METRICPIPE_PEEK_URL, its CA from --ca-file or METRICPIPE_PEEK_CA. Prints the raw
lines (or the records as JSON with -o json), following cursors until --limit records.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import requests
from kubernetes import client, config

PAGE_MOST = 1000


class CliError(Exception):
    """A message for the user; exit status 1."""


def build_parser() -> argparse.ArgumentParser:
    raw_help = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="kubectl metricpipe", description=__doc__, formatter_class=raw_help
    )
    commands = parser.add_subparsers(dest="command", required=True)
    peek = commands.add_parser("peek", help="read a LogArchive's records from HDFS")
    peek.add_argument("archive", help="the LogArchive's name")
    peek.add_argument("-n", "--namespace", help="default: the context's namespace")
    peek.add_argument("--since", default="1h", help="RFC 3339 or a duration back (2h, 30m, 1d)")
    peek.add_argument("--until", help="RFC 3339 or a duration back; default: now")
    match = peek.add_mutually_exclusive_group()
    match.add_argument("--grep", help="a substring of the raw line")
    match.add_argument("--regex", help="an RE2 pattern searched in the raw line")
    peek.add_argument("--field", action="append", default=[], metavar="PATH=VALUE",
                      help="a parsed field equals VALUE (dotted PATH); repeatable")  # fmt: skip
    peek.add_argument("--limit", type=int, default=100, help="records to print (default 100)")
    peek.add_argument("--oldest-first", action="store_true", help="default: newest first")
    peek.add_argument("--hours", action="store_true", help="list the hours with their sizes")
    peek.add_argument("-o", "--output", choices=("raw", "json"), default="raw")
    peek.add_argument("--server", default=os.environ.get("METRICPIPE_PEEK_URL"),
                      help="the peek API's URL (METRICPIPE_PEEK_URL)")  # fmt: skip
    peek.add_argument("--ca-file", default=os.environ.get("METRICPIPE_PEEK_CA"),
                      help="CA of the peek API's certificate (METRICPIPE_PEEK_CA)")  # fmt: skip
    peek.add_argument("--token", help="bearer token; default: the kubeconfig context's")
    peek.add_argument("--kubeconfig", help="default: KUBECONFIG or ~/.kube/config")
    peek.add_argument("--context", help="default: the current context")
    return parser


def build_params(args: argparse.Namespace, page: int, cursor: str | None) -> dict[str, str]:
    """The records query of the arguments (pure)."""
    params = {"since": args.since, "order": "oldest" if args.oldest_first else "newest",
              "limit": str(page)}  # fmt: skip
    if args.until:
        params["until"] = args.until
    if args.grep:
        params["grep"] = args.grep
    if args.regex:
        params["regex"] = args.regex
    for equality in args.field:
        path, sep, value = equality.partition("=")
        if not sep or not path:
            raise CliError(f"--field {equality!r}: write PATH=VALUE, e.g. --field status=500")
        params[f"field.{path}"] = value
    if cursor:
        params["cursor"] = cursor
    return params


def describe_refusal(status: int, body: dict[str, Any]) -> str:
    """What the user reads for a refused request (pure)."""
    text = str(body.get("error") or f"HTTP {status}")
    if status == 401:
        return f"not authenticated (401): {text}. Check your kubeconfig context or --token."
    if status == 403:
        return f"forbidden (403): {text}"
    if body.get("limit"):
        return f"over the limit {body['limit']} ({status}): {text}. {body.get('hint', '')}".strip()
    return f"refused ({status}): {text}"


def kube_identity(args: argparse.Namespace) -> tuple[str | None, str]:
    """(token, namespace) of the kubeconfig's context."""
    try:
        contexts, current = config.list_kube_config_contexts(args.kubeconfig)
        chosen = next((c for c in contexts if c["name"] == args.context), current)
        namespace = str((chosen or {}).get("context", {}).get("namespace") or "default")
        settings = client.Configuration()
        config.load_kube_config(config_file=args.kubeconfig, context=args.context,
                                client_configuration=settings)  # fmt: skip
    except (config.ConfigException, OSError) as error:
        if args.token:
            return args.token, "default"
        raise CliError(f"cannot read the kubeconfig: {error}; pass --token") from None
    header = settings.api_key.get("authorization") or settings.api_key.get("BearerToken") or ""
    token = header.removeprefix("Bearer ").strip() or None
    return args.token or token, namespace


def fetch(session: requests.Session, url: str, params: dict[str, str]) -> requests.Response:
    try:
        # verify per request: a session's own is overridden by REQUESTS_CA_BUNDLE when set
        response = session.get(url, params=params, stream=True, timeout=(10, 120),
                               verify=session.verify)  # fmt: skip
    except requests.RequestException as error:
        raise CliError(f"cannot reach the peek API at {url}: {error}") from None
    if response.status_code != 200:
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:300]}
        raise CliError(describe_refusal(response.status_code, body))
    return response


def follow(session: requests.Session, url: str, args: argparse.Namespace) -> Iterator[Any]:
    """Records until --limit or the end of the range, page after page."""
    left, cursor = args.limit, None
    while left > 0:
        response = fetch(session, url, build_params(args, min(left, PAGE_MOST), cursor))
        trailer: dict[str, Any] = {}
        for line in response.iter_lines():
            item = json.loads(line)
            if "error" in item:
                raise CliError(f"the page ended early: {item['error']}")
            if "cursor" in item and "raw" not in item:
                trailer = item
            else:
                left -= 1
                yield item
        if not trailer.get("more"):
            return
        cursor = trailer["cursor"]


def run(args: argparse.Namespace) -> int:
    if not args.server:
        raise CliError("no peek API URL: pass --server or set METRICPIPE_PEEK_URL")
    token, context_namespace = kube_identity(args)
    if not token:
        raise CliError(
            "the kubeconfig context has no bearer token (client certificates cannot be "
            "forwarded): pass --token, e.g. --token $(kubectl create token NAME)"
        )
    namespace = args.namespace or context_namespace
    base = f"{args.server.rstrip('/')}/v1/namespaces/{namespace}/logarchives/{args.archive}"
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {token}"
        session.verify = args.ca_file or True
        if args.hours:
            span = {"since": args.since, **({"until": args.until} if args.until else {})}
            hours = fetch(session, f"{base}/hours", span).json()
            for hour in hours:
                line = f"{hour['hour']}  {hour['files']:>5} files  {hour['bytes']:>12} bytes"
                print(json.dumps(hour) if args.output == "json" else line)
            return 0
        for record in follow(session, f"{base}/records", args):
            print(json.dumps(record) if args.output == "json" else record["raw"])
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CliError as error:
        print(f"kubectl metricpipe peek: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `| head`
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
