"""A WebHDFS client: the few operations the archiver and the peek API need, over HTTP.

WebHDFS is HDFS's REST interface on the NameNode (`/webhdfs/v1`); data operations are answered
with a 307 naming a DataNode, which takes or serves the bytes. With simple authentication the
caller names its user in `user.name`; HDFS checks permissions as that user. `RENAME` is atomic
on the NameNode and never overwrites an existing file: the archiver's commit relies on both.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import requests

TIMEOUT_SECONDS = 30.0


class WebHdfsError(RuntimeError):
    """HDFS refused an operation; the message holds its exception's name and words."""

    def __init__(self, operation: str, path: str, status: int, detail: str) -> None:
        super().__init__(f"WebHDFS {operation} {path}: HTTP {status}: {detail}")
        self.status = status


@dataclass(frozen=True)
class FileStatus:
    name: str  # the entry's name in its directory ("" for the path itself)
    is_dir: bool
    length: int
    modified_ms: int


def _detail(response: requests.Response) -> str:
    try:
        remote = response.json()["RemoteException"]
        return f"{remote.get('exception')}: {remote.get('message')}"
    except (ValueError, KeyError, TypeError):
        return response.text[:300]


def _status(raw: dict[str, Any]) -> FileStatus:
    return FileStatus(
        name=str(raw.get("pathSuffix", "")),
        is_dir=raw.get("type") == "DIRECTORY",
        length=int(raw.get("length", 0)),
        modified_ms=int(raw.get("modificationTime", 0)),
    )


class WebHdfs:
    """One NameNode's WebHDFS (`url` ends in /webhdfs/v1) as one user."""

    def __init__(
        self, url: str, user: str, session: requests.Session | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:  # fmt: skip
        self.url = url.rstrip("/")
        self.user = user
        self._shared = session
        self._local = threading.local()  # a Session per thread: calls may run in parallel
        self.timeout = timeout

    @property
    def session(self) -> requests.Session:
        if self._shared is not None:
            return self._shared
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _call(
        self, method: str, path: str, op: str, *, ok: tuple[int, ...] = (200,),
        data: bytes | None = None, redirect: bool = False, **params: Any,
    ) -> requests.Response:  # fmt: skip
        if not path.startswith("/"):
            raise ValueError(f"WebHDFS paths are absolute: {path!r}")
        query = {"op": op, "user.name": self.user, **params}
        response = self.session.request(
            method, f"{self.url}{path}", params=query, allow_redirects=False,
            timeout=self.timeout,
        )  # fmt: skip
        if redirect and response.status_code == 307:  # to the DataNode holding the data
            response = self.session.request(
                method, response.headers["Location"], data=data, timeout=self.timeout
            )
        if response.status_code not in ok:
            raise WebHdfsError(op, path, response.status_code, _detail(response))
        return response

    def status(self, path: str) -> FileStatus | None:
        """The path's status, or None when it does not exist."""
        response = self._call("GET", path, "GETFILESTATUS", ok=(200, 404))
        return None if response.status_code == 404 else _status(response.json()["FileStatus"])

    def list(self, path: str) -> list[FileStatus] | None:
        """A directory's entries sorted by name, or None when it does not exist."""
        response = self._call("GET", path, "LISTSTATUS", ok=(200, 404))
        if response.status_code == 404:
            return None
        entries = [_status(raw) for raw in response.json()["FileStatuses"]["FileStatus"]]
        return sorted(entries, key=lambda entry: entry.name)

    def mkdirs(self, path: str) -> None:
        self._call("PUT", path, "MKDIRS")

    def create(self, path: str, data: bytes, *, overwrite: bool = False) -> None:
        """Writes a file (its parent directories are made); without `overwrite` an existing
        file is an error (FileAlreadyExistsException)."""
        self._call("PUT", path, "CREATE", ok=(201,), data=data, redirect=True,
                   overwrite=str(overwrite).lower())  # fmt: skip

    def read(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        params: dict[str, Any] = {"offset": offset}
        if length is not None:
            params["length"] = length
        return self._call("GET", path, "OPEN", redirect=True, **params).content

    def rename(self, source: str, destination: str) -> bool:
        """Atomic; False (nothing changed) when the destination exists or the source does not."""
        response = self._call("PUT", source, "RENAME", destination=destination)
        return bool(response.json()["boolean"])

    def delete(self, path: str, *, recursive: bool = False) -> bool:
        """False when there was nothing to delete."""
        response = self._call("DELETE", path, "DELETE", recursive=str(recursive).lower())
        return bool(response.json()["boolean"])

    def content_summary(self, path: str) -> tuple[int, int] | None:
        """(bytes, files) under a path, or None when it does not exist."""
        response = self._call("GET", path, "GETCONTENTSUMMARY", ok=(200, 404))
        if response.status_code == 404:
            return None
        summary = response.json()["ContentSummary"]
        return int(summary["length"]), int(summary["fileCount"])
