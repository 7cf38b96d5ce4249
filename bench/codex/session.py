"""A Codex-like session over HTTP and over the Responses WebSocket: what each turn costs the gateway.

``python -m bench.codex.session --turns 30 --rounds 3`` (or ``make bench-session``). One gateway
under daphne (production settings, bench/servers.py), the bench mock as a Chat-only upstream
(bridged), and a scripted session shaped like Codex's: the first turn is a real Codex 0.169
request (tests/fixtures/codex-0.169-request.json: its instructions and tools, ~40 KB), and
each later turn adds what a tool turn adds, the model's ``function_call`` and its
``function_call_output`` (``--output-bytes``, 4 KB by default: a file read, a test log).

- over **HTTP** each turn is a ``POST /v1/responses`` with the whole history, ``store: false``,
  as Codex sends it without ``supports_websockets``;
- over the **WebSocket** one socket carries the session: each turn is a ``response.create``
  with ``previous_response_id`` and only the new items, as Codex sends it with it.

Per turn: the bytes the gateway received (the body, or the message), and the gateway
process's CPU time for the turn (its CPU clock, read before the turn and once the turn's
audit row is written). The two transports alternate, session by session, round after round,
on the same settled gateway (after a short unmeasured session of each), and each figure is
the median over the rounds. Results:
bench/results/session-latest.json. Nothing is asserted about speed; tests/test_bench_smoke.py
runs it small so it cannot rot.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect

from bench.servers import (
    CHAT_MODEL,
    PYTHON,
    ROOT,
    Gateway,
    HarnessError,
    Servers,
    audit_rows,
    base_env,
    gateway_env,
    new_secret_key,
    setup_database,
)

CODEX_REQUEST = ROOT / "tests" / "fixtures" / "codex-0.169-request.json"
DEFAULT_OUT = ROOT / "bench" / "results" / "session-latest.json"
TRANSPORTS = ("http", "websocket")
TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def first_turn() -> dict[str, Any]:
    """Codex's first request, for the bench's bridged model, not stored (as Codex sends it)."""
    body = json.loads(CODEX_REQUEST.read_text())
    return {**body, "model": CHAT_MODEL, "store": False, "stream": True}


def tool_turn(turn: int, output_bytes: int) -> list[dict[str, Any]]:
    """What one tool turn adds to the history: the call and its output."""
    call_id = f"call_bench_{turn}"
    line = f"line {turn}: " + "x" * 60 + "\n"
    output = (line * (output_bytes // len(line) + 1))[:output_bytes]
    return [{"type": "function_call", "call_id": call_id, "name": "exec_command",
             "arguments": json.dumps({"cmd": f"cat src/file_{turn}.py"})},
            {"type": "function_call_output", "call_id": call_id, "output": output}]


class Session:
    """One transport's session against the gateway: per turn, the bytes sent and the gateway's CPU."""

    def __init__(self, gateway: Gateway, key: str, database_url: str, output_bytes: int) -> None:
        self.gateway, self.key, self.database_url, self.output_bytes = gateway, key, database_url, output_bytes

    def run(self, transport: str, turns: int) -> list[dict[str, float]]:
        if transport == "http":
            return self._http(turns)
        return self._websocket(turns)

    def _turn(self, send: Any) -> dict[str, float]:
        rows = audit_rows(self.database_url) or 0
        before = self.gateway.cpu_seconds()
        sent = send()
        self._wait_for_row(rows + 1)
        return {"bytes": sent, "cpu_ms": (self.gateway.cpu_seconds() - before) * 1000}

    def _wait_for_row(self, count: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while (audit_rows(self.database_url) or 0) < count:
            if time.monotonic() > deadline:
                raise HarnessError(f"the audit row of a turn was not written in {timeout:.0f}s")
            time.sleep(0.005)

    def _http(self, turns: int) -> list[dict[str, float]]:
        body = first_turn()
        history = list(body["input"])
        figures = []
        with httpx.Client(base_url=self.gateway.url, headers={"authorization": f"Bearer {self.key}"},
                          timeout=60, trust_env=False) as client:
            for turn in range(turns):
                if turn:
                    history.extend(tool_turn(turn, self.output_bytes))
                payload = json.dumps({**body, "input": history}).encode()

                def send(payload: bytes = payload) -> int:
                    with client.stream("POST", "/v1/responses", content=payload,
                                       headers={"content-type": "application/json"}) as answer:
                        if answer.status_code != 200:
                            raise HarnessError(f"HTTP turn: {answer.status_code} {answer.read()[:300]!r}")
                        for line in answer.iter_lines():
                            if line.startswith("data: ") and '"response.completed"' in line[:60]:
                                history.extend(json.loads(line[6:])["response"]["output"])
                    return len(payload)

                figures.append(self._turn(send))
        return figures

    def _websocket(self, turns: int) -> list[dict[str, float]]:
        body = first_turn()
        url = self.gateway.url.replace("http://", "ws://") + "/v1/responses"
        figures = []
        previous: str | None = None
        with connect(url, additional_headers={"authorization": f"Bearer {self.key}"}, compression=None,
                     max_size=None, open_timeout=30) as ws:
            for turn in range(turns):
                message = {**body, "type": "response.create"}
                if turn:
                    message |= {"previous_response_id": previous, "input": tool_turn(turn, self.output_bytes)}
                payload = json.dumps(message)

                def send(payload: str = payload, socket: ClientConnection = ws) -> int:
                    nonlocal previous
                    socket.send(payload)
                    while True:
                        event = json.loads(socket.recv(timeout=60))
                        if event["type"] == "error":
                            raise HarnessError(f"WebSocket turn: {event}")
                        if event["type"] in TERMINAL:
                            previous = event["response"]["id"]
                            return len(payload.encode())

                figures.append(self._turn(send))
        return figures


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.codex.session", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3, help="sessions per transport, alternating (default 3)")
    parser.add_argument("--output-bytes", type=int, default=4096, help="each tool output's size (default 4096)")
    parser.add_argument("--deltas", type=int, default=20, help="content deltas per answer (default 20)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="cgw-bench-session-"))
    servers = Servers(tmp)
    try:
        mock = servers.start("mock", [PYTHON, "-m", "bench.mock", "--port", "{port}", "--deltas", str(args.deltas)],
                             base_env(), ready_path="/healthz")
        database_url = f"sqlite:///{tmp / 'session.sqlite3'}"
        env = gateway_env(database_url, new_secret_key())
        key = setup_database(env, mock.url)
        gateway = servers.start("gateway", [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}",
                                            "gatewaysite.asgi:application"], env, ready_path="/healthz",
                                kind=Gateway)
        assert isinstance(gateway, Gateway)
        session = Session(gateway, key, database_url, args.output_bytes)
        for transport in TRANSPORTS:  # warm-up, not measured: the first requests pay for imports and caches
            session.run(transport, 2)
        runs: dict[str, list[list[dict[str, float]]]] = {transport: [] for transport in TRANSPORTS}
        for _ in range(args.rounds):
            for transport in TRANSPORTS:
                gateway.settle()
                runs[transport].append(session.run(transport, args.turns))
        table = _table(runs, args.turns)
        _print(table, args)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"when": datetime.now(UTC).isoformat(), "turns": args.turns,
                                        "rounds": args.rounds, "output_bytes": args.output_bytes,
                                        "per_turn": table, "runs": runs}, indent=2))
        print(f"saved {args.out}")
        return 0
    except HarnessError as exc:
        print(f"bench.codex.session: {exc}", file=sys.stderr)
        return 1
    finally:
        servers.stop_all()


def _table(runs: dict[str, list[list[dict[str, float]]]], turns: int) -> list[dict[str, float]]:
    rows = []
    for turn in range(turns):
        row: dict[str, float] = {"turn": turn + 1}
        for transport in TRANSPORTS:
            for name in ("bytes", "cpu_ms"):
                row[f"{transport}_{name}"] = statistics.median(run[turn][name] for run in runs[transport])
        rows.append(row)
    return rows


def _print(table: list[dict[str, float]], args: argparse.Namespace) -> None:
    print(f"A {args.turns}-turn Codex-like session, {args.output_bytes} B per tool output, median of "
          f"{args.rounds} session(s) per transport")
    print(f"{'turn':>4} {'HTTP bytes':>11} {'WS bytes':>9} {'bytes ws/http':>13} {'HTTP CPU ms':>11} "
          f"{'WS CPU ms':>9} {'CPU ws/http':>11}")
    shown = [row for row in table if row["turn"] in (1, 2, 5, 10, 20, 30) or row is table[-1]]
    for row in shown:
        print(f"{int(row['turn']):>4} {int(row['http_bytes']):>11,} {int(row['websocket_bytes']):>9,} "
              f"{row['websocket_bytes'] / row['http_bytes']:>13.3f} {row['http_cpu_ms']:>11.2f} "
              f"{row['websocket_cpu_ms']:>9.2f} {row['websocket_cpu_ms'] / row['http_cpu_ms']:>11.2f}")
    total = {name: sum(row[name] for row in table) for name in table[0] if name != "turn"}
    print(f"{'all':>4} {int(total['http_bytes']):>11,} {int(total['websocket_bytes']):>9,} "
          f"{total['websocket_bytes'] / total['http_bytes']:>13.3f} {total['http_cpu_ms']:>11.2f} "
          f"{total['websocket_cpu_ms']:>9.2f} {total['websocket_cpu_ms'] / total['http_cpu_ms']:>11.2f}")


if __name__ == "__main__":
    sys.exit(main())
