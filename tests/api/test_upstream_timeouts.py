"""The wait for an answer to start and the wait between its chunks, each with its own limit (issue 21).

A local server's prefill of a long prompt can take minutes before the first byte, while a
stream that stops mid-answer should be given up much sooner: ``first_byte_timeout`` is the
first, ``read_timeout`` the second (api/pipeline/silence.py). Heartbeats are off here, so
what the client reads is the upstream's answer and the gateway's ending only.
"""
from __future__ import annotations

import json

import httpx
import pytest

from tests.conftest import wait_for_log
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

ANSWER = [{"role": "assistant", "text": "Hel"}, {"text": "lo"}, {"finish": "stop"}]


@pytest.fixture
def quiet_gateway(start_gateway, transactional_db: None) -> Gateway:
    return start_gateway(GATEWAY_STREAM_HEARTBEAT="0")


@pytest.fixture(params=["bridged", "relayed-chat", "relayed-responses"])
def route(request: pytest.FixtureRequest, scripted: MockUpstream) -> tuple[str, str]:
    """Where the request goes: (endpoint, its model's upstream protocol), the upstream made with short limits."""
    responses = request.param == "relayed-responses"
    Upstream.objects.create(name="mock", base_url=scripted.url if responses else scripted.base_url,
                            api="responses" if responses else "chat", first_byte_timeout=30, read_timeout=1)
    return ("chat/completions" if request.param == "relayed-chat" else "responses"), request.param


def ask(gateway: Gateway, key: str, endpoint: str) -> httpx.Response:
    body = ({"model": "m", "messages": [{"role": "user", "content": "hi"}]} if endpoint == "chat/completions"
            else {"model": "m", "input": "hi"})
    return httpx.post(f"{gateway.url}/v1/{endpoint}", json={**body, "stream": True},
                      headers={"authorization": f"Bearer {key}"}, timeout=60)


def data_lines(response: httpx.Response) -> list[dict]:
    return [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data: {")]


def test_a_first_byte_later_than_the_read_timeout_is_waited_for(quiet_gateway: Gateway, scripted: MockUpstream,
                                                                route: tuple[str, str], active_key: str) -> None:
    """3 s of prefill against a 1 s read_timeout: the answer still comes, since the first byte has 30 s."""
    endpoint, _ = route
    scripted.script({"chunks": ANSWER, "pause": [-1, 3]})
    response = ask(quiet_gateway, active_key, endpoint)
    assert response.status_code == 200
    row = wait_for_log(response.headers["x-request-id"])
    assert (row.outcome, row.status) == ("ok", 200), row.error_message
    assert row.duration_ms is not None and row.duration_ms >= 3000


def test_a_silence_mid_answer_longer_than_the_read_timeout_ends_the_stream_as_a_timeout(
        quiet_gateway: Gateway, scripted: MockUpstream, route: tuple[str, str], active_key: str) -> None:
    """The upstream stops for 10 s after its first chunk; the gateway gives up after about 1 s and says why."""
    endpoint, kind = route
    scripted.script({"chunks": ANSWER, "pause": [0, 10]})
    response = ask(quiet_gateway, active_key, endpoint)
    assert response.status_code == 200  # the answer had started: the ending says what happened
    last = data_lines(response)[-1]
    if kind == "relayed-chat":
        assert last["error"]["code"] == "upstream_timeout"
        message = last["error"]["message"]
    else:
        assert last["type"] == "response.failed"
        assert last["response"]["error"]["code"] == "upstream_timeout"
        message = last["response"]["error"]["message"]
    assert message == "The upstream sent nothing for 1 s mid-answer (its read_timeout)."
    row = wait_for_log(response.headers["x-request-id"])
    assert (row.outcome, row.error_type, row.error_message) == ("upstream_error", "upstream_timeout", message)
    assert row.duration_ms < 10_000  # cut, not waited out
