"""The openai Python SDK's stored-state calls against a real gateway: every call parses, and turn 2 carries turn 1."""
from __future__ import annotations

from typing import Any

import openai

from tests import waiting
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream


def sdk(gateway: Gateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=key, max_retries=0)


def answer(text: str) -> dict[str, Any]:
    return {"chunks": [{"text": text}, {"finish": "stop"}]}


def test_the_sdk_continues_retrieves_lists_and_deletes_a_stored_response(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(answer("Paris."), answer("Lyon."))
    client = sdk(gateway, active_key)
    first = client.responses.create(model="mock-model", input="Capital of France?")
    with client.responses.stream(model="mock-model", input="Second city?", previous_response_id=first.id) as stream:
        second = stream.get_final_response()
    assert second.output_text == "Lyon." and second.previous_response_id == first.id
    assert scripted.requests()[-1]["body"]["messages"][:2] == [
        {"role": "user", "content": "Capital of France?"}, {"role": "assistant", "content": "Paris."}]
    assert client.responses.retrieve(second.id).output_text == "Lyon."
    [item] = client.responses.input_items.list(second.id).data
    assert item.type == "message" and item.content[0].text == "Second city?"  # type: ignore[union-attr]
    client.responses.delete(first.id)
    try:
        client.responses.retrieve(first.id)
    except openai.NotFoundError as exc:
        assert exc.status_code == 404
    else:
        raise AssertionError("a deleted response was still found")


def test_the_sdk_keeps_a_conversation_across_turns(gateway: Gateway, scripted: MockUpstream,
                                                  chat_upstream: Upstream, active_key: str) -> None:
    scripted.script(answer("Paris."), answer("Lyon."))
    client = sdk(gateway, active_key)
    conversation = client.conversations.create(metadata={"user": "alice"},
                                               items=[{"type": "message", "role": "user", "content": "Hello"}])
    client.responses.create(model="mock-model", input="Capital of France?", conversation=conversation.id)
    client.responses.create(model="mock-model", input="Second city?", conversation={"id": conversation.id})
    assert [m["content"] for m in scripted.requests()[-1]["body"]["messages"]] == [
        "Hello", "Capital of France?", "Paris.", "Second city?"]
    items = client.conversations.items.list(conversation.id, order="asc")
    assert [item.content[0].text for item in items.data] == [  # type: ignore[union-attr]
        "Hello", "Capital of France?", "Paris.", "Second city?", "Lyon."]
    assert client.conversations.retrieve(conversation.id).metadata == {"user": "alice"}
    deleted = client.conversations.delete(conversation.id)
    assert deleted.deleted is True and deleted.id == conversation.id


def test_the_sdk_runs_polls_resumes_and_cancels_background_responses(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    client = sdk(gateway, active_key)
    scripted.script({**answer("Paris."), "gate": True})
    queued = client.responses.create(model="mock-model", input="Capital of France?", background=True)
    assert (queued.status, queued.background) == ("queued", True)
    scripted.release()
    polled = waiting.until(lambda: (found := client.responses.retrieve(queued.id)).status not in (
        "queued", "in_progress") and found, "the background response to finish", interval=0)
    assert polled.status == "completed" and polled.output_text == "Paris."

    scripted.script(answer("Lyon."))
    with client.responses.create(model="mock-model", input="Second city?", background=True, stream=True) as stream:
        first = [event for _, event in zip(range(3), stream, strict=False)]
    assert [event.type for event in first] == ["response.created", "response.queued", "response.in_progress"]
    resumed = list(client.responses.retrieve(first[0].response.id, stream=True,  # type: ignore[union-attr]
                                             starting_after=first[-1].sequence_number))
    assert resumed[0].sequence_number == first[-1].sequence_number + 1
    assert resumed[-1].type == "response.completed" and resumed[-1].response.output_text == "Lyon."

    scripted.script({**answer("never"), "gate": True})
    running = client.responses.create(model="mock-model", input="Wait", background=True)
    waiting.until(lambda: client.responses.retrieve(running.id).status == "in_progress", "the upstream to be asked",
                  interval=0)
    cancelled = client.responses.cancel(running.id)
    assert (cancelled.id, cancelled.status) == (running.id, "cancelled")
