"""The flight recorder: an upstream's next N exchanges kept, replayed through today's code, exported as fixtures.

Real daphne, a real mock upstream, httpx as the client; ``manage.py replay`` and
``exportfixture`` run as commands against the rows the gateway wrote.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from django.core.management import call_command

from logs.models import Recording
from tests import waiting
from tests.bridge.helpers import assert_valid_stream
from tests.conftest import wait_for_logs
from tests.servers import Gateway, MockUpstream, admin_session
from upstreams.models import Upstream

TOOLS_STREAM = {"chunks": [  # two calls, interleaved, as llama.cpp and vLLM stream them
    {"tool": {"index": 0, "id": "call_a", "name": "exec_command", "arguments": ""}},
    {"tool": {"index": 1, "id": "call_b", "name": "exec_command", "arguments": ""}},
    {"tool": {"index": 0, "arguments": '{"cmd": "ls"}'}},
    {"tool": {"index": 1, "arguments": '{"cmd": "pwd"}'}},
    {"finish": "tool_calls"}, {"usage": {"prompt_tokens": 12, "completion_tokens": 9, "total_tokens": 21}}]}
TOOL = {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {}}}
ASK = {"model": "m", "input": "list the files", "tools": [TOOL], "stream": True}


def wait_for_recordings(count: int, timeout: float = 10.0) -> list[Recording]:
    def rows() -> list[Recording] | None:
        found = list(Recording.objects.order_by("started"))
        return found if len(found) >= count else None

    return waiting.until(rows, f"{count} recordings", timeout, interval=0.05)


def replay(*args: str) -> tuple[int, str]:
    """Run ``manage.py replay``; return its exit status and what it printed."""
    out = io.StringIO()
    try:
        call_command("replay", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


def send(gateway: Gateway, key: str, body: dict) -> httpx.Response:
    return httpx.post(f"{gateway.url}/v1/responses", json=body, headers={"authorization": f"Bearer {key}"},
                      timeout=30)


def events_of(body: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in body.decode().splitlines() if line.startswith("data: ")]


def test_an_upstream_records_its_next_n_exchanges_and_each_replays_the_same(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    Upstream.objects.filter(pk=chat_upstream.pk).update(record_next=2)
    scripted.script(TOOLS_STREAM)
    answers = [send(gateway, active_key, ASK) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200]
    wait_for_logs(3)
    recordings = wait_for_recordings(2)
    gateway.settle()  # nothing left to write: a third would have been
    assert [r.request_id for r in Recording.objects.order_by("started")] == [
        a.headers["x-request-id"] for a in answers[:2]]
    assert Upstream.objects.get(pk=chat_upstream.pk).record_next == 0

    first = recordings[0]
    assert bytes(first.client_body) == answers[0].content  # what the client got, byte for byte
    upstream_body = bytes(first.upstream_body)
    assert upstream_body.endswith(b"data: [DONE]\n\n") and b'"call_b"' in upstream_body
    assert sum(first.upstream_reads) == len(upstream_body) and len(first.upstream_reads) >= 1
    assert json.loads(first.upstream_request)["messages"][-1] == {"role": "user", "content": "list the files"}
    assert json.loads(first.client_request)["input"] == "list the files"
    assert (first.dialect, first.upstream_status, first.client_status, first.cut) == ("chat", 200, 200, [])

    status, printed = replay(first.request_id)
    assert status == 0 and "no difference" in printed, printed


def test_replay_shows_what_todays_code_would_do_differently(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    Upstream.objects.filter(pk=chat_upstream.pk).update(record_next=1)
    scripted.script(TOOLS_STREAM)
    answer = send(gateway, active_key, ASK)
    recording = wait_for_recordings(1)[0]
    # As if an older gateway had streamed the first call's arguments otherwise, and had
    # sent the upstream another prompt: what it sent then is what the recording holds.
    recording.client_body = answer.content.replace(b'{\\"cmd\\": \\"ls\\"}', b'{\\"cmd\\": \\"l')
    recording.upstream_request = recording.upstream_request.replace("list the files", "list the file")
    recording.save()
    status, printed = replay(recording.request_id, "--show")
    assert status == 1
    assert "The upstream request differs:" in printed and '+      "content": "list the files",' in printed
    assert "What the client is sent differs:" in printed
    assert any(line.startswith("-") and '\\"l"' in line for line in printed.splitlines())
    assert any(line.startswith("+") and '{\\"cmd\\": \\"ls\\"}' in line for line in printed.splitlines())
    assert "response.completed" in printed  # --show: today's stream itself


def test_an_exported_fixture_replays_without_the_database_and_streams_properly(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str, tmp_path: Path) -> None:
    Upstream.objects.filter(pk=chat_upstream.pk).update(record_next=1)
    scripted.script(TOOLS_STREAM)
    answer = send(gateway, active_key, ASK)
    request_id = wait_for_recordings(1)[0].request_id
    path = tmp_path / "fixture.json"
    out = io.StringIO()
    call_command("exportfixture", request_id, "--out", str(path), stdout=out)
    assert f"Wrote {path}" in out.getvalue()
    fixture = json.loads(path.read_text())
    assert fixture["upstream"]["reads"][0].startswith("data: {")  # readable text, read by read
    assert fixture["client_body"] == answer.text
    Recording.objects.all().delete()
    status, printed = replay("--fixture", str(path))
    assert status == 0 and "no difference" in printed, printed
    assert_valid_stream(events_of(answer.content))
    # After a deliberate change, --accept writes today's output into the fixture.
    fixture["client_body"] = fixture["client_body"].replace("exec_command", "exec_commnd")
    path.write_text(json.dumps(fixture))
    assert replay("--fixture", str(path))[0] == 1
    status, printed = replay("--fixture", str(path), "--accept")
    assert status == 0 and "Accepted" in printed
    assert json.loads(path.read_text())["client_body"].count("exec_command") == answer.text.count("exec_command")
    assert replay("--fixture", str(path)) == (0, replay("--fixture", str(path))[1])
    assert "no difference" in replay("--fixture", str(path))[1]


def test_a_recording_keeps_no_secret(gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream,
                                     active_key: str) -> None:
    Upstream.objects.filter(pk=chat_upstream.pk).update(record_next=1)
    # An upstream that echoes its own key in its answer (some do, in error messages).
    scripted.script({"chunks": [{"text": f"your key is {chat_upstream.api_key} ok"}, {"finish": "stop"}]})
    assert send(gateway, active_key, {**ASK, "input": "hi", "tools": []}).status_code == 200
    recording = wait_for_recordings(1)[0]
    stored = b"".join([bytes(recording.upstream_body), bytes(recording.client_body),
                       json.dumps(recording.upstream_headers).encode(), recording.upstream_request.encode(),
                       recording.client_request.encode()])
    assert chat_upstream.api_key.encode() not in stored and active_key.encode() not in stored
    assert b"your key is [redacted] ok" in bytes(recording.upstream_body)
    assert sum(recording.upstream_reads) == len(recording.upstream_body)


def test_each_part_is_cut_at_the_bound_and_the_replay_says_so(start_gateway, scripted: MockUpstream,
                                                               chat_upstream: Upstream, active_key: str) -> None:
    server = start_gateway(GATEWAY_RECORDING_MAX_BYTES="4k")
    Upstream.objects.filter(pk=chat_upstream.pk).update(record_next=1)
    scripted.script({"chunks": [{"text": "word " * 20}, {"finish": "stop"}], "repeat": 200})
    answer = send(server, active_key, {**ASK, "tools": []})
    assert answer.status_code == 200 and len(answer.content) > 100_000
    recording = wait_for_recordings(1)[0]
    assert (len(recording.upstream_body), len(recording.client_body)) == (4096, 4096)
    assert recording.cut == ["upstream_body", "client_body"]
    _, printed = replay(recording.request_id)
    assert "note: the recorded upstream body was cut at GATEWAY_RECORDING_MAX_BYTES" in printed


def test_a_passthrough_recording_names_what_breaks_strict_clients(
        gateway: Gateway, scripted: MockUpstream, responses_upstream: Upstream, active_key: str) -> None:
    Upstream.objects.filter(pk=responses_upstream.pk).update(record_next=1)
    # llama.cpp's own /v1/responses as it streamed in the issue: no sequence_number, no indexes.
    events = [{"type": "response.created", "response": {"id": "resp_1", "object": "response", "status":
                                                          "in_progress", "output": []}},
              {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "hi"},
              {"type": "response.completed", "response": {"id": "resp_1", "object": "response", "status":
                                                            "completed", "output": []}}]
    scripted.script({"raw": [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events]})
    answer = send(gateway, active_key, {"model": "m", "input": "hi", "stream": True})
    assert answer.status_code == 200
    recording = wait_for_recordings(1)[0]
    assert recording.dialect == "responses-passthrough" and bytes(recording.client_body) == answer.content
    status, printed = replay(recording.request_id)
    assert status == 0 and "no difference" in printed
    assert "events without a sequence_number" in printed and "bridge it" in printed


def test_an_upstream_error_is_recorded_and_replays_to_the_same_error(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    Upstream.objects.filter(pk=chat_upstream.pk).update(record_next=1)
    scripted.script({"status": 400, "body": {"error": {"message": "context too long", "type": "invalid_request_error",
                                                      "code": 400}}})
    answer = send(gateway, active_key, {**ASK, "tools": []})
    assert answer.status_code == 400
    recording = wait_for_recordings(1)[0]
    assert (recording.upstream_status, recording.client_status) == (400, 400)
    status, printed = replay(recording.request_id)
    assert status == 0 and "no difference" in printed, printed


def test_staff_start_recording_from_the_admin_and_download_the_fixture(
        gateway: Gateway, scripted: MockUpstream, chat_upstream: Upstream, active_key: str) -> None:
    admin = admin_session(gateway)
    page = admin.get("/admin/upstreams/upstream/")
    token = page.text.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
    done = admin.post("/admin/upstreams/upstream/", data={
        "csrfmiddlewaretoken": token, "action": "record_next_exchanges", "_selected_action": [chat_upstream.pk]})
    assert "recording its next 10 exchanges" in done.text
    assert Upstream.objects.get(pk=chat_upstream.pk).record_next == 10
    scripted.script(TOOLS_STREAM)
    answer = send(gateway, active_key, ASK)
    request_id = answer.headers["x-request-id"]
    wait_for_logs(1), wait_for_recordings(1)
    detail = admin.get(f"/logs/{request_id}/")
    assert "Flight recording" in detail.text and f"manage.py replay {request_id}" in detail.text
    download = admin.get(f"/logs/{request_id}/recording.json")
    assert download.status_code == 200 and "attachment" in download.headers["content-disposition"]
    assert download.json()["client_body"] == answer.text
    assert Upstream.objects.get(pk=chat_upstream.pk).record_next == 9
    # Not recorded: no section, and the download is a 404.
    Upstream.objects.filter(pk=chat_upstream.pk).update(record_next=0)
    other = send(gateway, active_key, ASK).headers["x-request-id"]
    wait_for_logs(2)
    assert "Flight recording" not in admin.get(f"/logs/{other}/").text
    assert admin.get(f"/logs/{other}/recording.json").status_code == 404


def test_replay_of_a_request_never_recorded_says_how_to_record_it(db: None) -> None:
    with pytest.raises(Exception, match="record the next exchanges"):
        call_command("replay", "req_nowhere", stdout=io.StringIO())
