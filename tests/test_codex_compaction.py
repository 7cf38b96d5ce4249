"""Codex's remote compaction through the gateway, over three turns, with each pinned Codex CLI.

Codex compacts remotely (a ``compaction_trigger`` as the last input item, exactly one
``compaction`` item expected back) when its provider is OpenAI's: its built-in provider
pointed at the gateway with ``openai_base_url``, or a provider *named* "OpenAI". A tiny
``model_auto_compact_token_limit`` and an upstream that reports 5,000 prompt tokens per
answer make Codex compact before turns 2 and 3; the gateway summarizes through the bridged
Chat mock and, on the next turn, the upstream gets the summary in the item's place. Before
this, the second turn died with "remote compaction v2 expected exactly one compaction
output item, got 0".
"""
from __future__ import annotations

from pathlib import Path

import pytest

from bridge.history.compaction import SUMMARY_INTRO
from tests.codex import SETTINGS, VERSIONS, Codex, messages
from tests.conftest import wait_for_logs
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

pytestmark = pytest.mark.codex

NOTED = {"chunks": [{"text": "Noted."}, {"finish": "stop"},
                    {"usage": {"prompt_tokens": 5000, "completion_tokens": 10, "total_tokens": 5010}}]}
LIMIT = 'model = "mock-model"\nmodel_auto_compact_token_limit = 1000\n'


def configure(codex: Codex, gateway: Gateway, how: str) -> dict[str, str]:
    """Point Codex at the gateway the way ``how`` says; return the environment its key goes in."""
    if how == "openai_base_url":  # the built-in provider (its key: CODEX_API_KEY)
        config = LIMIT + f'openai_base_url = "{gateway.url}/v1"\n' + SETTINGS
        (codex.codex_home / "config.toml").write_text(config)
        return {"CODEX_API_KEY": "{key}"}
    config = LIMIT + 'model_provider = "gw"\n' + SETTINGS + f"""
[model_providers.gw]
name = "OpenAI"
base_url = "{gateway.url}/v1"
env_key = "GATEWAY_KEY"
wire_api = "responses"
"""
    (codex.codex_home / "config.toml").write_text(config)
    return {"GATEWAY_KEY": "{key}"}


@pytest.mark.parametrize("how", ["openai_base_url", "provider named OpenAI"])
@pytest.mark.parametrize("version", VERSIONS)
def test_three_turns_compacted_twice_on_the_way(tmp_path: Path, gateway: Gateway, scripted: MockUpstream,
                                                chat_upstream: Upstream, active_key: str, how: str,
                                                version: str) -> None:
    scripted.script(NOTED)
    codex = Codex(version, tmp_path)
    env = {name: value.format(key=active_key) for name, value in configure(codex, gateway, how).items()}
    for turn, prompt in enumerate(["Remember the number 41.", "Now remember 42.", "And 43."]):
        result, events = codex.exec(prompt, env=env, ephemeral=False, resume=turn > 0)
        assert result.returncode == 0, f"turn {turn + 1}: " + result.stdout[-3000:] + result.stderr[-3000:]
        assert messages(events)[-1] == "Noted."

    rows = [row for row in wait_for_logs(7) if row.endpoint == "responses" and row.model]
    compactions = [row for row in rows if row.request_kind == "compaction"]
    assert len(compactions) == 2 and all(row.outcome == "ok" for row in compactions), [
        (r.request_kind, r.outcome, r.error_message) for r in rows]
    assert len({row.session_id for row in rows}) == 1 and rows[0].session_id
    # Turn 3 carried the second compaction item: the upstream got its summary, not the item.
    last = scripted.requests()[-1]["body"]["messages"]
    summaries = [m for m in last if m["role"] == "user" and m["content"].startswith(SUMMARY_INTRO)]
    assert len(summaries) == 1 and last[-1] == {"role": "user", "content": "And 43."}
