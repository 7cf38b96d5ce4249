"""The real Codex CLI, each version the Makefile pins, against the gateway bridged to a scripted Chat-only mock.

Installed by `make codex` (npm, into .codex-cli/VERSION/); fully offline: Codex talks only to
the gateway on loopback. These tests never skip: a missing CLI is a failure.
"""
from __future__ import annotations

import io
import json
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command

from tests.codex import SETTINGS, VERSIONS, Codex, messages
from tests.conftest import wait_for_logs
from tests.servers import Gateway, MockUpstream
from upstreams.models import Upstream

pytestmark = pytest.mark.codex

PROOF_ARGS = '{"cmd": "echo gateway-ok > proof.txt"}'


@pytest.fixture(params=VERSIONS)
def codex(request: pytest.FixtureRequest, tmp_path: Path) -> Codex:
    """Each Codex CLI version the Makefile pins, in folders of its own."""
    return Codex(request.param, tmp_path)


def run_codex(codex: Codex, gateway: Gateway, key: str, prompt: str, model: str = "mock-model",
              websockets: bool = False) -> tuple[subprocess.CompletedProcess, list]:
    codex.configure(gateway, model)
    if websockets:
        with (codex.codex_home / "config.toml").open("a") as config:
            config.write("supports_websockets = true\n")
    return codex.exec(prompt, env={"GATEWAY_KEY": key})


def test_codex_runs_a_fragmented_tool_call_then_answers(codex: Codex, gateway: Gateway, scripted: MockUpstream,
                                                        chat_upstream: Upstream, active_key: str) -> None:
    pieces = [PROOF_ARGS[:5], PROOF_ARGS[5:17], PROOF_ARGS[17:30], PROOF_ARGS[30:]]
    scripted.script(
        {"chunks": [{"tool": {"index": 0, "id": "call_exec_1", "name": "exec_command", "arguments": ""}},
                    *({"tool": {"index": 0, "arguments": p}} for p in pieces), {"finish": "tool_calls"}]},
        {"chunks": [{"text": "All done: "}, {"text": "proof written."}, {"finish": "stop"}]},
    )
    result, events = run_codex(codex, gateway, active_key, "make proof")

    assert result.returncode == 0, result.stderr[-3000:]
    assert (codex.work / "proof.txt").read_text().strip() == "gateway-ok"
    assert messages(events)[-1] == "All done: proof written."
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


def test_codex_keeps_one_websocket_and_sends_each_turn_by_reference(codex: Codex, start_gateway,
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
    result, events = run_codex(codex, gateway, active_key, "make proof", websockets=True)

    assert result.returncode == 0, result.stderr[-3000:]
    assert "Falling back" not in result.stderr + result.stdout  # it never left the socket
    assert (codex.work / "proof.txt").read_text().strip() == "gateway-ok"
    assert messages(events)[-1] == "Proof written."
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


def test_codex_shows_reasoning_and_the_answer(codex: Codex, gateway: Gateway, scripted: MockUpstream,
                                              chat_upstream: Upstream, active_key: str) -> None:
    scripted.script({"chunks": [{"reasoning": "**Planning** the"}, {"reasoning": " answer."},
                                {"text": "Reasoned answer: "}, {"text": "42."}, {"finish": "stop"}]})
    result, events = run_codex(codex, gateway, active_key, "what is the answer?")

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
def test_the_demos_tool_scenarios_finish_a_codex_turn(codex: Codex, gateway: Gateway, demo_mock: MockUpstream,
                                                      active_key: str, model: str, commands: int) -> None:
    """make run's demo upstream: Codex runs its harmless commands, gets the answer, and the turn ends."""
    Upstream.objects.create(name="demo", base_url=demo_mock.base_url, models="demo-*")
    result, events = run_codex(codex, gateway, active_key, "show me the demo", model=model)

    assert result.returncode == 0, result.stderr[-3000:]
    ran = [e["item"] for e in events if e["type"] == "item.completed" and e["item"].get("type") == "command_execution"]
    assert len(ran) == commands and all(item["exit_code"] == 0 for item in ran)
    last = "hello from codex-gateway" if commands == 1 else "step 5 of 5"
    assert messages(events)[-1] == f"The demo ran its command; the output ends with: {last}"
    assert any(e["type"] == "turn.completed" for e in events)
    rows = wait_for_logs(2)
    assert len(rows) == 2 and [r.tool_calls for r in rows] == [commands, 0]  # two requests: no loop


def test_codexconfigs_output_runs_a_demo_tool_turn(codex: Codex, gateway: Gateway, demo_mock: MockUpstream,
                                                   active_key: str) -> None:
    """`manage.py codexconfig --write`, then `codex exec --profile demo-tools`: the turn completes."""
    Upstream.objects.create(name="demo", base_url=demo_mock.base_url, models="demo-*")
    # The suite's own settings: no update check, no plugins, no analytics (all offline).
    (codex.codex_home / "config.toml").write_text(SETTINGS)
    call_command("codexconfig", "--write", "--codex-home", str(codex.codex_home), "--base-url", f"{gateway.url}/v1",
                 stdout=io.StringIO())
    config = tomllib.loads((codex.codex_home / "demo-tools.config.toml").read_text())
    assert config["model_context_window"] == 32768
    result, events = codex.exec("show me the demo", "--profile", "demo-tools", env={"CODEX_GATEWAY_KEY": active_key})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Model metadata" not in result.stdout + result.stderr  # the gateway's catalog has the model
    assert messages(events)[-1] == "The demo ran its command; the output ends with: hello from codex-gateway"
    # The catalog's apply_patch_tool_type: Codex offers its freeform apply_patch, bridged as a function.
    tools = {tool["function"]["name"]: tool["function"] for tool in demo_mock.requests()[0]["body"]["tools"]}
    assert tools["apply_patch"]["parameters"]["required"] == ["input"]
    # codexconfig's provider says supports_websockets: the warm-up, the turn and its follow-up on one socket.
    # First the catalog (Codex fetches it at start), then the turn on one socket.
    rows = wait_for_logs(4)
    assert [(r.endpoint, r.model, r.tool_calls, r.transport) for r in rows] == [
        ("codex/models", "", 0, "http"), ("responses", "demo-tools", 0, "websocket"),
        ("responses", "demo-tools", 1, "websocket"), ("responses", "demo-tools", 0, "websocket")]


@pytest.mark.parametrize("kind", ["bridged", "relayed"])
def test_codex_waits_through_a_pause_longer_than_its_idle_timeout(codex: Codex, start_gateway, scripted: MockUpstream,
                                                                   active_key: str, kind: str) -> None:
    """An upstream silent for 8 s, Codex's idle timeout 3 s: heartbeats every second keep the turn alive.

    Without them (GATEWAY_STREAM_HEARTBEAT=0) the same turn dies of the idle timeout: the
    pause is long enough to matter.
    """
    if kind == "bridged":
        Upstream.objects.create(name="chat-mock", base_url=scripted.base_url)
    else:
        Upstream.objects.create(name="responses-mock", base_url=scripted.url, api="responses")
    scripted.script({"chunks": [{"text": "Thinking... "}, {"text": "done."}, {"finish": "stop"}], "pause": [0, 8]})
    silent = start_gateway(GATEWAY_STREAM_HEARTBEAT="0")
    codex.configure(silent, idle_ms=3000)
    result, events = codex.exec("take your time", env={"GATEWAY_KEY": active_key})
    assert result.returncode != 0 and "idle timeout" in result.stdout + result.stderr

    beating = start_gateway(GATEWAY_STREAM_HEARTBEAT="1")
    codex.configure(beating, idle_ms=3000)
    result, events = codex.exec("take your time", env={"GATEWAY_KEY": active_key})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert messages(events)[-1] == "Thinking... done."


NEW_FILE = "*** Begin Patch\n*** Add File: hello.txt\n+hello from apply_patch\n+second line\n*** End Patch\n"


def test_codex_applies_a_patch_the_bridged_model_sends_and_the_file_appears(
        codex: Codex, gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    """The catalog makes Codex offer apply_patch; the model calls it as a function; Codex applies the patch."""
    scripted.script(
        {"chunks": [{"tool": {"index": 0, "id": "call_patch_1", "name": "apply_patch",
                              "arguments": json.dumps({"input": NEW_FILE})}}, {"finish": "tool_calls"}]},
        {"chunks": [{"text": "Added hello.txt."}, {"finish": "stop"}]},
    )
    codex.configure(gateway, catalog=True)
    result, events = codex.exec("add hello.txt", env={"GATEWAY_KEY": active_key})

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (codex.work / "hello.txt").read_text() == "hello from apply_patch\nsecond line\n"
    assert messages(events)[-1] == "Added hello.txt."
    first, second = (r["body"] for r in scripted.requests())
    [offered] = [t["function"] for t in first["tools"] if t["function"]["name"] == "apply_patch"]
    assert "*** Begin Patch" in offered["description"]
    # The call went back to Codex as a custom_tool_call; its output comes back to the model as a tool message.
    call_at = next(i for i, m in enumerate(second["messages"]) if m.get("tool_calls"))
    tool_message = second["messages"][call_at + 1]
    assert (tool_message["role"], tool_message["tool_call_id"]) == ("tool", "call_patch_1")
    assert "hello.txt" in tool_message["content"]


def test_codex_runs_a_tool_turn_with_thinking_on_an_anthropic_upstream(codex: Codex, gateway: Gateway,
                                                                       scripted: MockUpstream,
                                                                       active_key: str) -> None:
    """Codex's own requests, bridged to Messages: the strict mock takes turn 2 only with the signed thinking first."""
    Upstream.objects.create(name="claude-mock", base_url=scripted.url, api="anthropic", api_key="sk-ant-SECRET",
                            send_reasoning_effort=True)
    scripted.script(
        {"chunks": [{"reasoning": "I should write the proof file."},
                    {"tool": {"index": 0, "id": "toolu_exec_1", "name": "exec_command", "arguments": ""}},
                    {"tool": {"index": 0, "arguments": PROOF_ARGS[:12]}},
                    {"tool": {"index": 0, "arguments": PROOF_ARGS[12:]}}, {"finish": "tool_calls"}]},
        {"chunks": [{"text": "Proof written."}, {"finish": "stop"}]},
    )
    result, events = run_codex(codex, gateway, active_key, "make proof")

    assert result.returncode == 0, result.stderr[-3000:]
    assert (codex.work / "proof.txt").read_text().strip() == "gateway-ok"
    assert messages(events)[-1] == "Proof written."
    first, second = scripted.requests()
    assert first["path"] == second["path"] == "/v1/messages"
    assert first["headers"]["x-api-key"] == "sk-ant-SECRET"
    turn = second["body"]["messages"]
    at = next(i for i, m in enumerate(turn) if any(b["type"] == "tool_use" for b in m["content"]))
    assert [b["type"] for b in turn[at]["content"]][-2:] == ["thinking", "tool_use"]
    assert turn[at]["content"][-2]["thinking"] == "I should write the proof file."
    result_block = turn[at + 1]["content"][0]
    assert (result_block["type"], result_block["tool_use_id"]) == ("tool_result", "toolu_exec_1")
    rows = wait_for_logs(2)
    assert [(r.mode, r.outcome, r.upstream_name) for r in rows] == [("bridge", "ok", "claude-mock")] * 2
