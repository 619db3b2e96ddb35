"""The request's path and parameters (pure): every check before anything touches HDFS.

Paths are matched on the raw request target, before any decoding: namespace and archive
name must be DNS labels (contract.archive.check_label), so `..`, `%2e%2e`, encoded slashes,
absolute paths and any other character are refused with 400 and never reach a path on HDFS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast
from urllib.parse import parse_qsl

from metricpipe_contract.archive import ArchivePathError, check_label

from .cursor import ORDERS, Order, Position, decode_cursor
from .errors import LimitError, PeekError
from .match import RecordFilter, build_filter

Endpoint = Literal["hours", "records"]
PREFIX = ("", "v1", "namespaces")
SINGLE = frozenset({"since", "until", "order", "grep", "regex", "limit", "cursor"})


@dataclass(frozen=True)
class Route:
    endpoint: Endpoint | Literal["healthz"]
    namespace: str = ""
    name: str = ""


@dataclass(frozen=True)
class RecordsQuery:
    since: str | None
    until: str | None
    order: Order
    limit: int
    cursor: Position | None
    filter: RecordFilter


def parse_route(target: str) -> Route:
    """`/v1/namespaces/{ns}/logarchives/{name}/{hours|records}` or `/healthz`; 400 for a
    path that tries to be one and is not, 404 for any other path."""
    path = target.split("?", 1)[0]
    if path == "/healthz":
        return Route("healthz")
    if not path.startswith("/"):
        raise PeekError(400, "the request target must be a path starting with /")
    parts = path.split("/")
    if tuple(parts[:3]) != PREFIX:
        raise PeekError(404, f"no such endpoint {path!r}: see docs/peek.md")
    if "%" in path or "\\" in path:
        raise PeekError(400, "encoded characters are not allowed in the path")
    if len(parts) != 7 or parts[4] != "logarchives" or parts[6] not in ("hours", "records"):
        raise PeekError(
            400, "the path must be /v1/namespaces/NAMESPACE/logarchives/NAME/hours or .../records"
        )
    try:
        namespace = check_label("namespace", parts[3])
        name = check_label("archive name", parts[5])
    except ArchivePathError as error:
        raise PeekError(400, str(error)) from None
    return Route(cast(Endpoint, parts[6]), namespace, name)


def parse_params(target: str) -> tuple[dict[str, str], dict[str, str]]:
    """(single parameters, `field.<path>` equalities); 400 for repeated or unknown ones."""
    query = target.split("?", 1)[1] if "?" in target else ""
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False,
                          errors="strict", max_num_fields=100)  # fmt: skip
    except (ValueError, UnicodeDecodeError) as error:
        raise PeekError(400, f"the query string cannot be read: {error}") from None
    single: dict[str, str] = {}
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key.startswith("field."):
            target_dict, what = fields, key[len("field.") :]
        elif key in SINGLE:
            target_dict, what = single, key
        else:
            raise PeekError(400, f"unknown parameter {key!r}", parameter=key)
        if what in target_dict:
            raise PeekError(400, f"parameter {key!r} is given twice", parameter=key)
        target_dict[what] = value
    return single, fields


def parse_records_query(
    params: dict[str, str], fields: dict[str, str], *, default_limit: int, max_limit: int,
    max_pattern_chars: int,
) -> RecordsQuery:  # fmt: skip
    order = params.get("order", "newest")
    if order not in ORDERS:
        raise PeekError(400, f"order={order!r}: use newest or oldest", parameter="order")
    typed_order: Order = "oldest" if order == "oldest" else "newest"
    limit = default_limit
    if "limit" in params:
        if not params["limit"].isdigit() or int(params["limit"]) < 1:
            raise PeekError(400, f"limit={params['limit']!r} is not a positive whole number",
                            parameter="limit")  # fmt: skip
        limit = int(params["limit"])
    if limit > max_limit:
        raise LimitError(
            400, f"limit={limit} is more records than one page may hold ({max_limit})",
            limit="max_page_records", value=limit, maximum=max_limit,
            hint=f"ask for at most {max_limit} and follow the cursor for more",
        )  # fmt: skip
    cursor = decode_cursor(params["cursor"], typed_order) if params.get("cursor") else None
    record_filter = build_filter(
        params.get("grep") or None, params.get("regex") or None, fields,
        max_pattern_chars=max_pattern_chars,
    )  # fmt: skip
    return RecordsQuery(
        params.get("since") or None, params.get("until") or None, typed_order, limit, cursor,
        record_filter,
    )  # fmt: skip
