"""What the Anthropic bridge refuses beyond what the Chat bridge refuses: what Messages has no way to say.

The fields a Responses request may carry are the Chat bridge's (bridge/dialects/chat/fields.py);
Messages has no penalties and no log probabilities, so asking for them is a 400 naming the
field rather than an answer without them.
"""
from __future__ import annotations

from typing import Any

from bridge.dialects.chat import fields as chat_fields
from bridge.errors import InvalidRequestError
from bridge.values import is_number

NOT_IN_MESSAGES = {
    "presence_penalty": "An Anthropic upstream has no presence penalty.",
    "frequency_penalty": "An Anthropic upstream has no frequency penalty.",
    "top_logprobs": "An Anthropic upstream gives no log probabilities.",
}
LOGPROBS_INCLUDE = "message.output_text.logprobs"


def check(body: dict[str, Any]) -> None:
    """Refuse, with a 400 naming it, what a Responses request asks that Messages cannot honour."""
    chat_fields.check(body)
    for name, why in NOT_IN_MESSAGES.items():
        if is_number(body.get(name)) and body[name] != 0:
            raise InvalidRequestError(f"{why} Send the request without '{name}'.", param=name,
                                      code="unsupported_parameter")
    include = body.get("include")
    if isinstance(include, list) and LOGPROBS_INCLUDE in include:
        raise InvalidRequestError(f"{NOT_IN_MESSAGES['top_logprobs']} Leave '{LOGPROBS_INCLUDE}' out of 'include'.",
                                  param="include", code="unsupported_parameter")
