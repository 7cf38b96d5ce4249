"""What Anthropic's prompt cache saves over a Codex session: the input tokens read from it, turn by turn.

``python -m bench.codex.cache --turns 30``. No servers: a real Codex 0.169 request
(tests/fixtures/codex-0.169-request.json) grows by one tool turn per turn (a call and a 4 KB
output, as bench.codex.session does), each request is said as Messages by the gateway's own
dialect (bridge/dialects/anthropic/), and the strict mock's prompt cache
(upstreams/mock/anthropic.py: a prefix read only where a breakpoint ends one written before,
tokens as bytes / 4) counts what it reads and writes. Printed with the breakpoints on (the
upstream's default) and off. Results: bench/results/anthropic-cache-latest.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.codex.session import first_turn, tool_turn
from bench.servers import ROOT
from bridge.dialects.anthropic.request import to_request
from bridge.dialects.base import UpstreamOptions
from upstreams.mock.anthropic import PromptCache

DEFAULT_OUT = ROOT / "bench" / "results" / "anthropic-cache-latest.json"


def session(turns: int, output_bytes: int, caching: bool) -> list[dict[str, int]]:
    """Each turn's input tokens, as the mock's cache accounts them."""
    cache, body = PromptCache(), first_turn()
    items: list[dict[str, Any]] = list(body["input"])
    usages = []
    for turn in range(turns):
        request = to_request({**body, "model": "claude-sonnet-4-5", "input": items},
                             UpstreamOptions(prompt_caching=caching)).body
        usages.append(cache.account(request))
        items += tool_turn(turn + 1, output_bytes)
    return usages


def share(usages: list[dict[str, int]]) -> float:
    read = sum(u["cache_read_input_tokens"] for u in usages)
    return read / sum(u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
                      for u in usages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.codex.cache", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--output-bytes", type=int, default=4096, help="each tool output (default 4096)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    result = {}
    for caching in (True, False):
        usages = session(args.turns, args.output_bytes, caching)
        label = "breakpoints" if caching else "none"
        result[label] = {"cached_share": round(share(usages), 4), "turns": usages}
        total = sum(u["input_tokens"] + u["cache_read_input_tokens"] + u["cache_creation_input_tokens"]
                    for u in usages)
        print(f"{label:12} {args.turns} turns: {total:,} input tokens, "
              f"{sum(u['cache_read_input_tokens'] for u in usages):,} read from the cache "
              f"({share(usages):.1%}), {sum(u['cache_creation_input_tokens'] for u in usages):,} written")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
