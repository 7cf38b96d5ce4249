"""Same-origin WebSockets: a socket opened by a page of another origin (another port of the same host too) is refused.

Browsers send a staff session's cookie with any socket a page opens to this host, whatever
the port: cookies are not port-scoped. channels' AllowedHostsOriginValidator compares the
Origin's host only, so a page served by any other program on the gateway's host (another
port) could open the live tail with a staff cookie. Here the Origin must be the very
address the socket was opened to: scheme-default ports made explicit, then compared with
the ``Host`` header, port included.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from plumbing.asgitypes import ASGIApp, Receive, Scope, Send

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def same_origin(origin: str, host: str) -> bool:
    """Whether ``origin`` (``scheme://host[:port]``) names the address in ``host`` (``host[:port]``)."""
    try:
        parsed = urlsplit(origin)
        port = parsed.port or DEFAULT_PORTS.get(parsed.scheme)
        target = urlsplit(f"//{host}")
        target_port = target.port or DEFAULT_PORTS.get(parsed.scheme)
    except ValueError:
        return False
    if not parsed.hostname or port is None:
        return False
    return (parsed.hostname, port) == (target.hostname, target_port)


class SameOriginWebSockets:
    """Refuse (403) a WebSocket whose Origin is not the address it was opened to; pass all else on."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            headers = dict(scope.get("headers", []))
            origin = headers.get(b"origin", b"").decode("latin-1")
            host = headers.get(b"host", b"").decode("latin-1")
            if not same_origin(origin, host):
                await receive()  # websocket.connect
                await send({"type": "websocket.close", "code": 1008})
                return
        await self.app(scope, receive, send)
