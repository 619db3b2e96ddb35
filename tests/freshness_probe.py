"""Freshness measured from the outside, the SLO's own measure: the probe knows what the
producer sent — how many records per event second — and reads what the sink holds over plain
HTTP (its own `_search` requests, none of the product's code). The pipeline under test groups
by the record's event-time text (`groupBy: [time]`), so the sink's documents count each
second's records: the partials (summed over partitions) and the final documents.

True freshness at t = t - the oldest event second whose records are not all in the sink (0 when
all are): exactly the product's definition (the time up to which the sink reflects every
partition), computed from what was produced and what is stored. The true delay of a window is
the first time its final documents hold every record sent for it, less the window's end."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import requests

PAGE = 10_000
# Whole event seconds (the records' time text), and the search engine's 1 s refresh: what the
# probe reads may be that much behind what a source read from the same sink.
BAND = 2.0


@dataclass(frozen=True)
class Reading:
    at: float  # Unix seconds, when the sink was read
    frontier: float  # the sink held every record sent with an event time before this
    excess: tuple[int, ...]  # seconds whose sink count exceeds what was sent (double counts)

    @property
    def freshness(self) -> float:
        """True freshness, seconds."""
        return max(0.0, self.at - self.frontier)


def event_second(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp())


def judge(sent: Counter[int], partials: Counter[int], finals: Counter[int], now: float) -> Reading:
    """What the sink reflects at `now`: records per event second sent, held by the partials
    (summed over partitions) or the finals."""
    held = {s: max(partials[s], finals[s]) for s in set(partials) | set(finals)}
    incomplete = [s for s, n in sent.items() if held.get(s, 0) < n]
    excess = tuple(sorted(s for s, n in held.items() if n > sent.get(s, 0)))
    return Reading(now, min(incomplete) if incomplete else now, excess)


@dataclass
class FreshnessProbe:
    endpoint: str  # the search engine's URL
    index: str  # the pipeline's metric index
    window_seconds: int
    sent: Counter[int] = field(default_factory=Counter)  # event second -> records produced
    final_at: dict[int, float] = field(default_factory=dict)  # window start -> complete since
    readings: list[Reading] = field(default_factory=list)
    unanswered: int = 0  # reads the index answered with 503 (no reading taken)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def produced(self, when: str) -> None:
        """The producer sent one record whose event time is `when` (RFC 3339, whole second)."""
        with self.lock:
            self.sent[event_second(when)] += 1

    def read(self) -> Reading | None:
        """One reading of the sink (as users see it: no refresh forced); None when the index
        did not answer (a 503 while its shards are still being allocated): no observation."""
        partials: Counter[int] = Counter()
        finals: Counter[int] = Counter()
        documents = self._documents()
        if documents is None:
            self.unanswered += 1
            return None
        for doc in documents:
            second = event_second(str(doc["group"]["time"]))
            (finals if doc["final"] else partials)[second] += int(doc["count"])
        now = time.time()
        with self.lock:  # after the sink: a record sent meanwhile makes a second incomplete
            sent = Counter(self.sent)
        reading = judge(sent, partials, finals, now)
        self.readings.append(reading)
        self._note_finals(sent, finals, now)
        return reading

    @contextmanager
    def watch(self, interval: float = 1.0) -> Iterator[FreshnessProbe]:
        """Read the sink every `interval` seconds in the background, while the block runs. A
        read that fails ends the readings and fails the block when it ends: the probe never
        stops observing silently."""
        stop = threading.Event()
        failed: list[BaseException] = []

        def loop() -> None:
            try:
                while not stop.wait(interval):
                    self.read()
            except Exception as error:  # handed to the test's thread below
                failed.append(error)

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(timeout=60)
        if failed:
            raise AssertionError(f"the freshness probe stopped reading: {failed[0]!r}")

    def frontier_disagreement(
        self, at: float, frontier: float, staleness: float, band: float = BAND
    ) -> str:
        """Why a watermark some source reported at `at` — the time up to which it says the
        sink reflects every record — disagrees with the truth ("" when it agrees). The source
        may be up to `staleness` seconds old (a scrape, a cycle), so it must lie between the
        true frontiers read in [at - staleness, at], widened by `band`. Claiming more than the
        sink held fails; so does lagging the truth by more than the staleness."""
        window = [r.frontier for r in self._window(at, staleness)]
        if not window:
            return (
                f"watermark {frontier:.1f} at {at:.0f}: no probe reading within {staleness:.0f} s"
            )
        if min(window) - band <= frontier <= max(window) + band:
            return ""
        return (f"watermark {at - frontier:.1f} s behind at {at:.0f}: the truth was "
                f"{at - max(window):.1f}-{at - min(window):.1f} s behind")  # fmt: skip

    def disagreement(
        self, at: float, freshness: float, staleness: float, band: float = BAND
    ) -> str:
        """Why a freshness value some source reported at `at`, computed at an unknown moment
        of the last `staleness` seconds, disagrees with the truth ("" when it agrees): it must
        be within `band` of what the true freshness could have been at some moment of that
        span. Between two readings (t1, f1) and (t2, f2) the truth is not read, but it grows
        at most 1 s per second and only drops when the sink catches up, so at any moment in
        between it lay in [f2 - (t2 - t1), f1 + (t2 - t1)]: a value reported while the sink
        drains a backlog faster than the probe reads passes, one no moment allowed fails."""
        window = self._window(at, staleness)
        if not window:
            return f"{freshness:.1f} s at {at:.0f}: no probe reading within {staleness:.0f} s"
        spans = [(r.freshness, r.freshness) for r in window] + [
            (later.freshness - (later.at - earlier.at), earlier.freshness + later.at - earlier.at)
            for earlier, later in pairwise(window)
        ]
        if any(low - band <= freshness <= high + band for low, high in spans):
            return ""
        truths = [r.freshness for r in window]
        return (f"{freshness:.1f} s at {at:.0f}: the true freshness was "
                f"{min(truths):.1f}-{max(truths):.1f} s")  # fmt: skip

    def _window(self, at: float, staleness: float) -> list[Reading]:
        return [r for r in self.readings if at - staleness <= r.at <= at + 0.5]

    def timeline(self) -> list[tuple[int, float]]:
        """(seconds since the first reading, true freshness) of every reading."""
        first = self.readings[0].at if self.readings else 0.0
        return [(round(r.at - first), round(r.freshness, 1)) for r in self.readings]

    def window_delays(self) -> dict[int, float]:
        """Window start -> seconds from its end until its finals held all its records (as
        first seen by a reading)."""
        return {w: at - (w + self.window_seconds) for w, at in sorted(self.final_at.items())}

    def _note_finals(self, sent: Counter[int], finals: Counter[int], now: float) -> None:
        width = self.window_seconds
        windows = {s - s % width for s in sent}
        for window in windows - set(self.final_at):
            seconds = range(window, window + width)
            if now < window + width:
                continue  # still open: more may be sent
            if all(finals[s] == sent[s] for s in seconds):
                self.final_at[window] = now

    def _documents(self) -> list[dict[str, Any]] | None:
        response = requests.post(
            f"{self.endpoint}/{self.index}/_search",
            json={"query": {"match_all": {}}, "size": PAGE,
                  "_source": ["group", "count", "final"]},
            timeout=30,
        )  # fmt: skip
        if response.status_code == 404:
            return []  # no document written yet
        if response.status_code == 503:  # the index exists, its shards are not searchable yet
            return None
        response.raise_for_status()
        hits = response.json()["hits"]["hits"]
        assert len(hits) < PAGE, "the probe's index holds more documents than one page"
        return [hit["_source"] for hit in hits]
