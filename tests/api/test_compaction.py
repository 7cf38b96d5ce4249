"""Remote compaction answered by the gateway (api/compaction.py): one sealed item, the summary in its place later.

Against real daphne and the scripted mock: a ``compaction_trigger`` to a bridged model is
summarized through the upstream and answered with exactly one ``compaction`` item; the
next request's item becomes the summary again before the upstream sees it; altered and
other keys' items are refused, another server's left out and said so; an upstream that
keeps state gets trigger and items untouched; ``POST /v1/responses/compact`` answers as
the OpenAI API does, for the openai SDK.
"""
from __future__ import annotations

import json

import httpx
import openai
import pytest

from api.stored import sealed
from bridge.history.compaction import SUMMARIZE, SUMMARY_INTRO
from logs.models import RequestLog
from tests import waiting
from tests.bridge.helpers import assert_valid_stream
from tests.conftest import wait_for_log
from tests.servers import Gateway, MockUpstream
from upstreams.models import ClientKey, ModelProfile, Upstream

SUMMARY = "The user wants a CLI in hello.py; it is written and its tests pass."
HISTORY = [
    {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Write hello.py, a CLI."}]},
    {"type": "function_call", "call_id": "c1", "name": "exec_command", "arguments": '{"cmd": "ls"}'},
    {"type": "function_call_output", "call_id": "c1", "output": "README.md"},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Done: hello.py."}]},
]
TRIGGER = {"type": "compaction_trigger"}


def post(gateway: Gateway, key: str, body: dict, path: str = "/v1/responses") -> httpx.Response:
    return httpx.post(f"{gateway.url}{path}", json=body, headers={"authorization": f"Bearer {key}"}, timeout=60)


def events_of(response: httpx.Response) -> list[dict]:
    return [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]


def compacted(gateway: Gateway, key: str, history: list[dict] | None = None) -> dict:
    """Ask for a compaction of ``history``, streamed as Codex asks; return its one item."""
    response = post(gateway, key, {"model": "mock-model", "stream": True, "store": False,
                                   "input": [*(history or HISTORY), TRIGGER]})
    assert response.status_code == 200, response.text
    events = events_of(response)
    assert_valid_stream(events)
    [item] = events[-1]["response"]["output"]
    return item


def test_a_trigger_is_answered_with_one_sealed_item_summarized_through_the_upstream(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": SUMMARY}, {"finish": "stop"},
                                {"usage": {"prompt_tokens": 900, "completion_tokens": 40, "total_tokens": 940}}]})
    response = post(gateway, active_key, {"model": "mock-model", "stream": True, "input": [*HISTORY, TRIGGER]})
    events = events_of(response)
    assert_valid_stream(events)
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.output_item.added",
                                           "response.output_item.done", "response.completed"]
    [item] = events[-1]["response"]["output"]
    assert item["type"] == "compaction" and item["id"].startswith("cmp_")
    assert item["encrypted_content"].startswith("cgw1.") and SUMMARY not in item["encrypted_content"]
    assert events[-1]["response"]["usage"]["input_tokens"] == 900
    [asked] = scripted.requests()
    messages = asked["body"]["messages"]
    assert messages[0] == {"role": "system", "content": SUMMARIZE}
    said = messages[-1]["content"]
    assert "Write hello.py, a CLI." in said and "README.md" in said and "Done: hello.py." in said
    row = wait_for_log(response.headers["x-request-id"])
    assert (row.request_kind, row.outcome, row.input_tokens) == ("compaction", "ok", 900)
    assert "summarized in 1 upstream call(s)" in row.notes


def test_the_next_request_gets_the_summary_in_the_items_place(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": SUMMARY}, {"finish": "stop"}]},
                    {"chunks": [{"text": "Next step done."}, {"finish": "stop"}]})
    item = compacted(gateway, active_key)
    user = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Now add --help."}]}
    response = post(gateway, active_key, {"model": "mock-model", "input": [HISTORY[0], item, user]})
    assert response.status_code == 200
    assert response.json()["output"][0]["content"][0]["text"] == "Next step done."
    messages = scripted.requests()[-1]["body"]["messages"]
    assert messages == [{"role": "user", "content": "Write hello.py, a CLI."},
                        {"role": "user", "content": SUMMARY_INTRO + SUMMARY},
                        {"role": "user", "content": "Now add --help."}]


def test_a_long_history_is_summarized_in_chunks_each_folded_into_the_summary(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    """A 4,096-token window: 60 KB of history takes several calls, each carrying the summary so far."""
    ModelProfile.objects.create(pattern="mock-model", context_window=4096)
    scripted.script(*({"chunks": [{"text": f"summary {n}"}, {"finish": "stop"}]} for n in range(1, 40)))
    long = [{"type": "function_call_output", "call_id": "c1", "output": f"line {n} " + "x" * 990}
            for n in range(60)]
    item = compacted(gateway, active_key, [HISTORY[0], *long])
    asked = [r["body"]["messages"][-1]["content"] for r in scripted.requests()]
    assert len(asked) >= 10
    assert "Summary of the session so far" not in asked[0]
    assert all(f"Summary of the session so far:\n\nsummary {n}\n" in said for n, said in enumerate(asked[1:], 1))
    assert "line 0 " in asked[0] and "line 59 " in asked[-1]
    key = ClientKey.objects.get()
    assert sealed.unseal(item["encrypted_content"], key) == f"summary {len(asked)}"


def test_an_item_altered_or_made_for_another_key_is_refused_naming_it(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": SUMMARY}, {"finish": "stop"}]})
    item = compacted(gateway, active_key)
    content = item["encrypted_content"]
    altered = {**item, "encrypted_content": content[:-8] + ("A" if content[-8] != "A" else "B") + content[-7:]}
    _, other_key = ClientKey.objects.create_key("bob")
    for key, sent, why in [(active_key, altered, "altered"), (other_key, item, "another client key")]:
        response = post(gateway, key, {"model": "mock-model", "input": [HISTORY[0], sent]})
        error = response.json()["error"]
        assert response.status_code == 400, response.text
        assert (error["param"], error["code"]) == ("input[1].encrypted_content", "invalid_encrypted_content")
        assert why in error["message"] and "input[1]" in error["message"]
    assert len(scripted.requests()) == 1  # neither reached the upstream


def test_another_servers_item_is_left_out_for_a_bridged_upstream_and_the_row_says_so(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]})
    openais = {"type": "compaction", "id": "cmp_1", "encrypted_content": "gAAAAABo-openai-opaque"}
    response = post(gateway, active_key, {"model": "mock-model", "input": [HISTORY[0], openais]})
    assert response.status_code == 200
    assert scripted.requests()[-1]["body"]["messages"] == [{"role": "user", "content": "Write hello.py, a CLI."}]
    row = wait_for_log(response.headers["x-request-id"])
    assert "1 compaction item(s) made by another server left out" in row.notes
    assert "gAAAAABo" not in row.notes


def test_an_upstream_that_keeps_state_gets_the_trigger_and_its_own_items_untouched(
        gateway: Gateway, scripted: MockUpstream, active_key: str) -> None:
    Upstream.objects.create(name="openai", base_url=scripted.url, api="responses", keeps_state=True)
    scripted.script({"chunks": [{"text": "ok"}, {"finish": "stop"}]})
    openais = {"type": "compaction", "id": "cmp_1", "encrypted_content": "gAAAAABo-openai-opaque"}
    response = post(gateway, active_key, {"model": "gpt-x", "stream": True, "input": [openais, *HISTORY, TRIGGER]})
    assert response.status_code == 200
    sent = scripted.requests()[-1]
    assert sent["path"] == "/v1/responses" and sent["body"]["input"] == [openais, *HISTORY, TRIGGER]
    assert wait_for_log(response.headers["x-request-id"]).request_kind == "compaction"


def test_a_refused_first_call_is_answered_with_the_upstreams_status_and_back_off(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    limited = {"error": {"message": "slow down", "type": "rate_limit_error", "param": None, "code": None}}
    scripted.script({"status": 429, "headers": {"retry-after": "7"}, "body": limited})
    response = post(gateway, active_key, {"model": "mock-model", "stream": True, "input": [*HISTORY, TRIGGER]})
    assert (response.status_code, response.headers["retry-after"]) == (429, "7")
    assert response.json()["error"]["message"] == "slow down"


def test_the_openai_sdks_compact_and_a_follow_up_from_its_output(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"text": SUMMARY}, {"finish": "stop"}]},
                    {"chunks": [{"text": "Added --help."}, {"finish": "stop"}]})
    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=active_key, max_retries=0)
    raw = sdk.responses.with_raw_response.compact(model="mock-model", input=HISTORY)
    compact = raw.parse()
    assert compact.object == "response.compaction" and compact.usage is not None
    assert [item.type for item in compact.output] == ["message", "compaction"]
    # The output as sent (the SDK types every message of it as the assistant's): the next input's start.
    output = raw.http_response.json()["output"]
    assert output[0]["role"] == "user" and output[0]["content"][0]["text"] == "Write hello.py, a CLI."
    follow_up = sdk.responses.create(model="mock-model", input=[*output, {"role": "user", "content": "Add --help."}])
    assert follow_up.output_text == "Added --help."
    assert scripted.requests()[-1]["body"]["messages"][-2:] == [
        {"role": "user", "content": SUMMARY_INTRO + SUMMARY}, {"role": "user", "content": "Add --help."}]
    row = waiting.until(lambda: RequestLog.objects.filter(endpoint="responses/compact").first(), "the compact row")
    assert row.request_kind == "compaction"


@pytest.mark.parametrize("previous", [True, False])
def test_compact_starts_from_a_stored_response_or_from_the_input(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str, previous: bool) -> None:
    """The Agents SDK's compaction session sends previous_response_id (a stored turn) or the items themselves."""
    scripted.script({"chunks": [{"text": "Paris."}, {"finish": "stop"}]},
                    {"chunks": [{"text": SUMMARY}, {"finish": "stop"}]})
    sdk = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=active_key, max_retries=0)
    turn = sdk.responses.create(model="mock-model", input="Capital of France?")
    asked = {"previous_response_id": turn.id} if previous else {"input": [
        {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]}
    compact = sdk.responses.compact(model="mock-model", **asked)
    assert compact.output[-1].type == "compaction"
    said = scripted.requests()[-1]["body"]["messages"][-1]["content"]
    assert "Capital of France?" in said and "Paris." in said


def test_compact_is_passed_to_an_upstream_that_keeps_state(gateway: Gateway, scripted: MockUpstream,
                                                          active_key: str) -> None:
    Upstream.objects.create(name="openai", base_url=scripted.url, api="responses", keeps_state=True)
    answer = {"id": "resp_c", "object": "response.compaction", "created_at": 1, "usage": {
        "input_tokens": 5, "output_tokens": 1, "total_tokens": 6, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0}},
        "output": [{"type": "compaction", "id": "cmp_o", "encrypted_content": "opaque"}]}
    scripted.script({"body": answer})
    response = post(gateway, active_key, {"model": "gpt-x", "input": HISTORY}, path="/v1/responses/compact")
    assert response.status_code == 200 and response.json() == answer
    assert scripted.requests()[-1]["path"] == "/v1/responses/compact"
