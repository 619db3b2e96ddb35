"""Parquet files on HDFS, read by byte ranges so that only the columns asked for travel.

A file of at most `whole_file_bytes` comes in one WebHDFS read (a few round trips would cost
more than its bytes); a larger one is opened as a seekable file whose reads are WebHDFS
`OPEN` calls with offset and length: pyarrow reads its footer (the last 64 KiB are fetched
once), then only the column chunks of the row groups and columns it is asked for. Every byte
fetched is counted against the request's budget.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from ..webhdfs import WebHdfs

TAIL_BYTES = 65_536


@dataclass
class ReadCount:
    """What one request has fetched from HDFS."""

    bytes: int = 0
    files: int = 0
    reads: int = 0


class RangeFile(io.RawIOBase):
    """A read-only, seekable view of an HDFS file over WebHDFS ranged reads."""

    def __init__(self, hdfs: WebHdfs, path: str, length: int, count: ReadCount) -> None:
        super().__init__()
        self._hdfs, self._path, self._length, self._count = hdfs, path, length, count
        self._position = 0
        tail_start = max(0, length - TAIL_BYTES)
        self._tail_start, self._tail = tail_start, self._fetch(tail_start, length - tail_start)

    def _fetch(self, start: int, size: int) -> bytes:
        if size <= 0:
            return b""
        data = self._hdfs.read(self._path, start, size)
        self._count.bytes += len(data)
        self._count.reads += 1
        return data

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        start = self._position
        end = self._length if size is None or size < 0 else min(self._length, start + size)
        if start >= end:
            return b""
        if start >= self._tail_start:
            data = self._tail[start - self._tail_start : end - self._tail_start]
        else:
            data = self._fetch(start, end - start)
        self._position = start + len(data)
        return data

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_parquet(
    hdfs: WebHdfs, path: str, length: int, count: ReadCount, whole_file_bytes: int
) -> pq.ParquetFile:
    count.files += 1
    if length <= whole_file_bytes:
        data = hdfs.read(path)
        count.bytes += len(data)
        count.reads += 1
        return pq.ParquetFile(pa.BufferReader(data))
    return pq.ParquetFile(RangeFile(hdfs, path, length, count))
