"""Leader election's decisions (leader.py) by table, and its loop with an in-memory Lease."""

from __future__ import annotations

import threading

import pytest
from pydantic import ValidationError

from metricpipe_operator.config import OperatorConfig
from metricpipe_operator.leader import LeaderElection, LeaderLease, decide_still_leading


@pytest.mark.parametrize(
    ("other", "since", "deadline", "leading"),
    [
        (None, 3.0, 10.0, True),  # one failed renewal: the API server may be back next try
        (None, 10.0, 10.0, False),  # no renewal for the deadline: stop before the Lease expires
        ("replica-b", 0.5, 10.0, False),  # someone else holds it: stop at once
    ],
)  # fmt: skip
def test_decide_still_leading(other: str | None, since: float, deadline: float,
                              leading: bool) -> None:  # fmt: skip
    assert decide_still_leading(other, since, deadline) is leading


class ScriptedLease(LeaderLease):
    """Answers ensure_held from a script (True/False, or a holder's name: held by another)."""

    def __init__(self, answers: list[bool | str]) -> None:
        self.answers = answers
        self.name, self.other_holder, self.held, self.released = "l", None, False, False

    def ensure_held(self) -> bool:
        answer = self.answers.pop(0) if self.answers else False
        self.other_holder = answer if isinstance(answer, str) else None
        self.held = answer is True
        return self.held

    def release(self) -> None:
        self.released = True


def run_election(answers: list[bool | str], deadline: float) -> tuple[str, ScriptedLease]:
    lease = ScriptedLease(answers)
    lost: list[str] = []
    done = threading.Event()

    def on_lost(why: str) -> None:
        lost.append(why)
        done.set()

    election = LeaderElection(lease, retry_seconds=0.01, renew_deadline=deadline,
                              on_lost=on_lost)  # fmt: skip
    election.acquire()  # returns once held
    assert done.wait(5), "leadership was never given up"
    election.release()
    return lost[0], lease


def test_standby_until_held_then_stop_when_another_holds_it() -> None:
    why, lease = run_election([False, "replica-b", True, True, "replica-b"], deadline=60)
    assert why == "the lease is held by replica-b"
    assert lease.released


def test_a_leader_that_cannot_renew_stops_at_the_deadline() -> None:
    why, _ = run_election([True, True], deadline=0.1)  # then every renewal fails
    assert why.startswith("no renewal for")


def test_the_renew_deadline_must_be_below_the_lease_duration() -> None:
    with pytest.raises(ValidationError, match="must be below"):
        OperatorConfig(lease_duration_seconds=10, lease_renew_deadline_seconds=10)
