"""Print (or write into $CODEX_HOME) the Codex CLI settings for this gateway: its provider, and a profile per model.

The provider is merged into ``config.toml`` (everything else there kept, comments too),
with the gateway's model catalog as its ``model_catalog_url`` (upstreams/catalog.py):
Codex then knows every model behind the gateway (its window, apply_patch, its reasoning
levels) instead of warning "Model metadata not found" and leaving apply_patch out. Each
model gets a profile file, ``<name>.config.toml`` (Codex 0.134+ reads profiles from files;
a ``[profiles.x]`` table in config.toml is refused), with ``model_context_window`` and an
auto-compaction limit when the window is known, for Codex versions that read no catalog.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import tomlkit
from django.core.management.base import BaseCommand, CommandParser
from tomlkit.items import Table

from upstreams import catalog
from upstreams.models import ModelProfile, Upstream
from upstreams.probe.discovery import discover

PROVIDER = "codex-gateway"
COMPACT_AT = 0.8  # of the context window: compaction leaves room for the answer and the next turn


def served_models(upstreams: list[Upstream]) -> dict[str, int | None]:
    """Each model a client can ask for, best upstream first, with its context window where known."""
    reported = {u.pk: {m.id: m.context_window for m in discover(u)} for u in upstreams}
    profiles = list(ModelProfile.objects.all())
    return {model.name: catalog.context_window(model, catalog.profile_for(model.name, profiles))
            for model in catalog.served(upstreams, reported)}


def provider(base_url: str, env_key: str) -> Table:
    table = tomlkit.table()
    # supports_websockets: one socket per session, each turn sent as previous_response_id and only
    # its new items (api/socket.py); Codex falls back to HTTP by itself if the socket fails.
    # model_catalog_url: Codex fetches it at every start, with the key (client_version added).
    table.update({"name": PROVIDER, "base_url": base_url, "env_key": env_key, "wire_api": "responses",
                  "supports_websockets": True, "model_catalog_url": f"{base_url.rstrip('/')}/codex/models"})
    return table


def profile_name(model: str) -> str:
    """A profile name for ``model``: Codex takes letters, digits, ``-`` and ``_`` (``qwen3:8b`` -> ``qwen3-8b``)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", model).strip("-") or "model"


def profile(model: str, window: int | None) -> str:
    """The text of ``<name>.config.toml`` for ``model``."""
    document = tomlkit.document()
    document.update({"model": model, "model_provider": PROVIDER})
    if window:
        document.update({"model_context_window": window, "model_auto_compact_token_limit": int(window * COMPACT_AT)})
    return tomlkit.dumps(document)


def merged(existing: str, base_url: str, env_key: str) -> str:
    """Return ``existing`` config.toml text with this gateway's provider set, all else kept as it was."""
    document = tomlkit.parse(existing)
    providers = document.setdefault("model_providers", tomlkit.table())
    providers[PROVIDER] = provider(base_url, env_key)
    return tomlkit.dumps(document)


class Command(BaseCommand):
    help = ("Print the Codex CLI config for this gateway (a provider and a profile per served model, with its "
            "context window when the server reports it); --write merges it into $CODEX_HOME/config.toml.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1", help="the gateway as Codex reaches it")
        parser.add_argument("--env-key", default="CODEX_GATEWAY_KEY", help="the variable holding the client key")
        parser.add_argument("--write", action="store_true",
                            help="merge into config.toml (backed up first) instead of printing")
        parser.add_argument("--codex-home", default=os.environ.get("CODEX_HOME") or str(Path.home() / ".codex"))

    def handle(self, *args: Any, **options: Any) -> None:
        models = served_models(list(Upstream.objects.filter(enabled=True)))
        home = Path(options["codex_home"])
        files = {home / f"{profile_name(model)}.config.toml": profile(model, window)
                 for model, window in models.items()}
        path = home / "config.toml"
        existing = path.read_text() if path.exists() else ""
        if not options["write"]:
            self.stdout.write(f"# {path}\n{merged('', options['base_url'], options['env_key'])}")
            for file, text in files.items():
                self.stdout.write(f"\n# {file}\n{text}")
            self.stdout.write(f"\n# then: export {options['env_key']}=sk-cgw-...; codex --profile NAME\n")
            return
        home.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for file in [path, *files]:
            if file.exists():
                backup = file.with_name(f"{file.name}.bak-{stamp}")
                shutil.copy2(file, backup)
                self.stdout.write(f"backed up {file} to {backup}")
        path.write_text(merged(existing, options["base_url"], options["env_key"]))
        for file, text in files.items():
            file.write_text(text)
        known = sum(1 for window in models.values() if window)
        self.stdout.write(f"wrote {path} (provider {PROVIDER!r}) and {len(files)} profile(s), {known} with a "
                          f"context window: {', '.join(profile_name(m) for m in models)}. "
                          f"Run `codex --profile NAME` with the client key in ${options['env_key']}.")
        if "profiles" in tomlkit.parse(existing):
            self.stdout.write(self.style.WARNING(
                f"{path} still has a legacy [profiles] table: Codex refuses --profile until it is removed."))
