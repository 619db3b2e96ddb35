"""Record filters of a pipeline (`spec.source.filters`, and a ratio's `spec.metric.numerator`):
exists, equals, or an RE2 match.

`matches` runs on RE2 (google-re2): matching time is linear in the value's length whatever
the pattern, so a pattern such as `^(a+)+$` cannot hang a consumer on a hostile value (on
Python's backtracking `re` its time doubles with each character: 2 s at 24, over an hour at
35). RE2 has no
backreferences or look-arounds; a pattern RE2 cannot compile is a `SpecError` naming the
filter, raised when the parser is built (the API server refuses such a spec first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

from metricpipe_contract.model import RecordFilter

# Verdicts of short values are cached: filter fields usually take few distinct values
# (status codes, methods, hosts), and a cache hit costs ~50 ns where RE2 costs ~0.6 µs. A
# field whose values rarely repeat turns the cache off (see RegexFilter.__call__).
CACHE_SIZE = 4096
CACHE_MAX_VALUE = 256  # characters; longer values are matched every time, never kept


class SpecError(ValueError):
    """The pipeline's spec cannot be applied; the message says what to change."""


@dataclass(frozen=True)
class CompiledFilter:
    path: list[str]
    exists: bool
    equals: str | None
    matcher: RegexFilter | None


class RegexFilter:
    """`search` semantics: true when the pattern matches anywhere in the value."""

    def __init__(self, pattern: str) -> None:
        options = re2.Options()
        options.log_errors = False  # the error comes back as an exception, worded by us
        options.never_capture = True  # a yes/no answer: no group spans to fill
        self.pattern = pattern
        self._regex = re2.compile(pattern, options)
        self._seen: dict[str, bool] = {}
        self._caching, self._hits = True, 0
        # The wrapper's `search` builds a generator and a match object per call (1.4 µs); its
        # compiled RE2 answers directly in 0.56 µs. Used when present (google-re2 1.x), else
        # the public call; tests/unit/test_record_filters.py checks both agree.
        native: Any = getattr(self._regex, "_regexp", None)
        self._native: Any = getattr(native, "Match", None)
        self._anchor = re2._re2.RE2.Anchor.UNANCHORED if self._native is not None else None

    def search(self, data: bytes) -> bool:
        if self._native is not None:
            return bool(self._native(self._anchor, data, 0, len(data))[0][0] >= 0)
        return self._regex.search(data) is not None

    def __call__(self, value: str) -> bool:
        known = self._seen.get(value)
        if known is not None:
            self._hits += 1
            return known
        data = value.encode("utf-8", "surrogatepass")  # RE2 reads UTF-8: no offset mapping
        if self._native is not None:  # inline: this runs once per record
            verdict = bool(self._native(self._anchor, data, 0, len(data))[0][0] >= 0)
        else:
            verdict = self._regex.search(data) is not None
        if self._caching and len(value) <= CACHE_MAX_VALUE:
            if len(self._seen) >= CACHE_SIZE:
                # A full cache: keep caching only if it answered at least as often as it
                # was filled (RTT values, all distinct, made it cost 0.3 µs a record).
                self._caching, self._hits = self._hits >= CACHE_SIZE, 0
                self._seen.clear()
            if self._caching:
                self._seen[value] = verdict
        return verdict


def compile_filters(
    filters: Sequence[RecordFilter], where: str = "spec.source.filters"
) -> list[CompiledFilter]:
    """The spec's filters (at `where` in the spec), ready to run; SpecError for a pattern RE2
    cannot compile."""
    compiled = []
    for index, spec in enumerate(filters):
        matcher = None
        if spec.matches is not None:
            try:
                matcher = RegexFilter(spec.matches)
            except re2.error as error:
                reason = error.args[0] if error.args else error
                if isinstance(reason, bytes):
                    reason = reason.decode("utf-8", "replace")
                raise SpecError(
                    f"{where}[{index}].matches {spec.matches!r} (field "
                    f"{spec.field}) is not a valid RE2 regular expression: {reason}. RE2 has "
                    "no backreferences or look-arounds; fix the pattern in the MetricPipeline"
                ) from error
        compiled.append(
            CompiledFilter(spec.field.split("."), bool(spec.exists), spec.equals, matcher)
        )
    return compiled


def select(record: dict[str, Any], filters: list[CompiledFilter]) -> bool:
    """Does the record pass every filter? A missing field fails any filter on it."""
    for spec in filters:
        value = lookup(record, spec.path)
        if value is None:
            return False
        if spec.exists:
            continue
        text = value if type(value) is str else str(value)
        if spec.equals is not None and text != spec.equals:
            return False
        if spec.matcher is not None and not spec.matcher(text):
            return False
    return True


def lookup(record: dict[str, Any], path: list[str]) -> Any:
    value: Any = record
    for part in path:
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
