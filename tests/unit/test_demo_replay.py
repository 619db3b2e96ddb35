"""The demo's traffic: re-timing, log-line rewriting, the burst, the merged plan, the synthetic
generator, and the replayer's pacing against a fake producer on a fake clock (no servers)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from threading import Event
from typing import Any

import pytest

from metricpipe_consumers.records import APACHE_COMBINED, parse_event_time
from metricpipe_demo.cli import build_parser, format_progress, main
from metricpipe_demo.generator import (
    SyntheticSettings,
    describe_synthetic,
    iter_synthetic_access_lines,
    iter_synthetic_rtt,
)
from metricpipe_demo.replay import ReplayProgress, ReplayStats, replay
from metricpipe_demo.retime import (
    Retiming,
    build_rtt_payload,
    format_rfc3339,
    parse_clf_time,
    rewrite_clf_timestamp,
)
from metricpipe_demo.schedule import (
    HTTP,
    RTT,
    Burst,
    Emission,
    LogLine,
    PlanSettings,
    RttPoint,
    Source,
    iter_burst,
    iter_demo_plan,
    iter_in_order,
    iter_merged,
)
from metricpipe_demo.sources import load_demo_sources
from metricpipe_devstack.datasets import ACCESS_LOG, RTT_ARCHIVE

SOURCE_START = datetime(2016, 10, 1, 0, 3, 14, tzinfo=UTC)
DEMO_START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
T0 = SOURCE_START.timestamp()

LINES = [
    # real lines of the shared access log
    b'83.149.9.216 - - [17/May/2015:10:05:03 +0000] "GET /presentations/logstash-monitorama-2013'
    b'/images/kibana-search.png HTTP/1.1" 200 203023 "http://semicomplete.com/presentations/'
    b'logstash-monitorama-2013/" "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_1) AppleWebKit/'
    b'537.36 (KHTML, like Gecko) Chrome/32.0.1700.77 Safari/537.36"',
    b'66.249.73.135 - - [17/May/2015:10:05:40 +0000] "GET /blog/tags/ipv6 HTTP/1.1" 200 12251 '
    b'"-" "Mozilla/5.0 (iPhone; CPU iPhone OS 6_0 like Mac OS X) AppleWebKit/536.26 (KHTML, '
    b"like Gecko) Version/6.0 Mobile/10A5376e Safari/8536.25 (compatible; Googlebot/2.1; "
    b'+http://www.google.com/bot.html)"',
    # odd ones: escaped quotes, brackets and a timestamp-like text in the agent, dashes,
    # a user name, another zone, bytes that are not UTF-8
    b'10.0.0.1 - frank [17/May/2015:23:59:59 -0700] "GET /a?q=%22x%22&b=[1] HTTP/1.0" 500 - "-" '
    b'"Mozilla/5.0 [FBAN/FBIOS;FBAV/6.0] [01/Jan/1999:00:00:00 +0000] \\"quoted\\""',
    b'127.0.0.1 - - [01/Jan/2016:00:00:00 +0530] "-" 408 0 "-" "-"',
    b'192.0.2.7 - - [29/Feb/2016:12:00:00 +0000] "GET /caf\xc3\xa9 HTTP/1.1" 503 5 "-" "\xff\xfe"',
]


def test_retiming_maps_starts_and_scales_durations() -> None:
    retiming = Retiming(SOURCE_START, DEMO_START, speed=60)
    assert retiming.demo_time(SOURCE_START) == DEMO_START
    assert retiming.demo_time(SOURCE_START + timedelta(hours=1)) == DEMO_START + timedelta(
        minutes=1
    )
    assert retiming.demo_duration(timedelta(hours=1)) == timedelta(seconds=60)
    assert retiming.source_duration(timedelta(seconds=60)) == timedelta(hours=1)
    assert retiming.demo_duration(timedelta(minutes=5)) == timedelta(seconds=5)
    assert retiming.source_time(DEMO_START - timedelta(seconds=1)) == SOURCE_START - timedelta(
        minutes=1
    )  # before the start works too


@pytest.mark.parametrize("speed", [1.0, 7.5, 60.0, 360.0, 3600.0])
def test_retiming_round_trips(speed: float) -> None:
    retiming = Retiming(SOURCE_START, DEMO_START, speed)
    for offset in (timedelta(0), timedelta(seconds=1), timedelta(hours=5, microseconds=17),
                   timedelta(days=91, seconds=3599), timedelta(seconds=-42)):  # fmt: skip
        source = SOURCE_START + offset
        back = retiming.source_time(retiming.demo_time(source))
        assert abs(back - source) <= timedelta(microseconds=speed)  # demo clock: µs resolution
        demo = DEMO_START + offset
        assert abs(retiming.demo_time(retiming.source_time(demo)) - demo) <= timedelta(
            microseconds=1
        )
        # the UNIX-seconds fast path agrees with the datetime path
        fast = retiming.demo_epoch(source.timestamp())
        assert fast == pytest.approx(retiming.demo_time(source).timestamp(), abs=1e-5)
        assert retiming.source_epoch(fast) == pytest.approx(source.timestamp(), abs=1e-3)


@pytest.mark.parametrize(
    ("source_start", "demo_start", "speed"),
    [
        (SOURCE_START.replace(tzinfo=None), DEMO_START, 60.0),
        (SOURCE_START, DEMO_START.replace(tzinfo=None), 60.0),
        (SOURCE_START, DEMO_START, 0.0),
        (SOURCE_START, DEMO_START, -1.0),
        (SOURCE_START, DEMO_START, float("nan")),
        (SOURCE_START, DEMO_START, float("inf")),
    ],
)
def test_retiming_rejects_naive_times_and_bad_speeds(
    source_start: datetime, demo_start: datetime, speed: float
) -> None:
    with pytest.raises(ValueError, match=r"timezone-aware|speed"):
        Retiming(source_start, demo_start, speed)


def test_rtt_payload_has_the_documented_shape_and_the_consumer_reads_its_time() -> None:
    when = datetime(2026, 3, 1, 12, 0, 5, 250_999, tzinfo=UTC)
    record = json.loads(build_rtt_payload("10342", 23.4, when))
    assert record == {"time": "2026-03-01T12:00:05.250Z", "probe": "10342", "rtt": 23.4}
    assert parse_event_time(record["time"], "rfc3339") == 1772366405250
    lost = json.loads(build_rtt_payload("10342", -3.0, when))
    assert lost["rtt"] == -3.0  # lost pings stay as the source marks them
    other_zone = when.astimezone(timezone(timedelta(hours=-7)))
    assert format_rfc3339(other_zone) == "2026-03-01T12:00:05.250Z"


@pytest.mark.parametrize("line", LINES)
def test_rewrite_changes_only_the_timestamp(line: bytes) -> None:
    when = datetime(2026, 3, 1, 12, 0, 5, 900_000, tzinfo=UTC)
    rewritten = rewrite_clf_timestamp(line, when)
    old_start, new_start = line.index(b" ["), rewritten.index(b" [")
    assert rewritten[:new_start] == line[:old_start]
    assert rewritten[rewritten.index(b"] ") :] == line[line.index(b"] ") :]
    # whole seconds, truncated; in the line's own zone
    assert parse_clf_time(rewritten) == when.replace(microsecond=0)
    assert parse_clf_time(rewritten).utcoffset() == parse_clf_time(line).utcoffset()
    # and the consumer still reads the line and its event time
    text = rewritten.decode("utf-8", errors="replace")
    match = APACHE_COMBINED.match(text)
    assert match is not None
    assert parse_event_time(match["time"], "clf") == 1772366405000


def test_rewrite_examples_and_errors() -> None:
    when = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
    assert b"[01/Mar/2026:05:00:05 -0700]" in rewrite_clf_timestamp(LINES[2], when)
    assert b"[01/Mar/2026:17:30:05 +0530]" in rewrite_clf_timestamp(LINES[3], when)
    assert LINES[2].count(b"[01/Jan/1999:00:00:00 +0000]") == 1  # the agent's text is kept
    assert rewrite_clf_timestamp(LINES[2], when).count(b"[01/Jan/1999:00:00:00 +0000]") == 1
    with pytest.raises(ValueError, match="no \\[dd/Mon"):
        rewrite_clf_timestamp(b'1.2.3.4 - - [2015-05-17 10:05:03] "GET / HTTP/1.1" 200 1', when)
    assert parse_clf_time(LINES[0]) == datetime(2015, 5, 17, 10, 5, 3, tzinfo=UTC)


def _points(*times: float) -> list[RttPoint]:
    return [RttPoint(T0 + t, "p1", float(i)) for i, t in enumerate(times)]


def test_burst_copies_and_spacing() -> None:
    burst = Burst(T0 + 100, T0 + 200, factor=6)
    records = _points(0, 100, 160, 190, 200, 260)
    emitted = list(iter_burst(records, burst))
    copies = {r.rtt: [round(t - T0, 6) for t, rr, _ in emitted if rr is r] for r in records}
    assert copies[0.0] == [0]  # before the burst: once
    assert copies[1.0] == [100, 110, 120, 130, 140, 150]  # spread over the gap to 160
    assert copies[2.0] == [160, 165, 170, 175, 180, 185]
    assert copies[3.0] == pytest.approx([190 + k * 10 / 6 for k in range(6)])  # capped at end
    assert copies[4.0] == [200]  # the end is exclusive
    assert copies[5.0] == [260]
    assert [copy for _, r, copy in emitted if r.rtt == 1.0] == [0, 1, 2, 3, 4, 5]
    times = [t for t, _, _ in emitted]
    assert times == sorted(times)
    assert len(emitted) == 3 * 6 + 3


def test_burst_spreads_records_that_share_a_time_and_the_last_record() -> None:
    burst = Burst(T0, T0 + 60, factor=3)
    records = _points(0, 0, 30)
    emitted = [(round(t - T0, 6), r.rtt) for t, r, _ in iter_burst(records, burst)]
    assert emitted == [
        (0, 0.0), (0, 1.0), (10, 0.0), (10, 1.0), (20, 0.0), (20, 1.0),
        (30, 2.0), (40, 2.0), (50, 2.0),  # the last record spreads up to the burst's end
    ]  # fmt: skip
    assert list(iter_burst(records, None)) == [(r.time, r, 0) for r in records]
    assert list(iter_burst(records, Burst(T0, T0 + 60, 1))) == [(r.time, r, 0) for r in records]
    with pytest.raises(ValueError, match="at least 1"):
        Burst(T0, T0 + 1, 0)
    with pytest.raises(ValueError, match="before its start"):
        Burst(T0 + 1, T0, 2)


def _http_lines(*seconds: int) -> list[LogLine]:
    base = datetime(2015, 5, 17, 10, 5, 0, tzinfo=UTC)
    lines = []
    for second in seconds:
        when = base + timedelta(seconds=second)
        lines.append(LogLine(when.timestamp(), rewrite_clf_timestamp(LINES[0], when)))
    return lines


def test_plan_merges_sources_in_due_order_with_retimed_payloads() -> None:
    rtt = Source(T0, _points(0, 240, 480, 720, 3600, 7200), "rtt")
    http_lines = _http_lines(0, 0, 30, 300, 3599, 3600)
    http = Source(http_lines[0].time, http_lines, "http")
    settings = PlanSettings(speed=60, hours=2)
    plan = list(iter_demo_plan(rtt, http, demo_start=DEMO_START, settings=settings))
    dues = [e.due for e in plan]
    assert dues == sorted(dues)
    assert len([e for e in plan if e.topic_key == RTT]) == 5  # 7200 s is outside 2 h
    assert len([e for e in plan if e.topic_key == HTTP]) == 6
    assert [e.topic_key for e in plan[:3]] == [RTT, HTTP, HTTP]  # ties: stream order
    start = DEMO_START.timestamp()
    assert [round(e.due - start, 6) for e in plan if e.topic_key == RTT] == [0, 4, 8, 12, 60]
    for emission in plan:
        due = datetime.fromtimestamp(emission.due, UTC)
        if emission.topic_key == RTT:
            assert emission.key == b"p1"
            assert json.loads(emission.payload)["time"] == format_rfc3339(due)
        else:
            assert emission.key is None
            assert parse_clf_time(emission.payload) == due.replace(microsecond=0)


def test_plan_burst_multiplies_the_rate_of_its_window_only() -> None:
    rtt = Source(T0, _points(*range(0, 4 * 3600, 60)), "rtt")
    settings = PlanSettings(speed=60, hours=None, burst_start_hours=1, burst_hours=1,
                            burst_factor=6)  # fmt: skip
    plan = list(iter_demo_plan(rtt, None, demo_start=DEMO_START, settings=settings))
    start = DEMO_START.timestamp()
    per_demo_minute = [0] * 4
    for emission in plan:
        per_demo_minute[int((emission.due - start) // 60)] += 1
    assert per_demo_minute == [60, 360, 60, 60]  # a source hour is a demo minute
    assert sum(e.copy > 0 for e in plan) == 300
    assert [e.due for e in plan] == sorted(e.due for e in plan)


def test_merge_and_order_checks() -> None:
    def stream(key: str, *dues: float) -> list[Emission]:
        return [Emission(d, key, b"", None, d, 0) for d in dues]

    merged = list(iter_merged([stream("a", 1, 3, 5), stream("b", 0, 3, 9), stream("c")]))
    assert [(e.due, e.topic_key) for e in merged] == [
        (0, "b"), (1, "a"), (3, "a"), (3, "b"), (5, "a"), (9, "b"),
    ]  # fmt: skip
    with pytest.raises(ValueError, match="not in time order"):
        list(iter_in_order(_points(0, 10, 5), "probe file"))


def test_generator_is_deterministic_time_ordered_and_realistic() -> None:
    settings = SyntheticSettings(seed=3, probes=20)
    first = list(iter_synthetic_rtt(settings, hours=24))
    assert first == list(iter_synthetic_rtt(settings, hours=24))
    assert first != list(iter_synthetic_rtt(SyntheticSettings(seed=4, probes=20), hours=24))
    assert [p.time for p in first] == sorted(p.time for p in first)
    assert len({p.probe for p in first}) == 20
    assert 20 * 24 * 14 <= len(first) <= 20 * 24 * 16  # a ping every ~4 minutes per probe
    assert any(p.rtt in (-3.0, -4.0) for p in first)
    assert all(p.rtt > 0 for p in first if p.rtt not in (-3.0, -4.0))
    lines = list(iter_synthetic_access_lines(settings, hours=24))
    assert lines == list(iter_synthetic_access_lines(settings, hours=24))
    assert [line.time for line in lines] == sorted(line.time for line in lines)
    assert 2000 <= len(lines) <= 3800  # ~120 per hour
    statuses = []
    for line in lines:
        match = APACHE_COMBINED.match(line.line.decode())
        assert match is not None, line
        assert parse_clf_time(line.line).timestamp() == line.time
        statuses.append(int(match["status"]))
    assert 0 < sum(status >= 500 for status in statuses) < len(statuses) * 0.1


def test_missing_data_falls_back_to_the_generator_and_says_so(tmp_path: Path) -> None:
    absent = tmp_path / "shared" / "data"
    assert describe_synthetic(absent) == f"{absent} not found: using the synthetic generator"
    rtt, http = load_demo_sources(absent, hours=2)
    assert rtt.synthetic
    assert http.synthetic
    assert "not found: using the synthetic generator" in rtt.origin
    plan = list(iter_demo_plan(rtt, http, demo_start=DEMO_START, settings=PlanSettings(60, 2)))
    assert {e.topic_key for e in plan} == {RTT, HTTP}
    assert [e.due for e in plan] == sorted(e.due for e in plan)


@pytest.fixture(scope="module")
def real_sources(data_dir: Path) -> tuple[Source[RttPoint], Source[LogLine]]:
    for relative in (RTT_ARCHIVE, ACCESS_LOG):
        if not (data_dir / relative).exists():
            pytest.skip(f"{data_dir / relative} is absent (set METRICPIPE_DATA_DIR)")
    return load_demo_sources(data_dir, hours=24)


def test_real_records_retime_into_increasing_demo_times(
    real_sources: tuple[Source[RttPoint], Source[LogLine]],
) -> None:
    rtt, http = real_sources
    assert not rtt.synthetic
    assert not http.synthetic
    settings = PlanSettings(speed=60, hours=24, burst_start_hours=1, burst_hours=1,
                            burst_factor=6)  # fmt: skip
    plan = iter_demo_plan(rtt, http, demo_start=DEMO_START, settings=settings)
    first = list(itertools.islice(plan, 1000))
    assert len(first) == 1000
    assert {e.topic_key for e in first} == {RTT, HTTP}
    dues = [e.due for e in first]
    assert all(a <= b for a, b in itertools.pairwise(dues))
    assert dues[0] >= DEMO_START.timestamp()
    assert dues[-1] > dues[0]
    starts = {RTT: rtt.start, HTTP: http.start}
    for emission in first:
        expected = DEMO_START.timestamp() + (emission.source_time - starts[emission.topic_key]) / 60
        assert emission.due == pytest.approx(expected, abs=1e-6)


def test_every_real_log_line_rewrites_cleanly(
    real_sources: tuple[Source[RttPoint], Source[LogLine]],
) -> None:
    _, http = real_sources
    when = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
    for line in http.records:
        rewritten = rewrite_clf_timestamp(line.line, when)
        assert len(rewritten) == len(line.line)  # both +0000, same width
        match = APACHE_COMBINED.match(rewritten.decode())
        assert match is not None
        assert match["time"] == "01/Mar/2026:12:00:05 +0000"


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return False


class FakeProducer:
    """Records what was produced when; delivers on poll/flush; refuses while its queue is
    full; fails the records whose payload says so."""

    def __init__(self, clock: FakeClock, queue_limit: int = 1000) -> None:
        self.clock = clock
        self.queue_limit = queue_limit
        self.produced: list[tuple[float, str, bytes, bytes | None]] = []
        self.queue: list[tuple[Callable[[Any, Any], None], bytes]] = []
        self.refused = 0

    def produce(
        self,
        topic: str,
        *,
        value: bytes,
        key: bytes | None,
        on_delivery: Callable[[Any, Any], None],
    ) -> None:
        if len(self.queue) >= self.queue_limit:
            self.refused += 1
            raise BufferError("queue full")
        self.produced.append((self.clock.now, topic, value, key))
        self.queue.append((on_delivery, value))

    def poll(self, timeout: float) -> int:
        served, self.queue = self.queue, []
        for callback, value in served:
            callback("broker said no" if value == b"fail" else None, None)
        self.clock.now += timeout
        return len(served)

    def flush(self, timeout: float) -> int:
        self.poll(0)
        return len(self.queue)  # what is still undelivered


def _emissions(start: float, *offsets: float) -> list[Emission]:
    return [
        Emission(start + o, RTT if i % 2 else HTTP, b"fail" if o == 2.5 else b"x", None, o, 0)
        for i, o in enumerate(offsets)
    ]


def test_replay_produces_each_record_when_due_and_counts() -> None:
    clock = FakeClock(1_000_000.0)
    producer = FakeProducer(clock, queue_limit=1)
    plan = _emissions(clock.now, 0, 0, 0.5, 1.2, 2.5, 2.5, 2.6, 4.0)
    reports: list[ReplayProgress] = []
    stats = replay(
        {"bootstrap.servers": "unused"}, plan, topics={RTT: "avg-rtt", HTTP: "http-5xx-rate"},
        progress=reports.append, progress_every=1.0, chunk_size=3,
        producer_factory=lambda config: producer, clock=clock, wait=clock.wait,
    )  # fmt: skip
    assert [t >= e.due for (t, *_), e in zip(producer.produced, plan, strict=True)] == [True] * 8
    assert [round(t - 1_000_000.0, 3) for t, *_ in producer.produced][:4] == [0, 0.1, 0.5, 1.2]
    assert producer.refused == 2  # twice two records due at once: poll(0.1) made room
    assert (stats.sent, stats.delivered, stats.failed, stats.undelivered) == (8, 6, 2, 0)
    assert stats.first_error == "broker said no"
    assert max(clock.waits) <= 0.25
    assert {t for _, t, _, _ in producer.produced} == {"avg-rtt", "http-5xx-rate"}
    series = stats.build_rate_series()
    assert sum(count for _, count in series) == 8
    assert [s for s, _ in series] == list(range(series[0][0], series[-1][0] + 1))
    assert sum(c for _, c in stats.build_rate_series("avg-rtt")) == 4
    assert reports[-1].final
    assert reports[-1].sent == 8
    assert len(reports) >= 3  # every second of the 4 s replay, and the final one


def test_replay_copies_a_record_into_each_topic_of_its_key() -> None:
    """As Fluentd's routes of one tag: the Apache lines into a pipeline's and an archive's
    topic; a record counts once as sent, and per topic in the rate series."""
    clock = FakeClock(1_000_000.0)
    producer = FakeProducer(clock)
    plan = _emissions(clock.now, 0, 0.5, 1.0, 1.5)  # HTTP, RTT, HTTP, RTT
    stats = replay(
        {}, plan, topics={RTT: "avg-rtt", HTTP: ("http-5xx-rate", "archive")},
        producer_factory=lambda config: producer, clock=clock, wait=clock.wait,
    )  # fmt: skip
    assert [(t, v) for _, t, v, _ in producer.produced] == [
        ("http-5xx-rate", b"x"), ("archive", b"x"), ("avg-rtt", b"x"),
        ("http-5xx-rate", b"x"), ("archive", b"x"), ("avg-rtt", b"x"),
    ]  # fmt: skip
    assert (stats.sent, stats.delivered, stats.failed) == (4, 6, 0)
    assert sum(c for _, c in stats.build_rate_series("archive")) == 2
    assert sum(c for _, c in stats.build_rate_series("http-5xx-rate")) == 2


def test_replay_stops_on_the_event() -> None:
    clock = FakeClock(1_000_000.0)
    producer = FakeProducer(clock)
    stats = ReplayStats()
    plan = _emissions(clock.now, 0, 1, 100, 200)

    class StopAfter:
        def __init__(self) -> None:
            self.event = Event()

        def wait(self, seconds: float) -> bool:
            clock.wait(seconds)
            if clock.now >= 1_000_010.0:
                self.event.set()
            return self.event.is_set()

    stopper = StopAfter()
    result = replay(
        {}, plan, topics={RTT: "r", HTTP: "h"}, stop=stopper.event, stats=stats,
        producer_factory=lambda config: producer, clock=clock, wait=stopper.wait,
    )  # fmt: skip
    assert result is stats
    assert stats.sent == 2
    assert stats.delivered == 2
    assert clock.now < 1_000_011.0


def test_cli_defaults_and_a_dry_run_on_the_generator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("METRICPIPE_DATA_DIR", str(tmp_path / "elsewhere"))
    args = build_parser().parse_args([])
    assert args.data_dir == tmp_path / "elsewhere"
    assert (args.topic_rtt, args.topic_http) == ("avg-rtt", "http-5xx-rate")
    absent = tmp_path / "absent"
    argv = ["--dry-run", "--data-dir", str(absent), "--hours", "3", "--speed", "60",
            "--burst-start", "1", "--burst-hours", "1", "--burst-factor", "4"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().err
    assert f"{absent} not found: using the synthetic generator" in printed
    assert "speed 60x, one source hour every 60 s" in printed
    assert "3 source hours take 3.0 demo minutes" in printed
    assert "synthetic amplification" in printed
    assert "burst copies" in printed
    progress = ReplayProgress(
        12.3, 1200, 1190, 2, 98.6, 0.4, {RTT: datetime(2016, 10, 1, 3, 4, tzinfo=UTC)}
    )
    assert format_progress(progress) == (
        "[replay]     12s sent=1,200 delivered=1,190 failed=2 rate=99/s behind=0.4s "
        "source rtt@2016-10-01 03:04Z"
    )
