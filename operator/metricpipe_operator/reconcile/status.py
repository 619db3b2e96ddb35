"""Conditions in Kubernetes convention, and the pipeline's status (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# Ready needs each of these True (SpecValid first: a refused spec names itself as the reason)
CONDITION_TYPES = ("SpecValid", "TopicReady", "RouteReady", "ConsumerReady")
# Other parts (any other `*Ready` condition, e.g. SinkReady, which the ResourceManager writes
# from what it observes): a False one makes Ready False; Unknown (nothing observed yet) or
# absent does not hold Ready back.
OBSERVED_PARTS = ("SinkReady",)


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None: Unknown
    reason: str
    message: str

    @property
    def status_text(self) -> str:
        return "Unknown" if self.status is None else str(self.status)


def now_rfc3339(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(stamp: str) -> float:
    """Unix seconds of a Kubernetes timestamp ("2026-11-27T10:00:00Z")."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def build_ready(parts: list[Condition]) -> Condition:
    """Ready is True when every part is True; otherwise it names the first part that is not."""
    for part in parts:
        if part.status is not True:
            return Condition("Ready", part.status, f"{part.type}{part.reason}"[:128], part.message)
    return Condition("Ready", True, "AllReady", "topic, route and consumer are in place")


def merge_conditions(
    previous: list[dict[str, Any]],
    updates: list[Condition],
    generation: int,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Apply updates; lastTransitionTime changes only when a condition's status changes."""
    by_type = {c["type"]: dict(c) for c in previous}
    stamp = now_rfc3339(now)
    for update in updates:
        old = by_type.get(update.type) or {}
        changed = old.get("status") != update.status_text
        by_type[update.type] = {
            "type": update.type,
            "status": update.status_text,
            "reason": update.reason,
            "message": update.message[:4096],
            "lastTransitionTime": stamp if changed else old.get("lastTransitionTime", stamp),
            "observedGeneration": generation,
        }
    return sorted(by_type.values(), key=lambda c: _order(c["type"]))


def _order(kind: str) -> tuple[int, str]:
    order = ("Ready", *CONDITION_TYPES, *OBSERVED_PARTS)
    return (order.index(kind) if kind in order else 99, kind)


def condition_from_dict(item: dict[str, Any]) -> Condition:
    status = {"True": True, "False": False}.get(str(item.get("status")))
    return Condition(
        str(item["type"]), status, str(item.get("reason", "")), str(item.get("message", ""))
    )


def rebuild_ready(conditions: list[dict[str, Any]], generation: int) -> list[dict[str, Any]]:
    """Recompute Ready from the part conditions after one of them changed. Every writer of a
    part calls this on the conditions it is about to write, so Ready always follows the parts
    the object holds (not only the ones that writer knows)."""
    present = {c["type"]: condition_from_dict(c) for c in conditions}
    parts = [
        present.get(kind) or Condition(kind, None, "Pending", f"{kind} not evaluated yet")
        for kind in CONDITION_TYPES
    ]
    parts += [
        part for kind, part in sorted(present.items(), key=lambda item: _order(item[0]))
        if kind.endswith("Ready") and kind not in ("Ready", *CONDITION_TYPES)
        and part.status is False
    ]  # fmt: skip
    return merge_conditions(conditions, [build_ready(parts)], generation)
