"""The archive on HDFS (I/O): a batch's commit, recovery after a crash, compaction.

Commit of one partition's batch [first, last] (a batch may span hours: one file per hour):

1. every file is written into `_staging/p<partition>-<first>-<last>/`, then the marker
   `_COMPLETE`: from here on the batch is decided;
2. each file is renamed into its hour directory (HDFS renames atomically, never over an
   existing file);
3. `_offsets/p<partition>/<last + 1>` is made, older entries there deleted;
4. the staging directory is deleted.

After a crash at any point, `recover` before reading the partition again: a staged batch
with its marker is rolled forward (steps 2-4; a file already in place is not renamed
twice), one without it is deleted (none of it was renamed), and the partition is read again
from its `_offsets` entry. So every record is in exactly one committed file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import pyarrow as pa
import structlog

from metricpipe_contract.archive import (
    COMPLETE_MARKER,
    OFFSETS_DIR,
    STAGING_DIR,
    BatchFile,
    build_staging_name,
    parse_file_name,
)

from ..webhdfs import FileStatus, WebHdfsError
from .parquet import decode_table, encode_table
from .plan import (
    StagedBatch,
    build_staged_name,
    decide_compaction,
    decide_expired_days,
    decide_next_offset,
    decide_recovery,
    parse_staged_name,
    parse_staging_entry,
)

log = structlog.get_logger("metricpipe.archive")
COMPACTION_PREFIX = "compact."  # _staging/compact.p<partition>.<staged hour name>/
MERGED_FILE = "merged.parquet"
PARALLEL_WRITES = 8
TOPIC_ID_FILE = "topic-id"


class TopicRecreatedError(RuntimeError):
    """The topic's Kafka id is not the one the archive's offsets belong to."""


FAULT_POINTS = (
    "after_batch_staged",  # every file and the marker staged; nothing renamed
    "after_first_rename",  # one file of the batch in its hour, others staged
    "after_renames",  # all in place; the next offset not recorded
    "after_next_offset",  # recorded; the staging directory not deleted
    "after_compaction_rename",  # a merged file in place beside its inputs
)


class Hdfs(Protocol):
    """What the store needs of HDFS (webhdfs.WebHdfs; an in-memory one in the unit tests)."""

    def status(self, path: str) -> FileStatus | None: ...
    def list(self, path: str) -> list[FileStatus] | None: ...
    def mkdirs(self, path: str) -> None: ...
    def create(self, path: str, data: bytes, *, overwrite: bool = False) -> None: ...
    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes: ...
    def rename(self, source: str, destination: str) -> bool: ...
    def delete(self, path: str, *, recursive: bool = False) -> bool: ...


class ArchiveStore:
    """One archive's directory on HDFS (`contract.archive.build_archive_dir`)."""

    def __init__(
        self, hdfs: Hdfs, directory: str, fault: Callable[[str], None] = lambda _: None,
        parallel: int = PARALLEL_WRITES,
    ) -> None:  # fmt: skip
        """`fault`: called at each point of FAULT_POINTS (the tests' crash hook); `parallel`:
        files of a batch written at once."""
        self.hdfs = hdfs
        self.directory = directory.rstrip("/")
        self.fault = fault
        self.parallel = parallel

    def _staging(self, name: str = "") -> str:
        return f"{self.directory}/{STAGING_DIR}" + (f"/{name}" if name else "")

    def _offsets(self, partition: int) -> str:
        return f"{self.directory}/{OFFSETS_DIR}/p{partition}"

    # -- commit ---------------------------------------------------------------------------
    def commit(self, partition: int, first: int, last: int, files: dict[str, bytes]) -> None:
        """Writes one batch (hour key -> Parquet bytes) by the protocol above."""
        staging = self._staging(build_staging_name(partition, first, last))
        self.hdfs.delete(staging, recursive=True)  # an attempt of this batch that failed
        # in parallel: a CREATE waits for the DataNode's block to complete (~0.2-0.4 s on
        # the stack's HDFS), and a catching-up batch spans many hours
        writes = [(f"{staging}/{build_staged_name(hour)}", data) for hour, data in files.items()]
        with ThreadPoolExecutor(min(self.parallel, len(writes) or 1)) as pool:
            for done in [pool.submit(self.hdfs.create, path, data) for path, data in writes]:
                done.result()
        self.hdfs.create(f"{staging}/{COMPLETE_MARKER}", b"")
        self.fault("after_batch_staged")
        self._roll_forward(StagedBatch(staging.rsplit("/", 1)[1], partition, last, True))

    def _roll_forward(self, batch: StagedBatch) -> None:
        staging = self._staging(batch.name)
        for entry in self.hdfs.list(staging) or []:
            hour = parse_staged_name(entry.name)
            if hour is None:
                continue
            target_dir = f"{self.directory}/{hour}"
            self.hdfs.mkdirs(target_dir)
            target = f"{target_dir}/{batch.name}.parquet"
            moved = self.hdfs.rename(f"{staging}/{entry.name}", target)
            if not moved and self.hdfs.status(target) is None:  # not moved, not there
                raise RuntimeError(f"could not rename {staging}/{entry.name} to {target}")
            self.fault("after_first_rename")
        self.fault("after_renames")
        self._set_next_offset(batch.partition, batch.last + 1)
        self.fault("after_next_offset")
        self.hdfs.delete(staging, recursive=True)

    def _set_next_offset(self, partition: int, offset: int) -> None:
        directory = self._offsets(partition)
        if self.hdfs.status(f"{directory}/{offset}") is None:
            self.hdfs.create(f"{directory}/{offset}", b"")
        for entry in self.hdfs.list(directory) or []:
            if entry.name.isdigit() and int(entry.name) < offset:
                self.hdfs.delete(f"{directory}/{entry.name}")

    # -- the topic's identity ------------------------------------------------------------
    def check_topic(self, topic_id: str) -> None:
        """The archive's offsets are of one topic: the first archiver records its Kafka id,
        and a topic created anew under the same name (its offsets start at 0 again) is
        refused — read from the recorded offsets it would skip its first records."""
        path = f"{self.directory}/{OFFSETS_DIR}/{TOPIC_ID_FILE}"
        if self.hdfs.status(path) is None:
            with contextlib.suppress(WebHdfsError):  # two members at once: one file wins
                self.hdfs.create(path, topic_id.encode())
        recorded = self.hdfs.read(path).decode()
        if recorded != topic_id:
            raise TopicRecreatedError(
                f"the archive's topic was created anew (Kafka id {topic_id}; the archive at "
                f"{self.directory} holds the offsets of topic {recorded}): archiving it here "
                f"would skip its first records. Move {self.directory} aside on HDFS (its files "
                "stay readable there) or delete it, then restart the archivers"
            )

    # -- recovery -------------------------------------------------------------------------
    def recover(self, partition: int) -> int | None:
        """Finishes or discards this partition's staged batches; the next offset to archive
        (None: nothing archived yet, start at the topic's beginning)."""
        batches = []
        for entry in self.hdfs.list(self._staging()) or []:
            mine = f"{COMPACTION_PREFIX}p{partition}."
            if entry.name.startswith(mine):  # a compaction that crashed: finish it
                hour = parse_staged_name(entry.name.removeprefix(mine))
                if hour is not None:
                    log.info("interrupted compaction resumed", hour=hour, partition=partition)
                    self.compact(partition, hour)
                continue
            inside = [e.name for e in self.hdfs.list(self._staging(entry.name)) or []]
            staged = parse_staging_entry(entry.name, inside)
            if staged is not None and staged.partition == partition:
                batches.append(staged)
        forward, discard = decide_recovery(batches)
        for batch in discard:
            log.info("staged batch discarded", batch=batch.name)
            self.hdfs.delete(self._staging(batch.name), recursive=True)
        for batch in forward:
            log.info("staged batch rolled forward", batch=batch.name)
            self._roll_forward(batch)
        names = [e.name for e in self.hdfs.list(self._offsets(partition)) or []]
        return decide_next_offset(names)

    # -- compaction -----------------------------------------------------------------------
    def compact(self, partition: int, hour: str) -> int:
        """Merges this partition's files of one hour into one; returns the files removed.
        Crash-safe: the merged file is written under a staging directory that names the hour
        and stays until the inputs are gone, so `recover` finishes a compaction that crashed;
        inputs left behind lie inside the merged file's range, which makes them redundant."""
        directory = f"{self.directory}/{hour}"
        staging = self._staging(f"{COMPACTION_PREFIX}p{partition}.{build_staged_name(hour)}")
        self.hdfs.mkdirs(staging)  # first: from here on a crash leaves the hour to recover
        files = [f for e in self.hdfs.list(directory) or []
                 if (f := parse_file_name(e.name)) is not None]  # fmt: skip
        plan = decide_compaction(files, partition)
        merged = plan.merged
        if merged is not None:
            tables = [decode_table(self.hdfs.read(f"{directory}/{f.name}")) for f in plan.merge]
            table = pa.concat_tables(tables).sort_by("offset")
            self.hdfs.create(f"{staging}/{MERGED_FILE}", encode_table(table), overwrite=True)
            self.hdfs.rename(f"{staging}/{MERGED_FILE}", f"{directory}/{merged.name}")
            self.fault("after_compaction_rename")
            log.info("hour compacted", hour=hour, partition=partition, files=len(plan.merge),
                     rows=table.num_rows)  # fmt: skip
        removed = 0
        for done in [*plan.redundant, *(plan.merge if merged is not None else [])]:
            removed += int(self.hdfs.delete(f"{directory}/{done.name}"))
        self.hdfs.delete(staging, recursive=True)
        return removed

    def expire(self, now_ms: int, retention_days: int) -> list[str]:
        """Deletes the days the retention has passed; returns them."""
        days = [e.name for e in self.hdfs.list(self.directory) or [] if e.is_dir]
        expired = decide_expired_days(days, now_ms, retention_days)
        for day in expired:
            self.hdfs.delete(f"{self.directory}/{day}", recursive=True)
            log.info("day expired", day=day, retention_days=retention_days)
        return expired

    def list_hours(self) -> list[str]:
        """Every hour directory of the archive (`dt=.../hour=..`), oldest first."""
        hours = []
        for day in self.hdfs.list(self.directory) or []:
            if day.is_dir and day.name.startswith("dt="):
                inside = self.hdfs.list(f"{self.directory}/{day.name}") or []
                hours += [f"{day.name}/{h.name}" for h in inside if h.name.startswith("hour=")]
        return sorted(hours)

    def files_of(self, hour: str) -> list[BatchFile]:
        return [f for e in self.hdfs.list(f"{self.directory}/{hour}") or []
                if (f := parse_file_name(e.name)) is not None]  # fmt: skip
