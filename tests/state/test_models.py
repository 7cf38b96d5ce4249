"""Stored responses in the database: chains read in one query, holes refused, encrypted at rest, rotated, pruned."""
from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils.timezone import now

from state.models import Conversation, StoredItem, StoredResponse
from upstreams.crypto import DecryptionError
from upstreams.models import ClientKey

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def message(item_id: str, role: str, text: str) -> dict[str, Any]:
    part = "output_text" if role == "assistant" else "input_text"
    return {"type": "message", "id": item_id, "role": role, "status": "completed",
            "content": [{"type": part, "text": text}]}


def turn(n: int, key: ClientKey | None, previous: StoredResponse | None) -> StoredResponse:
    """Store turn ``n``: one user message in, one assistant message out."""
    response = {"id": f"resp_{n}", "object": "response", "status": "completed", "model": "m",
                "output": [message(f"msg_out_{n}", "assistant", f"answer {n}")]}
    return StoredResponse.objects.store(response, key=key, previous=previous,
                                        inputs=[message(f"msg_in_{n}", "user", f"question {n}")], request_id=f"req_{n}")


def chain_of(length: int, key: ClientKey | None) -> list[StoredResponse]:
    responses: list[StoredResponse] = []
    for n in range(length):
        responses.append(turn(n, key, responses[-1] if responses else None))
    return responses


@pytest.mark.django_db
def test_a_hundred_turn_chain_is_read_in_two_queries_oldest_first(django_assert_max_num_queries: Any) -> None:
    key, _ = ClientKey.objects.create_key("alice")
    responses = chain_of(100, key)
    with django_assert_max_num_queries(2):
        head, items, _ = StoredResponse.objects.chain(responses[-1].pk, key)  # type: ignore[misc]
    assert head.pk == "resp_99"
    assert [item["id"] for item in items[:4]] == ["msg_in_0", "msg_out_0", "msg_in_1", "msg_out_1"]
    assert len(items) == 200 and items[-1]["content"][0]["text"] == "answer 99"
    # Linear storage: every response holds its own two items, not a copy of the history.
    assert StoredItem.objects.count() == 200


@pytest.mark.django_db
def test_a_chain_is_only_its_owners() -> None:
    alice, _ = ClientKey.objects.create_key("alice")
    bob, _ = ClientKey.objects.create_key("bob")
    [first] = chain_of(1, alice)
    assert StoredResponse.objects.chain(first.pk, bob) is None
    assert StoredResponse.objects.chain(first.pk, None) is None  # nor an anonymous request's


@pytest.mark.django_db
def test_a_chain_with_a_hole_is_not_read() -> None:
    """A deleted or pruned middle response must not leave a continuation answered from half a history."""
    key, _ = ClientKey.objects.create_key("alice")
    responses = chain_of(3, key)
    responses[1].delete()
    assert StoredResponse.objects.chain("resp_2", key) is None
    assert StoredResponse.objects.chain("resp_0", key) is not None


@pytest.mark.django_db
def test_the_latest_stored_item_of_an_id_is_the_one_referenced() -> None:
    key, _ = ClientKey.objects.create_key("alice")
    first = turn(0, key, None)
    again = {"id": "resp_again", "object": "response", "status": "completed", "model": "m",
             "output": [message("msg_out_0", "assistant", "a newer copy")]}
    StoredResponse.objects.store(again, key=key, previous=first, inputs=[], request_id="req_again")
    found = StoredItem.objects.by_item_id(["msg_out_0", "msg_nope"], key)
    assert list(found) == ["msg_out_0"] and found["msg_out_0"]["content"][0]["text"] == "a newer copy"


@pytest.mark.django_db
def test_stored_content_is_encrypted_at_rest() -> None:
    key, _ = ClientKey.objects.create_key("alice")
    turn(0, key, None)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT body FROM {StoredItem._meta.db_table}")
        items = [row[0] for row in cursor.fetchall()]
        cursor.execute(f"SELECT body FROM {StoredResponse._meta.db_table}")
        responses = [row[0] for row in cursor.fetchall()]
    assert len(items) == 2 and len(responses) == 1
    assert all(body.startswith("fernet:") and "question" not in body and "answer" not in body
               for body in items + responses)


@pytest.mark.django_db
def test_rotatekeys_reencrypts_stored_responses_and_conversations_so_the_old_key_can_go() -> None:
    key, _ = ClientKey.objects.create_key("alice")
    with override_settings(GATEWAY_ENCRYPTION_KEYS=[OLD]):
        chain_of(2, key)
        conversation = Conversation.objects.start(key, {"topic": "keys"}, [{"id": "msg_c", "type": "message"}])
    with override_settings(GATEWAY_ENCRYPTION_KEYS=[NEW]), pytest.raises(DecryptionError):
        StoredResponse.objects.chain("resp_1", key)
    out = io.StringIO()
    with override_settings(GATEWAY_ENCRYPTION_KEYS=[NEW, OLD]):
        call_command("rotatekeys", stdout=out)
    assert "8 stored response and conversation row(s)" in out.getvalue()  # 2 responses, 4 items, 1 + 1
    with override_settings(GATEWAY_ENCRYPTION_KEYS=[NEW]):
        head, items, _ = StoredResponse.objects.chain("resp_1", key)  # type: ignore[misc]
        again = Conversation.objects.get(pk=conversation.pk)
        assert again.to_dict()["metadata"] == {"topic": "keys"}
        assert [item["id"] for item in again.history()] == ["msg_c"]
    assert [item["id"] for item in items] == ["msg_in_0", "msg_out_0", "msg_in_1", "msg_out_1"]


@pytest.mark.django_db
@override_settings(GATEWAY_RESPONSE_RETENTION_DAYS=30)
def test_prunelogs_deletes_stored_responses_past_their_retention() -> None:
    key, _ = ClientKey.objects.create_key("alice")
    old, recent = chain_of(2, key)
    StoredResponse.objects.filter(pk=old.pk).update(created=now() - timedelta(days=31))
    out = io.StringIO()
    call_command("prunelogs", stdout=out)
    assert "Deleted 1 stored response(s)" in out.getvalue()
    assert list(StoredResponse.objects.values_list("pk", flat=True)) == [recent.pk]
    assert set(StoredItem.objects.values_list("item_id", flat=True)) == {"msg_in_1", "msg_out_1"}
    assert StoredResponse.objects.chain(recent.pk, key) is None  # its history is gone: not half-read


@pytest.mark.django_db
@override_settings(GATEWAY_RESPONSE_RETENTION_DAYS=0)
def test_a_retention_of_zero_keeps_every_stored_response() -> None:
    key, _ = ClientKey.objects.create_key("alice")
    [old] = chain_of(1, key)
    StoredResponse.objects.filter(pk=old.pk).update(created=now() - timedelta(days=3650))
    out = io.StringIO()
    call_command("prunelogs", stdout=out)
    assert "every stored response is kept" in out.getvalue() and StoredResponse.objects.count() == 1


@pytest.mark.django_db
def test_a_chain_keeps_reasoning_calls_and_outputs_in_the_order_they_happened() -> None:
    key, _ = ClientKey.objects.create_key("alice")
    reasoning = {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "look it up"}]}
    call = {"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "weather", "arguments": "{}"}
    first = StoredResponse.objects.store(
        {"id": "resp_a", "object": "response", "status": "completed", "model": "m", "output": [reasoning, call]},
        key=key, previous=None, inputs=[message("msg_1", "user", "Weather?")], request_id="req_a")
    output = {"type": "function_call_output", "id": "fco_1", "call_id": "c1", "output": "21 C"}
    StoredResponse.objects.store(
        {"id": "resp_b", "object": "response", "status": "completed", "model": "m",
         "output": [message("msg_2", "assistant", "Sunny, 21 C.")]},
        key=key, previous=first, inputs=[output], request_id="req_b")
    head, items, root = StoredResponse.objects.chain("resp_b", key)  # type: ignore[misc]
    assert (head.pk, root) == ("resp_b", "resp_a")  # the chain's first response: its session
    assert [item["id"] for item in items] == ["msg_1", "rs_1", "fc_1", "fco_1", "msg_2"]
    assert items[1] == reasoning and items[2] == call and items[3] == output


@pytest.mark.django_db
def test_responses_stored_together_take_one_transaction_and_keep_their_chains(
        django_assert_max_num_queries: Any) -> None:
    """Streams that end together are written in one commit (api/stored/keeper.py's StoreWriter)."""
    from state.models import ResponseToStore

    key, _ = ClientKey.objects.create_key("alice")
    [first] = chain_of(1, key)
    finished = [ResponseToStore({"id": f"resp_t{n}", "object": "response", "status": "completed", "model": "m",
                          "output": [message(f"msg_t{n}", "assistant", f"answer {n}")]},
                         key, first, [message(f"msg_q{n}", "user", f"question {n}")], f"req_t{n}") for n in range(5)]
    with django_assert_max_num_queries(4):  # begin, two inserts, commit
        StoredResponse.objects.store_many(finished)
    head, items, root = StoredResponse.objects.chain("resp_t3", key)  # type: ignore[misc]
    assert root == first.pk
    assert [item["id"] for item in items] == ["msg_in_0", "msg_out_0", "msg_q3", "msg_t3"]
