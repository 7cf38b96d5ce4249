"""The Anthropic Messages dialect: a Responses request said as Messages, Messages events read back as events.

Claude, and the Anthropic-compatible endpoints of DeepSeek, Moonshot (Kimi), MiniMax and Zhipu
(GLM), keep on Messages what their OpenAI-compatible endpoints lose: thinking blocks with their
signatures, prompt-cache control, precise errors.

    request   the request: a Responses body -> a Messages body (max_tokens, thinking, tool_choice, cache breakpoints)
    chat      a Chat Completions request -> a Messages body (a Chat client on Claude)
    messages  the input items as Messages messages: roles alternating, tool results next, thinking before tool_use
    answer    the answer: Messages stream events, or a whole message, -> UpstreamEvents (one reader per answer)
    thinking  a thinking block carried through the client as a reasoning item's encrypted_content
    fields    what Messages cannot honour, refused with a 400 naming it
"""
from __future__ import annotations

from bridge.dialects.anthropic import chat
from bridge.dialects.anthropic.answer import MessagesReader, read_message
from bridge.dialects.anthropic.fields import check
from bridge.dialects.anthropic.request import to_request
from bridge.dialects.base import Dialect

VERSION = "2023-06-01"  # the anthropic-version every request carries

DIALECT = Dialect(name="anthropic", endpoint="messages", wire="anthropic", to_request=to_request,
                  new_reader=MessagesReader, read_body=read_message, check=check)
# A Chat Completions client on Claude: its answer read the same way, said as Chat chunks.
CHAT_DIALECT = Dialect(name="anthropic-chat", endpoint="messages", wire="anthropic", to_request=chat.to_request,
                       new_reader=MessagesReader, read_body=read_message, check=chat.check, answers="chat")


def headers(api_key: str) -> dict[str, str]:
    """The headers of every request to an Anthropic upstream: its key as x-api-key, and the API version."""
    return {"anthropic-version": VERSION, **({"x-api-key": api_key} if api_key else {})}
