"""daphne's listening endpoint: the backlog is set, and an IPv6 address is escaped as Twisted's parser wants."""
from __future__ import annotations

import pytest
from twisted.internet import endpoints

from plumbing import listen


@pytest.mark.parametrize(("host", "interface"), [("127.0.0.1", "127.0.0.1"), ("::1", "::1"), ("0.0.0.0", "0.0.0.0")])
def test_the_endpoint_listens_on_the_host_with_the_backlog(host: str, interface: str) -> None:
    described = listen.endpoint(host, 8123)
    parsed = endpoints.serverFromString(None, described)  # parsed only: no reactor is installed or run
    assert (parsed._port, parsed._interface, parsed._backlog) == (8123, interface, listen.BACKLOG)
