"""The one status writer (reconcile/statuswrite.py) with in-memory reads and patches: the first
attempt may use an object just listed, a conflict reads again and merges, nothing is lost."""

from __future__ import annotations

from typing import Any

from metricpipe_operator.reconcile.status import Condition
from metricpipe_operator.reconcile.statuswrite import build_merged_status, write_pipeline_status


class FakeApi:
    """The object's versions as the API server holds them; a patch under an older one is a
    conflict (409)."""

    def __init__(self, obj: dict[str, Any] | None, conflicts: int = 0) -> None:
        self.obj, self.conflicts, self.reads = obj, conflicts, 0
        self.patches: list[tuple[str | None, dict[str, Any]]] = []

    def read(self) -> dict[str, Any] | None:
        self.reads += 1
        return self.obj

    def patch(self, status: dict[str, Any], version: str | None) -> bool:
        if self.conflicts:
            self.conflicts -= 1  # someone else wrote just before
            return False
        self.patches.append((version, status))
        return True


def pipeline(version: str, conditions: list[dict[str, Any]]) -> dict[str, Any]:
    return {"metadata": {"namespace": "a", "name": "p", "generation": 2,
                         "resourceVersion": version},
            "status": {"conditions": conditions}}  # fmt: skip


THEIRS = {"type": "TopicReady", "status": "True", "reason": "TopicInSync", "message": "t",
          "lastTransitionTime": "2026-12-05T10:00:00Z", "observedGeneration": 2}  # fmt: skip
MINE = (Condition("FreshnessSLOMet", True, "Met", "freshness 10s vs target 1h00m"),)


def test_a_conflict_reads_again_and_keeps_the_other_writer_s_condition() -> None:
    listed = pipeline("5", [])
    api = FakeApi(pipeline("6", [THEIRS]), conflicts=1)
    build = build_merged_status({"lag": 3}, MINE)
    assert write_pipeline_status(api.read, api.patch, build, first=listed)
    ((version, status),) = api.patches
    assert version == "6"  # the object read after the conflict
    assert status["lag"] == 3
    kinds = {c["type"] for c in status["conditions"]}
    assert {"TopicReady", "FreshnessSLOMet", "Ready"} <= kinds
    assert api.reads == 1  # the first attempt used the listed object


def test_gone_nothing_to_write_and_always_newer() -> None:
    gone = FakeApi(None)
    assert write_pipeline_status(gone.read, gone.patch, lambda _: {"lag": 1})
    assert gone.patches == []
    quiet = FakeApi(pipeline("5", []))
    assert write_pipeline_status(quiet.read, quiet.patch, lambda _: None)
    assert quiet.patches == []
    busy = FakeApi(pipeline("5", []), conflicts=10)
    assert not write_pipeline_status(busy.read, busy.patch, lambda _: {"lag": 1}, attempts=3)
    assert busy.reads == 3
