"""The demo's own look at the archive on HDFS: plain WebHDFS calls as the NameNode's superuser,
no product code. It prepares the archives' root (an administrator's step on a cluster), removes
an earlier run's files, and counts what the archive holds by reading every committed Parquet
file's Kafka coordinates itself."""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import pyarrow.parquet as pq
import requests

TIMEOUT = 30.0


@dataclass(frozen=True)
class ArchiveCount:
    """What an archive's committed files hold: rows, distinct (partition, offset) pairs, and
    the hour directories (dt=.../hour=...) that have files."""

    rows: int
    distinct: int
    files: int
    hours: tuple[str, ...]


class _ReplacedError(Exception):
    """A listed file was gone when read (a compaction replaced it): count again."""


class ArchiveHdfs:
    def __init__(self, webhdfs_url: str) -> None:
        self.url = webhdfs_url

    @cached_property
    def superuser(self) -> str:
        """Who started the NameNode (the owner of /)."""
        found = self._call("GET", "/", "GETFILESTATUS", "nobody")
        return str(found.json()["FileStatus"]["owner"])

    def _call(self, method: str, path: str, op: str, user: str, **params: str) -> Any:
        answer = requests.request(method, f"{self.url}{path}", timeout=TIMEOUT,
                                  params={"op": op, "user.name": user, **params})  # fmt: skip
        if answer.status_code not in (200, 404):
            raise RuntimeError(f"WebHDFS {op} {path}: HTTP {answer.status_code} {answer.text}")
        return answer

    def ensure_root(self, root: str, owner: str) -> None:
        """The archives' root, owned by the archivers' HDFS user (they create the rest)."""
        self._call("PUT", root, "MKDIRS", self.superuser)
        self._call("PUT", root, "SETOWNER", self.superuser, owner=owner)

    def remove(self, path: str) -> bool:
        """Delete a directory and everything under it; False when it was not there."""
        return bool(self._call("DELETE", path, "DELETE", self.superuser, recursive="true")
                    .json().get("boolean"))  # fmt: skip

    def count(self, directory: str, attempts: int = 5) -> ArchiveCount:
        """Read every committed file under `directory` (hour directories only: `_staging` and
        `_offsets` are not the archive's records), again if a compaction replaced a file
        between the listing and its reading."""
        for _ in range(attempts - 1):
            try:
                return self._count(directory)
            except _ReplacedError:
                continue
        return self._count(directory)

    def _count(self, directory: str) -> ArchiveCount:
        rows = files = 0
        coordinates: set[tuple[int, int]] = set()
        hours = []
        for day in self._children(directory, "dt="):
            for hour in self._children(f"{directory}/{day}", "hour="):
                parquet = [n for n in self._children(f"{directory}/{day}/{hour}", "p")
                           if n.endswith(".parquet")]  # fmt: skip
                if parquet:
                    hours.append(f"{day}/{hour}")
                for name in parquet:
                    path = f"{directory}/{day}/{hour}/{name}"
                    answer = self._call("GET", path, "OPEN", self.superuser)
                    if answer.status_code == 404:
                        raise _ReplacedError(path)
                    table = pq.read_table(io.BytesIO(answer.content),
                                          columns=["partition", "offset"])  # fmt: skip
                    rows += table.num_rows
                    files += 1
                    partitions = table.column("partition").to_pylist()
                    offsets = table.column("offset").to_pylist()
                    coordinates.update(zip(partitions, offsets, strict=True))
        return ArchiveCount(rows, len(coordinates), files, tuple(hours))

    def _children(self, path: str, prefix: str) -> list[str]:
        listed = self._call("GET", path, "LISTSTATUS", self.superuser)
        if listed.status_code == 404:
            return []
        names = [e["pathSuffix"] for e in listed.json()["FileStatuses"]["FileStatus"]]
        return sorted(n for n in names if n.startswith(prefix))
