"""POST /v1/chat/completions: passthrough through a real daphne server to a real mock upstream."""
from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import wait_for_log
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

CHAT = {"model": "mock-model", "messages": [{"role": "user", "content": "hi"}]}
E1 = [{"text": "Hello"}, {"text": " world"}, {"text": "! 你好世界！"}, {"finish": "stop"}]


def sse_data(text: str) -> list[str]:
    return [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]


def test_it_streams_chat_to_the_openai_sdk(gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream,
                                           active_key: str) -> None:
    scripted.script({"chunks": E1})
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=active_key, max_retries=0)
    stream = client.chat.completions.create(model="mock-model", messages=CHAT["messages"], stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello world! 你好世界！"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 12
    request_id = stream.response.headers["x-request-id"]
    row = wait_for_log(request_id)
    assert (row.outcome, row.status, row.mode, row.stream) == ("ok", 200, "passthrough", True)
    assert (row.input_tokens, row.output_tokens, row.upstream_name, row.key_name) == (5, 7, "chat-mock", "alice")
    assert row.ttfb_ms is not None and row.duration_ms >= row.ttfb_ms


@pytest.mark.parametrize("asked", [None, {}, {"include_usage": False}], ids=["no-options", "empty", "usage-false"])
def test_a_stream_whose_client_did_not_ask_for_usage_still_has_its_tokens_on_the_row(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str,
        asked: dict[str, bool] | None) -> None:
    """The gateway asks the upstream for usage, records it, and takes the usage chunk out of the client's stream."""
    scripted.script({"chunks": E1})
    body = {**CHAT, "stream": True} | ({"stream_options": asked} if asked is not None else {})
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json=body,
                      headers={"authorization": f"Bearer {active_key}"}, timeout=10) as response:
        data = [line[5:].strip() for line in response.iter_lines() if line.startswith("data:")]
        request_id = response.headers["x-request-id"]
    chunks = [json.loads(item) for item in data[:-1]]
    assert data[-1] == "[DONE]"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "Hello world! 你好世界！"
    assert all(c["choices"] for c in chunks) and not any(c.get("usage") for c in chunks)  # no usage chunk
    [seen] = scripted.requests()
    assert seen["body"]["stream_options"] == {"include_usage": True}
    row = wait_for_log(request_id)
    assert (row.outcome, row.input_tokens, row.output_tokens) == ("ok", 5, 7)


def test_an_upstream_that_refuses_stream_options_is_not_sent_them_and_its_row_says_no_tokens(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    """``send_stream_options`` off (the probe turns it off for a server that refuses them): nothing is added."""
    Upstream.objects.filter(pk=chat_upstream.pk).update(send_stream_options=False)
    scripted.script({"chunks": E1})
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json={**CHAT, "stream": True},
                      headers={"authorization": f"Bearer {active_key}"}, timeout=10) as response:
        response.read()
        request_id = response.headers["x-request-id"]
    [seen] = scripted.requests()
    assert "stream_options" not in seen["body"]
    row = wait_for_log(request_id)
    assert (row.outcome, row.input_tokens, row.output_tokens, row.tokens_reported) == ("ok", None, None, False)


def test_it_answers_non_streaming_chat_to_the_openai_sdk(gateway: Gateway, scripted: MockUpstream,
                                                         chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": E1})
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=active_key, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="mock-model", messages=CHAT["messages"])
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello world! 你好世界！"
    row = wait_for_log(raw.headers["x-request-id"])
    assert (row.outcome, row.stream, row.input_tokens, row.output_tokens) == ("ok", False, 5, 7)


def test_it_relays_the_first_chunk_while_the_upstream_is_still_streaming(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    """The mock holds back everything after its first chunk until the client has seen that chunk."""
    scripted.script({"chunks": E1, "gate": True})
    headers = {"authorization": f"Bearer {active_key}"}
    with httpx.stream("POST", f"{gateway.url}/v1/chat/completions", json={**CHAT, "stream": True},
                      headers=headers, timeout=10) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert json.loads(first[5:])["choices"][0]["delta"]["content"] == "Hello"
        scripted.release()
        rest = [line for line in lines if line.startswith("data:")]
    assert rest[-1] == "data: [DONE]"
    assert len(rest) == 4


def test_it_sends_the_upstream_key_never_the_client_key(gateway: Gateway, scripted: MockUpstream,
                                                        chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": E1})
    httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT,
               headers={"authorization": f"Bearer {active_key}"}).raise_for_status()
    [seen] = scripted.requests()
    assert seen["headers"]["authorization"] == "Bearer sk-upstream-SECRET-123"
    assert active_key not in json.dumps(seen)
    assert seen["body"]["messages"] == CHAT["messages"]


def test_it_passes_the_seed_e3_error_flow_with_back_off_headers(gateway: Gateway, scripted: MockUpstream,
                                                                chat_upstream: Upstream, active_key: str) -> None:
    """Seed E3, verbatim: 429 + Retry-After 3 twice, 500 + Retry-After 5, then a 200 stream."""
    scripted.use("errors")
    headers = {"authorization": f"Bearer {active_key}"}
    url = f"{gateway.url}/v1/chat/completions"
    answers = [httpx.post(url, json={**CHAT, "stream": True}, headers=headers) for _ in range(4)]
    assert [a.status_code for a in answers] == [429, 429, 500, 200]
    for limited in answers[:2]:
        assert limited.headers["retry-after"] == "3"
        assert limited.headers["x-ratelimit-remaining"] == "0"
        assert limited.headers["x-ratelimit-reset"] == "3s"
        assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert answers[2].headers["retry-after"] == "5"
    assert answers[2].json() == {"error": {"message": "upstream exploded", "type": "upstream_error",
                                           "param": None, "code": None}}
    assert "".join(json.loads(d)["choices"][0]["delta"].get("content", "")
                   for d in sse_data(answers[3].text)[:-1]) == "Hello world! 你好世界！"
    rows = [wait_for_log(a.headers["x-request-id"]) for a in answers]
    assert [(r.status, r.outcome) for r in rows] == [(429, "upstream_error"), (429, "upstream_error"),
                                                     (500, "upstream_error"), (200, "ok")]
    assert rows[0].passed_headers["retry-after"] == "3"


def test_openai_sdk_sees_the_upstream_429_as_a_rate_limit_error(gateway: Gateway, scripted: MockUpstream,
                                                                chat_upstream: Upstream, active_key: str) -> None:
    scripted.use("errors")
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=active_key, max_retries=0)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="mock-model", messages=CHAT["messages"])
    assert caught.value.response.headers["retry-after"] == "3"
    assert caught.value.code == "rate_limit_exceeded"


def test_it_ends_a_stream_that_breaks_off_with_an_error_line(gateway: Gateway, scripted: MockUpstream,
                                                             chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": "Hel"}], "done": False})
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json={**CHAT, "stream": True},
                          headers={"authorization": f"Bearer {active_key}"})
    last = json.loads(sse_data(response.text)[-1])
    assert last["error"]["code"] == "upstream_protocol_error"
    row = wait_for_log(response.headers["x-request-id"])
    assert (row.outcome, row.error_type) == ("upstream_error", "upstream_protocol_error")


def test_it_answers_502_when_the_upstream_refuses_connections(gateway: Gateway, transactional_db: None,
                                                              active_key: str) -> None:
    Upstream.objects.create(name="gone", base_url="http://127.0.0.1:9/v1")
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json=CHAT,
                          headers={"authorization": f"Bearer {active_key}"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unavailable"
    row = wait_for_log(response.headers["x-request-id"])
    assert (row.outcome, row.status, row.upstream_name) == ("upstream_error", 502, "gone")


def test_it_answers_504_when_the_upstream_sends_no_first_byte_in_time(gateway: Gateway, scripted: MockUpstream,
                                                                      chat_upstream: Upstream,
                                                                      active_key: str) -> None:
    Upstream.objects.filter(pk=chat_upstream.pk).update(first_byte_timeout=0.5)
    scripted.script({"raw": [], "hang": True})  # headers, then silence
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json={**CHAT, "stream": True},
                          headers={"authorization": f"Bearer {active_key}"})
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    row = wait_for_log(response.headers["x-request-id"])
    assert (row.outcome, row.status) == ("upstream_error", 504)
