"""Encode Responses events and Chat chunks as server-sent events (the wire codec).

Parsing upstream SSE is the IO side's job (``upstream.py``, via httpx-sse); this only writes.
"""
from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"


def encode_event(event: dict[str, Any]) -> bytes:
    """Return one Responses event as an SSE frame with its `event:` line.

    Codex dispatches on the JSON `type`, but real servers send the `event:` line too and
    some clients (the openai SDK's thread events, curl users) read it.
    """
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def encode_data(obj: Any) -> bytes:
    """Return a `data:`-only SSE frame, the way Chat Completions streams are framed."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"
