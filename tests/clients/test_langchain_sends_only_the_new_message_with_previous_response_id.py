"""LangChain's ChatOpenAI on the Responses API with use_previous_response_id against a real gateway.

The history goes to `invoke` whole, as LangChain's docs show; the model sends only the messages
after the last AI message, with that message's response id as previous_response_id, so the
gateway must put turn 1 back before the upstream sees turn 2.
"""
from __future__ import annotations

import pytest
from langchain_core.messages import BaseMessage, HumanMessage
from langchain_openai import ChatOpenAI

from tests.clients.conftest import TURN_ONE, bodies_received, upstream_messages
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream


def test_turn_two_sends_the_new_message_and_the_upstream_gets_turn_one_back(
        logged_gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"):
        monkeypatch.setenv(name, "false")  # LangSmith would post each run to the internet
    model = ChatOpenAI(base_url=f"{logged_gateway.url}/v1", api_key=active_key, model="mock-model",
                       use_responses_api=True, use_previous_response_id=True, max_retries=0)

    history: list[BaseMessage] = [HumanMessage("Capital of France?")]
    first = model.invoke(history)
    history += [first, HumanMessage("Second city?")]
    second = model.invoke(history)
    assert (first.text, second.text) == ("Paris.", "Lyon.")

    [_, second_body] = bodies_received(2)
    assert second_body["previous_response_id"] == first.response_metadata["id"]
    assert second_body["input"] == [{"type": "message", "role": "user", "content": "Second city?"}]
    assert upstream_messages(scripted) == [*TURN_ONE, {"role": "user", "content": "Second city?"}]
