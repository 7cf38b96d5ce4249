"""Same-origin WebSockets: the Origin must be the address the socket was opened to, port included."""
from __future__ import annotations

import pytest

from plumbing.origin import same_origin


@pytest.mark.parametrize(("origin", "host", "same"), [
    ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
    ("http://gw.example", "gw.example", True),
    ("https://gw.example", "gw.example:443", True),
    ("http://gw.example:80", "gw.example", True),
    ("http://127.0.0.1:3000", "127.0.0.1:8000", False),  # another program on the same host
    ("http://evil.example:8000", "127.0.0.1:8000", False),
    ("", "127.0.0.1:8000", False),
    ("null", "127.0.0.1:8000", False),
    ("http://127.0.0.1:notaport", "127.0.0.1:8000", False),
    ("http://127.0.0.1:8000", "", False),
])
def test_same_origin(origin: str, host: str, same: bool) -> None:
    assert same_origin(origin, host) is same
