"""The operator's JSON logs carry the traceback of a failed handler, not a repr of it."""

from __future__ import annotations

import json
import logging

import pytest

from metricpipe_contract.logs import configure_logging


def test_a_stdlib_exception_is_rendered_with_its_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO", json_output=True)
    try:
        empty: dict[str, object] = {}
        empty["resources"]  # the failure under test
    except KeyError:
        logging.getLogger("kopf.objects").exception("Handler 'reconcile' failed")
    line = capsys.readouterr().err.strip().splitlines()[-1]
    record = json.loads(line)
    assert "Traceback (most recent call last)" in record["exception"]
    assert "KeyError: 'resources'" in record["exception"]
