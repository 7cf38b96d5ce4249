"""What one Responses WebSocket remembers between its turns: the latest response's whole history.

Over the socket, Codex sends each turn as ``previous_response_id`` plus only the new input
items, with ``store: false``: nothing is stored, yet the next turn must continue it. As the
OpenAI API does, the connection keeps its most recent response in memory (its input items,
the history before them, its output) and that id resolves from here; the upstream is still
sent a complete, stateless request (api/stored/takein.py takes it in). It goes with the socket,
and a turn that fails forgets the response it continued.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest

SCOPE_KEY = "gateway.connection"  # on the scope of each request a socket makes: its SocketMemory
WARM_UP_KEY = "gateway.warm_up"  # on the scope of a socket's `generate: false` (Codex's warm-up)


@dataclass
class SocketMemory:
    """The latest response of one socket, by id: every item up to and including its output."""

    latest_id: str | None = None
    latest: list[dict[str, Any]] = field(default_factory=list)
    pending: list[dict[str, Any]] = field(default_factory=list)  # the items of the turn being answered

    def earlier(self, response_id: str) -> list[dict[str, Any]] | None:
        """The history ``response_id`` ends, if it is the one this socket remembers."""
        return list(self.latest) if response_id == self.latest_id else None

    def answering(self, items: list[dict[str, Any]]) -> None:
        """Note the whole input of the turn being answered (history first): its response continues it."""
        self.pending = items

    def remember(self, response_id: str, output: list[dict[str, Any]]) -> None:
        """Keep a finished response: the input it was answered from, then its output."""
        self.latest_id, self.latest = response_id, [*self.pending, *output]
        self.pending = []

    def forget(self, response_id: str | None) -> None:
        if response_id is not None and response_id == self.latest_id:
            self.latest_id, self.latest = None, []


def memory_of(request: HttpRequest) -> SocketMemory | None:
    """The memory of the socket that made ``request``; None for a request over HTTP."""
    memory = getattr(request, "scope", {}).get(SCOPE_KEY)
    return memory if isinstance(memory, SocketMemory) else None


def warming_up(request: HttpRequest) -> bool:
    """Whether ``request`` is a socket's warm-up (``generate: false``): answered without an upstream."""
    return bool(getattr(request, "scope", {}).get(WARM_UP_KEY))
