"""The Apache/NCSA combined access-log line, as the consumer accepts it.

    HOST SP IDENT SP USER SP "[" TIME "]" SP '"' REQUEST '"' SP STATUS SP BYTES TAIL WS* EOL

- HOST, IDENT, USER: one or more non-whitespace characters; TIME: one or more characters
  other than "]" (read later as CLF or the pipeline's strftime layout).
- REQUEST: METHOD, an optional space, PATH, and optionally SP PROTOCOL, where METHOD is
  [A-Z]+ or "-", PATH any run of characters other than '"' and "\\", or "\\" followed by
  any character (Apache writes a quote in the request as \\"), PROTOCOL "HTTP/" [0-9.]+.
- STATUS: three digits; BYTES: digits or "-" (read as 0).
- TAIL, the combined format's quoted referrer and user agent, each of which may be cut off:
  nothing, or SP '"' FIELD, or SP '"' FIELD '"', or SP '"' FIELD '"' SP '"' FIELD, or
  SP '"' FIELD '"' SP '"' FIELD '"'. A FIELD is any run of characters other than '"' and
  "\\", or "\\" followed by any character, plus one lone "\\" at the very end of a field
  cut off inside an escape. A field without its closing quote (cut off by a shipper's line
  limit) ends the line; it is dropped, never kept half (a cut user agent would be a wrong
  group).

Host, time, request, status and bytes are always intact in an accepted line; `referrer` and
`agent` are present only when complete. The expression is linear-time on any line: every
repetition is possessive or cannot overlap its neighbour (see tests/unit/test_apache_lines.py,
which runs it on 1 MB hostile lines).
"""

from __future__ import annotations

import re
from typing import Any

_FIELD = r'(?:[^"\\]++|\\.)*+\\?'
# the path: anything up to the request's closing quote but a final " HTTP/x.y"
_PATH = r'(?:[^"\\ ]++|\\.| (?!HTTP/[0-9.]++"))*+'
APACHE_COMBINED = re.compile(
    r"(?P<host>\S++) (?P<ident>\S++) (?P<user>\S++) \[(?P<time>[^\]]++)\] "
    rf'"(?P<method>[A-Z]++|-) ?+(?P<path>{_PATH})(?: (?P<protocol>HTTP/[0-9.]++))?" '
    r"(?P<status>[0-9]{3}) (?P<bytes>[0-9]++|-)"
    rf'(?: "(?P<referrer>{_FIELD})(?P<rq>")?(?: "(?P<agent>{_FIELD})(?P<aq>")?)?)?'
    r"\s*+\Z"
)


def parse_apache_combined(line: str) -> dict[str, Any] | str:
    """The line's fields, or why it is not an accepted line (a malformed_line detail)."""
    match = APACHE_COMBINED.match(line.rstrip("\n"))
    if match is None:
        return f"not an Apache combined log line: {line[:120]!r}"
    fields: dict[str, Any] = {k: v for k, v in match.groupdict().items() if v is not None}
    if fields.pop("rq", None) is None:  # the referrer was cut off: neither field is whole
        fields.pop("referrer", None)
    if fields.pop("aq", None) is None:
        fields.pop("agent", None)
    fields["status"] = int(fields["status"])
    fields["bytes"] = 0 if fields["bytes"] == "-" else int(fields["bytes"])
    return fields
