"""The archive's commit protocol (archive/store.py) crashed before every HDFS call it makes:
after recovery and a re-read from the offset HDFS gives, every record is in exactly one
committed file. The same for a compaction. HDFS is the in-memory stand-in (tests/memory_hdfs.py)."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import pytest

from memory_hdfs import Crash, MemoryHdfs
from metricpipe_consumers.archive.parquet import decode_table, encode_rows
from metricpipe_consumers.archive.plan import Row, plan_hour_files
from metricpipe_consumers.archive.store import ArchiveStore, TopicRecreatedError
from metricpipe_contract.archive import parse_file_name

DIR = "/metricpipe/archives/team-a/edge"
HOUR = 3_600_000
T = 1_431_856_800_000


def records(partition: int, first: int, last: int) -> list[Row]:
    """A partition's records; their times cross an hour boundary every 7 offsets."""
    return [Row(partition, o, T + (o // 7) * HOUR + o, None, f"line {partition}/{o}", "{}")
            for o in range(first, last + 1)]  # fmt: skip


def commit(store: ArchiveStore, rows: list[Row]) -> None:
    files = {hour: encode_rows(part) for hour, part in plan_hour_files(rows).items()}
    store.commit(rows[0].partition, rows[0].offset, rows[-1].offset, files)


def archived(hdfs: MemoryHdfs) -> Counter[tuple[int, int]]:
    """(partition, offset) of every row in every committed file, counted."""
    seen: Counter[tuple[int, int]] = Counter()
    for path, data in hdfs.files.items():
        if "/_" in path.removeprefix(DIR) or parse_file_name(path.rsplit("/", 1)[1]) is None:
            continue
        table = decode_table(data, ["partition", "offset"]).to_pydict()
        seen.update(zip(table["partition"], table["offset"], strict=True))
    return seen


def run_batches(hdfs: MemoryHdfs, partition: int, end: int, size: int) -> None:
    """What an archiver does for one partition: recover, then commit batches from there."""
    store = ArchiveStore(hdfs, DIR)
    start = store.recover(partition) or 0
    for first in range(start, end + 1, size):
        commit(store, records(partition, first, min(first + size - 1, end)))


def count_calls(**kwargs: Any) -> int:
    hdfs = MemoryHdfs()
    run_batches(hdfs, **kwargs)
    return hdfs.calls


def test_a_crash_before_any_call_loses_nothing_and_writes_nothing_twice() -> None:
    total = count_calls(partition=0, end=29, size=10)
    assert total > 30  # the protocol's calls: every one is a crash point below
    for crash_at in range(total):
        hdfs = MemoryHdfs(crash_at=crash_at)
        with pytest.raises(Crash):
            run_batches(hdfs, partition=0, end=29, size=10)
        hdfs.crash_at = None
        run_batches(hdfs, partition=0, end=29, size=10)  # the restarted process
        seen = archived(hdfs)
        assert seen == Counter({(0, o): 1 for o in range(30)}), f"crash before call {crash_at}"
        assert not [p for p in hdfs.files if "/_staging/" in p], crash_at


def test_a_crash_in_recovery_itself() -> None:
    hdfs = MemoryHdfs()
    store = ArchiveStore(hdfs, DIR)
    rows = records(1, 0, 20)
    files = {hour: encode_rows(part) for hour, part in plan_hour_files(rows).items()}
    assert len(files) == 3
    hdfs.crash_at = 6  # after the staged files and the marker, before the renames ended
    with pytest.raises(Crash):
        store.commit(1, 0, 20, files)
    for crash_at in range(hdfs.calls + 1, hdfs.calls + 12):  # recovery crashes too, then runs
        hdfs.crash_at = crash_at
        with contextlib.suppress(Crash):
            ArchiveStore(hdfs, DIR).recover(1)
    hdfs.crash_at = None
    assert ArchiveStore(hdfs, DIR).recover(1) == 21
    assert archived(hdfs) == Counter({(1, o): 1 for o in range(21)})


def test_compaction_crashed_anywhere_keeps_every_record_once() -> None:
    setup = MemoryHdfs()
    run_batches(setup, partition=0, end=6, size=2)  # four small files in the first hour
    hour = "dt=2015-05-17/hour=10"
    assert len(ArchiveStore(setup, DIR).files_of(hour)) == 4
    before = setup.calls
    assert ArchiveStore(setup, DIR).compact(0, hour) == 4
    calls = setup.calls - before
    assert archived(setup) == Counter({(0, o): 1 for o in range(7)})
    for crash_at in range(calls):
        hdfs = MemoryHdfs()
        run_batches(hdfs, partition=0, end=6, size=2)
        hdfs.crash_at = hdfs.calls + crash_at
        with pytest.raises(Crash):
            ArchiveStore(hdfs, DIR).compact(0, hour)
        hdfs.crash_at = None
        assert ArchiveStore(hdfs, DIR).recover(0) == 7  # the restarted archiver's recovery
        assert archived(hdfs) == Counter({(0, o): 1 for o in range(7)}), crash_at
        # a compaction that began (its marker made: the first call) is finished by recovery
        assert len(ArchiveStore(hdfs, DIR).files_of(hour)) == (4 if crash_at == 0 else 1)
    assert ArchiveStore(setup, DIR).list_hours() == [hour]


def test_the_retention_deletes_whole_days_past_it() -> None:
    hdfs = MemoryHdfs()
    run_batches(hdfs, partition=0, end=200, size=50)  # 29 hours from 2015-05-17T10:00Z
    store = ArchiveStore(hdfs, DIR)
    assert {h.split("/")[0] for h in store.list_hours()} == {"dt=2015-05-17", "dt=2015-05-18"}
    day_after = T + 38 * HOUR  # 2015-05-19T00:00Z: the 17th ended a day ago
    assert store.expire(day_after, retention_days=1) == ["dt=2015-05-17"]
    assert {h.split("/")[0] for h in store.list_hours()} == {"dt=2015-05-18"}
    assert store.recover(0) == 201  # the next offset is kept: expired records are not re-read


def test_a_topic_created_anew_is_refused_not_read_from_stale_offsets() -> None:
    hdfs = MemoryHdfs()
    store = ArchiveStore(hdfs, DIR)
    store.check_topic("id-1")  # the first archiver records the topic's id
    store.check_topic("id-1")
    run_batches(hdfs, partition=0, end=9, size=10)
    with pytest.raises(TopicRecreatedError, match=r"created anew.*Move .* aside"):
        store.check_topic("id-2")  # offsets 0..9 of the new topic would be skipped
    assert store.recover(0) == 10  # nothing of the archive changed
