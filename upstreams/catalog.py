"""The model catalog: each model a client may ask for, and what is true of it behind this gateway.

One list serves both shapes: ``GET /v1/models`` (OpenAI's list) and the Codex CLI's catalog
(``GET /v1/codex/models``, and ``/v1/models?client_version=...``, which is how Codex asks).
Without a catalog entry Codex treats a model as unknown: it warns "Model metadata for X not
found" on every run, sends no ``apply_patch`` tool (the model edits files with sed and
heredocs) and does not know the context window. An entry says what the gateway knows:

- ``context_window``: the model profile's, else what the upstream's server reports (a Claude
  model on an Anthropic upstream: its known 200,000 tokens);
- ``apply_patch_tool_type: "freeform"``: the bridge turns Codex's freeform tool into a
  one-string function and the model's call back into a ``custom_tool_call``;
- reasoning levels only where the upstream takes ``reasoning_effort`` (the probe finds out),
  verbosity only where a profile says the model reads it, image input only where the
  upstream (or a profile) says it takes images;
- ``base_instructions``: Codex sends this as the model's base prompt, and sends none at all
  when it is empty; an entry without it is refused (and with it the whole catalog). Codex's
  own prompt goes only to models it knows, so the gateway ships its own, shorter one
  (upstreams/instructions.md), replaceable per model in the admin.

Field by field, with what Codex does when one is absent: docs/codex-catalog.md.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from upstreams.models import ModelProfile, Upstream, best_for

INSTRUCTIONS = (Path(__file__).parent / "instructions.md").read_text()
REASONING_LEVELS = ("low", "medium", "high")
# Tool output Codex keeps in its history, per call: what Codex's own entries say.
TRUNCATION = {"mode": "tokens", "limit": 10_000}


@dataclass(frozen=True)
class ServedModel:
    """A model a client may ask for: its name, the upstream that serves it first, and the window its server reports."""

    name: str
    upstream: Upstream
    reported_window: int | None = None


def served(upstreams: list[Upstream], reported: dict[int, dict[str, int | None]]) -> list[ServedModel]:
    """Each model the upstreams serve, best upstream first: named, aliases, and what their servers report.

    ``reported`` is, per upstream pk, the models its server lists with their context windows
    (only asked of glob and catch-all upstreams; a named model's window is looked up there too).
    """
    found: dict[str, ServedModel] = {}
    for upstream in sorted(upstreams, key=lambda u: (-u.priority, u.name)):
        listing = reported.get(upstream.pk, {})
        names = [*upstream.named_models, *upstream.aliases, *(n for n in listing if upstream.serves(n))]
        for name in names:
            if name not in found:
                found[name] = ServedModel(name, upstream, listing.get(upstream.upstream_model(name)))
    return list(found.values())


def profile_for(name: str, profiles: list[ModelProfile]) -> ModelProfile | None:
    """The profile that applies to ``name``: its own, else the longest glob that matches it."""
    profile: ModelProfile | None = best_for(name, profiles)
    return profile


def context_window(model: ServedModel, profile: ModelProfile | None) -> int | None:
    return (profile.context_window if profile else None) or model.reported_window or _known_window(model)


# Anthropic's /v1/models reports no context window; every Claude model has 200,000 tokens
# (Anthropic's model overview; the 1M-token window of some is a beta, asked for by header).
CLAUDE_CONTEXT_WINDOW = 200_000


def _known_window(model: ServedModel) -> int | None:
    upstream = model.upstream
    claude = upstream.api == "anthropic" and upstream.upstream_model(model.name).startswith("claude-")
    return CLAUDE_CONTEXT_WINDOW if claude else None


def codex_entry(model: ServedModel, profile: ModelProfile | None, priority: int) -> dict[str, Any]:
    """Return Codex's catalog entry for ``model`` (``priority``: its place in the list, lower first)."""
    upstream, said = model.upstream, profile or ModelProfile()  # no profile: every field blank
    how = "passed through to" if upstream.api == "responses" else "bridged to"
    levels = _reasoning_levels(upstream, said)
    entry: dict[str, Any] = {
        "slug": model.name,
        "display_name": said.display_name or model.name,
        "description": said.description or f"{model.name}, {how} {upstream.name}.",
        "supported_reasoning_levels": [{"effort": level, "description": f"{level.capitalize()} reasoning effort"}
                                       for level in levels],
        "shell_type": "unified_exec",
        "visibility": "list",
        "supported_in_api": True,
        "priority": priority,
        "support_verbosity": said.verbosity,
        "truncation_policy": dict(TRUNCATION),
        "experimental_supported_tools": [],
        "apply_patch_tool_type": "freeform",
        "input_modalities": ["text", "image"] if _images(upstream, said) else ["text"],
        "supports_search_tool": False,  # hosted web search runs at OpenAI: the bridge has none to offer
        "base_instructions": said.base_instructions or INSTRUCTIONS,
    }
    if levels:
        entry["default_reasoning_level"] = said.default_reasoning_level or ("medium" if "medium" in levels
                                                                           else levels[0])
    if said.verbosity:
        entry["default_verbosity"] = "medium"
    window = context_window(model, said)
    if window:
        entry["context_window"] = entry["max_context_window"] = window
    if isinstance(said.extra, dict):
        entry.update(said.extra)
    return entry


def codex_catalog(models: list[ServedModel], profiles: list[ModelProfile]) -> dict[str, Any]:
    """Return the catalog as Codex reads it: ``{"models": [...]}``, in the order served."""
    return {"models": [codex_entry(model, profile_for(model.name, profiles), n)
                       for n, model in enumerate(models, start=1)]}


def _reasoning_levels(upstream: Upstream, profile: ModelProfile) -> list[str]:
    said = profile.reasoning_levels.split()
    if said == ["none"]:
        return []
    return said or (list(REASONING_LEVELS) if upstream.send_reasoning_effort else [])


def _images(upstream: Upstream, profile: ModelProfile) -> bool:
    return profile.images if profile.images is not None else upstream.accepts_images
