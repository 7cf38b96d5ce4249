"""Every client library reads a stream that paused and got heartbeats, to the same answer (issue 21).

The upstream says "Hel", is silent for longer than GATEWAY_STREAM_HEARTBEAT a few times
over, then says "lo": a Responses stream gets ``response.in_progress`` events in the pause
(bridged: numbered by the bridge; relayed: the upstream's later events renumbered after
them), a Chat stream SSE comments. Each client must put "Hello" together; the audit rows'
captured bodies show the heartbeats were sent. Never skipped: a missing client is a failure.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Callable, Iterator

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, set_tracing_disabled
from langchain_openai import ChatOpenAI
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.models.openai import OpenAIResponsesModel as PydanticResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

from logs.models import RequestLog
from tests.conftest import wait_for_logs
from tests.servers import ROOT, Gateway, MockUpstream
from upstreams.models import Upstream

HEARTBEAT = 0.2  # seconds of silence before a heartbeat
PAUSE = 1.0  # the upstream's silence after its first piece: a heartbeat comes within 2 x HEARTBEAT
PAUSED = {"chunks": [{"role": "assistant", "text": "Hel"}, {"text": "lo"}, {"finish": "stop"}], "pause": [0, PAUSE]}
NODE_SCRIPT = ROOT / "tests" / "clients" / "node_streams.mjs"
NODE_CLIENTS = ROOT / ".ai-sdk" / "node_modules"


@pytest.fixture
def beating(start_gateway: Callable[..., Gateway], scripted: MockUpstream) -> Gateway:
    """A gateway beating after HEARTBEAT seconds, keeping the bodies it sent; the upstream pauses in every answer."""
    scripted.script(PAUSED)
    return start_gateway(GATEWAY_STREAM_HEARTBEAT=str(HEARTBEAT), GATEWAY_LOG_BODIES="true")


@pytest.fixture(params=["bridged", "relayed", "anthropic"])
def upstream(request: pytest.FixtureRequest, scripted: MockUpstream) -> Iterator[Upstream]:
    """A Chat-only upstream (Responses requests are bridged), a Responses one (they are relayed), or Claude's
    Messages (both APIs translated: Chat clients get Chat chunks from bridge/chat_stream.py)."""
    if request.param == "bridged":
        yield Upstream.objects.create(name="chat-mock", base_url=scripted.base_url)
    elif request.param == "anthropic":
        yield Upstream.objects.create(name="claude-mock", base_url=scripted.url, api="anthropic")
    else:
        yield Upstream.objects.create(name="responses-mock", base_url=scripted.url, api="responses")


def heartbeats_sent(count: int) -> list[RequestLog]:
    """Return the ``count`` audit rows, each checked: answered 200, and a heartbeat in what the client was sent."""
    rows = wait_for_logs(count)
    assert len(rows) == count
    for row in rows:
        assert row.status == 200, (row.endpoint, row.error_message)
        body = row.response_body
        if row.endpoint == "chat/completions":
            assert ": keep-alive\n\n" in body, body[:2000]
        else:  # the opening's response.in_progress, and at least one more
            assert body.count("event: response.in_progress") >= 2, body[:2000]
    return rows


def test_the_openai_sdk_accumulates_both_apis(beating: Gateway, upstream: Upstream, active_key: str) -> None:
    client = openai.OpenAI(base_url=f"{beating.url}/v1", api_key=active_key, max_retries=0)
    with client.responses.stream(model="mock-model", input="Say hello.") as stream:
        types = [event.type for event in stream]
        final = stream.get_final_response()
    assert (final.output_text, final.status) == ("Hello", "completed")
    assert types.count("response.in_progress") >= 2
    numbers = [e["sequence_number"] for e in map(json.loads, _data_lines(heartbeats_sent(1)[0].response_body))]
    assert numbers == list(range(len(numbers)))  # heartbeats numbered in, and everything after them

    with client.chat.completions.stream(model="mock-model", messages=[{"role": "user", "content": "Hi"}]) as chat:
        for _ in chat:
            pass
        assert chat.get_final_completion().choices[0].message.content == "Hello"
    heartbeats_sent(2)


def test_the_node_clients_read_both_apis(beating: Gateway, upstream: Upstream, active_key: str) -> None:
    assert NODE_CLIENTS.joinpath("openai").exists(), "Node clients missing: run `make ai-sdk` (make test does)"
    result = subprocess.run(["node", str(NODE_SCRIPT), beating.url, "mock-model"], cwd=ROOT,
                            env={"PATH": os.environ["PATH"], "GATEWAY_KEY": active_key},
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    read = json.loads(result.stdout)
    assert {name: answer["text"] for name, answer in read.items()} == dict.fromkeys(
        ["openai_responses", "openai_chat", "ai_sdk_responses", "ai_sdk_chat"], "Hello")
    assert read["openai_responses"]["status"] == "completed"
    assert read["openai_responses"]["types"].count("response.in_progress") >= 2
    assert (read["ai_sdk_responses"]["finishReason"], read["ai_sdk_chat"]["finishReason"]) == ("stop", "stop")
    heartbeats_sent(4)


def test_openai_agents_streams_a_run(beating: Gateway, upstream: Upstream, active_key: str) -> None:
    set_tracing_disabled(True)
    client = openai.AsyncOpenAI(base_url=f"{beating.url}/v1", api_key=active_key, max_retries=0)
    agent = Agent(name="greeter", model=OpenAIResponsesModel(model="mock-model", openai_client=client))

    async def run() -> str:
        result = Runner.run_streamed(agent, "Say hello.")
        async for _ in result.stream_events():
            pass
        return str(result.final_output)

    assert asyncio.run(run()) == "Hello"
    heartbeats_sent(1)


def test_langchain_streams_both_apis(beating: Gateway, upstream: Upstream, active_key: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2"):
        monkeypatch.setenv(name, "false")
    for responses_api in (True, False):
        model = ChatOpenAI(base_url=f"{beating.url}/v1", api_key=active_key, model="mock-model",
                           use_responses_api=responses_api, streaming=True, max_retries=0)
        assert "".join(chunk.text for chunk in model.stream("Say hello.")) == "Hello"
    heartbeats_sent(2)


def test_pydantic_ai_streams_both_apis(beating: Gateway, upstream: Upstream, active_key: str) -> None:
    provider = OpenAIProvider(base_url=f"{beating.url}/v1", api_key=active_key)

    async def run(model: PydanticResponsesModel | OpenAIChatModel) -> str:
        async with PydanticAgent(model).run_stream("Say hello.") as result:
            return str(await result.get_output())

    assert asyncio.run(run(PydanticResponsesModel("mock-model", provider=provider))) == "Hello"
    assert asyncio.run(run(OpenAIChatModel("mock-model", provider=provider))) == "Hello"
    heartbeats_sent(2)


def _data_lines(body: str) -> list[str]:
    return [line.removeprefix("data: ") for line in body.splitlines() if line.startswith("data: {")]
