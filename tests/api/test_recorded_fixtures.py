"""Every flight recording in tests/fixtures/recordings/, replayed through today's gateway without its upstream.

They came from real exchanges (``manage.py exportfixture``): a server that broke a client
becomes one file here, and the fix is proven against it. Each must replay to exactly what
was recorded (after a deliberate change: ``manage.py replay --fixture FILE --accept``), and
a bridged stream must be one Codex and the SDKs read: numbered, in order, items closed, spec-valid.
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import orjson
import pytest

from api.replay import dialect_named, replay
from logs.recording.fixtures import FIXTURES, Recorded
from tests.bridge.helpers import assert_valid_stream

FILES = sorted(FIXTURES.glob("*.json"))


def test_the_fixtures_are_there() -> None:
    assert {path.name for path in FILES} >= {"chat-parallel-tool-calls-interleaved.json",
                                             "chat-reasoning-then-text.json", "chat-stream-cut-before-done.json"}


@pytest.mark.parametrize("path", FILES, ids=[path.stem for path in FILES])
def test_a_recording_replays_to_what_was_recorded(path: Path) -> None:
    recorded = Recorded.from_fixture(orjson.loads(path.read_bytes()))
    result = asyncio.run(replay(recorded))
    assert result.same, "\n".join(result.lines())
    if dialect_named(recorded.dialect).translates and recorded.client_request.get("stream"):
        events = [json.loads(line[6:]) for line in result.replayed.decode().splitlines() if line.startswith("data: ")]
        assert_valid_stream(events)
