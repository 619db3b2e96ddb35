"""Who the client is, for the request's log line (pure): the peer's address, unless the peer is
a trusted proxy (the edge's Nginx, an ingress controller), whose X-Real-IP or, failing that,
the last X-Forwarded-For entry names the client. A client talking to the service directly
cannot choose what is logged by sending those headers itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_trusted(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDRs (`127.0.0.1`, `10.0.0.0/8`); a ValueError names a bad one."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


def _address(text: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((text or "").strip()))
    except ValueError:
        return None


def client_address(
    peer: str, real_ip: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]
) -> str:
    """The client's address: the peer's, or what a trusted peer says in X-Real-IP (else the
    last X-Forwarded-For entry, the one that proxy added); a header that is not an address
    is ignored."""
    peer_address = _address(peer)
    if peer_address is None or not any(
        ipaddress.ip_address(peer_address) in network for network in trusted
    ):
        return peer
    last_forwarded = (forwarded_for or "").rsplit(",", 1)[-1]
    return _address(real_ip) or _address(last_forwarded) or peer
