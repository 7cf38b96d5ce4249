"""The CPU a budget costs a request: its check and hold before routing, and its settle at the end.

``python -m bench.parts.budget --requests 5000 --redis redis://127.0.0.1:6379/14``. In one process, on
a fresh SQLite database and the given Redis, requests of a key with a token budget (never
reached) and of one without are admitted and settled through ``api/budgets/`` exactly as the
gateway does (``admit``, then ``settle`` once the row is settled), interleaved in rounds;
the process's CPU time (every thread: the shared cache's calls run on a thread pool) per
request is printed for each, and their difference is what a budget costs. ``--redis ''``
measures the ledger without Redis (one process, the SQLite demo). A gateway-wide A/B of the
same thing: ``python -m bench --compare budget=. --compare-env budget:BENCH_TOKEN_BUDGET=...``.
Results: bench/results/budget-latest.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.servers import ROOT

DEFAULT_OUT = ROOT / "bench" / "results" / "budget-latest.json"


def setup(redis_url: str) -> None:
    os.environ.update({"DJANGO_SETTINGS_MODULE": "gatewaysite.settings", "REDIS_URL": redis_url,
                       "DATABASE_URL": f"sqlite:///{tempfile.mkdtemp(prefix='cgw-bench-budget-')}/db.sqlite3",
                       "GATEWAY_JOURNAL_DIR": "", "LOG_LEVEL": "WARNING"})
    import django
    from django.core.management import call_command
    django.setup()
    call_command("migrate", verbosity=0)
    if redis_url:
        import redis
        redis.Redis.from_url(redis_url).flushdb()


async def measure(requests: int, rounds: int) -> tuple[dict[str, list[float]], int]:
    from api.budgets import admission
    from bridge.events import UsageReported
    from logs.audit.exchange import Exchange
    from plumbing import dbthread
    from upstreams.models import ClientKey

    keys = {"budget": (await dbthread.run(partial(ClientKey.objects.create_key, "budgeted", token_budget=10**15)))[0],
            "none": (await dbthread.run(ClientKey.objects.create_key, "free"))[0]}
    body = {"model": "m", "input": "hi", "max_output_tokens": 100}
    used = UsageReported(input_tokens=200, output_tokens=100, total_tokens=300)

    async def one(key: ClientKey) -> None:
        exchange = Exchange(request_id="req_bench", endpoint="responses", client_ip=None, request_bytes=1000)
        exchange.model = "m"
        await admission.admit(exchange, key, body)
        exchange.usage = used
        admission.settle(exchange)  # its Redis call rides with the next request's check, as under load

    per_request: dict[str, list[float]] = {name: [] for name in keys}
    for key in keys.values():  # warm-up: the first hold loads the account from the rows
        for _ in range(50):
            await one(key)
    for _ in range(rounds):
        for name, key in keys.items():
            started = time.process_time()
            for _ in range(requests):
                await one(key)
            await asyncio.gather(*admission._settling)  # the last settles, counted in the round
            per_request[name].append((time.process_time() - started) / requests * 1000)
    return per_request, await spent(keys["budget"].pk)


async def spent(key_id: int) -> int:
    """The budgeted key's tokens as the ledger has them (its period: a month): every request held and settled."""
    from api.budgets.admission import now
    from api.budgets.ledger import LEDGER
    from upstreams.models import period_at

    name = f"cgw:budget:k{key_id}:{period_at('month', now()).tag}"
    if LEDGER.shared():
        return int(await LEDGER.pipe.command("HGET", name, "t"))
    return LEDGER.local.entries[name].spent_tokens


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.parts.budget", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--requests", type=int, default=5000, help="requests per round and key (default 5000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14", help="'' for no Redis")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    setup(args.redis)
    per_request, settled = asyncio.run(measure(args.requests, args.rounds))
    result: dict[str, Any] = {"requests": args.requests, "rounds": args.rounds, "redis": bool(args.redis),
                              "cpu_ms_per_request": per_request, "settled_tokens": settled,
                              "median_ms": {name: statistics.median(v) for name, v in per_request.items()}}
    result["budget_cost_ms"] = result["median_ms"]["budget"] - result["median_ms"]["none"]
    for name, values in per_request.items():
        print(f"{name:7} CPU per request (ms), each round: {', '.join(f'{v:.3f}' for v in values)}")
    print(f"a budget costs {result['budget_cost_ms']:.3f} ms of CPU per request (median of {args.rounds} rounds, "
          f"{'Redis' if args.redis else 'no Redis'})")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
