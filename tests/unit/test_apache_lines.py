"""The Apache/NCSA combined grammar (metricpipe_consumers/apache.py): which lines are accepted,
which fields they yield (cut-off trailing fields are dropped), and linear time on any line."""

from __future__ import annotations

import time
from typing import Any

import pytest

from metricpipe_consumers.records import Rejected, parse_apache_combined
from metricpipe_devstack.datasets import DatasetMissingError, iter_access_log_lines

HEAD = '83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /a.png HTTP/1.1" 200 2030'
INTACT = {"host": "83.149.9.216", "ident": "-", "user": "-",
          "time": "17/May/2015:10:05:03 +0000", "method": "GET", "path": "/a.png",
          "protocol": "HTTP/1.1", "status": 200, "bytes": 2030}  # fmt: skip


@pytest.mark.parametrize(
    ("tail", "extra"),
    [
        (
            ' "http://r/" "Mozilla/5.0 (X11)"',
            {"referrer": "http://r/", "agent": "Mozilla/5.0 (X11)"},
        ),
        (' "http://r/" "Mozilla/5.0 (X11', {"referrer": "http://r/"}),  # agent cut off
        (' "http://r/" "', {"referrer": "http://r/"}),  # cut right after the quote
        (' "http://r/" ', {"referrer": "http://r/"}),
        (' "http://r/"', {"referrer": "http://r/"}),
        (' "http://r', {}),  # referrer cut off: neither field is whole
        (' "', {}),
        ("", {}),  # the common log format
        ("   ", {}),
        (' "-" "a \\"quoted\\" agent"', {"referrer": "-", "agent": 'a \\"quoted\\" agent'}),
        (' "-" "cut inside an escape \\', {"referrer": "-"}),
        (' "-" "cut after an escape \\"', {"referrer": "-"}),
        (' "-" "-"\r', {"referrer": "-", "agent": "-"}),
    ],
)
def test_trailing_fields_may_be_cut_off(tail: str, extra: dict[str, Any]) -> None:
    assert parse_apache_combined(HEAD + tail) == {**INTACT, **extra}


@pytest.mark.parametrize(
    "line",
    [
        HEAD[:-5],  # status cut off: bytes missing
        '83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /a.png HTT',  # request cut off
        "83.149.9.216 - - [17/May/2015:10:05:03 +0000",
        HEAD + ' "-" "agent" trailing words',  # more fields than the combined format
        HEAD + ' "-" "agent" "third"',
        HEAD + ' "-"x',
        HEAD.replace(" 200 ", " 2000 "),
        HEAD.replace("GET", "get"),
        HEAD.replace(" - - ", "  - "),
        "",
        "not an access log line",
    ],
)
def test_lines_without_intact_required_fields_are_malformed(line: str) -> None:
    result = parse_apache_combined(line)
    assert isinstance(result, Rejected)
    assert result.reason == "malformed_line"


def test_request_forms() -> None:
    def request(text: str) -> tuple[Any, Any, Any]:
        fields = parse_apache_combined(HEAD.replace('"GET /a.png HTTP/1.1"', f'"{text}"'))
        assert isinstance(fields, dict)
        return fields.get("method"), fields.get("path"), fields.get("protocol")

    assert request("-") == ("-", "", None)
    assert request("GET /x y HTTP/1.0") == ("GET", "/x y", "HTTP/1.0")
    assert request("GET /x") == ("GET", "/x", None)
    assert request("POST/x") == ("POST", "/x", None)
    assert request("GET /x HTTP/2") == ("GET", "/x", "HTTP/2")
    assert request('GET /x\\"y HTTP/1.1') == ("GET", '/x\\"y', "HTTP/1.1")  # Apache's \\"
    assert request("GET /x\\\\ HTTP/1.1") == ("GET", "/x\\\\", "HTTP/1.1")


HOSTILE = 1_000_000  # characters: a record at the default size limit


@pytest.mark.parametrize(
    "line",
    [
        "a " * (HOSTILE // 2),
        "a - - [" + "x" * HOSTILE,
        'a - - [t] "' + "A" * HOSTILE,  # a method that never ends: each split of it tried?
        'a - - [t] "GET ' + " HTTP/1" * (HOSTILE // 7) + '"',
        'a - - [t] "GET ' + "A " * (HOSTILE // 2) + '" 200 1 x',
        HEAD + ' "' + "\\" * HOSTILE + 'x" "y" z',
        HEAD + ' "-" "' + '\\"' * (HOSTILE // 2) + '" z',
        HEAD + ' "-" "-"' + " " * HOSTILE + "x",
        "\t" * HOSTILE,
    ],
)
def test_hostile_lines_take_linear_time(line: str) -> None:
    """A line that makes a backtracking expression explore its splits: 1 MB of it is parsed
    in well under a second (measured 2-30 ms; the bound is for a loaded machine)."""
    started = time.perf_counter()
    parse_apache_combined(line)
    assert time.perf_counter() - started < 1.0


def test_the_real_log_is_accepted_whole(data_dir: Any) -> None:
    """Every line of the shared real log is accepted, the one whose user agent is cut off too,
    and each accepted line's status and bytes are the fields a split on quotes finds."""
    try:
        lines = list(iter_access_log_lines(data_dir))
    except DatasetMissingError as error:
        pytest.skip(str(error))
    cut = 0
    for line in lines:
        fields = parse_apache_combined(line)
        assert isinstance(fields, dict), line
        after_request = line.split('"')[2].split()  # ' 200 2030 ' -> ['200', '2030']
        assert fields["status"] == int(after_request[0])
        assert fields["bytes"] == (0 if after_request[1] == "-" else int(after_request[1]))
        cut += "agent" not in fields
    assert cut == 1  # the README's one truncated line
