"""HDFS is real: WebHDFS on the stack's NameNode, data through its one DataNode, permissions on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from metricpipe_devstack.env import StackEnv
from metricpipe_devstack.settings import StackSettings

TIMEOUT = 10.0


@dataclass(frozen=True)
class WebHdfs:
    """A WebHDFS client of a few lines: simple authentication names the caller per request."""

    url: str
    session: requests.Session

    def call(self, method: str, path: str, op: str, user: str, **params: Any) -> requests.Response:
        return self.session.request(
            method,
            f"{self.url}{path}",
            params={"op": op, "user.name": user, **params},
            allow_redirects=False,
            timeout=TIMEOUT,
        )

    def json(self, method: str, path: str, op: str, user: str, **params: Any) -> Any:
        response = self.call(method, path, op, user, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def create(self, path: str, user: str, data: bytes) -> str:
        """The two steps of CREATE: the NameNode answers 307 naming a DataNode, which takes
        the bytes. Returns the DataNode's location."""
        first = self.call("PUT", path, "CREATE", user, overwrite="false")
        assert first.status_code == 307, first.text
        location = first.headers["Location"]
        second = self.session.put(location, data=data, timeout=TIMEOUT)
        assert second.status_code == 201, second.text
        return location

    def read(self, path: str, user: str) -> bytes:
        response = self.session.get(
            f"{self.url}{path}", params={"op": "OPEN", "user.name": user}, timeout=TIMEOUT
        )  # follows the 307 to the DataNode
        assert response.status_code == 200, response.text
        return response.content


@pytest.fixture
def webhdfs(stack: StackEnv) -> Iterator[WebHdfs]:
    assert stack.webhdfs_url, ".stack/env lacks METRICPIPE_WEBHDFS_URL; run 'make stack-up'"
    with requests.Session() as session:
        yield WebHdfs(stack.webhdfs_url, session)


def test_files_through_webhdfs(webhdfs: WebHdfs, unique_name: str) -> None:
    settings = StackSettings()
    root = webhdfs.json("GET", "/", "GETFILESTATUS", "nobody")["FileStatus"]
    superuser = root["owner"]  # who formatted the namespace: the NameNode's own user
    user = f"{unique_name}-user"
    home = f"/{unique_name}"

    # permissions are checked: a plain user may not write into /
    refused = webhdfs.call("PUT", home, "MKDIRS", user)
    assert refused.status_code == 403, refused.text
    assert refused.json()["RemoteException"]["exception"] == "AccessControlException"

    assert webhdfs.json("PUT", home, "MKDIRS", superuser) == {"boolean": True}
    try:
        owned = webhdfs.call("PUT", home, "SETOWNER", superuser, owner=user)
        assert owned.status_code == 200, owned.text

        first, second = os.urandom(300_000), b"the second file\n"
        location = webhdfs.create(f"{home}/a.bin", user, first)
        datanode_http = f"{settings.host_address}:{settings.ports.hdfs_datanode_http}"
        assert location.startswith(f"http://{datanode_http}/webhdfs/v1{home}/a.bin?")
        webhdfs.create(f"{home}/b.txt", user, second)
        assert webhdfs.read(f"{home}/a.bin", user) == first

        # CREATE without overwrite=true does not replace an existing file (the NameNode still
        # redirects; the DataNode's create at the NameNode fails)
        again = webhdfs.call("PUT", f"{home}/b.txt", "CREATE", user, overwrite="false")
        assert again.status_code == 307, again.text
        refused_create = webhdfs.session.put(again.headers["Location"], data=b"x", timeout=TIMEOUT)
        assert refused_create.status_code == 403, refused_create.text
        exception = refused_create.json()["RemoteException"]["exception"]
        assert exception == "FileAlreadyExistsException"

        renamed = webhdfs.json("PUT", f"{home}/a.bin", "RENAME", user, destination=f"{home}/c.bin")
        assert renamed == {"boolean": True}
        gone = webhdfs.call("GET", f"{home}/a.bin", "GETFILESTATUS", user)
        assert gone.status_code == 404
        # a rename onto an existing file is refused and changes neither file
        onto = webhdfs.json("PUT", f"{home}/c.bin", "RENAME", user, destination=f"{home}/b.txt")
        assert onto == {"boolean": False}
        assert webhdfs.read(f"{home}/b.txt", user) == second
        assert webhdfs.read(f"{home}/c.bin", user) == first

        listing = webhdfs.json("GET", home, "LISTSTATUS", user)["FileStatuses"]["FileStatus"]
        assert {(s["pathSuffix"], s["length"], s["owner"], s["replication"]) for s in listing} == {
            ("b.txt", len(second), user, 1),
            ("c.bin", len(first), user, 1),
        }

        # the block is on the stack's one DataNode, and the NameNode counts exactly one
        blocks = webhdfs.json("GET", f"{home}/c.bin", "GETFILEBLOCKLOCATIONS", user)
        located = blocks["BlockLocations"]["BlockLocation"]
        datanode = f"{settings.host_address}:{settings.ports.hdfs_datanode}"
        assert [(b["offset"], b["length"], b["names"]) for b in located] == [
            (0, len(first), [datanode])
        ]
        namenode_http = webhdfs.url.removesuffix("/webhdfs/v1")
        jmx = webhdfs.session.get(
            f"{namenode_http}/jmx",
            params={"qry": "Hadoop:service=NameNode,name=FSNamesystemState"},
            timeout=TIMEOUT,
        ).json()["beans"][0]
        assert (jmx["NumLiveDataNodes"], jmx["NumDeadDataNodes"]) == (1, 0)

        for name in ("b.txt", "c.bin"):
            deleted = webhdfs.json("DELETE", f"{home}/{name}", "DELETE", user)
            assert deleted == {"boolean": True}
        assert webhdfs.json("GET", home, "LISTSTATUS", user)["FileStatuses"]["FileStatus"] == []
        # removing the directory itself needs write access to / : the user's own is refused
        assert webhdfs.call("DELETE", home, "DELETE", user).status_code == 403
        assert webhdfs.json("DELETE", home, "DELETE", superuser) == {"boolean": True}
        assert webhdfs.call("GET", home, "GETFILESTATUS", user).status_code == 404
    finally:
        webhdfs.call("DELETE", home, "DELETE", superuser, recursive="true")
