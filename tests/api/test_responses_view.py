"""POST /v1/responses to upstreams that speak the Responses API: passthrough."""
from __future__ import annotations

import json

import httpx
import openai

from tests.conftest import wait_for_log, wait_for_logs
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream


def test_it_passes_a_responses_stream_to_the_openai_sdk(gateway: Gateway, scripted: MockUpstream,
                                                        responses_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": "Hello from upstream"}]})
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=active_key, max_retries=0)
    with client.responses.stream(model="mock-model", input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Hello from upstream"
    [seen] = scripted.requests()
    assert seen["path"] == "/v1/responses"
    assert seen["headers"]["authorization"] == "Bearer sk-upstream-SECRET-456"
    [row] = wait_for_logs(1)
    assert (row.mode, row.outcome, row.stream, row.upstream_name) == ("passthrough", "ok", True, "responses-mock")


def test_it_passes_a_non_streaming_response_through(gateway: Gateway, scripted: MockUpstream,
                                                    responses_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": "whole answer"}]})
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=active_key, max_retries=0)
    raw = client.responses.with_raw_response.create(model="mock-model", input="hi")
    assert raw.parse().output_text == "whole answer"
    row = wait_for_log(raw.headers["x-request-id"])
    assert (row.mode, row.outcome, row.input_tokens, row.output_tokens) == ("passthrough", "ok", 11, 3)


def test_it_ends_a_broken_responses_stream_with_response_failed(gateway: Gateway, scripted: MockUpstream,
                                                                responses_upstream: Upstream,
                                                                active_key: str) -> None:
    created = ('event: response.created\ndata: {"type":"response.created","sequence_number":0,'
               '"response":{"id":"resp_up","object":"response","status":"in_progress","model":"m","output":[]}}\n\n')
    scripted.script({"raw": [created]})
    response = httpx.post(f"{gateway.url}/v1/responses", json={"model": "m", "input": "hi", "stream": True},
                          headers={"authorization": f"Bearer {active_key}"})
    events = [line for line in response.text.splitlines() if line.startswith("data:")]
    last = json.loads(events[-1][5:])
    assert last["type"] == "response.failed"
    assert (last["sequence_number"], last["response"]["id"]) == (1, "resp_up")
    assert last["response"]["error"]["code"] == "upstream_protocol_error"
    assert wait_for_log(response.headers["x-request-id"]).outcome == "upstream_error"


def test_it_copies_retry_after_on_429_from_a_responses_upstream(gateway: Gateway, scripted: MockUpstream,
                                                                responses_upstream: Upstream,
                                                                active_key: str) -> None:
    scripted.use("errors")
    response = httpx.post(f"{gateway.url}/v1/responses", json={"model": "m", "input": "hi", "stream": True},
                          headers={"authorization": f"Bearer {active_key}"})
    assert response.status_code == 429
    assert (response.headers["retry-after"], response.headers["x-ratelimit-remaining"]) == ("3", "0")


def test_a_request_the_bridge_cannot_honour_goes_to_an_upstream_that_can(gateway: Gateway, scripted: MockUpstream,
                                                                          active_key: str) -> None:
    """A file in the input passes the Chat-only upstream over; with only that one, the 400 names the part."""
    Upstream.objects.create(name="chat-first", base_url=scripted.base_url, priority=10)
    body = {"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "file_1"}]}]}
    headers = {"authorization": f"Bearer {active_key}"}
    refused = httpx.post(f"{gateway.url}/v1/responses", json=body, headers=headers)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "input[0].content[0]"
    assert scripted.requests() == []
    Upstream.objects.create(name="responses-second", base_url=scripted.url, api="responses")
    scripted.script({"chunks": [{"text": "read it"}, {"finish": "stop"}]})
    answered = httpx.post(f"{gateway.url}/v1/responses", json=body, headers=headers)
    assert answered.status_code == 200, answered.text
    assert [r["path"] for r in scripted.requests()] == ["/v1/responses"]  # the Chat one, ranked first, passed over
    assert wait_for_log(answered.headers["x-request-id"]).upstream_name == "responses-second"


def test_a_broken_unnumbered_upstream_stream_ends_as_a_whole_failed_response_for_the_openai_sdk(
        gateway: Gateway, scripted: MockUpstream, responses_upstream: Upstream, active_key: str) -> None:
    """llama.cpp's /v1/responses numbers nothing; cut mid-item, the SDK's accumulator still gets a closed stream."""
    message = {"id": "msg_1", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
    events = [
        {"type": "response.created", "response": {"id": "resp_up", "object": "response", "status": "in_progress",
                                                  "model": "m", "output": []}},
        {"type": "response.output_item.added", "output_index": 0, "item": message},
        {"type": "response.content_part.added", "item_id": "msg_1", "output_index": 0, "content_index": 0,
         "part": {"type": "output_text", "text": "", "annotations": []}},
        {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
         "delta": "half an ans"},
    ]
    scripted.script({"raw": [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events]})
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=active_key, max_retries=0)
    seen = []
    with client.responses.stream(model="m", input="hi") as stream:
        for event in stream:  # the accumulator handles every event
            seen.append((event.type, event.sequence_number))
    assert seen[-2:] == [("response.output_item.done", 4), ("response.failed", 5)]
    row = wait_for_logs(1)[0]
    assert (row.mode, row.outcome, row.error_type) == ("passthrough", "upstream_error", "upstream_protocol_error")
