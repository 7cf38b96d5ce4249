"""openai-agents (the Agents SDK) on its Responses model against a real gateway: turn 2 carries turn 1.

Two ways the SDK keeps server-side state: `previous_response_id=result.last_response_id`, and
`conversation_id=` of a conversation made with the openai SDK. Tracing is off (it would post
to the internet).
"""
from __future__ import annotations

import asyncio

import openai
from agents import Agent, OpenAIResponsesModel, Runner, set_tracing_disabled

from tests.clients.conftest import TURN_ONE, bodies_received, upstream_messages
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

INSTRUCTIONS = "Answer in one word."


def agent(gateway: Gateway, key: str) -> Agent:
    set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)
    return Agent(name="geographer", instructions=INSTRUCTIONS,
                 model=OpenAIResponsesModel(model="mock-model", openai_client=client))


def test_a_run_continued_by_previous_response_id_sends_the_upstream_turn_one(
        logged_gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    geographer = agent(logged_gateway, active_key)

    async def two_turns() -> tuple[str, str, str | None]:
        first = await Runner.run(geographer, "Capital of France?")
        second = await Runner.run(geographer, "Second city?", previous_response_id=first.last_response_id)
        return first.final_output, second.final_output, first.last_response_id

    first_answer, second_answer, first_id = asyncio.run(two_turns())
    assert (first_answer, second_answer) == ("Paris.", "Lyon.")

    [_, second_body] = bodies_received(2)
    assert second_body["previous_response_id"] == first_id
    assert second_body["input"] == [{"role": "user", "content": "Second city?"}]
    assert upstream_messages(scripted) == [
        {"role": "system", "content": INSTRUCTIONS}, *TURN_ONE, {"role": "user", "content": "Second city?"}]


def test_a_run_in_a_conversation_sends_the_upstream_turn_one(
        logged_gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    geographer = agent(logged_gateway, active_key)
    conversation = openai.OpenAI(base_url=f"{logged_gateway.url}/v1", api_key=active_key,
                                 max_retries=0).conversations.create()

    async def two_turns() -> tuple[str, str]:
        first = await Runner.run(geographer, "Capital of France?", conversation_id=conversation.id)
        second = await Runner.run(geographer, "Second city?", conversation_id=conversation.id)
        return first.final_output, second.final_output

    assert asyncio.run(two_turns()) == ("Paris.", "Lyon.")

    [_, second_body] = bodies_received(3)
    assert second_body["conversation"] == conversation.id
    assert second_body["input"] == [{"role": "user", "content": "Second city?"}]
    assert upstream_messages(scripted) == [
        {"role": "system", "content": INSTRUCTIONS}, *TURN_ONE, {"role": "user", "content": "Second city?"}]
