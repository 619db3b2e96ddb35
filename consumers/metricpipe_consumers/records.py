"""Turn Kafka record bytes into (event time, group key, value) — or a dead-letter reason, or
`Filtered` (removed by the source filters, with the event time it carries).

Pure functions shared by the consumer (stream and batch) and the reference implementation,
so all agree on what a record means. The clock is an argument (`now_ms`), never read here.
Reasons: oversize, not_utf8, malformed_json, ambiguous, malformed_line, missing_field,
bad_type, bad_time, future, oversize_key (and `late`, decided by the consumer against its
watermarks; `oversize_key` also for a group over the per-window cap, see state.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from metricpipe_contract.model import MetricPipelineSpec

from .apache import APACHE_COMBINED
from .apache import parse_apache_combined as _apache_fields
from .filters import SpecError, compile_filters, lookup, select

MAX_RECORD_BYTES = 1_048_576
MAX_FUTURE_SKEW_MS = 300_000
MAX_GROUP_KEY_BYTES = 512
MAX_GROUPS_PER_WINDOW = 10_000
CLF_FORMAT = "%d/%b/%Y:%H:%M:%S %z"
TIME_CACHE_SIZE = 4096
GROUP_SEPARATOR = "\x1f"  # engine.GROUP_SEPARATOR: joins a group's values into one column

__all__ = [
    "APACHE_COMBINED",
    "Filtered",
    "Parsed",
    "RecordLimits",
    "RecordParser",
    "Rejected",
    "SpecError",
    "parse_event_time",
]


class Parsed(NamedTuple):  # a tuple: built once per record, ~3x cheaper than a dataclass
    event_ms: int
    group: tuple[str, ...]
    value: float | None


class Filtered(NamedTuple):
    """Removed by the source filters: read, not counted. `event_ms` (None when the record's
    time cannot be read, or lies in the future) still advances its partition's watermark."""

    event_ms: int | None


@dataclass(frozen=True)
class RecordLimits:
    """What a record may be (ConsumerConfig: METRICPIPE_MAX_FUTURE_SKEW_SECONDS,
    METRICPIPE_MAX_GROUP_KEY_BYTES, METRICPIPE_MAX_GROUPS_PER_WINDOW)."""

    max_future_skew_ms: int = MAX_FUTURE_SKEW_MS  # event time ahead of now: `future`
    max_group_key_bytes: int = MAX_GROUP_KEY_BYTES  # UTF-8 bytes of one group-by value
    max_groups_per_window: int = MAX_GROUPS_PER_WINDOW  # per partition (applied by callers)


DEFAULT_LIMITS = RecordLimits()


@dataclass(frozen=True)
class Rejected:
    reason: str
    detail: str


class RecordParser:
    """Parses records of one pipeline (spec-dependent settings computed once).

    SpecError when the spec cannot be applied (a filter RE2 cannot compile)."""

    def __init__(
        self, spec: MetricPipelineSpec, max_bytes: int = MAX_RECORD_BYTES,
        *, limits: RecordLimits = DEFAULT_LIMITS,
    ) -> None:  # fmt: skip
        self.spec = spec
        self.max_bytes = max_bytes
        self.limits = limits
        self.skew_ms = limits.max_future_skew_ms
        self.max_key_bytes = limits.max_group_key_bytes
        # A value of at most this many characters is within the byte limit whatever it holds
        # (UTF-8 takes at most 4 bytes a character): the fast path's length check.
        self._safe_key_chars = limits.max_group_key_bytes // 4
        self.time_path = spec.metric.event_time.field.split(".")
        self.time_format = spec.metric.event_time.format
        self.time_layout = spec.metric.event_time.layout
        self.value_path = spec.metric.value_field.split(".") if spec.metric.value_field else None
        self.group_paths = [g.split(".") for g in spec.metric.group_by]
        self.filters = compile_filters(spec.source.filters)
        # ratio: a record's value is 1.0 when it passes the numerator's filters, else 0.0, so
        # a window's sum is its numerator and its count the denominator (both merge exactly)
        self.numerator = (
            compile_filters(spec.metric.numerator, "spec.metric.numerator")
            if spec.metric.aggregation == "ratio"
            else None
        )
        self.apache = spec.source.format == "apache_combined"
        self._times: dict[Any, int] = {}  # event-time text -> ms: neighbours share timestamps
        paths = [self.time_path, self.value_path or ["-"], *self.group_paths]
        self.flat = all(len(path) == 1 for path in paths)  # all fields top-level: fast path
        self.time_key = self.time_path[0]
        self.value_key = self.value_path[0] if self.value_path else None
        self.group_keys = [path[0] for path in self.group_paths]

    def parse(self, raw: bytes | None, now_ms: int) -> Parsed | Rejected | Filtered:
        """Parsed, Rejected (dead-letter) or Filtered. `now_ms`: the time the record is
        judged at; an event time more than the skew after it is `future`."""
        if raw is None:
            return Rejected("malformed_json", "empty record")
        if len(raw) > self.max_bytes:
            return Rejected("oversize", f"{len(raw)} bytes > {self.max_bytes}")
        record = self._decode_apache(raw) if self.apache else decode_json_object(raw)
        if isinstance(record, Rejected):
            return record
        latest = now_ms + self.skew_ms
        if self.filters and not select(record, self.filters):
            return Filtered(self._filtered_time(record, latest))
        fast = self._extract_fast(record, latest) if self.flat else None
        parsed = fast if fast is not None else self._extract_checked(record, latest)
        if self.numerator is None or not isinstance(parsed, Parsed):
            return parsed
        return parsed._replace(value=1.0 if select(record, self.numerator) else 0.0)

    def _extract_fast(self, record: dict[str, Any], latest: int) -> Parsed | None:
        """The common case in one pass: top-level fields of the expected types and an event
        time seen before. None sends the record to the checked path, which says what is wrong
        (the profile of the bench showed the per-field calls costing as much as the JSON)."""
        event_ms = self._event_ms(record.get(self.time_key))
        if type(event_ms) is not int or event_ms > latest:
            return None
        value = None
        if self.value_key is not None:
            number = record.get(self.value_key)
            if type(number) is not float and type(number) is not int:
                return None
            value = float(number)
            if not math.isfinite(value):
                return None
        group = []
        safe = self._safe_key_chars
        for key in self.group_keys:
            part = record.get(key)
            if type(part) is not str:
                if part is None or isinstance(part, dict | list):
                    return None
                part = str(part)
            if len(part) > safe or GROUP_SEPARATOR in part:
                return None
            group.append(part)
        return Parsed(event_ms, tuple(group), value)

    def _extract_checked(self, record: dict[str, Any], latest: int) -> Parsed | Rejected:
        when = lookup(record, self.time_path)
        if when is None:
            return Rejected("missing_field", f"event time field {'.'.join(self.time_path)}")
        event_ms = self._event_ms(when)
        if isinstance(event_ms, Rejected):
            return event_ms
        if event_ms > latest:
            return Rejected(
                "future", f"event time {event_ms} ms is more than {self.skew_ms} ms ahead"
            )
        value = self._value(record)
        if isinstance(value, Rejected):
            return value
        group = self._group(record)
        if isinstance(group, Rejected):
            return group
        return Parsed(event_ms, group, value)

    def _filtered_time(self, record: dict[str, Any], latest: int) -> int | None:
        when = record.get(self.time_key) if self.flat else lookup(record, self.time_path)
        if when is None:
            return None
        event_ms = self._event_ms(when)
        return event_ms if type(event_ms) is int and event_ms <= latest else None

    def _value(self, record: dict[str, Any]) -> float | Rejected | None:
        if self.value_path is None:
            return None
        raw_value = lookup(record, self.value_path)
        if raw_value is None:
            return Rejected("missing_field", f"value field {'.'.join(self.value_path)}")
        if isinstance(raw_value, bool) or not isinstance(raw_value, int | float):
            return Rejected("bad_type", f"value {raw_value!r} is not a number")
        value = float(raw_value)
        if not math.isfinite(value):
            return Rejected("bad_type", f"value {raw_value!r} is not finite")
        return value

    def _group(self, record: dict[str, Any]) -> tuple[str, ...] | Rejected:
        group = []
        for path in self.group_paths:
            name = ".".join(path)
            part = lookup(record, path)
            if part is None:
                return Rejected("missing_field", f"group-by field {name}")
            if isinstance(part, dict | list):
                return Rejected("bad_type", f"group-by field {name} is not a scalar")
            text = str(part)
            size = len(text.encode("utf-8", "surrogatepass"))
            if size > self.max_key_bytes:
                return Rejected(
                    "oversize_key",
                    f"group-by field {name} is {size} bytes > {self.max_key_bytes} "
                    "(METRICPIPE_MAX_GROUP_KEY_BYTES)",
                )
            if GROUP_SEPARATOR in text:
                return Rejected("bad_type", f"group-by field {name} contains U+001F")
            group.append(text)
        return tuple(group)

    def _decode_apache(self, raw: bytes) -> dict[str, Any] | Rejected:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            return Rejected("not_utf8", str(error))
        line = text
        if text.startswith("{"):  # a Fluentd record carrying the line in message/log
            wrapper = decode_json_object(raw)
            if isinstance(wrapper, Rejected):
                return wrapper
            line = str(wrapper.get("message") or wrapper.get("log") or "")
        return parse_apache_combined(line)

    def _event_ms(self, when: Any) -> int | Rejected:
        if isinstance(when, str) and (known := self._times.get(when)) is not None:
            return known
        try:
            event_ms = parse_event_time(when, self.time_format, self.time_layout)
        except (ValueError, TypeError, OverflowError) as error:
            return Rejected("bad_time", f"{when!r}: {error}")
        if isinstance(when, str):
            if len(self._times) >= TIME_CACHE_SIZE:
                self._times.clear()
            self._times[when] = event_ms
        return event_ms


def decode_json_object(raw: bytes) -> dict[str, Any] | Rejected:
    """A JSON object, or why not: not_utf8, malformed_json, or ambiguous (a key twice in one
    object — orjson would silently keep the last)."""
    try:  # orjson reads the bytes and checks UTF-8 itself: no decode pass for JSON
        record = orjson.loads(raw)
    except ValueError as error:
        return not_utf8(raw) or Rejected("malformed_json", str(error))
    if type(record) is not dict:
        return Rejected("malformed_json", "a record must be a JSON object")
    # the first test of `may_repeat_a_key`, inline: most records pass it (~0.1 µs)
    if raw.count(b",") >= len(record) and may_repeat_a_key(raw, record):
        return find_repeated_key(raw)
    return record


def may_repeat_a_key(raw: bytes, record: dict[str, Any]) -> bool:
    """Cheap necessary condition for a repeated key (false: certainly none).

    Every key in the text is followed by one colon outside strings, so the text has at least
    as many colons as key occurrences. Without a `\\u003x` escape (the only way to write a
    colon other than ":"), each decoded string holds exactly the colons of its literal, so
    the text has exactly as many colons as the decoded object re-encoded — unless a key
    occurred twice and one occurrence (its colon, and those in its value) was dropped.
    Cheaper, first: fewer commas than top-level keys means no repeat anywhere. A repeat at
    the top makes at least `len(record) + 1` members there, separated by `len(record)`
    commas; a repeat in a nested object needs a comma inside it besides the
    `len(record) - 1` between the top-level members."""
    members = len(record)
    if raw.count(b",") < members:
        return False  # see above: too few commas for any repeat
    colons = raw.count(b":")
    if colons == members:
        return False  # every colon is a top-level key's: no nested object, no repeat
    if b"\\u003" in raw:
        return True
    try:
        return colons != orjson.dumps(record).count(b":")
    except orjson.JSONEncodeError:  # nested deeper than orjson writes
        return True


def find_repeated_key(raw: bytes) -> dict[str, Any] | Rejected:
    """The exact check (~10x slower, for the few records `may_repeat_a_key` lets through)."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise _RepeatedKeyError(key)
            seen[key] = value
        return seen

    try:
        record = json.loads(raw, object_pairs_hook=unique)
    except _RepeatedKeyError as repeated:
        return Rejected("ambiguous", f"key {repeated.args[0][:100]!r} occurs twice in an object")
    except RecursionError:
        return Rejected("malformed_json", "nested too deeply to check for repeated keys")
    except ValueError as error:
        return Rejected("malformed_json", str(error))
    if not isinstance(record, dict):
        return Rejected("malformed_json", "a record must be a JSON object")
    return record


class _RepeatedKeyError(Exception):
    pass


def not_utf8(raw: bytes) -> Rejected | None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return Rejected("not_utf8", str(error))
    return None


def parse_event_time(when: Any, fmt: str, layout: str | None = None) -> int:
    """Event time in epoch milliseconds."""
    if fmt in ("epoch_seconds", "epoch_millis"):
        if isinstance(when, bool) or not isinstance(when, int | float | str):
            raise TypeError("epoch time must be a number")
        number = float(when)
        if not math.isfinite(number):
            raise ValueError("epoch time must be finite")
        return round(number * 1000) if fmt == "epoch_seconds" else round(number)
    if not isinstance(when, str):
        raise TypeError("time must be a string")
    if fmt == "rfc3339":
        parsed = datetime.fromisoformat(when)  # Python 3.11 reads "Z" and offsets
    elif fmt == "clf":
        parsed = datetime.strptime(when, CLF_FORMAT)
    else:
        parsed = datetime.strptime(when, layout or "")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return round(parsed.timestamp() * 1000)


def parse_apache_combined(line: str) -> dict[str, Any] | Rejected:
    """The fields of an accepted line (grammar: apache.py), or malformed_line."""
    fields = _apache_fields(line)
    return Rejected("malformed_line", fields) if isinstance(fields, str) else fields
