"""The pod bridge: created before any server starts (they all listen on its host address).

The decisions are pure (`plan_bridge`, `plan_bridge_delete`) over `ip -j -d addr show`'s JSON;
`ensure_bridge` / `delete_bridge` only run the commands they return. Idempotent both ways.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Callable
from typing import Any

from .errors import StackError
from .settings import StackSettings

Echo = Callable[[str], None]


def _addresses(link: dict[str, Any]) -> list[ipaddress.IPv4Interface]:
    return [
        ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")
        for a in link.get("addr_info", [])
        if a.get("family") == "inet"
    ]


def plan_bridge(links: list[dict[str, Any]], bridge: str, host_cidr: str) -> list[list[str]]:
    """The `ip` commands that make `bridge` a bridge holding host_cidr (e.g. 10.77.0.1/24), up.

    Refuses (ValueError) when the name belongs to a link of another kind, or another link
    already holds an address in the same network: pods would then be routed to the wrong place.
    """
    wanted = ipaddress.IPv4Interface(host_cidr)
    current = next((link for link in links if link.get("ifname") == bridge), None)
    for link in links:
        if link is current:
            continue
        clash = [a for a in _addresses(link) if a.network.overlaps(wanted.network)]
        if clash:
            raise ValueError(
                f"{link.get('ifname')} already has {clash[0]}, inside the pod network "
                f"{wanted.network}; choose another range with METRICPIPE_POD_CIDR"
            )
    commands: list[list[str]] = []
    if current is None:
        commands.append(["ip", "link", "add", "name", bridge, "type", "bridge"])
        have: list[ipaddress.IPv4Interface] = []
        up = False
    else:
        kind = current.get("linkinfo", {}).get("info_kind")
        if kind != "bridge":
            raise ValueError(
                f"a link named {bridge} exists but is a {kind or 'plain device'}, not a bridge; "
                "remove it or set METRICPIPE_BRIDGE to another name"
            )
        have = _addresses(current)
        up = "UP" in current.get("flags", [])
    if wanted not in have:
        commands.append(["ip", "addr", "add", str(wanted), "dev", bridge])
    if not up:
        commands.append(["ip", "link", "set", bridge, "up"])
    return commands


def plan_bridge_delete(links: list[dict[str, Any]], bridge: str) -> list[list[str]]:
    """Delete the bridge when it exists and is a bridge (never another kind of link)."""
    for link in links:
        if link.get("ifname") == bridge and link.get("linkinfo", {}).get("info_kind") == "bridge":
            return [["ip", "link", "del", bridge]]
    return []


def host_cidr(settings: StackSettings) -> str:
    prefix = ipaddress.ip_network(settings.pod_cidr).prefixlen
    return f"{settings.host_address}/{prefix}"


def read_links() -> list[dict[str, Any]]:
    result = subprocess.run(["ip", "-j", "-d", "addr", "show"], capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError("network", f"ip addr show failed: {result.stderr.strip()}")
    links: list[dict[str, Any]] = json.loads(result.stdout or "[]")
    return links


def _run(commands: list[list[str]], echo: Echo) -> None:
    for command in commands:
        echo(f"   network: {' '.join(command)}")
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(
                "network",
                f"{' '.join(command)} failed: {result.stderr.strip()} "
                "(creating the pod bridge needs root and iproute2)",
            )


def ensure_bridge(settings: StackSettings, echo: Echo = print) -> None:
    try:
        commands = plan_bridge(read_links(), settings.bridge, host_cidr(settings))
    except ValueError as error:
        raise StackError("network", str(error)) from error
    _run(commands, echo)


def delete_bridge(settings: StackSettings, echo: Echo = print) -> str:
    commands = plan_bridge_delete(read_links(), settings.bridge)
    _run(commands, echo)
    return "deleted" if commands else "absent"
