"""Real servers for the tests: daphne running the gateway, daphne running the mock upstream."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from django.contrib.auth import get_user_model

from plumbing import listen
from tests import waiting
from upstreams.models import Upstream

ROOT = Path(__file__).resolve().parent.parent
# What a gateway still has in flight: Gateway.settle waits until each is 0.
SETTLED_GAUGES = ("gateway_audit_pending ", "gateway_active_streams ", "gateway_background_running ",
                  "gateway_recordings_pending ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A child process serving HTTP on a loopback port; stopped and reaped on ``stop()``."""

    def __init__(self, args: list[str], port: int, env: dict[str, str] | None = None, name: str = "server") -> None:
        self.port = port
        self.name = name
        self.log_path = ROOT / "test-artifacts" / f"{name}-{port}.log"
        self.log_path.parent.mkdir(exist_ok=True)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **(env or {})},
                                        stdout=self._log, stderr=subprocess.STDOUT)
        self._wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait(self, timeout: float = 30.0) -> None:
        def listening() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                return False
            return True

        try:
            waiting.until(listening, f"{self.name} to listen on {self.port}", timeout, interval=0.05)
        except waiting.WaitTimeout:
            self.stop()
            raise RuntimeError(f"{self.name} did not listen on {self.port}:\n{self.log()}") from None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until the server has nothing in flight (see Gateway.settle)."""

    def stop(self) -> None:
        self.settle()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class MockUpstream(ServerProcess):
    """``manage.py mockupstream`` in a child process, scripted over HTTP."""

    def __init__(self, scenario: str = "scripted") -> None:
        port = free_port()
        super().__init__([sys.executable, "manage.py", "mockupstream", "--scenario", scenario, "--port", str(port)],
                         port, name=f"mock-{scenario}")

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def script(self, *steps: dict[str, Any], models: bool = True) -> None:
        """Answer the next requests with these steps (the last one repeats); ``models=False``: no GET /models."""
        httpx.post(f"{self.url}/_mock/script", json={"steps": list(steps), "models": models}).raise_for_status()

    def use(self, scenario: str) -> None:
        """Answer with a bundled scenario from its first step."""
        httpx.post(f"{self.url}/_mock/script", json={"scenario": scenario}).raise_for_status()

    def requests(self) -> list[dict[str, Any]]:
        return httpx.get(f"{self.url}/_mock/requests").json()

    def listings(self) -> int:
        """How many times the mock answered GET /models."""
        return int(httpx.get(f"{self.url}/_mock/listings", timeout=5).json()["count"])

    def release(self) -> None:
        httpx.post(f"{self.url}/_mock/release").raise_for_status()


class Gateway(ServerProcess):
    """``daphne gatewaysite.asgi:application`` in a child process, as users run it."""

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until no stream or background response is open and every audit row is written.

        Rows are written after the response ends; a test that moves on (or flushes the
        database) before that would race the server.
        """
        def idle() -> bool:
            try:
                text = httpx.get(f"{self.url}/metrics", timeout=2).text
            except httpx.HTTPError:
                return True  # not running: nothing left in flight
            return not any(float(line.split()[1]) for line in text.splitlines() if line.startswith(SETTLED_GAUGES))

        try:
            waiting.until(idle, f"{self.name} to settle", timeout)
        except waiting.WaitTimeout:
            pass  # still busy: the test's own assertions say what it waited for

    def __init__(self, database_url: str, env: dict[str, str] | None = None) -> None:
        port = free_port()
        # GATEWAY_ROUTING_TTL=0: the session's gateway outlives each test's rows, so it must
        # not keep a copy of them (tests/upstreams/test_routing.py tests the copy).
        # GATEWAY_AUTH_FAILURES_PER_MINUTE=0: the suite sends bad keys from one address all
        # session long; tests/faults/test_abuse.py tests the throttle on a gateway of its own.
        defaults = {"DATABASE_URL": database_url, "DEBUG": "true", "GATEWAY_ALLOW_ANONYMOUS": "false",
                    "GATEWAY_AUTH_FAILURES_PER_MINUTE": "0",
                    "UPSTREAM_BASE_URL": "", "LOG_LEVEL": "INFO", "GATEWAY_ROUTING_TTL": "0",
                    # Its own audit journal: a gateway a test killed is recovered into its own database only.
                    "GATEWAY_JOURNAL_DIR": tempfile.mkdtemp(prefix="cgw-journal-")}
        # Listening as the README's production command does (plumbing/listen.py: the backlog).
        super().__init__([sys.executable, "-m", "daphne", "-e", listen.endpoint("127.0.0.1", port),
                          "gatewaysite.asgi:application"], port, env={**defaults, **(env or {})}, name="gateway")
        self._wait_until_serving()

    def _wait_until_serving(self, timeout: float = 30.0) -> None:
        """Wait for an answer, not only a listening socket: the socket can accept before daphne's reactor runs,
        and a SIGTERM sent in between would find the gateway's drain not yet in place."""
        def serving() -> bool:
            try:
                return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            waiting.until(serving, f"{self.name} to answer /healthz", timeout)
        except waiting.WaitTimeout:
            raise RuntimeError(f"{self.name} never answered /healthz:\n{self.log()}") from None


PASSWORD = "s3cret-pass"  # of the users the tests sign in


def csrf_token(page: str) -> str:
    """Return the CSRF token of a Django form page."""
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match[1]


def log_in(client: httpx.Client, username: str, then: str = "/admin/") -> None:
    """Sign ``username`` in through the admin login page, as a browser would."""
    page = client.get("/admin/login/")
    client.post(f"/admin/login/?next={then}", data={"csrfmiddlewaretoken": csrf_token(page.text),
                                                   "username": username, "password": PASSWORD})


def admin_session(server: Gateway) -> httpx.Client:
    """Log a staff user into one process's admin, as a browser would."""
    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    client = httpx.Client(base_url=server.url, follow_redirects=True)
    log_in(client, "ops")
    return client


def save_upstream_in_admin(admin: httpx.Client, pk: int, **fields: str) -> httpx.Response:
    """Submit an upstream's admin change form with ``fields`` over the defaults, as staff would."""
    form = admin.get(f"/admin/upstreams/upstream/{pk}/change/").text
    data = {"csrfmiddlewaretoken": csrf_token(form), "api": "chat", "models": "", "model_map": "", "priority": "0",
            "weight": "1", "enabled": "on", "connect_timeout": "10", "first_byte_timeout": "900", "read_timeout": "300",
            "max_tokens_field": "max_tokens", "send_stream_options": "on", **fields}
    return admin.post(f"/admin/upstreams/upstream/{pk}/change/", data=data)


def check_admin_edit_reaches(edited: Gateway, asked: Gateway, secret: str, scripted: MockUpstream) -> None:
    """Edit an upstream in ``edited``'s admin; ``asked`` must route the very next request by the edit."""
    upstream = Upstream.objects.create(name="edited", base_url="http://127.0.0.1:9/v1")
    scripted.script({"chunks": [{"text": "after the edit"}, {"finish": "stop"}]})
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"authorization": f"Bearer {secret}"}
    assert httpx.post(f"{asked.url}/v1/chat/completions", json=body, headers=headers).status_code == 502

    saved = save_upstream_in_admin(admin_session(edited), upstream.pk, name="edited", base_url=scripted.base_url)
    assert saved.status_code == 200 and "was changed successfully" in saved.text

    answer = httpx.post(f"{asked.url}/v1/chat/completions", json=body, headers=headers)
    assert answer.json()["choices"][0]["message"]["content"] == "after the edit"
