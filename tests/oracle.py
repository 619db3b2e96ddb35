"""The tests' independent oracle: what a MetricPipeline must compute from a topic's records.

Written from the documented semantics (docs/metricpipeline.md, docs/consumer.md "Records,
filters and event time", "Windows and finalisation", "Aggregations") and sharing no code with
the product: it imports nothing from `metricpipe_*`, takes the spec as the plain dict a user
applies, and has its own JSON decoding, Apache/NCSA scanner (by hand, not a regular
expression), event-time parsers (RFC 3339, CLF with any offset, epoch seconds/millis, strftime
layouts), duration parser, filters (Python's `re` where the consumer runs RE2), grouping and
exact percentiles. A bug made in the consumer's parsing, filtering, event time or grouping is
therefore not made here too.

Each record is counted in exactly one (window, group), or dead-lettered with one reason, or
filtered. The checks run in the documented order: size, encoding, syntax (JSON object without
a repeated key / an accepted access-log line), filters, event time (missing, unreadable,
future), value, group-by values; then, per partition in offset order, `late` against the
partition's watermark and the per-window group cap. A filtered record with a readable, not
future event time moves its partition's watermark; a record refused by the group cap was
timely and moves it too; other dead letters move nothing.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

MAX_RECORD_BYTES = 1_048_576
MAX_FUTURE_SKEW_MS = 300_000
MAX_GROUP_KEY_BYTES = 512
MAX_GROUPS_PER_WINDOW = 10_000
QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
UNIT_MS = {"ns": Decimal("0.000001"), "us": Decimal("0.001"), "µs": Decimal("0.001"),
           "ms": Decimal(1), "s": Decimal(1000), "m": Decimal(60_000),
           "h": Decimal(3_600_000)}  # fmt: skip


class Dead(Exception):  # noqa: N818  (a verdict, not an error)
    """A record the pipeline must dead-letter, with the documented reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Record:
    partition: int
    value: bytes | None
    timestamp_ms: int = 0  # Kafka's; 0: unknown (the wall clock judges `future`)


@dataclass
class Window:
    count: int = 0
    values: list[float] = field(default_factory=list)


@dataclass
class Outcome:
    windows: dict[tuple[int, tuple[str, ...]], Window]
    dead_letters: Counter[str]
    filtered: int

    def value(self, key: tuple[int, tuple[str, ...]], spec: dict[str, Any]) -> float | None:
        """The window's exact metric (percentiles by the spec's interpolation method)."""
        metric = spec["metric"]
        window = self.windows[key]
        aggregation = metric["aggregation"]
        if aggregation == "count":
            return float(window.count)
        if aggregation == "rate":
            return window.count / (duration_ms(metric.get("window", "1h")) / 1000)
        if aggregation == "ratio":  # values: 1.0 for a record in the numerator, else 0.0
            return math.fsum(window.values) / window.count
        return aggregate(
            window.values, aggregation, metric.get("percentileInterpolation", "linear")
        )


def aggregate(values: list[float], aggregation: str, method: str = "lower") -> float | None:
    if not values:
        return None
    if aggregation == "sum":
        return math.fsum(values)
    if aggregation == "avg":
        return math.fsum(values) / len(values)
    if aggregation in ("min", "max"):
        return min(values) if aggregation == "min" else max(values)
    return quantile(sorted(values), QUANTILES[aggregation], method)


def quantile(ordered: list[float], q: float, method: str = "lower") -> float:
    """numpy's definitions of the methods, computed here: position h = q * (n - 1)."""
    h = q * (len(ordered) - 1)
    below = math.floor(h)
    above = min(below + 1, len(ordered) - 1)
    if method == "lower":
        return ordered[below]
    if method == "higher":
        return ordered[math.ceil(h)]
    if method == "nearest":
        return ordered[round(h)]  # halves to even, as numpy
    return ordered[below] + (h - below) * (ordered[above] - ordered[below])


# -- durations ------------------------------------------------------------------------------


def duration_ms(text: str) -> int:
    """Go-style duration ("90s", "1h30m", "1.5h") in milliseconds."""
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return int(sum(Decimal(number) * UNIT_MS[unit] for number, unit in parts))


# -- decoding --------------------------------------------------------------------------------


def decode_json(text: str) -> dict[str, Any]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        if len(set(keys)) != len(keys):
            raise Dead("ambiguous")
        return dict(items)

    def constant(name: str) -> Any:
        raise Dead("malformed_json")  # NaN / Infinity are not JSON

    try:
        decoded = json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, RecursionError) as error:
        raise Dead("malformed_json") from error
    if not isinstance(decoded, dict):
        raise Dead("malformed_json")
    return decoded


def _quoted(line: str, at: int) -> tuple[str, int, bool]:
    """A quoted field starting after its opening quote: (text, next index, closed?). A
    backslash escapes the next character; a lone backslash may end a field cut off."""
    out = []
    i = at
    while i < len(line):
        char = line[i]
        if char == "\\":
            out.append(line[i : i + 2])
            i += 2
            continue
        if char == '"':
            return "".join(out), i + 1, True
        out.append(char)
        i += 1
    return "".join(out), len(line), False


def _request(text: str) -> dict[str, str]:
    i = 0
    while i < len(text) and "A" <= text[i] <= "Z":
        i += 1
    if i == 0:
        if not text.startswith("-"):
            raise Dead("malformed_line")
        i = 1
    fields = {"method": text[:i]}
    rest = text[i + 1 :] if text[i : i + 1] == " " else text[i:]
    cut = rest.rfind(" HTTP/")
    if cut >= 0 and re.fullmatch(r"[0-9.]+", rest[cut + 6 :]) and len(rest) > cut + 6:
        fields["protocol"] = rest[cut + 1 :]
        rest = rest[:cut]
    fields["path"] = rest
    return fields


def _token(line: str, at: int) -> tuple[str, int]:
    end = line.find(" ", at)
    token = line[at:end] if end >= 0 else ""
    if not token or any(c.isspace() for c in token):
        raise Dead("malformed_line")
    return token, end + 1


def scan_access_line(line: str) -> dict[str, Any]:
    """HOST IDENT USER [TIME] "REQUEST" STATUS BYTES ["REFERRER" ["AGENT"]], the quoted tail
    fields possibly cut off at the end of the line (a cut field is dropped)."""
    line = line.rstrip("\n")
    host, i = _token(line, 0)
    ident, i = _token(line, i)
    user, i = _token(line, i)
    close = line.find("]", i)
    if line[i : i + 1] != "[" or close <= i + 1 or line[close : close + 3] != '] "':
        raise Dead("malformed_line")
    fields: dict[str, Any] = {"host": host, "ident": ident, "user": user,
                              "time": line[i + 1 : close]}  # fmt: skip
    request, i, closed = _quoted(line, close + 3)
    if not closed or line[i : i + 1] != " ":
        raise Dead("malformed_line")
    fields.update(_request(request))
    status, size = line[i + 1 : i + 4], line[i + 5 :].split(" ", 1)[0].rstrip()
    if not (len(status) == 3 and status.isascii() and status.isdigit()):
        raise Dead("malformed_line")
    if line[i + 4 : i + 5] != " " or not (size == "-" or (size.isascii() and size.isdigit())):
        raise Dead("malformed_line")
    fields["status"], fields["bytes"] = int(status), 0 if size == "-" else int(size)
    i = i + 5 + len(size)
    for name in ("referrer", "agent"):
        if line[i:].strip() == "":
            return fields
        if line[i : i + 2] != ' "':
            raise Dead("malformed_line")
        text, i, closed = _quoted(line, i + 2)
        if not closed:
            return fields  # cut off by the shipper: dropped
        fields[name] = text
    if line[i:].strip() != "":
        raise Dead("malformed_line")
    return fields


# -- event time ------------------------------------------------------------------------------


def _civil_ms(year: int, month: int, day: int, hh: int, mm: int, ss: int, offset_min: int) -> int:
    try:
        moment = datetime(year, month, day, hh, mm, ss, tzinfo=UTC)
    except ValueError as error:
        raise Dead("bad_time") from error
    days = moment.date().toordinal() - 719_163  # 1970-01-01 is ordinal 719163
    return ((days * 24 + hh) * 60 + mm - offset_min) * 60_000 + ss * 1000


def _round_ms(micros: int) -> int:
    whole, rest = divmod(micros, 1000)
    return whole + (1 if rest > 500 or (rest == 500 and whole % 2) else 0)


RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?"
                     r"(?:([Zz])|([+-])(\d\d):(\d\d))")  # fmt: skip
CLF = re.compile(r"(\d\d)/([A-Za-z]{3})/(\d{4}):(\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def event_ms(when: Any, fmt: str, layout: str | None) -> int:
    if fmt in ("epoch_seconds", "epoch_millis"):
        if isinstance(when, bool) or not isinstance(when, int | float | str):
            raise Dead("bad_time")
        text = when if isinstance(when, str) else repr(when)
        if not NUMBER.fullmatch(text.strip()):
            raise Dead("bad_time")
        scaled = Decimal(text.strip()) * (1000 if fmt == "epoch_seconds" else 1)
        return int(scaled.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    if not isinstance(when, str):
        raise Dead("bad_time")
    if fmt == "rfc3339":
        match = RFC3339.fullmatch(when)
        if match is None:
            raise Dead("bad_time")
        y, mo, d, hh, mm, ss, frac, zulu, sign, oh, om = match.groups()
        offset = 0 if zulu else (int(oh) * 60 + int(om)) * (1 if sign == "+" else -1)
        micros = int((frac or "")[:6].ljust(6, "0"))
        whole = _civil_ms(int(y), int(mo), int(d), int(hh), int(mm), int(ss), offset)
        return whole + _round_ms(micros)
    if fmt == "clf":
        match = CLF.fullmatch(when)
        if match is None or match.group(2).title() not in MONTHS:
            raise Dead("bad_time")
        d, mon, y, hh, mm, ss, sign, oh, om = match.groups()
        offset = (int(oh) * 60 + int(om)) * (1 if sign == "+" else -1)
        month = MONTHS.index(mon.title()) + 1
        return _civil_ms(int(y), month, int(d), int(hh), int(mm), int(ss), offset)
    try:
        parsed = datetime.strptime(when, layout or "")
    except ValueError as error:
        raise Dead("bad_time") from error
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp()) * 1000 + _round_ms(parsed.microsecond)


# -- fields ----------------------------------------------------------------------------------


def lookup(record: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted path; JSON null counts as absent."""
    value: Any = record
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def text_of(value: Any) -> str:
    """A scalar as a filter or group key sees it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "True" if value else "False"
    return repr(value) if isinstance(value, float) else str(value)


def passes(record: dict[str, Any], filters: list[dict[str, Any]]) -> bool:
    for test in filters:
        value = lookup(record, test["field"])
        if value is None:
            return False
        if "equals" in test and text_of(value) != test["equals"]:
            return False
        if "matches" in test and re.search(test["matches"], text_of(value)) is None:
            return False
    return True


@dataclass(frozen=True)
class Limits:
    max_record_bytes: int = MAX_RECORD_BYTES
    max_future_skew_ms: int = MAX_FUTURE_SKEW_MS
    max_group_key_bytes: int = MAX_GROUP_KEY_BYTES
    max_groups_per_window: int = MAX_GROUPS_PER_WINDOW


class Judge:
    """One pipeline's verdict on one record: (event ms, group, value), or Dead, or filtered
    (a `Filtered` carrying the event time that moves the watermark, or None)."""

    def __init__(self, spec: dict[str, Any], limits: Limits) -> None:
        metric, source = spec["metric"], spec.get("source", {})
        self.limits = limits
        self.apache = source.get("format", "json") == "apache_combined"
        self.filters = list(source.get("filters") or [])
        clock = metric.get("eventTime") or {}
        self.time_field = clock.get("field", "time")
        self.time_format = clock.get("format", "rfc3339")
        self.layout = clock.get("layout")
        self.value_field = metric.get("valueField")
        self.numerator = metric.get("numerator") if metric["aggregation"] == "ratio" else None
        self.group_by = list(metric.get("groupBy") or [])

    def decode(self, raw: bytes | None) -> dict[str, Any]:
        if raw is None or raw == b"":
            raise Dead("malformed_json")
        if len(raw) > self.limits.max_record_bytes:
            raise Dead("oversize")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise Dead("not_utf8") from error
        if not self.apache:
            return decode_json(text)
        if text.startswith("{"):
            wrapper = decode_json(text)
            text = str(wrapper.get("message") or wrapper.get("log") or "")
        return scan_access_line(text)

    def judge(
        self, raw: bytes | None, judged_at_ms: int
    ) -> Filtered | tuple[int, tuple[str, ...], float | None]:
        record = self.decode(raw)
        latest = judged_at_ms + self.limits.max_future_skew_ms
        if not passes(record, self.filters):
            try:
                when = lookup(record, self.time_field)
                at = None if when is None else event_ms(when, self.time_format, self.layout)
            except Dead:
                at = None
            return Filtered(at if at is not None and at <= latest else None)
        when = lookup(record, self.time_field)
        if when is None:
            raise Dead("missing_field")
        at = event_ms(when, self.time_format, self.layout)
        if at > latest:
            raise Dead("future")
        return at, self.group(record), self.value(record)

    def value(self, record: dict[str, Any]) -> float | None:
        if self.numerator is not None:
            return 1.0 if passes(record, self.numerator) else 0.0
        if not self.value_field:
            return None
        value = lookup(record, self.value_field)
        if value is None:
            raise Dead("missing_field")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Dead("bad_type")
        number = float(value)
        if not math.isfinite(number):
            raise Dead("bad_type")
        return number

    def group(self, record: dict[str, Any]) -> tuple[str, ...]:
        keys = []
        for name in self.group_by:
            value = lookup(record, name)
            if value is None:
                raise Dead("missing_field")
            if isinstance(value, dict | list):
                raise Dead("bad_type")
            text = text_of(value)
            if len(text.encode("utf-8", "surrogatepass")) > self.limits.max_group_key_bytes:
                raise Dead("oversize_key")
            if "\x1f" in text:
                raise Dead("bad_type")
            keys.append(text)
        return tuple(keys)


@dataclass(frozen=True)
class Filtered:
    event_ms: int | None


def compute(spec: dict[str, Any], records: Iterable[Record], now_ms: int,
            limits: Limits = Limits(), clock: str = "stream") -> Outcome:  # fmt: skip
    """`records` in offset order within each partition; `now_ms` the wall clock the records
    are judged at (a record's Kafka timestamp, when earlier, judges it instead).

    `clock`: what makes a record `late`. "stream": its window closed (end + allowed lateness)
    before the partition's watermark (the newest event time read before it). "batch": it
    arrived — its Kafka time — at or after its window's end + allowed lateness
    (docs/batch.md)."""
    judge = Judge(spec, limits)
    window = duration_ms(spec["metric"].get("window", "1h"))
    lateness = duration_ms(spec["metric"].get("allowedLateness", "5m"))
    marks: dict[int, int] = {}
    admitted: dict[tuple[int, int], set[tuple[str, ...]]] = {}
    outcome = Outcome({}, Counter(), 0)
    for record in records:
        judged_at = record.timestamp_ms if 0 < record.timestamp_ms < now_ms else now_ms
        try:
            verdict = judge.judge(record.value, judged_at)
        except Dead as dead:
            outcome.dead_letters[dead.reason] += 1
            continue
        if isinstance(verdict, Filtered):
            outcome.filtered += 1
            if verdict.event_ms is not None:
                marks[record.partition] = max(marks.get(record.partition, verdict.event_ms),
                                              verdict.event_ms)  # fmt: skip
            continue
        at, group, value = verdict
        start = at - at % window
        mark = marks.get(record.partition) if clock == "stream" else record.timestamp_ms
        if mark is not None and start + window + lateness <= mark:
            outcome.dead_letters["late"] += 1
            continue
        if clock == "stream":
            marks[record.partition] = at if mark is None else max(mark, at)
        seen = admitted.setdefault((record.partition, start), set())
        if group not in seen and len(seen) >= limits.max_groups_per_window:
            outcome.dead_letters["oversize_key"] += 1
            continue
        seen.add(group)
        cell = outcome.windows.setdefault((start, group), Window())
        cell.count += 1
        if value is not None:
            cell.values.append(value)
    return outcome
