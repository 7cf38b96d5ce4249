"""Upstream protocols, one each, and the one table that says which one a request speaks.

    base         what every dialect is: how a request is said to one kind of upstream, how its answer is read
    chat         Chat Completions: a Responses request said as Chat, and Chat chunks read back as events
    passthrough  an upstream that speaks the client's own API: the request renamed only, the answer relayed

A client API (``responses``, ``chat/completions``) meets an upstream that does or does not
speak Responses (``Upstream.supports_responses``, the product's word for it); the table
gives the dialect for the pair. A new upstream protocol (Anthropic Messages, say) is one
package or module beside ``chat`` and one flag and entry here.
"""
from __future__ import annotations

from bridge.dialects import chat, passthrough
from bridge.dialects.base import Dialect, UpstreamOptions, UpstreamRequest

__all__ = ["DIALECTS", "Dialect", "UpstreamOptions", "UpstreamRequest", "dialect_for"]

# (client API, upstream speaks Responses) -> the dialect the upstream is spoken to in.
DIALECTS: dict[tuple[str, bool], Dialect] = {
    ("responses", True): passthrough.RESPONSES,
    ("responses", False): chat.DIALECT,  # the bridge
    ("chat/completions", True): passthrough.CHAT,
    ("chat/completions", False): passthrough.CHAT,
}


def dialect_for(api: str, supports_responses: bool) -> Dialect:
    """Return the dialect a request to ``api`` is sent upstream in."""
    return DIALECTS[(api, supports_responses)]
