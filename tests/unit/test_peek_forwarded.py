"""The client address a request is logged with (pure, by table): a trusted proxy's X-Real-IP
or last X-Forwarded-For entry, otherwise the peer itself, whatever headers it sends."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from metricpipe_consumers.peek.config import PeekConfig
from metricpipe_consumers.peek.forwarded import client_address, parse_trusted

EDGE = parse_trusted(["127.0.0.1", "10.244.0.0/16", "fd00::/8"])


@pytest.mark.parametrize(
    ("peer", "real_ip", "forwarded_for", "client"),
    [
        ("127.0.0.1", "127.3.4.5", "6.6.6.6, 127.3.4.5", "127.3.4.5"),  # the stack's Nginx
        ("10.244.3.7", None, "6.6.6.6, 203.0.113.9", "203.0.113.9"),  # the proxy's own entry
        ("10.244.3.7", "not-an-address", "203.0.113.9", "203.0.113.9"),
        ("10.244.3.7", None, None, "10.244.3.7"),  # a trusted peer that says nothing
        ("fd00::5", " 2001:db8::1 ", None, "2001:db8::1"),
        ("127.9.9.9", "6.6.6.6", "6.6.6.6", "127.9.9.9"),  # not trusted: its headers ignored
        ("192.0.2.1", "6.6.6.6", None, "192.0.2.1"),
    ],
)
def test_client_address(
    peer: str, real_ip: str | None, forwarded_for: str | None, client: str
) -> None:
    assert client_address(peer, real_ip, forwarded_for, EDGE) == client


def test_nothing_trusted_by_default() -> None:
    assert client_address("127.0.0.1", "6.6.6.6", "6.6.6.6", ()) == "127.0.0.1"


def test_a_bad_trusted_entry_is_refused_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METRICPIPE_PEEK_WEBHDFS_URL", "http://hdfs:9870/webhdfs/v1")
    monkeypatch.setenv("METRICPIPE_PEEK_TRUSTED_PROXIES", '["127.0.0.1", "10.0.0.0/33"]')
    with pytest.raises(ValidationError, match=r"10\.0\.0\.0/33"):
        PeekConfig()  # type: ignore[call-arg]
    monkeypatch.setenv("METRICPIPE_PEEK_TRUSTED_PROXIES", '["127.0.0.1", "10.0.0.0/8"]')
    assert PeekConfig().trusted_proxies == ("127.0.0.1", "10.0.0.0/8")  # type: ignore[call-arg]
