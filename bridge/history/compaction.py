"""Remote compaction for upstreams that cannot compact: the conversation as text, in chunks, and its summary.

Codex compacts "remotely" against an OpenAI-named provider: an ordinary streaming
``POST /v1/responses`` whose last input item is ``{"type": "compaction_trigger"}``, answered
with exactly one output item of type ``compaction`` (``encrypted_content`` opaque to
Codex), which later requests send back in the history's place. ``POST /v1/responses/compact``
asks the same of the OpenAI API directly. A Chat server (or a Responses server that keeps
no state) has no such thing, so the gateway summarizes the conversation through the
upstream itself: rendered as text, cut into chunks that fit the model's window, each folded
into a running summary. The summary travels sealed (api/compaction/seal.py) and becomes a
user message again when it comes back (``summary_message``).

Pure: items in, request bodies and text out; the IO is api/compaction/.
"""
from __future__ import annotations

import json
from typing import Any

from bridge.values import str_of

TRIGGER = "compaction_trigger"
ITEM = "compaction"
# Characters per token, counted low: chunks are cut by characters, and code is dense.
CHARS_PER_TOKEN = 3
# Of the model's window, what one chunk of history may take: the rest is the running
# summary, the instructions and the answer.
CHUNK_SHARE = 0.5
SUMMARY_TOKENS = 4000  # the most a summary may say (max_output_tokens of each summarizing call)
DEFAULT_WINDOW = 32_768  # tokens, for a model whose window nobody reported

SUMMARIZE = """You condense a coding session between a user and a coding agent, so that the agent can carry \
on from your summary alone: the earlier messages will be gone.

Keep:
- what the user asked for, and every constraint or preference they stated;
- what has been done: files created or changed (with their paths), commands run and what they showed, \
decisions taken and why;
- where things stand: what works, what fails (with the exact error messages), what was about to be done next;
- anything the agent promised or the user is waiting for.

Leave out greetings and whatever a later step superseded. Write short paragraphs or lists. Do not invent \
anything; say plainly what is unknown."""

SUMMARY_INTRO = ("Summary of the earlier part of this session, condensed by the gateway when the context filled "
                 "up:\n\n")


def is_trigger(item: Any) -> bool:
    return isinstance(item, dict) and item.get("type") == TRIGGER


def asked(body: dict[str, Any]) -> bool:
    """Whether a Responses request asks for a compaction: its last input item is the trigger."""
    items = body.get("input")
    return isinstance(items, list) and bool(items) and is_trigger(items[-1])


def history_of(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The items to summarize: the input without its trigger (a string input is one user message)."""
    items = body.get("input")
    if isinstance(items, str):
        return [{"type": "message", "role": "user", "content": items}]
    return [item for item in items or [] if isinstance(item, dict) and not is_trigger(item)]


def transcript(items: list[dict[str, Any]], instructions: str = "") -> list[str]:
    """Render the conversation as text, one block per item (reasoning left out: it is the model's own scratch)."""
    blocks = [f"[instructions]\n{instructions}"] if instructions else []
    for item in items:
        text = _render(item)
        if text:
            blocks.append(text)
    return blocks


def chunks(blocks: list[str], budget: int) -> list[str]:
    """Cut the blocks into chunks of at most ``budget`` characters, whole blocks where they fit."""
    out: list[str] = []
    current: list[str] = []
    size = 0
    for block in blocks:
        for piece in _pieces(block, budget):
            if current and size + len(piece) + 2 > budget:
                out.append("\n\n".join(current))
                current, size = [], 0
            current.append(piece)
            size += len(piece) + 2
    if current:
        out.append("\n\n".join(current))
    return out


def chunk_budget(window: int | None) -> int:
    """Characters of history one summarizing call may carry, for a model of ``window`` tokens."""
    return max(int((window or DEFAULT_WINDOW) * CHUNK_SHARE) * CHARS_PER_TOKEN - len(SUMMARIZE), 2_000)


def summary_request(model: str, chunk: str, summary_so_far: str) -> dict[str, Any]:
    """The Responses request that folds one chunk into the running summary (the dialects say it to any upstream)."""
    said = f"Summary of the session so far:\n\n{summary_so_far}\n\n" if summary_so_far else ""
    text = f"{said}The session goes on:\n\n{chunk}\n\nWrite the summary of the whole session so far."
    return {"model": model, "instructions": SUMMARIZE, "stream": False, "store": False,
            "max_output_tokens": SUMMARY_TOKENS,
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}]}


def summary_message(summary: str) -> dict[str, Any]:
    """The user message a sealed compaction item becomes again, for an upstream to read."""
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": SUMMARY_INTRO + summary}]}


def user_messages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The user messages of a conversation, as ``/responses/compact`` gives them back before its compaction item."""
    return [item for item in items if item.get("type", "message") == "message" and item.get("role") == "user"]


def _render(item: dict[str, Any]) -> str:
    kind = item.get("type") or ("message" if "role" in item else "")
    if kind == "message":
        return f"[{str_of(item, 'role') or 'user'}]\n{_content_text(item.get('content'))}"
    if kind == "function_call":
        return f"[tool call {str_of(item, 'name')}]\n{str_of(item, 'arguments')}"
    if kind == "custom_tool_call":
        return f"[tool call {str_of(item, 'name')}]\n{str_of(item, 'input')}"
    if kind == "local_shell_call":
        action = item.get("action")
        return f"[shell]\n{json.dumps(action.get('command') if isinstance(action, dict) else None)}"
    if kind.endswith("_call_output"):
        return f"[tool output]\n{_content_text(item.get('output'))}"
    if kind in ("reasoning", TRIGGER, ""):
        return ""
    return f"[{kind}]"


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = []
    for part in content:
        if isinstance(part, dict):
            texts.append(str_of(part, "text") or str_of(part, "refusal") or
                         ("[image]" if part.get("type") == "input_image" else ""))
    return "\n".join(text for text in texts if text)


def _pieces(block: str, budget: int) -> list[str]:
    """A block that alone is larger than a chunk, cut into pieces that fit."""
    if len(block) <= budget:
        return [block]
    return [block[start:start + budget] for start in range(0, len(block), budget)]
