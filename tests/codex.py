"""The real Codex CLIs the end-to-end tests run: which versions, where `make codex` put them, and one run.

The versions are the Makefile's CODEX_VERSIONS (one place): the newest first, and the one
before it, kept green. A missing CLI is a failure, never a skip.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.servers import ROOT, Gateway

VERSIONS: list[str] = re.search(r"^CODEX_VERSIONS := (.+)$", (ROOT / "Makefile").read_text(), re.M)[1].split()
NEWEST = VERSIONS[0]

# Retries off and a short idle timeout, so a gateway bug fails fast instead of retrying for minutes;
# plugins off, or Codex tries to sync them from the internet.
SETTINGS = """\
check_for_update_on_startup = false

[features]
plugins = false

[analytics]
enabled = false
"""
CONFIG = """\
model = "{model}"
model_provider = "gateway"
""" + SETTINGS + """
[model_providers.gateway]
name = "gateway"
base_url = "{base_url}"
env_key = "GATEWAY_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0
stream_idle_timeout_ms = {idle_ms}
"""


def binary(version: str) -> Path:
    """Return the Codex CLI of ``version``, checked to be installed."""
    path = ROOT / ".codex-cli" / version / "node_modules" / ".bin" / "codex"
    assert path.exists(), f"Codex CLI {version} missing: run `make codex` (make test does)"
    return path


class Codex:
    """One Codex CLI version with its own HOME, CODEX_HOME and work folder under a test's tmp_path."""

    def __init__(self, version: str, tmp_path: Path) -> None:
        self.version, self.binary = version, binary(version)
        self.home, self.codex_home, self.work = tmp_path / "home", tmp_path / "codex-home", tmp_path / "work"
        for folder in (self.home, self.codex_home, self.work):
            folder.mkdir(exist_ok=True)

    def configure(self, gateway: Gateway, model: str = "mock-model", *, idle_ms: int = 20000,
                  extra: str = "", catalog: bool = False) -> None:
        """Write a config.toml with the gateway as the provider (``extra`` goes at the top level).

        ``catalog``: the provider reads the gateway's model catalog, as codexconfig writes it.
        """
        config = extra + "\n" + CONFIG.format(base_url=f"{gateway.url}/v1", model=model, idle_ms=idle_ms)
        if catalog:
            config += f'model_catalog_url = "{gateway.url}/v1/codex/models"\n'
        (self.codex_home / "config.toml").write_text(config)

    def exec(self, prompt: str, *args: str, env: dict[str, str], timeout: float = 180, ephemeral: bool = True,
             resume: bool = False) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
        """Run ``codex exec`` and return its JSON events.

        ``ephemeral``: no session file is kept; ``resume``: ``exec resume --last``, the kept
        session's next turn.
        """
        command = [str(self.binary), "exec", *(["resume", "--last"] if resume else []), "--skip-git-repo-check",
                   "--dangerously-bypass-approvals-and-sandbox", "--json", *(["--ephemeral"] if ephemeral else []),
                   *args, prompt]
        full_env = {"PATH": os.environ["PATH"], "HOME": str(self.home), "CODEX_HOME": str(self.codex_home),
                    "NO_COLOR": "1", **env}
        result = subprocess.run(command, cwd=self.work, env=full_env, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=timeout)
        return result, [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def messages(events: list[dict[str, Any]]) -> list[str]:
    """The agent messages of a run's events, in order."""
    return [e["item"]["text"] for e in events if e.get("item", {}).get("type") == "agent_message"]
