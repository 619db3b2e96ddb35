"""What the API server cannot check in a spec, checked by the operator before it creates
anything (pure): the strftime layout, and names reserved for other namespaces."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from metricpipe_contract.model import MetricPipelineSpec
from metricpipe_contract.naming import decide_reserved_name

# Two instants whose every field differs from strptime's defaults (1900-01-01 00:00:00) and
# from each other, with the hour past noon in one (a 12-hour clock without %p is caught).
KNOWN_TIMES = (
    datetime(2031, 11, 27, 21, 47, 53, 123456, tzinfo=UTC),
    datetime(2029, 2, 3, 4, 5, 6, 789000, tzinfo=UTC),
)


@dataclass(frozen=True)
class Refusal:
    """Why the operator refuses a spec: a condition reason and a message saying what to change."""

    reason: str
    message: str


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_event_time_layout(layout: str, window_seconds: float) -> str | None:
    """None when the consumers can read event times with this layout; otherwise why not.

    The consumers parse with Python's strptime(value, layout) and take a time without a zone as
    UTC. A layout is usable when each known instant, formatted with it and parsed back, lands
    less than one window away from itself: the layout holds the date and the time of day at
    least to the window's resolution. A layout without directives, with a directive strptime
    does not know (%s, %Q), without the year, or with a 12-hour clock and no %p fails."""
    for known in KNOWN_TIMES:
        try:
            text = known.strftime(layout)
            parsed = datetime.strptime(text, layout)
        except (ValueError, TypeError, OverflowError, IndexError, re.error) as error:
            return (
                f"metric.eventTime.layout {layout!r} cannot be read back by strptime ({error}); "
                "use strftime directives such as '%d/%b/%Y:%H:%M:%S %z'"
            )
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        if abs((parsed - known).total_seconds()) >= window_seconds:
            return (
                f"metric.eventTime.layout {layout!r} reads {_iso(known)} (written as {text!r}) "
                f"back as {_iso(parsed.astimezone(UTC))}: it must hold the year, the date and "
                f"the time of day to within the window ({window_seconds:g} s), e.g. "
                "'%Y-%m-%d %H:%M:%S'"
            )
    return None


def decide_spec_refusal(spec: MetricPipelineSpec, namespace: str) -> Refusal | None:
    """The first reason the operator refuses this spec before creating anything, or None."""
    event_time = spec.metric.event_time
    if event_time.format == "strftime":
        problem = check_event_time_layout(event_time.layout or "", spec.window_seconds())
        if problem:
            return Refusal("InvalidEventTimeLayout", problem)
    reserved = decide_reserved_name(namespace, spec.topic.name, spec.sink.index)
    if reserved:
        return Refusal("ReservedName", reserved)
    return None
