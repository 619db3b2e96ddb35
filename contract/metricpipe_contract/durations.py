"""Go-style durations ("90s", "5m", "1h30m"), the format CEL's duration() understands."""

from __future__ import annotations

import re

DURATION_PATTERN = r"^([0-9]+(ms|s|m|h))+$"
_PART = re.compile(r"([0-9]+)(ms|s|m|h)")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration string; raises ValueError with the accepted format."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration like '90s', '5m' or '1h30m'")
    return sum(int(n) * _SECONDS[unit] for n, unit in _PART.findall(text))


def format_duration(seconds: float) -> str:
    """Compact human form for status columns: 42s, 5m3s, 2h1m."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"
