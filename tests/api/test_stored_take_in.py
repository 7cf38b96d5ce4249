"""What ``take_in`` (api/stored/takein.py) does before routing, in process: nothing when nothing is kept."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from api.stored import keeper as keeping
from api.stored import takein

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def take_in(body: dict[str, Any]) -> tuple[dict[str, Any], keeping.Keeper | None]:
    request = SimpleNamespace(client_key=None, exchange=SimpleNamespace(request_id="req_1", session=""))
    return asyncio.run(takein.take_in(request, body))  # type: ignore[arg-type]


def test_a_codex_request_costs_no_database_trip_and_goes_on_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    """store: false with the whole history in the input (what Codex sends) is routed as it came."""

    async def no_database(*args: Any) -> None:
        raise AssertionError("a request that keeps no state read the database")

    monkeypatch.setattr(takein.dbthread, "run", no_database)
    body = json.loads((FIXTURES / "codex-0.169-request-after-tool-call.json").read_text())
    routed, keeper = take_in(body)
    assert routed is body and keeper is None


def test_a_stored_request_without_history_is_routed_as_it_came_and_kept() -> None:
    body = {"model": "m", "input": [{"role": "user", "content": "hi"}]}
    routed, keeper = take_in(body)
    assert routed["input"] is body["input"]
    assert keeper is not None and keeper.store and [item["type"] for item in keeper.inputs] == ["message"]


def test_a_response_the_database_refuses_does_not_take_its_batch_with_it(transactional_db: None) -> None:
    """Two streams end together; one's id is already stored: the other is still stored, and only one fails."""
    from state.models import StoredResponse

    def keeper() -> keeping.Keeper:
        return keeping.Keeper(key=None, request_id="req_x", previous=None, inputs=[])

    def response(response_id: str) -> dict[str, Any]:
        return {"id": response_id, "object": "response", "status": "completed", "model": "m", "output": []}

    StoredResponse.objects.store(response("resp_taken"), key=None, previous=None, inputs=[], request_id="req_0")

    async def scenario() -> list[BaseException | None]:
        writer = keeping.StoreWriter()
        results = await asyncio.gather(writer.write(keeper(), response("resp_taken")),
                                       writer.write(keeper(), response("resp_new")), return_exceptions=True)
        return list(results)

    taken, new = asyncio.run(scenario())
    assert isinstance(taken, Exception) and new is None
    assert set(StoredResponse.objects.values_list("pk", flat=True)) == {"resp_taken", "resp_new"}
