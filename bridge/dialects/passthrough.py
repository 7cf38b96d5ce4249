"""The passthrough dialect: the client's request goes to an upstream that speaks the same API, renamed only.

Its answer is relayed untouched (``bridge/tap.py`` watches it go by), so there is nothing to read.
"""
from __future__ import annotations

from typing import Any

from bridge.dialects.anthropic.thinking import without_thinking
from bridge.dialects.base import Dialect, UpstreamOptions, UpstreamRequest


def to_request(body: dict[str, Any], options: UpstreamOptions) -> UpstreamRequest:
    """Return the client's body with the model under the upstream's own name (its model map)."""
    return UpstreamRequest(body={**body, "model": options.model or body["model"]})


def to_responses_request(body: dict[str, Any], options: UpstreamOptions) -> UpstreamRequest:
    """Return the body renamed, without the Claude thinking blocks a conversation may carry from a Claude upstream."""
    request, items = to_request(body, options), body.get("input")
    if not isinstance(items, list):
        return request
    kept, notes = without_thinking(items)
    return UpstreamRequest(body={**request.body, "input": kept}, notes=notes) if notes else request


def to_chat_request(body: dict[str, Any], options: UpstreamOptions) -> UpstreamRequest:
    """Return a Chat body renamed, and asking for usage on a stream whose client did not (where the upstream takes it).

    Every answered request's row carries its tokens, and budgets count them; the usage
    chunk asked for this way is taken out of the client's stream (``usage_added``).
    """
    request = to_request(body, options)
    asked = body.get("stream_options")
    if not body.get("stream") or not options.send_stream_options or (isinstance(asked, dict)
                                                                     and asked.get("include_usage")):
        return request
    if asked is not None and not isinstance(asked, dict):
        return request  # not ours to mend: the upstream answers it
    stream_options = {**(asked or {}), "include_usage": True}
    return UpstreamRequest(body={**request.body, "stream_options": stream_options}, usage_added=True)


CHAT = Dialect(name="chat-passthrough", endpoint="chat/completions", wire="chat", to_request=to_chat_request)
RESPONSES = Dialect(name="responses-passthrough", endpoint="responses", wire="responses",
                    to_request=to_responses_request)
# POST /v1/responses/compact, to an upstream that keeps state and compacts itself (OpenAI, Azure).
COMPACT = Dialect(name="compact-passthrough", endpoint="responses/compact", wire="responses",
                  to_request=to_responses_request)
