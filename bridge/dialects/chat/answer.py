"""A Chat answer read back: streamed chunks (or a whole completion) -> UpstreamEvents (docs/responses-bridge.md §4)."""
from __future__ import annotations

import json
from typing import Any

from bridge.events import (
    Finished,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    UpstreamEvent,
    UpstreamFailed,
    UsageReported,
)
from bridge.values import as_int, is_int, is_number

# Strategy (as atop h11's readers): every upstream quirk is absorbed here, so the machine in
# stream.py only ever sees the small vocabulary of events.py. Nothing here raises on bad
# input: what cannot be read becomes an UpstreamFailed event, which fails the response.

PROTOCOL_ERROR = "upstream_protocol_error"


def read_chunk(chunk: Any) -> list[UpstreamEvent]:
    """Return the events in one parsed `chat.completion.chunk`.

    Only the first choice is read: the Responses API has no `n`, so other choices have
    nowhere to go.
    """
    if not isinstance(chunk, dict):
        return [_garbage(f"expected a JSON object as a stream chunk, got {type(chunk).__name__}")]
    if chunk.get("error"):
        return [_error_event(chunk["error"])]
    choices = chunk.get("choices")
    if choices is None:
        choices = []
    if not isinstance(choices, list):
        return [_garbage("`choices` in a stream chunk is not a list")]
    events: list[UpstreamEvent] = []
    choice = choices[0] if choices else None
    if isinstance(choice, dict):
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            # A few servers put the whole message in a chunk's `message` instead of `delta`.
            delta = choice.get("message")
        if isinstance(delta, dict):
            events.extend(_parse_message(delta, _logprobs(choice.get("logprobs"))))
        reason = choice.get("finish_reason")
        if isinstance(reason, str) and reason:
            events.append(Finished(reason=reason))
    # Usage rides on a trailing `choices: []` chunk (OpenAI, vLLM) or on the finish chunk
    # (llama.cpp); either way it is read after the choice.
    usage = read_usage(chunk.get("usage"))
    if usage is not None:
        events.append(usage)
    return events


def read_completion(body: Any) -> list[UpstreamEvent]:
    """Return the events a non-streaming `chat.completion` would have streamed.

    Used when an upstream ignores `stream: true` and answers with one JSON body.
    """
    if not isinstance(body, dict):
        return [_garbage(f"expected a JSON object as a chat completion, got {type(body).__name__}")]
    if body.get("error"):
        return [_error_event(body["error"])]
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return [_garbage("chat completion has no `choices`")]
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        message = choice.get("delta")
    events: list[UpstreamEvent] = (_parse_message(message, _logprobs(choice.get("logprobs")))
                                   if isinstance(message, dict) else [])
    reason = choice.get("finish_reason")
    if not isinstance(reason, str) or not reason:
        # The body arrived whole, so nothing was cut off: a missing reason is not a break.
        has_calls = any(isinstance(event, ToolCallDelta) for event in events)
        reason = "tool_calls" if has_calls else "stop"
    events.append(Finished(reason=reason))
    usage = read_usage(body.get("usage"))
    if usage is not None:
        events.append(usage)
    return events


def _parse_message(delta: dict[str, Any], logprobs: tuple[dict[str, Any], ...] = ()) -> list[UpstreamEvent]:
    """Return the reasoning, text and tool-call events of one delta (or whole message)."""
    events: list[UpstreamEvent] = []
    # DeepSeek, Qwen and llama.cpp say `reasoning_content`; newer vLLM and OpenRouter say
    # `reasoning`. Some send both with the same text, so only the first one counts.
    for key in ("reasoning_content", "reasoning"):
        reasoning = _text_of(delta.get(key))
        if reasoning:
            events.append(ReasoningDelta(text=reasoning))
            break
    text = _text_of(delta.get("content"))
    if text:
        events.append(TextDelta(text=text, logprobs=logprobs))
    refusal = delta.get("refusal")
    if isinstance(refusal, str) and refusal:
        events.append(TextDelta(text=refusal))
    tool_calls = delta.get("tool_calls")
    if isinstance(tool_calls, list):
        for position, call in enumerate(tool_calls):
            event = _parse_tool_call(call, position)
            if event is not None:
                events.append(event)
    return events


def _parse_tool_call(call: Any, position: int) -> ToolCallDelta | None:
    """Return one tool-call fragment, or None when it carries nothing."""
    if not isinstance(call, dict):
        return None
    index = call.get("index")
    if not is_int(index):
        # Servers that send whole calls often omit `index`; the list position is the key.
        index = position
    call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else None
    function = call.get("function")
    if not isinstance(function, dict):
        function = {}
    name = function.get("name") if isinstance(function.get("name"), str) and function.get("name") else None
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        pass
    elif arguments is None:
        arguments = ""
    else:
        # Some servers send the arguments as a JSON object; Responses wants a string.
        arguments = json.dumps(arguments, ensure_ascii=False)
    if call_id is None and name is None and not arguments:
        return None
    return ToolCallDelta(index=index, call_id=call_id, name=name, arguments=arguments)


def _logprobs(value: Any) -> tuple[dict[str, Any], ...]:
    """Return a choice's `logprobs.content` in the Responses shape; what is not well-formed is left out.

    Chat allows `bytes: null` (a token that is not whole UTF-8); Responses wants a list:
    the token's own UTF-8 then.
    """
    content = value.get("content") if isinstance(value, dict) else None
    if not isinstance(content, list):
        return ()
    return tuple(logprob for raw in content if (logprob := _logprob(raw, top=True)) is not None)


def _logprob(raw: Any, *, top: bool) -> dict[str, Any] | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("token"), str) or not is_number(raw.get("logprob")):
        return None
    given = raw.get("bytes")
    data = given if isinstance(given, list) and all(is_int(b) for b in given) else list(raw["token"].encode())
    logprob: dict[str, Any] = {"token": raw["token"], "logprob": float(raw["logprob"]), "bytes": data}
    if top:
        alternatives = raw.get("top_logprobs")
        logprob["top_logprobs"] = [alt for item in (alternatives if isinstance(alternatives, list) else [])
                                   if (alt := _logprob(item, top=False)) is not None]
    return logprob


def read_usage(usage: Any) -> UsageReported | None:
    """Return the usage event for a Chat `usage` object, or None if there is none (the tap reads it too)."""
    if not isinstance(usage, dict):
        return None
    input_tokens = as_int(usage.get("prompt_tokens"))
    output_tokens = as_int(usage.get("completion_tokens"))
    if input_tokens is None and output_tokens is None:
        return None
    input_tokens = input_tokens or 0
    output_tokens = output_tokens or 0
    total = as_int(usage.get("total_tokens"))
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    return UsageReported(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        total_tokens=total if total is not None else input_tokens + output_tokens,
        cached_tokens=as_int(prompt_details.get("cached_tokens")) if isinstance(prompt_details, dict) else None,
        reasoning_tokens=(
            as_int(completion_details.get("reasoning_tokens"))
            if isinstance(completion_details, dict)
            else None
        ),
    )


def _error_event(error: Any) -> UpstreamFailed:
    """Return the event for an upstream `{"error": ...}` payload, keeping its code and text."""
    if not isinstance(error, dict):
        return UpstreamFailed(code="upstream_error", message=str(error))
    # llama.cpp puts an HTTP status in `code` and the useful word in `type`.
    code = next((v for v in (error.get("code"), error.get("type")) if isinstance(v, str) and v), "upstream_error")
    message = error.get("message")
    if not isinstance(message, str) or not message:
        message = json.dumps(error, ensure_ascii=False)
    return UpstreamFailed(code=code, message=message)


def _garbage(message: str) -> UpstreamFailed:
    return UpstreamFailed(code=PROTOCOL_ERROR, message=message)


def _text_of(value: Any) -> str:
    """Return the text of a content value: a string, or a list of `{type: text}` parts."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(
            part["text"] for part in value if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""
