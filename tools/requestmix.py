"""``python -m tools.requestmix``: a mix of requests through ``make run``'s gateway, the overview checked against rows.

What a new staff user met (issue 22): ``manage.py serve`` from a checkout on a fresh SQLite
database (the demo), a dead upstream ``ghost``, a dead ``primary-dead`` above the demo for its
models, three keys, and a mix of requests: answered, bridged and passed through, streamed Chat
without ``include_usage``, demo-errors, a model only ``ghost`` serves, unknown models, bad keys,
clients that leave. It prints the overview's figures for the last hour, as the checkout's own
code computes them, beside the same figures counted here from the rows (their attempts and
outcomes), so a figure that does not add up shows. ``--checkout`` runs an older tree the same
way: the before and after of a change to the request log.

    python -m tools.requestmix --requests 1500
    python -m tools.requestmix --requests 1500 --checkout ../before --json before.json
"""
from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
KEYS = ("alice", "bob", "carol")
# What each request of the mix is, and how often (out of 100).
KINDS = {"responses": 30, "responses stream": 10, "chat stream": 15, "chat": 7, "tools": 5, "demo-errors": 8,
         "ghost": 8, "unknown model": 7, "bad key": 5, "disconnect": 5}
SETUP = """
import json
from upstreams.models import ClientKey, Upstream
Upstream.objects.create(name="ghost", base_url="http://127.0.0.1:{ghost}/v1", models="ghost-model")
Upstream.objects.create(name="primary-dead", base_url="http://127.0.0.1:{dead}/v1", models="demo-*", priority=10)
print(json.dumps({{name: ClientKey.objects.create_key(name)[1] for name in {keys!r}}}))
"""
# The overview as the checkout's own code computes it: this tree's logs.pages.overview, or the
# logs.pages.stats.overview of the trees before it.
OVERVIEW = """
import json
from logs.models import RequestLog
from logs.pages.filters import LogFilter
try:
    from logs.pages.overview import overview
    from logs.pages.stats import WINDOWS
except ImportError:
    from logs.pages.stats import WINDOWS, overview
view = overview(WINDOWS["hour"])
t = view.totals
out = {"requests": t.requests, "failed": t.failed, "error_rate": t.error_rate,
       "upstream_failed": getattr(t, "upstream_failed", None), "failovers": getattr(t, "failovers", None),
       "untokened": getattr(t, "untokened", None),
       "failover_filter": LogFilter(failover="1").apply(RequestLog.objects.all()).count(),
       "upstreams": {u.name: [u.requests, u.failed] for u in view.upstreams},
       "keys": {k.name: [k.requests, k.input_tokens + k.output_tokens] for k in view.keys},
       "faults": {f.fault: f.count for f in getattr(t, "faults", [])}}
print(json.dumps(out))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def manage(checkout: Path, env: dict[str, str], code: str) -> Any:
    """Run ``code`` in ``manage.py shell`` of the checkout; return the JSON its last line prints."""
    done = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def wait_for_port(port: int, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the gateway exited with {server.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"nothing listens on {port} after {timeout:.0f} s")


def send(base: str, kind: str, secret: str) -> None:
    """Send one request of the mix; what it answers is the gateway's business (the rows say it)."""
    headers = {"authorization": f"Bearer {secret}"}
    chat = {"model": "demo-text", "messages": [{"role": "user", "content": "hi"}]}
    asks: dict[str, tuple[str, dict[str, Any]]] = {
        "responses": ("responses", {"model": "demo-text", "input": "hi"}),
        "responses stream": ("responses", {"model": "demo-text", "input": "hi", "stream": True}),
        "chat": ("chat/completions", chat),
        "chat stream": ("chat/completions", {**chat, "stream": True}),
        "tools": ("responses", {"model": "demo-tools", "input": "run it", "stream": True}),
        "demo-errors": ("responses", {"model": "demo-errors", "input": "hi"}),
        "ghost": ("responses", {"model": "ghost-model", "input": "hi"}),
        "unknown model": ("responses", {"model": "gpt-9", "input": "hi"}),
        "bad key": ("responses", {"model": "demo-text", "input": "hi"}),
    }
    if kind == "bad key":
        headers["authorization"] = "Bearer sk-not-a-key-of-this-gateway"
    if kind == "disconnect":
        with httpx.stream("POST", f"{base}/v1/chat/completions", json={**chat, "model": "demo-tools5",
                          "stream": True}, headers=headers, timeout=60) as response:
            next(response.iter_raw(), None)  # the first bytes, then the client leaves
        return
    path, body = asks[kind]
    httpx.post(f"{base}/v1/{path}", json=body, headers=headers, timeout=60)


def truth(database: Path) -> dict[str, Any]:
    """The figures counted from the rows themselves: each upstream reached (row's own and each try's)."""
    with closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT upstream_name, outcome, attempts, key_name, input_tokens, output_tokens "
                          "FROM upstreams_requestlog").fetchall()
    upstreams: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    outcomes: Counter[str] = Counter()
    keys: Counter[str] = Counter()
    failovers = untokened = reached = 0
    for upstream, outcome, attempts, key, tokens_in, tokens_out in rows:
        outcomes[outcome] += 1
        keys[key] += 1
        tried = {a["upstream"] for a in json.loads(attempts or "[]")}
        there = {name: "upstream_error" for name in tried} | ({upstream: outcome} if upstream else {})
        for name, result in there.items():
            upstreams[name][0] += 1
            upstreams[name][1] += result == "upstream_error"
        failovers += bool(tried - {upstream})
        reached += bool(upstream)
        untokened += outcome == "ok" and bool(upstream) and tokens_in is None and tokens_out is None
    return {"requests": len(rows), "outcomes": dict(outcomes), "upstreams": dict(upstreams), "keys": dict(keys),
            "failovers": failovers, "reached": reached, "untokened": untokened,
            "upstream_failed": outcomes["upstream_error"]}


def run(checkout: Path, requests: int, concurrency: int, seed: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="requestmix-"))
    database = work / "mix.sqlite3"
    port, demo_port = free_port(), free_port()
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{database}", "UPSTREAM_BASE_URL": "", "LOG_LEVEL": "WARNING",
           "GATEWAY_AUTH_FAILURES_PER_MINUTE": "0", "GATEWAY_ROUTING_TTL": "0",
           "GATEWAY_JOURNAL_DIR": str(work / "journal")}
    server = subprocess.Popen([sys.executable, "manage.py", "serve", "--port", str(port), "--demo-port",
                               str(demo_port)], cwd=checkout, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, server)
        secrets = manage(checkout, env, SETUP.format(ghost=free_port(), dead=free_port(), keys=KEYS))
        draw = random.Random(seed)
        mix = draw.choices(list(KINDS), weights=list(KINDS.values()), k=requests)
        who = draw.choices(KEYS, k=requests)
        base = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(lambda pair: send(base, pair[0], secrets[pair[1]]), zip(mix, who, strict=True)))
        took = time.monotonic() - started
        deadline = time.monotonic() + 60
        while truth(database)["requests"] < requests and time.monotonic() < deadline:
            time.sleep(0.5)
        return {"checkout": str(checkout), "sent": dict(Counter(mix)), "seconds": round(took, 1),
                "overview": manage(checkout, env, OVERVIEW), "rows": truth(database)}
    finally:
        server.terminate()
        server.wait(timeout=30)


def report(result: dict[str, Any]) -> str:
    """The overview's figures beside the rows', a line each; ✗ where they differ."""
    shown, rows = result["overview"], result["rows"]
    lines = [f"{result['checkout']}: {rows['requests']} rows of {sum(result['sent'].values())} sent "
             f"in {result['seconds']} s", f"{'figure':44} {'overview':>10} {'rows':>10}"]

    def line(name: str, figure: Any, counted: Any) -> None:
        mark = "" if figure is None or figure == counted else "  ✗"
        lines.append(f"{name:44} {'—' if figure is None else figure!s:>10} {counted!s:>10}{mark}")

    line("requests", shown["requests"], rows["requests"])
    line("failed over (list filter)", shown["failover_filter"], rows["failovers"])
    line("failovers (overview)", shown["failovers"], rows["failovers"])
    line("upstream failures", shown["upstream_failed"], rows["upstream_failed"])
    rate = shown["error_rate"]
    lines.append(f"{'headline error rate':44} {rate * 100 if rate is not None else 0:>9.1f}% "
                 f"{rows['upstream_failed'] / max(rows['reached'], 1) * 100:>9.1f}%  (rows: upstream failures "
                 "of the requests that reached one)")
    line("answered without tokens", shown["untokened"], rows["untokened"])
    for name in sorted(set(shown["upstreams"]) | set(rows["upstreams"])):
        figure, counted = shown["upstreams"].get(name, [0, 0]), rows["upstreams"].get(name, [0, 0])
        line(f"upstream {name}: requests", figure[0], counted[0])
        line(f"upstream {name}: failed", figure[1], counted[1])
    for name in sorted(set(shown["keys"]) | set(rows["keys"])):
        line(f"key {name or '(none)'}: requests", shown["keys"].get(name, [0])[0], rows["keys"].get(name, 0))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", type=Path, default=ROOT, help="the tree to run (default: this one)")
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    result = run(args.checkout.resolve(), args.requests, args.concurrency, args.seed)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
