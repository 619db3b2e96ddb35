"""The archiver's rows as Arrow columns (pure): a partition's consumed records become one
record batch of contract.archive.COLUMNS, row for row equal to plan.build_row's rows.

For apache_combined, each record's JSON wrapper is decoded as build_row decodes it
(records.decode_json_object), the line is matched by the same expression
(apache.APACHE_COMBINED) and the fields column is written straight from the match with
json's own string encoder, without a dict and json.dumps between (~4 µs a record instead of
~13). A record this way does not follow goes through build_row itself: not UTF-8, a JSON
object without a wrapper, a wrapper member named as a parsed field, a line the expression
does not accept. Other formats go through build_row record by record. The hour split sorts
the batch's columns once (numpy) instead of one hour key per row.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import lru_cache
from itertools import pairwise
from json.encoder import encode_basestring
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from metricpipe_contract.archive import HOUR_MS, build_hour_key

from ..apache import APACHE_COMBINED
from ..records import decode_json_object
from .native import NativeRows
from .parquet import SCHEMA
from .plan import Format, build_row, find_wrapper

PARSED = frozenset(APACHE_COMBINED.groupindex) - {"rq", "aq"}  # the fields a line yields


@lru_cache(maxsize=1024)
def _prefix(items: tuple[tuple[str, str], ...]) -> str:
    """`"stream": "stdout", ` of a wrapper's other members, as json.dumps writes them."""
    return json.dumps(dict(items), ensure_ascii=False)[1:-1] + ", "


def split_wrapped_line(value: bytes | None) -> tuple[str, str] | None:
    """(the line, the JSON of the wrapper's other members that precede the parsed fields),
    as build_row reads an apache_combined record; None when this way cannot follow it."""
    if value is not None and value[:1] == b"{":
        decoded = decode_json_object(value)
        if type(decoded) is dict:
            return _split_object(decoded)
    try:
        return (value or b"").decode(), ""
    except UnicodeDecodeError:
        return None


def _split_object(decoded: dict[str, Any]) -> tuple[str, str] | None:
    # find_wrapper's answer, its first test inline: Fluentd's tail input says "message"
    wrapper = "message" if type(decoded.get("message")) is str else find_wrapper(decoded)
    if wrapper is None:
        return None
    line: str = decoded[wrapper]
    if len(decoded) == 1:
        return line, ""
    rest = {k: v for k, v in decoded.items() if k != wrapper}
    if not PARSED.isdisjoint(rest):
        return None  # build_row's merge keeps such a key's place: not written here
    if all(type(v) is str for v in rest.values()):
        return line, _prefix(tuple(rest.items()))
    return line, json.dumps(rest, ensure_ascii=False, default=str)[1:-1] + ", "


def render_apache_fields(prefix: str, match: re.Match[str]) -> str:
    """json.dumps of `{**wrapper members, **parse_apache_combined(line)}` from the match."""
    host, ident, user, time, method, path, protocol, status, size, referrer, rq, agent, aq = (
        match.groups()
    )
    e = encode_basestring
    request = "" if protocol is None else f', "protocol": {e(protocol)}'
    tail = "" if rq is None else f', "referrer": {e(referrer)}'
    if aq is not None:
        tail += f', "agent": {e(agent)}'
    return (
        f'{{{prefix}"host": {e(host)}, "ident": {e(ident)}, "user": {e(user)}, '
        f'"time": {e(time)}, "method": {e(method)}, "path": {e(path)}'
        f'{request}, "status": {int(status)}, '
        f'"bytes": {0 if size == "-" else int(size)}{tail}}}'
    )


def _apache_columns(values: Sequence[bytes | None]) -> tuple[list[str | None], list[str | None]]:
    """(raw, fields) of each record; None where build_row has to make the row."""
    raws: list[str | None] = []
    fields: list[str | None] = []
    match = APACHE_COMBINED.match
    for value in values:
        split = split_wrapped_line(value)
        found = None if split is None else match(split[0].rstrip("\n"))
        if found is None or split is None:
            raws.append(None)
            fields.append(None)
        else:
            raws.append(split[0])
            fields.append(render_apache_fields(split[1], found))
    return raws, fields


def build_record_batch(
    partition: int, offsets: Sequence[int], times: Sequence[int],
    keys: Sequence[bytes | None], values: Sequence[bytes | None], *, source_format: Format,
    native: NativeRows | None = None,
) -> pa.RecordBatch:  # fmt: skip
    """One partition's records, in the order read, as rows of the archive's schema. With
    `native`, apache_combined rows are made in native code wherever it takes the record, the
    rest here."""
    count = len(values)
    made = (native.build_columns(pa.array(values, pa.binary()))
            if source_format == "apache_combined" and native is not None else None)  # fmt: skip
    declined = range(count) if made is None else np.flatnonzero(~made.made).tolist()
    raws, fields = _python_columns(partition, offsets, times, keys, values,
                                   indices=declined, source_format=source_format)  # fmt: skip
    if made is None:
        raw_column, fields_column = pa.array(raws, pa.string()), pa.array(fields, pa.string())
    elif not declined:  # the common batch: every row made natively
        raw_column, fields_column = made.raw, made.fields
    else:  # the Python way's rows into the places the native side declined
        mask = pa.array(~made.made)
        raw_column = pc.replace_with_mask(made.raw, mask, pa.array(raws, pa.string()))
        fields_column = pc.replace_with_mask(made.fields, mask, pa.array(fields, pa.string()))
    key_column = (pa.nulls(count, pa.string()) if all(k is None for k in keys) else
                  pa.array([None if k is None else k.decode("utf-8", "backslashreplace")
                            for k in keys], pa.string()))  # fmt: skip
    return pa.RecordBatch.from_arrays(
        [pa.array(np.full(count, partition, np.int32)), pa.array(offsets, pa.int64()),
         pa.array(times, pa.int64()), key_column, raw_column, fields_column],
        schema=SCHEMA,
    )  # fmt: skip


def _python_columns(
    partition: int, offsets: Sequence[int], times: Sequence[int],
    keys: Sequence[bytes | None], values: Sequence[bytes | None], *, indices: Sequence[int],
    source_format: Format,
) -> tuple[list[str], list[str]]:  # fmt: skip
    """(raw, fields) of the records at indices, made in Python."""
    chosen = [values[i] for i in indices]
    if source_format == "apache_combined":
        raws, fields = _apache_columns(chosen)
    else:
        raws, fields = [None] * len(chosen), [None] * len(chosen)
    for j, done in enumerate(fields):
        if done is None:  # as build_row makes it
            i = indices[j]
            row = build_row(partition, offsets[i], times[i], keys[i], values[i],
                            source_format=source_format)  # fmt: skip
            raws[j], fields[j] = row.raw, row.fields
    return raws, fields  # type: ignore[return-value]


def measure_batch(batch: pa.RecordBatch) -> int:
    """Characters of raw and fields (the size a roll counts, as len(row.raw) + len(row.fields))."""
    return sum(int(pc.sum(pc.utf8_length(batch.column(name))).as_py() or 0)
               for name in ("raw", "fields"))  # fmt: skip


def plan_hour_tables(table: pa.Table) -> dict[str, pa.Table]:
    """A batch's rows by the hour directory of their time, in offset order within each (as
    plan.plan_hour_files)."""
    hours = np.floor_divide(table.column("time_ms").to_numpy(), HOUR_MS)
    order = np.lexsort((table.column("offset").to_numpy(), hours))
    ordered, hours = table.take(pa.array(order)), hours[order]
    starts = [0, *(np.flatnonzero(np.diff(hours)) + 1).tolist(), len(hours)]
    return {build_hour_key(int(hours[a]) * HOUR_MS): ordered.slice(a, b - a)
            for a, b in pairwise(starts) if b > a}  # fmt: skip
