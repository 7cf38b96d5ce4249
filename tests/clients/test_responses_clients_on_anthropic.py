"""Responses clients on an Anthropic Messages upstream: the openai SDK's accumulator, openai-agents, LangChain.

The strict Anthropic mock (upstreams/mock/anthropic.py) answers with a thinking block and a
tool_use, then with text: each client must run the tool turn and send it back in a shape
Messages takes (the mock refuses anything else), and put the answer together.
"""
from __future__ import annotations

import asyncio

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from langchain_openai import ChatOpenAI

from tests.conftest import wait_for_logs
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

CALL_THEN_ANSWER = (
    {"chunks": [{"reasoning": "I need the weather."},
                {"tool": {"index": 0, "id": "toolu_w1", "name": "get_weather", "arguments": '{"city": '}},
                {"tool": {"index": 0, "arguments": '"Paris"}'}}, {"finish": "tool_calls"}]},
    {"chunks": [{"text": "Sunny in "}, {"text": "Paris."}, {"finish": "stop"}]},
)


@pytest.fixture
def claude(scripted: MockUpstream) -> Upstream:
    scripted.script(*CALL_THEN_ANSWER)
    return Upstream.objects.create(name="claude", base_url=scripted.url, api="anthropic", models="claude-*")


def assert_second_request_answers_the_call(scripted: MockUpstream) -> None:
    first, second = scripted.requests()
    assert first["path"] == second["path"] == "/v1/messages"
    assistant, results = second["body"]["messages"][-2:]
    assert [block["type"] for block in assistant["content"]] == ["thinking", "tool_use"]
    assert results["content"][0]["type"] == "tool_result" and results["content"][0]["tool_use_id"] == "toolu_w1"
    assert "18" in str(results["content"][0]["content"])
    assert [(row.mode, row.outcome) for row in wait_for_logs(2)] == [("bridge", "ok")] * 2


def test_the_openai_sdk_runs_a_tool_turn_with_its_accumulator(gateway: Gateway, scripted: MockUpstream,
                                                              active_key: str, claude: Upstream) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=active_key, max_retries=0)
    tools = [{"type": "function", "name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]
    with client.responses.stream(model="claude-sonnet-4-5", input="Weather in Paris?", tools=tools,
                                 store=False) as stream:
        first = stream.get_final_response()
    reasoning, call = first.output
    assert (reasoning.type, call.type, call.call_id, call.arguments) == (
        "reasoning", "function_call", "toolu_w1", '{"city": "Paris"}')
    history = [{"role": "user", "content": "Weather in Paris?"}, *(item.model_dump(exclude_none=True)
                                                                  for item in first.output),
               {"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees, sunny"}]
    with client.responses.stream(model="claude-sonnet-4-5", input=history, tools=tools, store=False) as stream:
        second = stream.get_final_response()
    assert (second.output_text, second.status) == ("Sunny in Paris.", "completed")
    assert_second_request_answers_the_call(scripted)


def test_openai_agents_runs_a_tool_and_answers(gateway: Gateway, scripted: MockUpstream, active_key: str,
                                               claude: Upstream) -> None:
    set_tracing_disabled(True)

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return f"18 degrees, sunny in {city}"

    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=active_key, max_retries=0)
    agent = Agent(name="weather", tools=[get_weather],
                  model=OpenAIResponsesModel(model="claude-sonnet-4-5", openai_client=client))
    result = asyncio.run(Runner.run(agent, "Weather in Paris?"))
    assert result.final_output == "Sunny in Paris."
    assert_second_request_answers_the_call(scripted)


def test_langchain_calls_the_tool_over_the_responses_api(gateway: Gateway, scripted: MockUpstream, active_key: str,
                                                         claude: Upstream, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"):
        monkeypatch.setenv(name, "false")
    model = ChatOpenAI(base_url=f"{gateway.url}/v1", api_key=active_key, model="claude-sonnet-4-5",
                       use_responses_api=True, max_retries=0)
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    bound = model.bind_tools([tool])
    first = bound.invoke("Weather in Paris?")
    [call] = first.tool_calls
    assert (call["name"], call["args"], call["id"]) == ("get_weather", {"city": "Paris"}, "toolu_w1")
    answer = bound.invoke([("user", "Weather in Paris?"), first,
                           {"role": "tool", "tool_call_id": call["id"], "content": "18 degrees, sunny"}])
    assert answer.text == "Sunny in Paris."
    assert_second_request_answers_the_call(scripted)
