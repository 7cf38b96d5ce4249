from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from plumbing import listen
from upstreams.bootstrap import sync_env_upstream
from upstreams.models import ClientKey, Upstream
from upstreams.probe.reach import probe

STATE_DIR = Path(settings.BASE_DIR) / ".gateway"  # git-ignored: local credentials of this checkout
# The demo mock behind two upstreams: demo-errors' scripted failures cool down its own upstream
# only, never the other demo models' (the gateway's cool-down is per upstream).
DEMO_UPSTREAMS = {"demo": "demo-text, demo-tools, demo-tools5", "demo-errors": "demo-errors"}
DEMO_LINE = ("Upstream    demo mock (scenarios by model: demo-text, demo-tools, demo-tools5; "
             "demo-errors fails every time)")


class Command(BaseCommand):
    help = ("Set up and serve the gateway for a first run: migrate, admin user, demo client key, "
            "demo upstream (unless UPSTREAM_BASE_URL is set), then daphne. Used by `make run`.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--demo-port", type=int, default=8001)
        parser.add_argument("--workers", type=int, default=1,
                            help="daphne processes sharing the port, one per core (default 1): a dead one is replaced")

    def handle(self, *args: Any, **options: Any) -> None:
        host, port = options["host"], options["port"]
        demo = not settings.UPSTREAM_BASE_URL
        # Before anything is printed: another server on the port (vLLM's default is 8000)
        # used to answer our readiness check, and the banner went out for a gateway that had exited.
        _require_free(host, port, "the gateway", "PORT")
        if options["workers"] > 1:
            try:
                listen.check_shareable(host)
            except ValueError as exc:
                raise CommandError(f"--workers: {exc} (use 0.0.0.0 or an interface's IPv4 address)") from None
        if demo:
            _require_free("127.0.0.1", options["demo_port"], "the demo upstream", "DEMO_PORT")
        call_command("migrate", verbosity=0, interactive=False)
        STATE_DIR.mkdir(exist_ok=True)
        username, password = self.admin_user()
        secret = self.demo_key()
        children: list[subprocess.Popen[bytes]] = []
        # From here a SIGTERM at any moment (a test that stops us right after the banner)
        # still stops the children: the handler raises SystemExit inside the try below.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        manage = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py")]
        upstream_line = DEMO_LINE
        try:
            if demo:
                demo_port = options["demo_port"]
                children.append(subprocess.Popen([*manage, "mockupstream", "--scenario", "demo", "--port",
                                                  str(demo_port)], stdout=subprocess.DEVNULL))
                # Only the demo's own models: a real upstream that fails must not fail over to it.
                for name, models in DEMO_UPSTREAMS.items():
                    Upstream.objects.update_or_create(name=name, defaults={
                        "base_url": f"http://127.0.0.1:{demo_port}/v1", "api": "chat",
                        "enabled": True, "priority": -100, "models": models})
                _wait_for_port("127.0.0.1", demo_port, children[-1])
            else:
                Upstream.objects.filter(name__in=DEMO_UPSTREAMS).update(enabled=False)
                upstream = sync_env_upstream()
                assert upstream is not None
                upstream_line = f"Upstream    {upstream.base_url}\n              {probe(upstream)}"
            if options["workers"] > 1:
                with listen.workers_on(host, port, options["workers"], settings.GATEWAY_SHUTDOWN_GRACE) as workers:
                    _wait_for_port(host, port, workers.processes[0])
                    upstream_line += (f"\n  Workers     {options['workers']} daphne processes on one socket "
                                      f"(pids {', '.join(map(str, workers.pids))}); a dead one is replaced")
                    self.say_banner(host, port, username, password, secret, demo, upstream_line)
                    workers.watch()
            else:
                children.append(subprocess.Popen([sys.executable, "-m", "daphne", "-e", listen.endpoint(host, port),
                                                  "gatewaysite.asgi:application"], env=os.environ.copy()))
                _wait_for_port(host, port, children[-1])
                self.say_banner(host, port, username, password, secret, demo, upstream_line)
                children[-1].wait()
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not cut the drain short
            for child in children:
                child.terminate()
            for child in children:
                child.wait(timeout=15)

    def say_banner(self, host: str, port: int, username: str, password: str, secret: str, demo: bool,
                   upstream_line: str) -> None:
        self.stdout.write(banner(host, port, username, password, secret, demo=demo, upstream_line=upstream_line))
        self.stdout.flush()

    def admin_user(self) -> tuple[str, str]:
        """Create the admin user on the first run; later runs read the stored credentials."""
        path = STATE_DIR / "admin.txt"
        User = get_user_model()
        if path.exists():
            username, password = path.read_text().split(":", 1)
            if User.objects.filter(username=username).exists():
                return username, password.strip()
        username, password = "admin", secrets.token_urlsafe(12)
        user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        path.write_text(f"{username}:{password}\n")
        path.chmod(0o600)
        return username, password

    def demo_key(self) -> str:
        path = STATE_DIR / "demo-key.txt"
        if path.exists():
            secret = path.read_text().strip()
            if ClientKey.objects.for_secret(secret):
                return secret
        _, secret = ClientKey.objects.create_key("demo")
        path.write_text(secret + "\n")
        path.chmod(0o600)
        return secret


def _require_free(host: str, port: int, what: str, variable: str) -> None:
    """Fail, saying what to do, when ``host:port`` cannot be listened on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe_socket:
        probe_socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe_socket.bind((host, port))
        except OSError as exc:
            hint = " (8000 is also vLLM's default port)" if port == 8000 else ""
            raise CommandError(f"{what} cannot listen on {host}:{port}: {exc.strerror}{hint}. "
                               f"Choose another port: make run {variable}={port + 80}") from None


def _wait_for_port(host: str, port: int, child: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise CommandError(f"the server meant for port {port} exited with code {child.returncode}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise CommandError(f"nothing listens on {host}:{port} after {timeout:.0f}s")


def banner(host: str, port: int, username: str, password: str, secret: str, *, demo: bool,
           upstream_line: str) -> str:
    base = f"http://{host}:{port}"
    model = "demo-text" if demo else "YOUR-MODEL"
    return f"""
codex-gateway is running.

  Gateway     {base}/v1
  Admin       {base}/admin/   user {username}   password {password}
  Requests    {base}/logs/    (the same login; live tail, filters, overview)
  Client key  {secret}
  {upstream_line}

Try it:
  curl -sN {base}/v1/responses -H "Authorization: Bearer {secret}" \\
       -H "Content-Type: application/json" -d '{{"model": "{model}", "input": "Say hello", "stream": true}}'
  curl -sN {base}/v1/chat/completions -H "Authorization: Bearer {secret}" \\
       -H "Content-Type: application/json" \\
       -d '{{"model": "{model}", "stream": true, "messages": [{{"role": "user", "content": "Say hello"}}]}}'

Codex CLI: `.venv/bin/python manage.py codexconfig --write` writes a profile per model (then
`export CODEX_GATEWAY_KEY={secret}` and `codex --profile {model}`), or put this in ~/.codex/config.toml:

  model = "{model}"
  model_provider = "codex-gateway"

  [model_providers.codex-gateway]
  name = "codex-gateway"
  base_url = "{base}/v1"
  env_key = "CODEX_GATEWAY_KEY"
  wire_api = "responses"
  supports_websockets = true
  model_catalog_url = "{base}/v1/codex/models"

Stop with Ctrl-C.
"""
