"""What a client says beyond its body (logs/audit/client.py): Codex's session and request kind, as Codex sends them."""
from __future__ import annotations

import json

from logs.audit.client import said_in_headers, session_in_body

THREAD = "01a24f0c-db57-7923-a9cf-29415e960daa"


def test_codexs_headers_give_the_thread_and_the_request_kind() -> None:
    metadata = json.dumps({"session_id": THREAD, "thread_id": THREAD, "turn_id": "t1", "request_kind": "compaction",
                           "compaction": {"trigger": "auto", "implementation": "responses_compaction_v2"}})
    assert said_in_headers({"session-id": THREAD, "thread-id": THREAD,
                            "x-codex-turn-metadata": metadata}) == (THREAD, "compaction")
    assert said_in_headers({"x-codex-turn-metadata": metadata}) == (THREAD, "compaction")  # the metadata alone
    assert said_in_headers({"thread-id": THREAD}) == (THREAD, "")


def test_what_is_missing_or_malformed_says_nothing_and_long_values_are_cut() -> None:
    assert said_in_headers({}) == ("", "")
    assert said_in_headers({"x-codex-turn-metadata": "{not json"}) == ("", "")
    assert said_in_headers({"x-codex-turn-metadata": json.dumps({"request_kind": 7})}) == ("", "")
    session, kind = said_in_headers({"session-id": "s" * 500, "x-codex-turn-metadata": json.dumps(
        {"request_kind": "k" * 100})})
    assert (len(session), len(kind)) == (100, 32)


def test_a_websocket_turn_names_its_thread_in_the_body() -> None:
    assert session_in_body({"client_metadata": {"thread_id": THREAD, "session_id": "other"}}) == THREAD
    assert session_in_body({"client_metadata": {"session_id": THREAD}}) == THREAD
    assert session_in_body({"client_metadata": "nope"}) == session_in_body({}) == ""
