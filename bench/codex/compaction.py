"""What the gateway's remote compaction takes for a long Codex history: upstream calls, sizes, time.

``python -m bench.codex.compaction --history-kb 400``. One gateway under daphne (production
settings), the scripted mock (upstreams/mock) as a Chat-only upstream whose every answer is
a summary of ``--summary-bytes``, and a Codex-shaped history: a real Codex 0.169 request
(tests/fixtures/codex-0.169-request.json) grown with tool turns (a call and a 4 KB output
each) to ``--history-kb``, then ``{"type": "compaction_trigger"}``, streamed as Codex sends
it. The mock reports the model's window as vLLM does (32,768 tokens), which sets the chunks.

Reported: the upstream calls and their request bytes (what the mock received), their tokens
estimated at 4 bytes per token (the mock has no tokenizer), the seconds from the request to
its last event, the gateway's CPU for it, and the summary's size as sealed. With an
instant upstream the seconds are the gateway's own; a real server adds its prefill of every
chunk. Results: bench/results/compaction-latest.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.codex.session import first_turn, tool_turn
from bench.servers import (
    CHAT_MODEL,
    PYTHON,
    ROOT,
    Gateway,
    HarnessError,
    Servers,
    base_env,
    gateway_env,
    new_secret_key,
    setup_database,
)

DEFAULT_OUT = ROOT / "bench" / "results" / "compaction-latest.json"
BYTES_PER_TOKEN = 4


def history(kilobytes: int) -> dict[str, Any]:
    """A Codex request whose history is about ``kilobytes`` KB, ending in the compaction trigger."""
    body = first_turn()
    items = list(body["input"])
    turn = 0
    while len(json.dumps(items)) < kilobytes * 1024:
        turn += 1
        items += tool_turn(turn, 4096)
    return {**body, "input": [*items, {"type": "compaction_trigger"}]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.codex.compaction", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--history-kb", type=int, default=400)
    parser.add_argument("--summary-bytes", type=int, default=6000, help="each summarizing call's answer")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="cgw-bench-compaction-"))
    servers = Servers(tmp)
    try:
        mock = servers.start("mock", [PYTHON, "manage.py", "mockupstream", "--scenario", "scripted", "--port",
                                      "{port}"], base_env(), ready_path="/v1/models")
        summary = ("The session so far: " + "the agent read files, ran tests and fixed them. " * 200)[
            :args.summary_bytes]
        httpx.post(f"{mock.url}/_mock/script", json={"steps": [{"chunks": [{"text": summary}, {"finish": "stop"}]}]},
                   trust_env=False).raise_for_status()
        database_url = f"sqlite:///{tmp / 'compaction.sqlite3'}"
        env = gateway_env(database_url, new_secret_key())
        key = setup_database(env, mock.url)
        gateway = servers.start("gateway", [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}",
                                            "gatewaysite.asgi:application"], env, ready_path="/healthz",
                                kind=Gateway)
        assert isinstance(gateway, Gateway)
        body = history(args.history_kb)
        payload = json.dumps(body).encode()
        before, started = gateway.cpu_seconds(), time.perf_counter()
        answer = httpx.post(f"{gateway.url}/v1/responses", content=payload, timeout=600, trust_env=False,
                            headers={"authorization": f"Bearer {key}", "content-type": "application/json"})
        seconds, cpu = time.perf_counter() - started, gateway.cpu_seconds() - before
        events = [json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: {")]
        if answer.status_code != 200 or not events or events[-1]["type"] != "response.completed":
            raise HarnessError(f"the compaction failed: {answer.status_code} {answer.text[-500:]}")
        [item] = events[-1]["response"]["output"]
        calls = httpx.get(f"{mock.url}/_mock/requests", trust_env=False).json()
        sent = [len(json.dumps(call["body"])) for call in calls]
        result = {
            "when": datetime.now(UTC).isoformat(), "history_bytes": len(payload), "items": len(body["input"]) - 1,
            "upstream_calls": len(calls), "upstream_request_bytes": sent,
            "estimated_input_tokens": sum(sent) // BYTES_PER_TOKEN,
            "estimated_output_tokens": len(calls) * args.summary_bytes // BYTES_PER_TOKEN,
            "seconds": round(seconds, 3), "gateway_cpu_seconds": round(cpu, 3),
            "summary_bytes": args.summary_bytes, "sealed_bytes": len(item["encrypted_content"]),
            "model": CHAT_MODEL,
        }
        print(f"compacted a {len(payload):,}-byte Codex history ({result['items']} items) in {len(calls)} upstream "
              f"call(s) of {min(sent):,}-{max(sent):,} bytes (~{result['estimated_input_tokens']:,} tokens in, "
              f"~{result['estimated_output_tokens']:,} out, at {BYTES_PER_TOKEN} bytes/token) in {seconds:.2f} s "
              f"({cpu:.2f} s gateway CPU); summary {args.summary_bytes:,} bytes, sealed "
              f"{result['sealed_bytes']:,}")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"saved {args.out}")
        return 0
    except HarnessError as exc:
        print(f"bench.codex.compaction: {exc}", file=sys.stderr)
        return 1
    finally:
        servers.stop_all()


if __name__ == "__main__":
    sys.exit(main())
