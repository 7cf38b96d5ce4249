"""The input items of a Responses request as Anthropic messages, in the shape Messages requires.

The Chat bridge's history (bridge/dialects/chat/messages.py) already puts items in the order
strict servers enforce: one system text, each run of calls right after the assistant text
before it, each call's output right after it, a call with no output answered. Messages
needs more, which this module adds on top: roles that alternate (same-role messages merged,
tool results as ``tool_result`` blocks of the next user message, first), a first message
from the user, tool inputs as objects, ids in its alphabet, no empty text, and a thinking
block, with its signature, before the ``tool_use`` it preceded.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from bridge.dialects.anthropic import thinking
from bridge.dialects.chat.messages import ChatHistory
from bridge.values import str_of

ID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")
DATA_URL = re.compile(r"^data:(?P<type>image/[a-z0-9.+-]+);base64,(?P<data>.+)$", re.IGNORECASE | re.DOTALL)
# Said when the history starts with the assistant (a conversation continued from elsewhere):
# Messages requires the user to speak first.
OPENING = "(The conversation so far follows.)"


class MessagesHistory(ChatHistory):
    """The Chat bridge's history, keeping Claude's thinking blocks for the assistant message they belong to."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.thinking: list[dict[str, Any]] = []
        self.foreign_reasoning = 0  # reasoning items another server made: no Claude block to send back

    def add(self, item: dict[str, Any]) -> None:
        if item.get("type") == "reasoning":
            self.close_calls()
            block = thinking.unseal(item["encrypted_content"]) if thinking.is_thinking(
                item.get("encrypted_content")) else None
            if block is not None:
                self.thinking.append(block)
            else:
                self.foreign_reasoning += 1
            return
        if item.get("type") in ("message", None) and item.get("role") == "user":
            self.thinking = []  # thinking followed by a user turn belonged to an abandoned answer
        super().add(item)

    def append(self, message: dict[str, Any]) -> dict[str, Any]:
        if message["role"] == "assistant" and self.thinking:
            message["thinking"], self.thinking = self.thinking, []
        return super().append(message)


def system_blocks(texts: Iterable[str]) -> list[dict[str, Any]]:
    """Return the system texts as Messages ``system`` blocks (a list: a cache breakpoint can mark it)."""
    return [{"type": "text", "text": text} for text in texts if text]


def to_messages(chat: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the Chat messages (system left out) as Messages ``messages``, roles alternating, user first."""
    messages: list[dict[str, Any]] = []
    for message in chat:
        role = message["role"]
        if role == "system" or role == "developer":
            continue
        blocks = _blocks(message)
        if not blocks:
            continue
        speaker = "assistant" if role == "assistant" else "user"
        if messages and messages[-1]["role"] == speaker:
            messages[-1]["content"] += blocks
        else:
            messages.append({"role": speaker, "content": blocks})
    if messages and messages[0]["role"] != "user":
        messages.insert(0, {"role": "user", "content": [{"type": "text", "text": OPENING}]})
    return messages


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    role = message["role"]
    if role == "tool":
        return [{"type": "tool_result", "tool_use_id": tool_id(message.get("tool_call_id")),
                 "content": message.get("content") or "(no output)"}]
    blocks: list[dict[str, Any]] = list(message.get("thinking", []))
    blocks += _content_blocks(message.get("content"))
    for call in message.get("tool_calls", []):
        function = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": tool_id(call.get("id")), "name": function.get("name"),
                       "input": tool_input(function.get("arguments"))})
    return blocks


def _content_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else []:
        if part.get("type") == "text" and str_of(part, "text").strip():
            blocks.append({"type": "text", "text": part["text"]})
        elif part.get("type") == "image_url":
            blocks.append(image_block(str_of(part.get("image_url") or {}, "url")))
    return blocks


def image_block(url: str) -> dict[str, Any]:
    """An image by URL, or inline when the client sent it as a data: URL (Messages takes base64 apart)."""
    inline = DATA_URL.match(url)
    if inline:
        return {"type": "image", "source": {"type": "base64", "media_type": inline["type"].lower(),
                                            "data": inline["data"]}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def tool_id(raw: Any) -> str:
    """A call id in the alphabet Messages takes (^[a-zA-Z0-9_-]+$); the same one for the call and its result."""
    return ID_CHARS.sub("_", raw) if isinstance(raw, str) and raw else "toolu_unnamed"


def tool_input(arguments: Any) -> dict[str, Any]:
    """A call's arguments as the object Messages requires; text that is not an object is kept under ``input``."""
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = json.loads(arguments)
    except ValueError:
        return {"input": arguments}
    return value if isinstance(value, dict) else {"input": value}
