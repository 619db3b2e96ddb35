"""The HDFS configuration builders: one address for every server, data under the stack."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

from metricpipe_devstack.hdfs import (
    HdfsLayout,
    build_core_site,
    build_hdfs_site,
    build_layout,
    render_configuration,
)
from metricpipe_devstack.settings import Ports, StackSettings


def _layout() -> HdfsLayout:
    return HdfsLayout(
        host="10.77.0.1",
        ports=Ports(),
        name_dir=Path("/s/data/hdfs-namenode/name"),
        data_dir=Path("/s/data/hdfs-datanode/data"),
        tmp_dir=Path("/s/data/hdfs-tmp"),
    )


def _parse(document: str) -> dict[str, str]:
    root = ET.fromstring(document)  # noqa: S314 - our own output
    assert root.tag == "configuration"
    return {p.findtext("name", ""): p.findtext("value", "") for p in root.iter("property")}


def test_core_site_names_the_namenode_and_simple_auth() -> None:
    layout = dataclasses.replace(_layout(), ports=Ports(hdfs_namenode=41000))
    core = build_core_site(layout)
    assert core["fs.defaultFS"] == "hdfs://10.77.0.1:41000"
    assert core["hadoop.security.authentication"] == "simple"
    assert core["hadoop.tmp.dir"] == "/s/data/hdfs-tmp"


def test_hdfs_site_one_replica_webhdfs_and_permissions() -> None:
    site = build_hdfs_site(_layout())
    assert site["dfs.replication"] == "1"
    assert site["dfs.webhdfs.enabled"] == "true"
    assert site["dfs.permissions.enabled"] == "true"
    assert site["dfs.namenode.name.dir"] == "/s/data/hdfs-namenode/name"
    assert site["dfs.datanode.data.dir"] == "/s/data/hdfs-datanode/data"
    assert site["dfs.namenode.safemode.extension"] == "0"


def test_every_listener_is_on_the_layout_host_at_its_own_port() -> None:
    ports = Ports()
    site = build_hdfs_site(_layout())
    listeners = {key: value for key, value in site.items() if key.endswith("address")}
    assert listeners == {
        "dfs.namenode.rpc-address": f"10.77.0.1:{ports.hdfs_namenode}",
        "dfs.namenode.http-address": f"10.77.0.1:{ports.hdfs_namenode_http}",
        "dfs.datanode.address": f"10.77.0.1:{ports.hdfs_datanode}",
        "dfs.datanode.http.address": f"10.77.0.1:{ports.hdfs_datanode_http}",
        "dfs.datanode.ipc.address": f"10.77.0.1:{ports.hdfs_datanode_ipc}",
    }
    # the DataNode registers as that address, so WebHDFS redirects point where it listens
    assert site["dfs.datanode.hostname"] == "10.77.0.1"


def test_the_stack_ports_do_not_clash() -> None:
    values = dataclasses.astuple(Ports())
    assert len(set(values)) == len(values)


def test_layout_keeps_hdfs_data_under_the_stack_data_root(tmp_path: Path) -> None:
    settings = StackSettings(stack_dir=tmp_path, pod_cidr="10.88.0.0/24")
    layout = build_layout(settings)
    assert layout.host == "10.88.0.1"
    for path in (layout.name_dir, layout.data_dir, layout.tmp_dir):
        assert path.is_relative_to(settings.data_root)
    assert layout.webhdfs_url == f"http://10.88.0.1:{settings.ports.hdfs_namenode_http}/webhdfs/v1"


def test_render_configuration_round_trips_and_escapes() -> None:
    properties = {"a.b": "x<y & z>", "fs.defaultFS": "hdfs://h:1"}
    document = render_configuration(properties)
    assert document.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<configuration>')
    assert _parse(document) == properties
    assert list(_parse(document)) == ["a.b", "fs.defaultFS"]
