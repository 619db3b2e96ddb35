"""Without the shared data the data-driven tests replay the seeded generator (with a
warning), of the real files' shape and volume."""

from __future__ import annotations

from pathlib import Path

import pytest

import oracle
from shared_data import access_log_lines, rtt_records


def test_rtt_fallback_has_the_real_archives_shape(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="synthetic generator"):
        records = rtt_records(tmp_path / "absent")
    assert 350_000 < len(records) < 450_000
    assert len({r["probe"] for r in records}) == 50
    lost = sum(1 for r in records if r["rtt"] in (-3.0, -4.0))
    assert 0 < lost < len(records) // 100


def test_access_log_fallback_parses_and_spans_days(tmp_path: Path) -> None:
    with pytest.warns(UserWarning, match="synthetic generator"):
        lines = access_log_lines(tmp_path / "absent")
    assert 9_000 < len(lines) < 11_000
    times = [oracle.event_ms(oracle.scan_access_line(line)["time"], "clf", None)
             for line in lines]  # fmt: skip
    assert times == sorted(times)
    assert (times[-1] - times[0]) / 3_600_000 > 80
