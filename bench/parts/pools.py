"""Time to first token per turn in a pool: sessions that stick to their member against sessions that do not.

``python -m bench.parts.pools --sessions 6 --turns 10``. Three mock members of one model, each
with its own prefix cache (upstreams/mock/prefix.py: a turn pays ``--prefill-ms-per-kb`` for
each KB of its prompt the member has not computed before), behind the gateway under daphne.
Each session is a Codex-like conversation, its prompt growing by ``--turn-kb`` a turn, sent
whole each turn (stateless, as Codex sends it). Run twice on fresh members: with a
``prompt_cache_key`` per session (affinity), and without one (each turn to the least loaded
member; the sessions run one after another, so that is any idle one: spread as by round robin). Printed: the median time
to the first text delta at each turn.
Results: bench/results/pools-latest.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.servers import PYTHON, ROOT, Servers, _run, base_env, gateway_env

DEFAULT_OUT = ROOT / "bench" / "results" / "pools-latest.json"
SETUP = """
import os
from upstreams.models import ClientKey, Upstream
for n, url in enumerate(os.environ["BENCH_MEMBERS"].split()):
    Upstream.objects.create(name=f"member-{n}", base_url=url + "/v1", models="pool-model")
print("BENCH_KEY=" + ClientKey.objects.create_key("bench")[1])
"""


def turn_body(session: int, turn: int, turn_kb: int, affinity: bool, run: str) -> dict[str, Any]:
    history: list[dict[str, Any]] = [{"role": "user", "content": f"{run} session {session}: begin"}]
    for earlier in range(turn):
        history += [{"role": "user", "content": f"turn {earlier} " + "x" * (turn_kb * 1024)},
                    {"role": "assistant", "content": "ok"}]
    body: dict[str, Any] = {"model": "pool-model", "store": False, "stream": True,
                            "input": [*history, {"role": "user", "content": f"turn {turn}"}]}
    if affinity:
        body["prompt_cache_key"] = f"{run}-{session}"
    return body


async def first_token(client: httpx.AsyncClient, url: str, key: str, body: dict[str, Any]) -> float:
    """Seconds from sending ``body`` to the first text delta of its answer."""
    started = time.perf_counter()
    async with client.stream("POST", f"{url}/v1/responses", json=body,
                             headers={"authorization": f"Bearer {key}"}) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if line.startswith("event: response.output_text.delta"):
                return time.perf_counter() - started
    raise RuntimeError("no text delta in the answer")


async def run_sessions(url: str, key: str, args: argparse.Namespace, affinity: bool) -> list[list[float]]:
    """Each turn's time to first token, per turn (a list of the sessions' times)."""
    per_turn: list[list[float]] = [[] for _ in range(args.turns)]
    run = "affinity" if affinity else "spread"
    async with httpx.AsyncClient(timeout=120) as client:
        async def session(n: int) -> None:
            for turn in range(args.turns):
                body = turn_body(n, turn, args.turn_kb, affinity, run)
                per_turn[turn].append(await first_token(client, url, key, body))
        for n in range(args.sessions):  # one after another: without a key each turn goes to any idle member
            await session(n)
    return per_turn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parts.pools", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sessions", type=int, default=6)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--turn-kb", type=int, default=4, help="what each turn adds to the prompt (default 4 KB)")
    parser.add_argument("--prefill-ms-per-kb", type=float, default=25.0,
                        help="a member's prefill of what it has not cached (default 25 ms per KB)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="cgw-bench-pools-"))
    servers = Servers(tmp)
    result: dict[str, Any] = {"args": {k: v for k, v in vars(args).items() if k != "out"}}
    try:
        for affinity in (True, False):
            members = [servers.start(f"member-{n}", [PYTHON, "manage.py", "mockupstream", "--scenario", "scripted",
                                                     "--port", "{port}"], base_env(), ready_path=None)
                       for n in range(3)]
            step = {"prefix_cache": {"prefill_per_kb": args.prefill_ms_per_kb / 1000},
                    "chunks": [{"text": "ok"}, {"finish": "stop"}]}
            for member in members:
                httpx.post(f"{member.url}/_mock/script", json={"steps": [step]}).raise_for_status()
            database = f"sqlite:///{tmp / f'pools-{affinity}.sqlite3'}"
            env = gateway_env(database, "bench-pools-secret-key-0123456789abcdef")
            _run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], env, ROOT)
            out = _run([PYTHON, "manage.py", "shell", "-c", SETUP],
                       {**env, "BENCH_MEMBERS": " ".join(m.url for m in members)}, ROOT)
            key = next(line.split("=", 1)[1] for line in out.splitlines() if line.startswith("BENCH_KEY="))
            gateway = servers.start("gateway", [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}",
                                                "gatewaysite.asgi:application"], env, ready_path="/healthz")
            per_turn = asyncio.run(run_sessions(gateway.url, key, args, affinity))
            label = "affinity" if affinity else "no affinity"
            result[label] = {"median_ttft_s": [round(statistics.median(times), 4) for times in per_turn]}
            print(f"{label:12} median time to first token per turn (s): "
                  + " ".join(f"{t:.3f}" for t in result[label]["median_ttft_s"]))
            servers.stop_all()
    finally:
        servers.stop_all()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
