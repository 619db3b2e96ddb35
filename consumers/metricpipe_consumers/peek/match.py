"""Record filters (pure): a substring or an RE2 pattern on the raw line, field equalities on
the parsed fields (dotted paths), all of them ANDed.

RE2 (google-re2 here, Arrow's own RE2 in scan.py's vectorised masks) matches in time linear
in the line whatever the pattern; a pattern RE2 cannot compile is a 400 naming it. A field's
value equals the parameter when its text does: strings as they are, numbers, booleans and
null as JSON writes them (`200`, `true`, `null`); objects and lists never equal anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

from .errors import LimitError, PeekError

MAX_FIELD_FILTERS = 16
# A value made of these characters is written as it is inside a JSON string or number, so it
# must appear verbatim in the fields' JSON of a record it equals: a cheap vectorised
# pre-filter before the JSON of the remaining rows is parsed.
VERBATIM = re.compile(r"^[A-Za-z0-9 ._:@+-]+$")
MISSING = object()


@dataclass(frozen=True)
class FieldEquals:
    path: str  # dotted: `request.method`; a key holding the dots itself is tried first
    value: str


@dataclass(frozen=True)
class RecordFilter:
    grep: str | None = None
    regex: str | None = None
    fields: tuple[FieldEquals, ...] = ()

    @property
    def on_raw(self) -> bool:
        return self.grep is not None or self.regex is not None


def build_filter(
    grep: str | None, regex: str | None, fields: Mapping[str, str], *, max_pattern_chars: int
) -> RecordFilter:
    for what, text in (("grep", grep), ("regex", regex)):
        if text is not None and len(text) > max_pattern_chars:
            raise LimitError(
                400, f"{what} is {len(text)} characters, more than {max_pattern_chars}",
                limit="max_pattern_chars", value=len(text), maximum=max_pattern_chars,
                hint="use a shorter pattern",
            )  # fmt: skip
    if regex is not None:
        options = re2.Options()
        options.log_errors = False
        try:
            re2.compile(regex, options)
        except re2.error as error:
            raise PeekError(400, f"regex {regex!r} is not an RE2 pattern: {error}",
                            parameter="regex") from None  # fmt: skip
    if len(fields) > MAX_FIELD_FILTERS:
        raise LimitError(
            400, f"{len(fields)} field filters, more than {MAX_FIELD_FILTERS}",
            limit="max_field_filters", value=len(fields), maximum=MAX_FIELD_FILTERS,
            hint="filter on fewer fields",
        )  # fmt: skip
    for path in fields:
        if not path or any(not part for part in path.split(".")):
            raise PeekError(400, f"field.{path}: a field path is names joined by dots",
                            parameter=f"field.{path}")  # fmt: skip
    equalities = tuple(FieldEquals(path, value) for path, value in sorted(fields.items()))
    return RecordFilter(grep, regex, equalities)


def lookup_field(fields: Any, path: str) -> Any:
    """The value at a dotted path, or MISSING."""
    if not isinstance(fields, dict):
        return MISSING
    if path in fields:
        return fields[path]
    value: Any = fields
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def field_text(value: Any) -> str | None:
    """The text a field's value is compared by; None for objects, lists and MISSING."""
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    return None


def match_fields(record_filter: RecordFilter, fields: Any) -> bool:
    return all(
        field_text(lookup_field(fields, wanted.path)) == wanted.value
        for wanted in record_filter.fields
    )


def parse_fields(text: str | None) -> Any:
    """A record's `fields` column as an object; the text itself when it is not JSON."""
    if text is None:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return text


def match_raw(record_filter: RecordFilter, raw: str) -> bool:
    """The reference of the raw-line filters (scan.py applies them vectorised, with Arrow)."""
    if record_filter.grep is not None and record_filter.grep not in raw:
        return False
    return record_filter.regex is None or re2.search(record_filter.regex, raw) is not None


def build_fields_prefilter(record_filter: RecordFilter) -> tuple[str, ...]:
    """Substrings every matching record's fields JSON contains (see VERBATIM)."""
    return tuple(w.value for w in record_filter.fields if VERBATIM.fullmatch(w.value))
