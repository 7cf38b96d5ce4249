"""``make run`` tells the truth (issue 13): a taken port, the upstream it serves, no catch-all demo."""
from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from tests import waiting
from tests.servers import ROOT, MockUpstream, free_port


@pytest.fixture
def serve_env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'serve.sqlite3'}", "UPSTREAM_BASE_URL": "",
            "GATEWAY_JOURNAL_DIR": str(tmp_path / "journal"), "DEBUG": "true"}


class Served:
    """``manage.py serve`` in a child process; its output read as it comes, so that its pipe never fills.

    (A full pipe blocks every process writing to it: the workers log each request.)
    """

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port, self.demo_port = free_port(), free_port()
        self.process = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(self.port),
                                         "--demo-port", str(self.demo_port), *args], cwd=ROOT, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output = ""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output += line

    def banner(self, timeout: float = 60.0) -> str:
        """The output up to the end of the banner ("Stop with Ctrl-C."), once it is there."""

        def shown() -> bool:
            assert self.process.poll() is None or "Stop with Ctrl-C." in self.output, self.output
            return "Stop with Ctrl-C." in self.output

        waiting.until(shown, "the banner", timeout, interval=0.05)
        return self.output

    def key(self) -> str:
        return next(word for word in self.output.split() if word.startswith("sk-cgw-"))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)

    def still_listening(self) -> list[int]:
        """The ports of its children that still accept connections (none once it has stopped)."""
        open_ports = []
        for port in (self.port, self.demo_port):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                open_ports.append(port)
            except OSError:
                pass
        return open_ports


@pytest.fixture
def served(serve_env: dict[str, str]) -> Iterator[list[Served]]:
    started: list[Served] = []
    yield started
    for server in started:
        server.stop()


@pytest.mark.processes
def test_a_taken_port_is_said_before_anything_else_and_nothing_starts(serve_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "manage.py", "serve", "--port", str(port)], cwd=ROOT, env=serve_env,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and f"make run PORT={port + 80}" in done.stderr
    assert "running" not in done.stdout and done.stdout == ""


def test_the_demo_upstream_serves_only_demo_models(serve_env: dict[str, str], served: list[Served]) -> None:
    server = Served(serve_env)
    served.append(server)
    assert "demo mock" in server.banner()
    headers = {"authorization": f"Bearer {server.key()}"}
    base = f"http://127.0.0.1:{server.port}/v1"
    demo = httpx.post(f"{base}/responses", json={"model": "demo-text", "input": "hi"}, headers=headers, timeout=30)
    other = httpx.post(f"{base}/responses", json={"model": "qwen3-coder", "input": "hi"}, headers=headers, timeout=30)
    assert demo.status_code == 200 and "Hello" in demo.text
    assert other.status_code == 404 and other.json()["error"]["code"] == "model_not_found"


def test_demo_errors_fails_every_time_and_never_cools_down_the_other_demo_models(
        serve_env: dict[str, str], served: list[Served]) -> None:
    server = Served(serve_env)
    served.append(server)
    server.banner()
    headers = {"authorization": f"Bearer {server.key()}"}
    base = f"http://127.0.0.1:{server.port}/v1"

    def ask(model: str, prompt: str = "hi") -> httpx.Response:
        return httpx.post(f"{base}/responses", json={"model": model, "input": prompt}, headers=headers, timeout=30)

    failures = [ask("demo-errors") for _ in range(6)]  # past any cool-down threshold
    assert [r.status_code for r in failures] == [429] * 6
    assert all(r.headers["retry-after"] == "3" for r in failures)
    assert ask("demo-errors", "please fail with a 500").status_code == 500
    too_long = ask("demo-errors", "show me a 400")
    assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"
    with httpx.stream("POST", f"{base}/responses", json={"model": "demo-errors", "input": "cut", "stream": True},
                      headers=headers, timeout=30) as stream:
        events = [line for line in stream.iter_lines() if line.startswith("event:")]
    assert events[-1] == "event: response.failed"
    # The other demo models are served by an upstream of their own: not cooled down, answered at once.
    text = ask("demo-text")
    assert text.status_code == 200 and "Hello" in text.text
    database = sqlite3.connect(serve_env["DATABASE_URL"].removeprefix("sqlite:///"))
    with closing(database):
        upstreams = dict(database.execute("SELECT name, models FROM upstreams_upstream WHERE name LIKE 'demo%'"))
    assert upstreams == {"demo": "demo-text, demo-tools, demo-tools5", "demo-errors": "demo-errors"}


def test_a_configured_upstream_is_probed_at_start_and_the_demo_is_disabled(
        serve_env: dict[str, str], served: list[Served], mock: MockUpstream) -> None:
    first = Served(serve_env)  # leaves an enabled demo row behind
    served.append(first)
    first.banner()
    first.stop()  # at once after the banner: its children stop with it
    served.clear()
    assert first.still_listening() == []
    mock.use("scripted")
    server = Served({**serve_env, "UPSTREAM_BASE_URL": mock.base_url})
    served.append(server)
    banner = server.banner()
    assert f"Upstream    {mock.base_url}" in banner and "reachable" in banner and "mock-model" in banner
    headers = {"authorization": f"Bearer {server.key()}"}
    answer = httpx.post(f"http://127.0.0.1:{server.port}/v1/responses", json={"model": "demo-text", "input": "hi"},
                        headers=headers, timeout=30)
    assert answer.status_code == 200 and "no script posted" in answer.text  # the configured upstream, not the demo


def _worker_pids(banner: str) -> list[int]:
    line = next(line for line in banner.splitlines() if "Workers" in line)
    return [int(pid) for pid in re.findall(r"\d+", line.split("pids", 1)[1].split(")")[0])]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


@pytest.mark.processes
def test_serve_workers_share_one_port_replace_a_dead_one_and_leave_nothing_behind(
        serve_env: dict[str, str], served: list[Served], tmp_path: Path) -> None:
    """Two daphne processes on one socket: both serve, a killed one is replaced, SIGTERM ends all of them."""
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    server = Served({**serve_env, "PROMETHEUS_MULTIPROC_DIR": str(metrics)}, "--workers", "2")
    served.append(server)
    banner = server.banner()
    assert "Workers     2 daphne processes on one socket" in banner
    first, second = _worker_pids(banner)
    url, key = f"http://127.0.0.1:{server.port}", server.key()
    body = {"model": "demo-text", "messages": [{"role": "user", "content": "hi"}]}
    answered: list[int] = []

    def serving_pids() -> set[int]:  # the workers that counted a request in the shared metrics
        return {int(path.stem.rsplit("_", 1)[1]) for path in metrics.glob("counter_*.db")}

    async def burst() -> None:  # 20 at once, each on a new connection
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as client:
            answers = await asyncio.gather(*(client.post(f"{url}/v1/chat/completions", json=body,
                                                         headers={"authorization": f"Bearer {key}"})
                                             for _ in range(20)))
        answered.extend(answer.status_code for answer in answers)

    def served_by(*pids: int) -> bool:
        asyncio.run(burst())
        return set(pids) <= serving_pids()

    waiting.until(lambda: served_by(first, second), "both workers to serve", 60, interval=0)
    os.kill(first, signal.SIGKILL)
    replacement = int(waiting.until(lambda: _replaced(server, first), "the dead worker's replacement", 30))
    waiting.until(lambda: served_by(second, replacement), "the replacement to serve", 60, interval=0)
    journal = Path(serve_env["GATEWAY_JOURNAL_DIR"])  # the dead worker's journal, taken in by its replacement
    assert not [path for path in journal.iterdir() if f"-{first}-" in path.name]
    assert len([path for path in journal.iterdir() if not path.name.startswith(".")]) == 2
    assert set(answered) == {200}  # no request lost to the kill: it was idle between bursts
    text = httpx.get(f"{url}/metrics").text  # one view of every worker's counters, the dead one's too
    counted = re.search(r'gateway_requests_total\{endpoint="chat/completions",mode="passthrough",status="200",'
                        r'upstream="demo"\} (\d+)', text)
    assert counted and int(float(counted[1])) == len(answered)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(60) == 0
    assert not any(_alive(pid) for pid in (second, replacement))
    assert server.still_listening() == []
    with socket.socket() as again:  # the port is free
        again.bind(("127.0.0.1", server.port))


def _replaced(server: Served, dead: int) -> str | None:
    """The pid that replaced worker ``dead``, once the server says so."""
    found = re.search(rf"\(pid {dead}\) exited with code -9; replaced by pid (\d+)", server.output)
    return found[1] if found else None
