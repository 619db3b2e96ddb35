"""Positions and the opaque paging cursor (pure).

A record's position is (hour, partition, offset): the order of the archive's layout (hour
directories; within an hour, files named by partition and offset range), so a page can stop
between two files and the next one skips every file before its cursor without reading it.
`oldest` walks positions upwards, `newest` downwards; a cursor is the last position the
previous page examined, and the next page continues strictly after it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Literal

from .errors import PeekError

Order = Literal["newest", "oldest"]
ORDERS: tuple[Order, ...] = ("newest", "oldest")
MAX_PARTITION = 2**31 - 1
MAX_OFFSET = 2**63 - 1
CURSOR_VERSION = 1


@dataclass(frozen=True, order=True)
class Position:
    hour_ms: int
    partition: int
    offset: int


def hour_end(hour_ms: int, order: Order) -> Position:
    """The last position of an hour in the walk's order (a page that stops after the hour)."""
    if order == "oldest":
        return Position(hour_ms, MAX_PARTITION, MAX_OFFSET)
    return Position(hour_ms, -1, -1)


def is_after(position: Position, cursor: Position | None, order: Order) -> bool:
    """Whether a position comes strictly after the cursor in the walk's order."""
    if cursor is None:
        return True
    return position > cursor if order == "oldest" else position < cursor


def encode_cursor(position: Position, order: Order) -> str:
    payload = {"v": CURSOR_VERSION, "o": order[0], "h": position.hour_ms,
               "p": position.partition, "x": position.offset}  # fmt: skip
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, order: Order) -> Position:
    """The position a cursor names; 400 for anything this service did not write or a cursor
    of the other order."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        payload = json.loads(raw)
        values = (payload["v"], payload["o"], payload["h"], payload["p"], payload["x"])
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise PeekError(400, "the cursor is not one this service wrote: start again without "
                        "cursor", parameter="cursor") from None  # fmt: skip
    version, first, hour, partition, offset = values
    if version != CURSOR_VERSION or not all(type(v) is int for v in (hour, partition, offset)):
        raise PeekError(400, "the cursor is not one this service wrote: start again without "
                        "cursor", parameter="cursor")  # fmt: skip
    if first != order[0]:
        raise PeekError(
            400, f"the cursor belongs to a walk of another order; ask with the order it was "
            f"made for ({'newest' if first == 'n' else 'oldest'}) or start without cursor",
            parameter="cursor",
        )  # fmt: skip
    return Position(hour, partition, offset)
