"""The passthrough dialect: the client's request goes to an upstream that speaks the same API, renamed only.

Its answer is relayed untouched (``bridge/tap.py`` watches it go by), so there is nothing to read.
"""
from __future__ import annotations

from typing import Any

from bridge.dialects.base import Dialect, UpstreamOptions, UpstreamRequest


def to_request(body: dict[str, Any], options: UpstreamOptions) -> UpstreamRequest:
    """Return the client's body with the model under the upstream's own name (its model map)."""
    return UpstreamRequest(body={**body, "model": options.model or body["model"]})


CHAT = Dialect(name="chat-passthrough", endpoint="chat/completions", wire="chat", to_request=to_request)
RESPONSES = Dialect(name="responses-passthrough", endpoint="responses", wire="responses", to_request=to_request)
# POST /v1/responses/compact, to an upstream that keeps state and compacts itself (OpenAI, Azure).
COMPACT = Dialect(name="compact-passthrough", endpoint="responses/compact", wire="responses", to_request=to_request)
