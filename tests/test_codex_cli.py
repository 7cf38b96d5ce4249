"""The real Codex CLI 0.169 against the gateway, bridged to a scripted Chat-only mock upstream.

Installed by `make codex` (npm, into .codex-cli/); fully offline: Codex talks only to the
gateway on loopback. These tests never skip: a missing CLI is a failure.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.conftest import wait_for_logs
from tests.servers import ROOT, Gateway, MockUpstream
from upstreams.models import Upstream

pytestmark = pytest.mark.codex

CODEX = ROOT / ".codex-cli" / "node_modules" / ".bin" / "codex"
# Retries off and a short idle timeout, so a gateway bug fails fast instead of retrying for minutes;
# plugins off, or Codex tries to sync them from the internet.
CONFIG = """\
model = "{model}"
model_provider = "gateway"
check_for_update_on_startup = false

[features]
plugins = false

[analytics]
enabled = false

[model_providers.gateway]
name = "gateway"
base_url = "{base_url}"
env_key = "GATEWAY_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = 20000
"""
PROOF_ARGS = '{"cmd": "echo gateway-ok > proof.txt"}'


def run_codex(tmp_path: Path, gateway: Gateway, key: str, prompt: str, model: str = "mock-model",
              websockets: bool = False, idle_ms: int = 20000) -> tuple[subprocess.CompletedProcess, list]:
    assert CODEX.exists(), "Codex CLI missing: run `make codex` (make test does)"
    home, codex_home, work = tmp_path / "home", tmp_path / "codex-home", tmp_path / "work"
    for folder in (home, codex_home, work):
        folder.mkdir()
    config = CONFIG.format(base_url=f"{gateway.url}/v1", model=model).replace("20000", str(idle_ms))
    (codex_home / "config.toml").write_text(config + ("supports_websockets = true\n" if websockets else ""))
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(codex_home), "GATEWAY_KEY": key,
           "NO_COLOR": "1"}
    result = subprocess.run(
        [str(CODEX), "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "--ephemeral",
         "--json", prompt],
        cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=max(180, idle_ms // 250))
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return result, events


def test_codex_runs_a_fragmented_tool_call_then_answers(tmp_path: Path, gateway: Gateway, scripted: MockUpstream,
                                                        chat_upstream: Upstream, active_key: str) -> None:
    pieces = [PROOF_ARGS[:5], PROOF_ARGS[5:17], PROOF_ARGS[17:30], PROOF_ARGS[30:]]
    scripted.script(
        {"chunks": [{"tool": {"index": 0, "id": "call_exec_1", "name": "exec_command", "arguments": ""}},
                    *({"tool": {"index": 0, "arguments": p}} for p in pieces), {"finish": "tool_calls"}]},
        {"chunks": [{"text": "All done: "}, {"text": "proof written."}, {"finish": "stop"}]},
    )
    result, events = run_codex(tmp_path, gateway, active_key, "make proof")

    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "work" / "proof.txt").read_text().strip() == "gateway-ok"
    messages = [e["item"]["text"] for e in events if e.get("item", {}).get("type") == "agent_message"]
    assert messages[-1] == "All done: proof written."
    assert any(e["type"] == "turn.completed" for e in events)
    commands = [e["item"] for e in events
                if e["type"] == "item.completed" and e["item"].get("type") == "command_execution"]
    assert commands[0]["exit_code"] == 0 and "echo gateway-ok > proof.txt" in commands[0]["command"]

    first, second = scripted.requests()
    assert first["body"]["messages"][0]["role"] == "system"
    history = second["body"]["messages"]
    call_at = next(i for i, m in enumerate(history) if m.get("tool_calls"))
    [call] = history[call_at]["tool_calls"]
    assert (call["id"], call["function"]["name"]) == ("call_exec_1", "exec_command")
    assert json.loads(call["function"]["arguments"]) == json.loads(PROOF_ARGS)
    tool_message = history[call_at + 1]
    assert (tool_message["role"], tool_message["tool_call_id"]) == ("tool", "call_exec_1")
    assert "Process exited with code 0" in tool_message["content"]
    rows = wait_for_logs(2)
    assert [(r.mode, r.outcome, r.tool_calls) for r in rows] == [("bridge", "ok", 1), ("bridge", "ok", 0)]


def test_codex_keeps_one_websocket_and_sends_each_turn_by_reference(tmp_path: Path, start_gateway,
                                                                    scripted: MockUpstream, chat_upstream: Upstream,
                                                                    active_key: str) -> None:
    """supports_websockets = true: the warm-up, the tool turn and its follow-up go over one socket.

    The follow-up carries previous_response_id and only the tool's output; the upstream
    still gets the whole history.
    """
    gateway = start_gateway(GATEWAY_LOG_BODIES="true")
    scripted.script(
        {"chunks": [{"tool": {"index": 0, "id": "call_exec_1", "name": "exec_command", "arguments": PROOF_ARGS}},
                    {"finish": "tool_calls"}]},
        {"chunks": [{"text": "Proof written."}, {"finish": "stop"}]},
    )
    result, events = run_codex(tmp_path, gateway, active_key, "make proof", websockets=True)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Falling back" not in result.stderr + result.stdout  # it never left the socket
    assert (tmp_path / "work" / "proof.txt").read_text().strip() == "gateway-ok"
    messages = [e["item"]["text"] for e in events if e.get("item", {}).get("type") == "agent_message"]
    assert messages[-1] == "Proof written."
    rows = wait_for_logs(3)
    assert [(r.transport, r.upstream_name) for r in rows] == [("websocket", ""), ("websocket", "chat-mock"),
                                                              ("websocket", "chat-mock")]
    warm_up, turn, follow_up = (json.loads(r.request_body) for r in rows)
    assert warm_up["generate"] is False and turn["previous_response_id"]
    assert follow_up["previous_response_id"] and [item["type"] for item in follow_up["input"]] == [
        "function_call_output"]
    # The upstream got everything each time: the instructions, the question, the call and its output.
    first, second = (r["body"]["messages"] for r in scripted.requests())
    assert first[0]["role"] == "system" and first[-1] == {"role": "user", "content": "make proof"}
    assert second[:len(first)] == first
    assert [m["role"] for m in second[len(first):]] == ["assistant", "tool"]
    assert second[len(first)]["tool_calls"][0]["function"]["arguments"] == PROOF_ARGS


def test_codex_shows_reasoning_and_the_answer(tmp_path: Path, gateway: Gateway, scripted: MockUpstream,
                                              chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"reasoning": "**Planning** the"}, {"reasoning": " answer."},
                                {"text": "Reasoned answer: "}, {"text": "42."}, {"finish": "stop"}]})
    result, events = run_codex(tmp_path, gateway, active_key, "what is the answer?")

    assert result.returncode == 0, result.stderr[-3000:]
    items = [e["item"] for e in events if e["type"] == "item.completed"]
    reasoning = [i["text"] for i in items if i.get("type") == "reasoning"]
    assert reasoning and "Planning" in reasoning[0] and "answer." in reasoning[0]
    assert [i["text"] for i in items if i.get("type") == "agent_message"][-1] == "Reasoned answer: 42."
    [row] = wait_for_logs(1)
    assert (row.mode, row.outcome, row.endpoint) == ("bridge", "ok", "responses")


@pytest.fixture
def demo_mock() -> Iterator[MockUpstream]:
    server = MockUpstream("demo")
    yield server
    server.stop()


@pytest.mark.parametrize(("model", "commands"), [("demo-tools", 1), ("demo-tools5", 5)])
def test_the_demos_tool_scenarios_finish_a_codex_turn(tmp_path: Path, gateway: Gateway, demo_mock: MockUpstream,
                                                      active_key: str, model: str, commands: int) -> None:
    """make run's demo upstream: Codex runs its harmless commands, gets the answer, and the turn ends."""
    Upstream.objects.create(name="demo", base_url=demo_mock.base_url, models="demo-*")
    result, events = run_codex(tmp_path, gateway, active_key, "show me the demo", model=model)

    assert result.returncode == 0, result.stderr[-3000:]
    ran = [e["item"] for e in events if e["type"] == "item.completed" and e["item"].get("type") == "command_execution"]
    assert len(ran) == commands and all(item["exit_code"] == 0 for item in ran)
    messages = [e["item"]["text"] for e in events if e.get("item", {}).get("type") == "agent_message"]
    last = "hello from codex-gateway" if commands == 1 else "step 5 of 5"
    assert messages[-1] == f"The demo ran its command; the output ends with: {last}"
    assert any(e["type"] == "turn.completed" for e in events)
    rows = wait_for_logs(2)
    assert len(rows) == 2 and [r.tool_calls for r in rows] == [commands, 0]  # two requests: no loop


def test_codexconfigs_output_runs_a_demo_tool_turn(tmp_path: Path, gateway: Gateway, demo_mock: MockUpstream,
                                                   active_key: str) -> None:
    """`manage.py codexconfig --write`, then `codex exec --profile demo-tools`: the turn completes."""
    Upstream.objects.create(name="demo", base_url=demo_mock.base_url, models="demo-*")
    home, codex_home, work = tmp_path / "home", tmp_path / "codex-home", tmp_path / "work"
    for folder in (home, codex_home, work):
        folder.mkdir()
    # The suite's own settings: no update check, no plugins, no analytics (all offline).
    (codex_home / "config.toml").write_text('check_for_update_on_startup = false\n\n[features]\nplugins = false\n\n'
                                            '[analytics]\nenabled = false\n')
    call_command("codexconfig", "--write", "--codex-home", str(codex_home), "--base-url", f"{gateway.url}/v1",
                 stdout=io.StringIO())
    config = tomllib.loads((codex_home / "demo-tools.config.toml").read_text())
    assert config["model_context_window"] == 32768
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "CODEX_HOME": str(codex_home),
           "CODEX_GATEWAY_KEY": active_key, "NO_COLOR": "1"}
    result = subprocess.run(
        [str(CODEX), "exec", "--profile", "demo-tools", "--skip-git-repo-check",
         "--dangerously-bypass-approvals-and-sandbox", "--ephemeral", "--json", "show me the demo"],
        cwd=work, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Model metadata" not in result.stderr  # the profile's window is known
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    messages = [e["item"]["text"] for e in events if e.get("item", {}).get("type") == "agent_message"]
    assert messages[-1] == "The demo ran its command; the output ends with: hello from codex-gateway"
    # codexconfig's provider says supports_websockets: the warm-up, the turn and its follow-up on one socket.
    rows = wait_for_logs(3)
    assert [(r.model, r.tool_calls, r.transport) for r in rows] == [
        ("demo-tools", 0, "websocket"), ("demo-tools", 1, "websocket"), ("demo-tools", 0, "websocket")]
