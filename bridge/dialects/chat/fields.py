"""What the Chat bridge does with every field of a Responses request: translated, kept, no effect, or refused.

Nothing a client sends is dropped without a word (README, "What the bridge does with each
field"): a field on none of these lists is refused with a 400 naming it, as the OpenAI API
refuses it.
"""
from __future__ import annotations

from typing import Any

from bridge.errors import InvalidRequestError
from bridge.values import str_of

TRANSLATED = frozenset({"model", "input", "instructions", "tools", "tool_choice", "parallel_tool_calls",
                        "temperature", "top_p", "presence_penalty", "frequency_penalty", "max_output_tokens", "user",
                        "text", "reasoning", "stream", "top_logprobs"})
# Kept by the gateway itself (api/stored/), or echoed: never the upstream's business.
KEPT_BY_GATEWAY = frozenset({"store", "previous_response_id", "conversation", "metadata", "stream_options",
                             "background", "prompt"})
# No effect on a Chat upstream, by nature (README, "What the bridge does with each field").
NO_EFFECT = frozenset({
    # Asks for extras: the text's log probabilities are asked of the upstream (wants_logprobs); the
    # others (encrypted reasoning, search sources...) a Chat answer does not have.
    "include",
    # OpenAI's prompt-cache routing hints: sent on to a server that takes them (its upstream's
    # switch, send_prompt_cache_key); the gateway's own pools route by the key either way.
    "prompt_cache_key", "prompt_cache_retention",
    "safety_identifier", "service_tier",  # OpenAI's abuse monitoring and processing tiers
    "truncation",  # the bridge never drops items: "disabled", whatever was asked
    "client_metadata",  # Codex's own metadata for its provider
})
# Asked for, but the bridge cannot do it yet: refused rather than answered without it.
NOT_BRIDGED = {
    "max_tool_calls": "A cap on tool calls cannot be enforced on a Chat upstream.",
}
# Content parts a Chat message cannot carry (images by URL can, in user messages).
UNSENDABLE_PARTS = {"input_file": "files", "input_audio": "audio"}


def check(body: dict[str, Any]) -> None:
    """Refuse, with a 400 naming it, what a Responses request asks that the bridge cannot honour."""
    for name in body:
        if name not in TRANSLATED | KEPT_BY_GATEWAY | NO_EFFECT | NOT_BRIDGED.keys():
            raise InvalidRequestError(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")
    for name, why in NOT_BRIDGED.items():
        if body.get(name) not in (None, 0):
            raise InvalidRequestError(f"{why} Send the request without '{name}'.", param=name,
                                      code="unsupported_parameter")
    items = body.get("input")
    for i, item in enumerate(items if isinstance(items, list) else []):
        content = item.get("content") if isinstance(item, dict) else None
        for j, part in enumerate(content if isinstance(content, list) else []):
            kind = part.get("type") if isinstance(part, dict) else None
            unsendable = UNSENDABLE_PARTS.get(str(kind)) or (
                "images by file id" if kind == "input_image" and not str_of(part, "image_url") else None)
            if unsendable:
                raise InvalidRequestError(f"A Chat Completions upstream cannot receive {unsendable} in a message.",
                                          param=f"input[{i}].content[{j}]", code="unsupported_content")
