"""The archive's layout on HDFS (contract/archive.py): names round-trip, hours are UTC, and no
namespace or name can leave the archive's directory."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from metricpipe_contract.archive import (
    ArchivePathError,
    BatchFile,
    build_archive_dir,
    build_file_name,
    build_hour_key,
    hours_between,
    parse_file_name,
    parse_hour_key,
)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


@pytest.mark.parametrize(("at", "key"), [
    ("2015-05-17 10:05:03", "dt=2015-05-17/hour=10"),
    ("2015-05-17 00:00:00", "dt=2015-05-17/hour=00"),
    ("2015-05-17 23:59:59.999", "dt=2015-05-17/hour=23"),
    ("2016-02-29 12:00:00", "dt=2016-02-29/hour=12"),
])  # fmt: skip
def test_hour_keys_are_utc_and_round_trip(at: str, key: str) -> None:
    assert build_hour_key(ms(at)) == key
    start = parse_hour_key(key)
    assert start <= ms(at) < start + 3_600_000


@pytest.mark.parametrize("key", ["dt=2015-05-17/hour=24", "dt=2015-5-17/hour=10",
                                 "dt=2015-05-17/hour=10/..", "hour=10"])  # fmt: skip
def test_other_hour_keys_are_refused(key: str) -> None:
    with pytest.raises(ArchivePathError):
        parse_hour_key(key)


def test_file_names_round_trip_and_sort_by_offset() -> None:
    names = [build_file_name(3, first, first + 9) for first in (0, 10, 100, 10**12)]
    assert names == sorted(names)
    assert [parse_file_name(n) for n in names] == [BatchFile(3, f, f + 9)
                                                    for f in (0, 10, 100, 10**12)]  # fmt: skip
    assert BatchFile(1, 5, 7).name == build_file_name(1, 5, 7)


@pytest.mark.parametrize("name", ["p3-1-2.parquet", "p3-00000000000000000002-00000000000000000001"
                                  ".parquet", "x.parquet", "p3-" + "0" * 20 + "-" + "1" * 20,
                                  "_COMPLETE"])  # fmt: skip
def test_names_the_archiver_never_writes_are_not_files(name: str) -> None:
    assert parse_file_name(name) is None


@pytest.mark.parametrize(("namespace", "name"), [
    ("..", "a"), ("a", ".."), ("a/b", "c"), ("a", "b/../../c"), ("", "a"), ("A", "b"),
    ("a", "%2e%2e"), ("a", "-b"), ("a" * 64, "b"), ("a", "b\n"),
])  # fmt: skip
def test_no_namespace_or_name_leaves_the_root(namespace: str, name: str) -> None:
    with pytest.raises(ArchivePathError, match="DNS label"):
        build_archive_dir("/metricpipe/archives", namespace, name)


def test_an_archive_dir() -> None:
    assert build_archive_dir("/root/", "team-a", "edge") == "/root/team-a/edge"


def test_hours_between() -> None:
    start = ms("2015-05-17 10:30:00")
    assert hours_between(start, start + 2 * 3_600_000) == [
        "dt=2015-05-17/hour=10",
        "dt=2015-05-17/hour=11",
        "dt=2015-05-17/hour=12",
    ]
    assert hours_between(start, start) == []
