"""Upstream protocols, one each, and the one table that says which one a request speaks.

    base         what every dialect is: how a request is said to one kind of upstream, how its answer is read
    chat         Chat Completions: a Responses request said as Chat, and Chat chunks read back as events
    passthrough  an upstream that speaks the client's own API: the request renamed only, the answer relayed
    repaired     a Responses upstream refusing some of Codex's tools: the request repaired, the answer read
    anthropic    Anthropic Messages: a Responses request said as Messages, Messages events read back as events

A client API (``responses``, ``chat/completions``) meets an upstream that speaks Chat only,
Responses, Responses without some of Codex's tools, or Anthropic Messages (``Upstream.protocol``,
from its ``api`` and the probe's findings); the table gives the dialect for the pair. A new
upstream protocol is one package beside ``chat`` and ``anthropic`` and its entries here.
"""
from __future__ import annotations

from typing import Literal, TypeAlias

from bridge.dialects import anthropic, chat, passthrough, repaired
from bridge.dialects.base import Dialect, UpstreamOptions, UpstreamRequest

__all__ = ["DIALECTS", "Dialect", "Protocol", "UpstreamOptions", "UpstreamRequest", "dialect_for",
           "protocol_headers"]

# What an upstream speaks: Chat only, Responses, Responses without some of Codex's tools, or Anthropic Messages.
Protocol: TypeAlias = Literal["chat", "responses", "responses-repaired", "anthropic"]

# (client API, upstream protocol) -> the dialect the upstream is spoken to in.
DIALECTS: dict[tuple[str, Protocol], Dialect] = {
    ("responses", "responses"): passthrough.RESPONSES,
    ("responses", "responses-repaired"): repaired.DIALECT,
    ("responses", "chat"): chat.DIALECT,  # the bridge
    ("chat/completions", "responses"): passthrough.CHAT,
    ("chat/completions", "responses-repaired"): passthrough.CHAT,
    ("chat/completions", "chat"): passthrough.CHAT,
    ("responses", "anthropic"): anthropic.DIALECT,
    ("chat/completions", "anthropic"): anthropic.CHAT_DIALECT,
}


def dialect_for(api: str, protocol: Protocol) -> Dialect:
    """Return the dialect a request to ``api`` is sent upstream in."""
    return DIALECTS[(api, protocol)]


def protocol_headers(protocol: Protocol, api_key: str) -> dict[str, str]:
    """Return the headers every request to an upstream of ``protocol`` carries: its key, and its version."""
    if protocol == "anthropic":
        return anthropic.headers(api_key)
    return {"authorization": f"Bearer {api_key}"} if api_key else {}
