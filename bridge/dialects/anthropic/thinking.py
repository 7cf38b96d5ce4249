"""Claude's thinking blocks carried through a client as a reasoning item's ``encrypted_content``.

A tool-using turn with extended thinking must send the thinking block back, signature and
text exactly as given, before the ``tool_use`` it preceded; a redacted block goes back as its
opaque ``data``. Clients keep a reasoning item's ``encrypted_content`` and send it back
untouched (Codex, the openai SDKs, openai-agents), so the whole block travels there, not only
the signature: the summary a client shows may be trimmed or dropped. Nothing here is secret
(the text is the item's summary too) and Anthropic checks the signature, so it is encoded,
not sealed. The prefix says whose it is: another upstream is never sent one as garbage.
"""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any

PREFIX = "cgw-anthropic-thinking.v1."


def seal(block: dict[str, Any]) -> str:
    """Return the ``encrypted_content`` that carries a thinking or redacted_thinking block."""
    kept = {key: block[key] for key in ("type", "thinking", "signature", "data") if key in block}
    raw = json.dumps(kept, ensure_ascii=False, separators=(",", ":")).encode()
    return PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def is_thinking(encrypted_content: Any) -> bool:
    """Whether ``encrypted_content`` is a Claude thinking block this gateway carried."""
    return isinstance(encrypted_content, str) and encrypted_content.startswith(PREFIX)


def unseal(encrypted_content: str) -> dict[str, Any] | None:
    """Return the thinking block ``encrypted_content`` carries, or None when it is not one whole."""
    if not is_thinking(encrypted_content):
        return None
    text = encrypted_content[len(PREFIX):]
    try:
        block = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(block, dict):
        return None
    if block.get("type") == "thinking" and isinstance(block.get("thinking"), str) \
            and isinstance(block.get("signature"), str):
        return block
    if block.get("type") == "redacted_thinking" and isinstance(block.get("data"), str):
        return block
    return None


def without_thinking(items: list[Any]) -> tuple[list[Any], tuple[str, ...]]:
    """Return ``items`` without Claude's thinking blocks, and the note that says so, for an upstream that is not Claude.

    Another server cannot read them (OpenAI's would refuse the request): they are left out,
    never sent as garbage, and the audit row's notes say how many.
    """
    kept = [item for item in items if not _is_thinking_item(item)] if any(map(_is_thinking_item, items)) else items
    left = len(items) - len(kept)
    return kept, ((f"{left} Claude thinking block(s) left out: this upstream cannot read them",) if left else ())


def _is_thinking_item(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") == "reasoning" and is_thinking(item.get("encrypted_content"))
