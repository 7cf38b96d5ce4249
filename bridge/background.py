"""The protocol side of background responses: which events a resuming client gets, and relayed events renumbered.

A background response is watched by clients that come and go (``GET
/v1/responses/{id}?stream=true&starting_after=N``), so its events must form one stream of
its own, whatever the upstream: one id (the one the client was given before the upstream
was asked) and one sequence of ``sequence_number`` from 0. A bridged answer is that
already (``ResponseStream``); a relayed Responses upstream's events are renumbered here.
"""
from __future__ import annotations

from typing import Any

from bridge import wire

OPENING_EVENTS = ("response.created", "response.queued")  # the gateway sent its own, before the upstream answered
LIVE_STATUSES = ("queued", "in_progress")  # a background response still being answered


def after(events: list[dict[str, Any]], starting_after: int | None) -> list[dict[str, Any]]:
    """Return the events after sequence number ``starting_after`` (all of them for None)."""
    if starting_after is None:
        return list(events)
    return [event for event in events if event.get("sequence_number", -1) > starting_after]


class RelayedEvents:
    """Make a relayed upstream's events those of the background response the client knows.

    ``opening`` are the events the gateway sent first (``response.created`` and
    ``response.queued``, from a ``ResponseStream``); ``applied`` the Response fields the
    gateway itself applied (``background``, ``store``, ``previous_response_id``...), which
    a stateless upstream was not sent and so cannot echo. A field the upstream's Response
    leaves out keeps the gateway's value (the request's settings, as echoed when queued).
    """

    def __init__(self, opening: list[dict[str, Any]], applied: dict[str, Any]) -> None:
        self.base: dict[str, Any] = opening[-1]["response"]  # every field, for upstreams that send fewer
        self.response: dict[str, Any] = dict(self.base)  # the latest snapshot
        self.applied = {**applied, "id": self.response["id"]}
        self.sequence_number = len(opening)
        self.done = False

    def take(self, event: dict[str, Any]) -> dict[str, Any] | None:
        """Return ``event`` as the background response's, or None for one the gateway already sent."""
        if event.get("type") in OPENING_EVENTS:
            return None
        event = {**event, "sequence_number": self._next()}
        if isinstance(event.get("response"), dict):
            self.response = event["response"] = {**self.base, **event["response"], **self.applied}
        if event.get("type") in wire.TERMINAL_EVENTS:
            self.done = True
        return event

    def failed(self, code: str, message: str) -> dict[str, Any]:
        """Return the ``response.failed`` that ends a relayed stream that broke, after what came."""
        self.done = True
        self.response = {**self.response, "status": "failed", "error": {"code": code, "message": message}}
        return wire.terminal(self._next(), self.response)

    def cancelled(self) -> dict[str, Any]:
        """Return the event that ends a cancelled one: ``response.failed`` saying ``status: "cancelled"``."""
        self.done = True
        self.response = {**self.response, "status": "cancelled", "error": None}
        return wire.terminal(self._next(), self.response)

    def _next(self) -> int:
        number = self.sequence_number
        self.sequence_number += 1
        return number


def ending(response: dict[str, Any], sequence_number: int) -> dict[str, Any]:
    """Return the one event that ends the stream of a finished response whose events were not kept.

    A response lost with its process was never streamed to its end: a client that
    resumes it is told how it ended, after the last event it saw.
    """
    return wire.terminal(sequence_number, response)
