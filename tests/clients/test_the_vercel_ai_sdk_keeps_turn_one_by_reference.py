"""The Vercel AI SDK (ai 7, @ai-sdk/openai 4) with its defaults: turn 2 sends turn 1's answer as an item_reference.

Installed by `make ai-sdk` (npm, into .ai-sdk/) and driven by tests/clients/ai_sdk_turns.mjs on
the machine's node. Never skipped: a missing SDK is a failure.
"""
from __future__ import annotations

import json
import os
import subprocess

from state.models import StoredItem, StoredResponse
from tests.clients.conftest import TURN_ONE, bodies_received, upstream_messages
from tests.servers import ROOT, Gateway, MockUpstream
from upstreams.models import Upstream

SCRIPT = ROOT / "tests" / "clients" / "ai_sdk_turns.mjs"
INSTALLED = ROOT / ".ai-sdk" / "node_modules" / "@ai-sdk" / "openai"


def test_turn_two_references_turn_ones_answer_and_the_upstream_gets_it_back(
        logged_gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    assert INSTALLED.exists(), "Vercel AI SDK missing: run `make ai-sdk` (make test does)"
    result = subprocess.run(["node", str(SCRIPT), logged_gateway.url, "mock-model"], cwd=ROOT,
                            env={"PATH": os.environ["PATH"], "GATEWAY_KEY": active_key},
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = json.loads(result.stdout)["turns"]
    assert (first["text"], second["text"]) == ("Paris.", "Lyon.")

    # The SDK left store to the API's default (true) and referred to turn 1's answer by its id.
    [first_body, second_body] = bodies_received(2)
    assert "store" not in first_body and "store" not in second_body
    [answer] = StoredResponse.objects.get(pk=first["responseId"]).to_dict()["output"]
    assert second_body["input"] == [
        {"role": "user", "content": [{"type": "input_text", "text": "Capital of France?"}]},
        {"type": "item_reference", "id": answer["id"]},
        {"role": "user", "content": [{"type": "input_text", "text": "Second city?"}]},
    ]
    assert StoredItem.objects.filter(item_id=answer["id"], response_id=first["responseId"]).exists()

    # The gateway replaced the reference by the stored answer: the upstream got turn 1 whole.
    assert upstream_messages(scripted) == [*TURN_ONE, {"role": "user", "content": "Second city?"}]
