"""ASGI type aliases shared by the gateway's ASGI middleware (limits, shutdown)."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

Scope = dict[str, Any]
Message = Mapping[str, Any]  # read-only: what an app receives and sends (Django's handlers say the same)
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
