"""An in-memory stand-in for the WebHDFS client, for the archiver's unit tests: the semantics
store.py relies on (atomic RENAME that never overwrites, CREATE without overwrite refused,
recursive DELETE), and a crash after any number of calls. The real NameNode's answers to the
same operations are checked in tests/integration/test_hdfs_stack.py and test_archiver.py."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from metricpipe_consumers.webhdfs import FileStatus, WebHdfsError

LOCK = threading.Lock()


class Crash(Exception):  # noqa: N818 - the process died here
    pass


@dataclass
class MemoryHdfs:
    files: dict[str, bytes] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=lambda: {"/"})
    calls: int = 0
    crash_at: int | None = None  # the call that never happens

    def _tick(self) -> None:
        with LOCK:  # the store writes a batch's files from several threads
            if self.crash_at is not None and self.calls >= self.crash_at:
                raise Crash(f"crashed before call {self.calls}")
            self.calls += 1

    def _parents(self, path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.dirs.add("/" + "/".join(parts[:i]))

    def status(self, path: str) -> FileStatus | None:
        self._tick()
        if path in self.files:
            return FileStatus("", False, len(self.files[path]), 0)
        return FileStatus("", True, 0, 0) if path in self.dirs else None

    def list(self, path: str) -> list[FileStatus] | None:
        self._tick()
        if path not in self.dirs:
            return None
        prefix = path.rstrip("/") + "/"
        names = {p[len(prefix):].split("/")[0] for p in [*self.files, *self.dirs]
                 if p.startswith(prefix)}  # fmt: skip
        return [FileStatus(n, prefix + n in self.dirs, len(self.files.get(prefix + n, b"")), 0)
                for n in sorted(names)]  # fmt: skip

    def mkdirs(self, path: str) -> None:
        self._tick()
        self._parents(path + "/x")

    def create(self, path: str, data: bytes, *, overwrite: bool = False) -> None:
        self._tick()
        if path in self.files and not overwrite:
            raise WebHdfsError("CREATE", path, 403, "FileAlreadyExistsException")
        self._parents(path)
        self.files[path] = data

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        self._tick()
        data = self.files[path][offset:]
        return data if length is None else data[:length]

    def rename(self, source: str, destination: str) -> bool:
        self._tick()
        if source not in self.files or destination in self.files or destination in self.dirs:
            return False
        self._parents(destination)
        self.files[destination] = self.files.pop(source)
        return True

    def delete(self, path: str, *, recursive: bool = False) -> bool:
        self._tick()
        if path in self.files:
            del self.files[path]
            return True
        if path not in self.dirs:
            return False
        inside = [p for p in [*self.files, *self.dirs] if p.startswith(path.rstrip("/") + "/")]
        if inside and not recursive:
            raise WebHdfsError("DELETE", path, 403, "PathIsNotEmptyDirectoryException")
        for p in inside:
            self.files.pop(p, None)
            self.dirs.discard(p)
        self.dirs.discard(path)
        return True
