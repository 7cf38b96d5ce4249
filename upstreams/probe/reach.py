"""The admin's "test connection": can the gateway reach an upstream with its key, and how fast?

Lists the upstream's models (GET {base}/models); when that fails (some servers have no
such route), sends a 1-token Chat request to a model the upstream names.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import httpx

from bridge.dialects import protocol_headers
from plumbing.redact import redact_text
from upstreams.models import Upstream
from upstreams.probe.discovery import read_models

# The admin page waits for the answer: never as long as a generation may take.
MAX_READ_TIMEOUT = 30.0
SHOWN_MODELS = 8


@dataclass(frozen=True)
class ProbeResult:
    upstream: str
    ok: bool
    latency_ms: float | None
    detail: str
    listed: bool = False  # GET /models answered with its list (the detail names them)

    def __str__(self) -> str:
        return f"{self.headline}: {self.detail}"

    @property
    def headline(self) -> str:
        timing = f" in {self.latency_ms:.0f} ms" if self.latency_ms is not None else ""
        verdict = "reachable" if self.ok else "failed"
        # "Upstream" first: the admin capitalizes a message's first letter, not a name's.
        return f"Upstream {self.upstream}: {verdict}{timing}"


def _model_to_try(upstream: Upstream) -> str | None:
    """Return a model the upstream serves by name (a glob or a catch-all names none)."""
    named = upstream.named_models
    if named:
        return upstream.upstream_model(named[0])
    return next(iter(upstream.aliases.values()), None)


def failure_text(response: httpx.Response | None, exc: Exception | None, secret: str) -> str:
    if exc is not None:
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    else:
        assert response is not None
        text = f"HTTP {response.status_code} {response.text[:200].strip()}"
    return redact_text(text, [secret])


def probe(upstream: Upstream) -> ProbeResult:
    """Try the upstream the way the gateway would, with its key; never raise."""
    headers = {"accept": "application/json", **protocol_headers(upstream.protocol, upstream.api_key)}
    timeout = httpx.Timeout(upstream.connect_timeout, read=min(upstream.first_byte_timeout, MAX_READ_TIMEOUT))
    with httpx.Client(timeout=timeout, trust_env=False, follow_redirects=False) as client:
        response, error = None, None
        started = time.perf_counter()
        try:
            response = client.get(upstream.url("models"), headers=headers)
            if response.status_code == 200:
                latency = (time.perf_counter() - started) * 1000
                names = [model.id for model in read_models(response.json())]
                listed = ", ".join(names[:SHOWN_MODELS]) + (", …" if len(names) > SHOWN_MODELS else "")
                return ProbeResult(upstream.name, True, latency,
                                   f"GET /models listed {len(names)} model(s){': ' + listed if names else ''}.",
                                   listed=True)
        except (httpx.HTTPError, ValueError) as exc:
            error = exc
        models_failed = f"GET /models: {failure_text(response, error, upstream.api_key)}"
        model = _model_to_try(upstream)
        if model is None:
            return ProbeResult(upstream.name, False, None,
                               f"{models_failed}; no model named in its settings to send a 1-token request to.")
        anthropic = upstream.protocol == "anthropic"
        body = {"model": model, "messages": [{"role": "user", "content": "ping"}], "stream": False,
                "max_tokens" if anthropic else upstream.max_tokens_field: 1}
        response, error = None, None
        started = time.perf_counter()
        try:
            response = client.post(upstream.url("messages" if anthropic else "chat/completions"), json=body,
                                   headers={**headers, "content-type": "application/json"})
        except httpx.HTTPError as exc:
            error = exc
        latency = (time.perf_counter() - started) * 1000
        if response is not None and response.status_code == 200:
            return ProbeResult(upstream.name, True, latency,
                               f"{models_failed}; a 1-token chat request to {model} answered.")
        return ProbeResult(upstream.name, False, None,
                           f"{models_failed}; 1-token chat request to {model}: "
                           f"{failure_text(response, error, upstream.api_key)}")
