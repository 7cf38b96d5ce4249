"""LangChain's ChatOpenAI streaming the Responses API, with two tool calls the upstream interleaves (issue 13).

LangChain starts a new, nameless call whenever ``output_index`` goes back; the bridge used
to forward the upstream's interleaving (call 1 added, then call 0's arguments), so both
calls came out truncated. It now streams one item at a time: call 0 live, call 1 whole after it.
"""
from __future__ import annotations

import json

import pytest
from langchain_core.messages import AIMessageChunk
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI

from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

WEATHER = {"city": "Paris", "unit": "celsius"}
TIME = {"zone": "Europe/Paris"}


@tool
def get_weather(city: str, unit: str) -> str:
    """The weather in a city."""
    return "sunny"


@tool
def get_time(zone: str) -> str:
    """The time in a zone."""
    return "noon"


def interleaved() -> list[dict[str, object]]:
    weather, time_ = json.dumps(WEATHER), json.dumps(TIME)
    return [
        {"tool": {"index": 0, "id": "call_weather", "name": "get_weather", "arguments": weather[:9]}},
        {"tool": {"index": 1, "id": "call_time", "name": "get_time", "arguments": time_[:6]}},
        {"tool": {"index": 0, "arguments": weather[9:20]}},
        {"tool": {"index": 1, "arguments": time_[6:]}},
        {"tool": {"index": 0, "arguments": weather[20:]}},
        {"finish": "tool_calls"},
    ]


def test_streamed_parallel_calls_come_out_whole_and_named(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"):
        monkeypatch.setenv(name, "false")
    scripted.script({"chunks": interleaved()})
    model = ChatOpenAI(base_url=f"{gateway.url}/v1", api_key=active_key, model="mock-model",
                       use_responses_api=True, streaming=True, max_retries=0).bind_tools([get_weather, get_time])
    message: AIMessageChunk | None = None
    for chunk in model.stream("Weather and time in Paris?"):
        message = chunk if message is None else message + chunk
    assert message is not None
    calls = [(call["name"], call["args"], call["id"]) for call in message.tool_calls]
    assert calls == [("get_weather", WEATHER, "call_weather"), ("get_time", TIME, "call_time")]
    assert message.invalid_tool_calls == []
