"""The load generator: asyncio + httpx in its own process, driven over stdin/stdout by ``bench/run.py``.

One process runs one measurement: a warm-up (opens the connections), then ``READY``; on
``GO`` from stdin the measured requests, ``PROGRESS n`` every ``--progress-every``
completions, and finally ``RESULT {json}``. The warm-up opens its connections in batches
(``--ramp``): a burst of 500 connects at once would overflow the server's listen backlog
(daphne: 50) and measure that instead. A request counts as successful only when its
answer ends properly: ``data: [DONE]`` for Chat, ``response.completed`` for Responses, a
completed response object for non-streaming Responses; and it carried exactly the text the
mock sent. Time to first content is taken at the first chunk that holds a content delta.
"""
from __future__ import annotations

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field

import httpx
import orjson

from bench.mock import delta_texts
from bench.report import summarize

KINDS = ("chat", "responses", "responses-json")
KEEPALIVE_EXPIRY = 900.0
RAMP_PAUSE = 0.1  # seconds between two batches of new connections in the warm-up


@dataclass
class Sample:
    ok: bool
    total: float  # seconds, request sent to last byte
    ttfc: float | None  # seconds, request sent to the first content delta
    deltas: int = 0
    error: str = ""


@dataclass
class StreamCheck:
    """What one answer said so far: content deltas, their text, whether it ended properly."""

    kind: str
    started: float
    deltas: int = 0
    text: list[str] = field(default_factory=list)
    first: float | None = None
    done: bool = False
    failure: str = ""
    _buffer: bytes = b""

    def feed(self, data: bytes, now: float) -> None:
        lines = (self._buffer + data).split(b"\n")
        self._buffer = lines.pop()
        for line in lines:
            if line.startswith(b"data:"):
                self._data(line[5:].strip(), now)

    def _data(self, payload: bytes, now: float) -> None:
        if self.kind == "chat":
            if payload == b"[DONE]":
                self.done = True
                return
            chunk = orjson.loads(payload)
            if "error" in chunk:
                self.failure = "error_chunk"
            for choice in chunk.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    self._delta(content, now)
            return
        event = orjson.loads(payload)
        kind = event.get("type")
        if kind == "response.output_text.delta":
            self._delta(event.get("delta", ""), now)
        elif kind == "response.completed":
            self.done = True
        elif kind in ("response.failed", "response.incomplete", "error"):
            self.failure = kind

    def _delta(self, text: str, now: float) -> None:
        self.deltas += 1
        self.text.append(text)
        if self.first is None:
            self.first = now


class Load:
    """Send one request body to one URL, ``concurrency`` at a time."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.url = args.url
        self.kind = args.kind
        self.body = args.body.encode()
        self.headers = {"content-type": "application/json"}
        for header in args.header:
            name, _, value = header.partition(":")
            self.headers[name.strip()] = value.strip()
        self.expected = "".join(delta_texts(args.expect_deltas)) if args.expect_deltas else None
        self.timeout = args.timeout
        # One client (one connection) per worker, like one process per real client. A single
        # pool shared by hundreds of streams costs httpcore O(idle x connections) per request
        # (AsyncConnectionPool._assign_requests_to_connections): at 500 it was the load
        # generator, not the server, that ran out of CPU.
        self.clients = [httpx.AsyncClient(limits=httpx.Limits(max_connections=1, max_keepalive_connections=1,
                                                               keepalive_expiry=KEEPALIVE_EXPIRY),
                                          timeout=httpx.Timeout(args.timeout), trust_env=False)
                        for _ in range(args.concurrency)]

    async def one(self, client: httpx.AsyncClient) -> Sample:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(client, started)
        except TimeoutError:
            return Sample(False, time.perf_counter() - started, None, error="request_timeout")
        except httpx.HTTPError as exc:
            return Sample(False, time.perf_counter() - started, None, error=type(exc).__name__)

    async def _exchange(self, client: httpx.AsyncClient, started: float) -> Sample:
        async with client.stream("POST", self.url, content=self.body, headers=self.headers) as response:
            if response.status_code != 200:
                await response.aread()
                return Sample(False, time.perf_counter() - started, None, error=f"status_{response.status_code}")
            if self.kind == "responses-json":
                body = await response.aread()
                now = time.perf_counter()
                return self._judge_json(body, started, now)
            check = StreamCheck(self.kind, started)
            async for data in response.aiter_raw():
                check.feed(data, time.perf_counter())
            now = time.perf_counter()
        ttfc = check.first - started if check.first is not None else None
        if check.failure:
            return Sample(False, now - started, ttfc, check.deltas, check.failure)
        if not check.done:
            return Sample(False, now - started, ttfc, check.deltas, "incomplete")
        if self.expected is not None and "".join(check.text) != self.expected:
            return Sample(False, now - started, ttfc, check.deltas, "wrong_text")
        return Sample(True, now - started, ttfc, check.deltas)

    def _judge_json(self, body: bytes, started: float, now: float) -> Sample:
        response = orjson.loads(body)
        texts = [part.get("text", "") for item in response.get("output", []) if item.get("type") == "message"
                 for part in item.get("content", []) if part.get("type") == "output_text"]
        if response.get("status") != "completed":
            return Sample(False, now - started, None, error=f"status_{response.get('status')}")
        if self.expected is not None and "".join(texts) != self.expected:
            return Sample(False, now - started, None, error="wrong_text")
        # No stream: the content arrives with the whole body.
        return Sample(True, now - started, now - started, len(self.expected or ""))

    async def phase(self, requests: int, concurrency: int, run_timeout: float, progress_every: int = 0,
                    ramp: int = 0, open_all: bool = False) -> dict:
        """Send ``requests`` requests, ``concurrency`` at a time, and summarize them.

        ``ramp``: start the workers (each opens a connection) this many at a time, RAMP_PAUSE
        apart, as clients arrive over time; 0 starts them all at once. ``open_all``: every
        worker sends at least one request, so every connection is open at the end (warm-up).
        """
        samples: list[Sample] = []
        workers = concurrency if open_all else min(concurrency, requests)
        requests = max(requests, workers)
        issued = workers if open_all else 0  # open_all: each worker's first request is reserved

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal issued
            if open_all:
                samples.append(await self.one(client))
            while issued < requests:
                issued += 1
                samples.append(await self.one(client))
                if progress_every and len(samples) % progress_every == 0:
                    ok = sum(s.ok for s in samples)
                    print(f"PROGRESS {len(samples)} {ok}", flush=True)

        cpu0, t0 = time.process_time(), time.perf_counter()
        tasks: list[asyncio.Future[None]] = []
        for n in range(workers):
            if ramp and n and n % ramp == 0:
                await asyncio.sleep(RAMP_PAUSE)
            tasks.append(asyncio.ensure_future(worker(self.clients[n])))
        _, pending = await asyncio.wait(tasks, timeout=run_timeout)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return summary(samples, requests, time.perf_counter() - t0, time.process_time() - cpu0)


def summary(samples: list[Sample], requests: int, elapsed: float, cpu: float) -> dict:
    """A phase's figures: requests answered, errors by kind (those never answered: run_timeout), the timings."""
    errors: dict[str, int] = {}
    for sample in samples:
        if not sample.ok:
            errors[sample.error] = errors.get(sample.error, 0) + 1
    if requests > len(samples):
        errors["run_timeout"] = requests - len(samples)
    ok = [s for s in samples if s.ok]
    return {
        "total": requests, "ok": len(ok), "errors": errors, "elapsed_s": elapsed,
        "rps": len(ok) / elapsed if elapsed > 0 else 0.0,
        "ttfc_ms": summarize([s.ttfc * 1000 for s in ok if s.ttfc is not None]),
        "total_ms": summarize([s.total * 1000 for s in ok]),
        "deltas": [min((s.deltas for s in ok), default=0), max((s.deltas for s in ok), default=0)],
        "loadgen_cpu_s": cpu,
    }


async def _stdin() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def _read_line(reader: asyncio.StreamReader, timeout: float) -> bytes | None:
    try:
        return (await asyncio.wait_for(reader.readline(), timeout)).strip()
    except TimeoutError:
        return None


async def run(args: argparse.Namespace) -> int:
    load = Load(args)
    stdin = await _stdin() if args.wait_go or args.hold else None
    try:
        warm = (await load.phase(args.warmup, args.concurrency, args.run_timeout, ramp=args.ramp, open_all=True)
                if args.warmup else None)
        print("READY " + orjson.dumps(warm).decode(), flush=True)
        if stdin and args.wait_go and await _read_line(stdin, args.go_timeout) != b"GO":
            print("no GO on stdin", file=sys.stderr)
            return 2
        result = await load.phase(args.requests, args.concurrency, args.run_timeout, args.progress_every)
        result["warmup"] = warm
        print("RESULT " + orjson.dumps(result).decode(), flush=True)
        if stdin and args.hold:
            # Keep the connections open (idle, as after the warm-up) until the harness has
            # taken its "after" snapshot, so before and after see the same sockets.
            await _read_line(stdin, args.go_timeout)
        return 0
    finally:
        await asyncio.gather(*(client.aclose() for client in load.clients), return_exceptions=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Benchmark load generator (driven by python -m bench).")
    parser.add_argument("--url", required=True)
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--body", required=True, help="the JSON request body, sent as is")
    parser.add_argument("--header", action="append", default=[], help="'name: value', repeatable")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=0,
                        help="warm-up requests, at least one per connection (0: no warm-up)")
    parser.add_argument("--ramp", type=int, default=25,
                        help="warm-up opens connections this many at a time, 0.1 s apart (0: all at once)")
    parser.add_argument("--expect-deltas", type=int, default=0, help="check the text of this many mock deltas")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    parser.add_argument("--run-timeout", type=float, default=600.0, help="seconds per phase")
    parser.add_argument("--progress-every", type=int, default=0)
    parser.add_argument("--wait-go", action="store_true", help="after READY, wait for GO on stdin")
    parser.add_argument("--hold", action="store_true", help="after RESULT, keep the connections until a line on stdin")
    parser.add_argument("--go-timeout", type=float, default=120.0, help="seconds to wait for a line on stdin")
    args = parser.parse_args(argv)
    if not args.url.startswith(("http://127.0.0.1:", "http://localhost:")):
        parser.error("the load generator only targets loopback")
    return args


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
