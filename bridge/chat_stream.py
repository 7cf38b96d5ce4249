"""A translated answer said to a Chat Completions client: Responses events in, ``chat.completion.chunk`` dicts out.

A Chat client on an upstream the gateway translates (Anthropic Messages) gets the same
pipeline as a Responses client: the dialect's events through ``ResponseStream``. This is
the last step, one consumer of that stream: each Responses event becomes the Chat chunk a
Chat server would have sent (text as ``content``, reasoning as ``reasoning_content``, as
DeepSeek and vLLM stream it, function calls as ``tool_calls`` by index), the terminal event
the ``finish_reason`` and, when the client asked for it, the usage chunk. A whole answer
(``completion``) is read from the final Response.
"""
from __future__ import annotations

from typing import Any

from bridge.errors import UpstreamError

FINISH = {"max_output_tokens": "length", "content_filter": "content_filter"}


class ChatChunks:
    """Turn one Responses stream into Chat chunks (``feed`` per event); ``usage``: the client asked for it."""

    def __init__(self, *, completion_id: str, model: str, created: int, usage: bool) -> None:
        self.base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model}
        self.usage = usage
        self.calls: dict[int, int] = {}  # output_index -> tool_calls index

    def feed(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        kind = event["type"]
        if kind == "response.created":
            return [self._chunk({"role": "assistant", "content": ""})]
        if kind == "response.output_text.delta":
            return [self._chunk({"content": event["delta"]})]
        if kind == "response.reasoning_summary_text.delta":
            return [self._chunk({"reasoning_content": event["delta"]})]
        if kind == "response.output_item.added" and event["item"]["type"] == "function_call":
            index = self.calls.setdefault(event["output_index"], len(self.calls))
            item = event["item"]
            return [self._chunk({"tool_calls": [{"index": index, "id": item["call_id"], "type": "function",
                                                 "function": {"name": item["name"], "arguments": ""}}]})]
        if kind == "response.function_call_arguments.delta" and event["output_index"] in self.calls:
            return [self._chunk({"tool_calls": [{"index": self.calls[event["output_index"]],
                                                 "function": {"arguments": event["delta"]}}]})]
        if kind in ("response.completed", "response.incomplete"):
            return self._end(event["response"])
        if kind == "response.failed":
            error = event["response"].get("error") or {}
            failed = UpstreamError(error.get("message") or "The upstream failed.", code=error.get("code"))
            return [dict(failed.to_dict())]
        return []

    def _end(self, response: dict[str, Any]) -> list[dict[str, Any]]:
        chunks = [self._chunk({}, finish_reason(response, bool(self.calls)))]
        if self.usage and response.get("usage"):
            chunks.append({**self.base, "choices": [], "usage": chat_usage(response["usage"])})
        return chunks

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**self.base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def finish_reason(response: dict[str, Any], called: bool) -> str:
    """The Chat finish_reason of a finished Response."""
    reason = (response.get("incomplete_details") or {}).get("reason")
    if reason:
        return FINISH.get(reason, "length")
    return "tool_calls" if called else "stop"


def chat_usage(usage: dict[str, Any]) -> dict[str, Any]:
    """A Response's usage in Chat's names."""
    said: dict[str, Any] = {"prompt_tokens": usage["input_tokens"], "completion_tokens": usage["output_tokens"],
                            "total_tokens": usage["total_tokens"]}
    cached = (usage.get("input_tokens_details") or {}).get("cached_tokens")
    if cached is not None:
        said["prompt_tokens_details"] = {"cached_tokens": cached}
    reasoning = (usage.get("output_tokens_details") or {}).get("reasoning_tokens")
    if reasoning is not None:
        said["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return said


def completion(response: dict[str, Any], *, completion_id: str, created: int) -> dict[str, Any]:
    """The whole ``chat.completion`` a finished Response stands for."""
    text = "".join(part["text"] for item in response["output"] if item["type"] == "message"
                   for part in item["content"] if part["type"] == "output_text")
    reasoning = "".join(part["text"] for item in response["output"] if item["type"] == "reasoning"
                        for part in item.get("summary", []))
    calls = [{"id": item["call_id"], "type": "function", "function": {"name": item["name"],
                                                                      "arguments": item["arguments"]}}
             for item in response["output"] if item["type"] == "function_call"]
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if reasoning:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = calls
    said = {"id": completion_id, "object": "chat.completion", "created": created, "model": response["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(response, bool(calls)),
                         "logprobs": None}]}
    if response.get("usage"):
        said["usage"] = chat_usage(response["usage"])
    return said
