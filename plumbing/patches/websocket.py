"""What daphne lacks for API WebSockets: refusing an upgrade as the API answers, and messages as large as bodies.

- **Denial responses.** daphne answers every refused handshake ``403 Access denied``, with
  no body and no headers. The Responses socket (api/socket.py) must refuse as the HTTP API
  answers: 401 for a bad key, 429 with its ``retry-after``, an OpenAI-shaped JSON body.
  ``install()`` teaches daphne's WebSocket protocol ASGI's ``websocket.http.response``
  extension (``websocket.http.response.start`` and ``.body``, sent instead of
  ``websocket.accept``) and advertises it in each socket's scope.
- **Message size.** daphne takes WebSocket messages up to 1 MiB unless its command line says
  otherwise; a Codex turn sent whole (after a reconnect) is larger. Messages may be as large
  as a request body (GATEWAY_MAX_BODY_BYTES): the same request, on another transport.
"""
from __future__ import annotations

from http import HTTPStatus
from typing import Any

EXTENSION = "websocket.http.response"
_DENIAL = "_gateway_denial"  # on a daphne protocol: (status, headers, body so far)


def supported(scope: dict[str, Any]) -> bool:
    """Whether the server serving ``scope`` can send a denial response (daphne, once installed)."""
    return EXTENSION in (scope.get("extensions") or {})


# What this patch wraps (checked by plumbing/patches/__init__.py before anything is patched).
TARGETS = (("daphne.ws_protocol", "WebSocketProtocol", ("handle_reply", "failHandshake")),
           ("daphne.ws_protocol", "WebSocketFactory", ("setProtocolOptions",)),
           ("daphne.server", "Server", ("create_application",)),
           ("autobahn.websocket.types", "ConnectionDeny", ("__init__",)))


def install(max_message_bytes: int) -> None:
    """Add the denial response to daphne's WebSocketProtocol, and take messages up to ``max_message_bytes`` (once)."""
    from autobahn.websocket.types import ConnectionDeny
    from daphne.ws_protocol import WebSocketProtocol

    if getattr(WebSocketProtocol, "_gateway_denial_installed", False):
        return
    WebSocketProtocol._gateway_denial_installed = True
    handle_reply = WebSocketProtocol.handle_reply
    fail_handshake = WebSocketProtocol.failHandshake

    def handle(self: Any, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == f"{EXTENSION}.start" and self.state == self.STATE_CONNECTING:
            setattr(self, _DENIAL, (int(message["status"]), list(message.get("headers") or []), bytearray()))
            return
        denial = getattr(self, _DENIAL, None)
        if kind == f"{EXTENSION}.body" and denial is not None:
            denial[2].extend(message.get("body", b""))
            if not message.get("more_body", False):
                status = denial[0]
                self.handshake_deferred.errback(ConnectionDeny(code=status, reason=HTTPStatus(status).phrase))
                del self.handshake_deferred
                self.server.protocol_disconnected(self)
            return
        handle_reply(self, message)

    # autobahn's names, and its signature: it calls this with the ConnectionDeny's reason and code.
    def failHandshake(self: Any, reason: str, code: int = 400, responseHeaders: Any = None) -> None:  # noqa: N802,N803
        denial = getattr(self, _DENIAL, None)
        if denial is None:
            return fail_handshake(self, reason, code, responseHeaders)
        status, headers, body = denial
        self.wasNotCleanReason = reason
        head = [f"HTTP/1.1 {status} {reason}".encode("latin-1")]
        head += [bytes(name) + b": " + bytes(value) for name, value in headers]
        head += [b"content-length: " + str(len(body)).encode(), b"connection: close"]
        self.sendData(b"\r\n".join(head) + b"\r\n\r\n" + bytes(body))
        self.dropConnection(abort=False)
        return None

    WebSocketProtocol.handle_reply = handle
    WebSocketProtocol.failHandshake = failHandshake
    _advertise()
    _allow_messages_up_to(max_message_bytes)


def _allow_messages_up_to(limit: int) -> None:
    from daphne.ws_protocol import WebSocketFactory

    set_options = WebSocketFactory.setProtocolOptions

    def setProtocolOptions(self: Any, **options: Any) -> None:  # noqa: N802 (autobahn's name)
        for name in ("maxMessagePayloadSize", "maxFramePayloadSize"):
            if name in options and 0 < options[name] < limit:
                options[name] = limit
        set_options(self, **options)

    WebSocketFactory.setProtocolOptions = setProtocolOptions


def _advertise() -> None:
    """Put the extension in every WebSocket scope daphne makes."""
    from daphne.server import Server

    create = Server.create_application
    if getattr(create, "_gateway_denial", False):
        return

    def create_application(self: Any, protocol: Any, scope: dict[str, Any]) -> Any:
        if scope.get("type") == "websocket":
            scope = {**scope, "extensions": {**(scope.get("extensions") or {}), EXTENSION: {}}}
        return create(self, protocol, scope)

    create_application._gateway_denial = True  # type: ignore[attr-defined]
    Server.create_application = create_application
