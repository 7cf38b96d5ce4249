"""An automatic prefix cache, as vLLM, SGLang and llama.cpp keep one: what a Chat request finds already computed.

Each member of a pool is its own mock process with its own cache, so a turn is fast only on
the member that served the session's earlier turns (the pools' tests, bench.parts.pools). A step
with ``"prefix_cache": {"prefill_per_kb": seconds}`` is answered after the prefill of what
the cache did not hold, with the cached tokens in its usage (``prompt_tokens_details``, as
vLLM and OpenAI report them); tokens are bytes / 4.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from upstreams.mock.scenarios import Step


class PrefixCache:
    """Every message prefix this server has computed (by hash), and what a request finds of its own."""

    def __init__(self) -> None:
        self.computed: set[str] = set()

    def account(self, request: dict[str, Any]) -> tuple[int, int]:
        """The request's prompt bytes, and how many of them were cached; its prefixes are cached from now."""
        messages = request.get("messages")
        parts = [json.dumps(m, sort_keys=True).encode() for m in (messages if isinstance(messages, list) else [])]
        digest, cached, total = hashlib.sha256(), 0, 0
        for part in parts:
            digest.update(part)
            total += len(part)
            key = digest.hexdigest()
            if key in self.computed and cached == total - len(part):
                cached = total
            self.computed.add(key)
        return total, cached

    def step(self, step: Step, request: dict[str, Any]) -> Step:
        """``step`` answered as this cache has it: a pause for the uncached prefill, the usage saying what was read."""
        total, cached = self.account(request)
        prefill = float(step["prefix_cache"].get("prefill_per_kb", 0.0)) * (total - cached) / 1024
        usage = {"prompt_tokens": total // 4, "completion_tokens": 1, "total_tokens": total // 4 + 1,
                 "prompt_tokens_details": {"cached_tokens": cached // 4}}
        chunks = [c for c in step.get("chunks", [{"text": "ok"}, {"finish": "stop"}]) if "usage" not in c]
        return {**step, "chunks": [*chunks, {"usage": usage}], "pause": [-1, prefill]}
