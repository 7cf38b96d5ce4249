"""What an upstream says it serves: its models and, where the server reports it, their context window.

Servers report the window in their own places: vLLM as ``max_model_len`` on each model of
``/v1/models``, llama.cpp as ``meta.n_ctx_train`` there and the context it runs with as
``default_generation_settings.n_ctx`` on ``/props`` (outside ``/v1``), LM Studio and
OpenRouter as ``context_length``, Ollama as ``<arch>.context_length`` in ``/api/show``.
Codex needs it for auto-compaction (``model_context_window``, ``codexconfig``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from bridge.dialects import protocol_headers
from upstreams.models import Upstream

TIMEOUT = 10.0


@dataclass(frozen=True)
class ModelInfo:
    id: str
    context_window: int | None = None


def _positive_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def read_models(payload: Any) -> list[ModelInfo]:
    """Read an OpenAI-style model list, with each model's context window where the server put one."""
    data = payload.get("data") if isinstance(payload, dict) else None
    found = []
    for model in data if isinstance(data, list) else []:
        if not isinstance(model, dict) or not isinstance(model.get("id"), str):
            continue
        meta = model["meta"] if isinstance(model.get("meta"), dict) else {}
        window = (_positive_int(model.get("max_model_len")) or _positive_int(model.get("context_length"))
                  or _positive_int(model.get("context_window")) or _positive_int(meta.get("n_ctx_train")))
        found.append(ModelInfo(model["id"], window))
    return found


def read_props_context(payload: Any) -> int | None:
    """llama.cpp's ``/props``: the context the server runs with (``--ctx-size``), per slot."""
    settings = payload.get("default_generation_settings") if isinstance(payload, dict) else None
    return _positive_int(settings.get("n_ctx")) if isinstance(settings, dict) else None


def read_ollama_context(payload: Any) -> int | None:
    """Ollama's ``/api/show``: ``model_info`` has ``<architecture>.context_length``."""
    info = payload.get("model_info") if isinstance(payload, dict) else None
    if not isinstance(info, dict):
        return None
    return next((_positive_int(v) for k, v in info.items() if k.endswith(".context_length") and _positive_int(v)),
                None)


def _server_root(upstream: Upstream) -> str:
    parts = urlsplit(upstream.api_base)
    path = parts.path.removesuffix("/v1")
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def discover(upstream: Upstream) -> list[ModelInfo]:
    """Ask the upstream for its models and fill in the context windows it reports elsewhere; [] if it lists none."""
    headers = protocol_headers(upstream.protocol, upstream.api_key)
    with httpx.Client(timeout=TIMEOUT, trust_env=False, headers=headers) as client:
        try:
            listed = client.get(upstream.url("models"))
            models = read_models(listed.json()) if listed.status_code == 200 else []
        except (httpx.HTTPError, ValueError):
            return []
        if not models or all(m.context_window for m in models):
            return models
        root = _server_root(upstream)
        windows: dict[str, int | None] = {}
        try:
            props = client.get(f"{root}/props")  # llama.cpp: one model per server
            if props.status_code == 200:
                context = read_props_context(props.json())
                windows = {m.id: context for m in models}
            else:
                for model in models:
                    shown = client.post(f"{root}/api/show", json={"model": model.id})  # Ollama
                    if shown.status_code != 200:
                        break
                    windows[model.id] = read_ollama_context(shown.json())
        except (httpx.HTTPError, ValueError):
            pass
        return [ModelInfo(m.id, m.context_window or windows.get(m.id)) for m in models]
