"""Real client libraries against a gateway that keeps the request bodies it received (GATEWAY_LOG_BODIES=true).

Each test checks where issue 11's failure would show: turn 2's request to the upstream must
carry turn 1 (the user's first message and the assistant's first answer), and the bodies the
gateway kept tell what the client itself sent.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import wait_for_logs
from tests.servers import Gateway, MockUpstream

TURN_ONE = [{"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]


@pytest.fixture
def logged_gateway(start_gateway: Callable[..., Gateway], scripted: MockUpstream) -> Gateway:
    """A gateway of its own that keeps each request's body in its audit row; the mock answers Paris, then Lyon."""
    scripted.script({"chunks": [{"text": "Paris."}, {"finish": "stop"}]},
                    {"chunks": [{"text": "Lyon."}, {"finish": "stop"}]})
    return start_gateway(GATEWAY_LOG_BODIES="true")


def bodies_received(count: int, endpoint: str = "responses") -> list[dict[str, Any]]:
    """Return the bodies the gateway received on ``endpoint``, oldest first, once ``count`` rows are written."""
    rows = wait_for_logs(count)
    bodies = [json.loads(row.request_body) for row in rows if row.endpoint == endpoint]
    assert all(row.status == 200 for row in rows), [(row.endpoint, row.status, row.error_message) for row in rows]
    return bodies


def upstream_messages(scripted: MockUpstream) -> list[dict[str, Any]]:
    """Return the Chat messages of the last request the upstream received."""
    messages: list[dict[str, Any]] = scripted.requests()[-1]["body"]["messages"]
    return messages
