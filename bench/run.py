"""The harness: start the servers, measure every mode at every concurrency level, print and save the figures.

Modes (issue 6), each a separate load-generator process against one server:

    direct        the load generator straight to the mock's Chat stream: the physical limit
    floor         the bare relay (bench/floor.py) under daphne: the least a Python relay costs
    chat          /v1/chat/completions passthrough through the gateway
    responses     /v1/responses passthrough (Responses-speaking upstream)
    bridge        /v1/responses bridged to a Chat-only upstream, streamed
    bridge-json   the same, not streamed
    bridge-stored the bridge with ``store: true``: the response and its items written before the end
    direct-responses  (optional) the load generator straight to the mock's Responses stream

Compare mode (--compare LABEL=PATH, repeatable): an A/B of gateways served from other source
trees (a git worktree, another checkout) against this one, in one sitting so that the
machine's noise hits every side alike. Each tree gets its own fresh database, migrated by its
own manage.py, and its own daphne started with cwd = that tree (so it imports that tree's
code) and exactly this tree's production env (DEBUG off, keys, rate limit, INFO logs); all
use this tree's Python, mock and load generator. For each mode and level, the trees are
measured in turn, round after round (current, A, B, current, A, B, ...; --rounds, default 3),
each on its own settled server (--fresh: restarted before each run). The table gives per tree
the median CPU ms/request of the serving process over the rounds with its range, req/s, TTFC,
the audit rows written per request (a variant that skipped them would look cheaper) and the
ratios to the current tree: of the medians, and per round (paired). --compare-env
LABEL:KEY=VALUE (repeatable) sets an env variable for one tree only; LABEL "current" is this
tree. Only gateway modes are compared (default: bridge; levels default 1,50); no uvicorn
pass, soak or profile in this mode. Results: the "compare" key of the JSON. The "foreign %"
column is the CPU other jobs took meanwhile (% of one core): on a shared machine, give the
run priority (`nice -n -15`, inherited by the children; with sched autogroup, in a session of
its own: `setsid`, and -15 written to /proc/self/autogroup) and distrust rounds where it is high.

    python -m bench --compare old=/work/baseline --levels 1,50 --rounds 3
    python -m bench --compare ttl0=. --compare-env ttl0:GATEWAY_ROUTING_TTL=0 --levels 50

Every wait has a timeout and every loop a bound; every child is stopped at the end, even on error.
"""
from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import os
import platform
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from bench import profile, report
from bench.servers import (
    CHAT_MODEL,
    PYTHON,
    RESPONSES_MODEL,
    ROOT,
    SETUP_TIMEOUT,
    Gateway,
    HarnessError,
    Server,
    Servers,
    audit_rows,
    base_env,
    check_imports,
    die_with_parent,
    gateway_env,
    new_secret_key,
    setup_database,
    stored_bytes,
)

DEFAULT_OUT = ROOT / "bench" / "results" / "latest.json"
DEFAULT_LEVELS = (1, 50, 200, 500)
QUICK_LEVELS = (1, 2)
QUICK_REQUESTS = 5
LINE_SLACK = 60.0  # seconds a load generator may take beyond its own run timeout to report
MAX_STRAY_LINES = 100
PACKAGES = ("django", "daphne", "twisted", "channels", "httpx", "httpcore", "h11", "orjson", "uvicorn", "psutil")


@dataclass(frozen=True)
class Mode:
    name: str
    target: str  # which server answers: mock, floor or gateway
    path: str
    kind: str  # how the load generator reads the answer (bench.load.KINDS)
    body: dict[str, Any]


def _chat_body(model: str) -> dict[str, Any]:
    return {"model": model, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "system", "content": "You are a terse assistant."},
                         {"role": "user", "content": "Say hello."}]}


def _responses_body(model: str, stream: bool, store: bool = False) -> dict[str, Any]:
    """A one-line Responses request; ``store: false`` (as Codex sends) unless the mode measures storing."""
    return {"model": model, "instructions": "You are a terse assistant.", "input": "Say hello.", "stream": stream,
            "store": store}


MODES = {mode.name: mode for mode in (
    Mode("direct", "mock", "/v1/chat/completions", "chat", _chat_body(CHAT_MODEL)),
    Mode("floor", "floor", "/v1/chat/completions", "chat", _chat_body(CHAT_MODEL)),
    Mode("chat", "gateway", "/v1/chat/completions", "chat", _chat_body(CHAT_MODEL)),
    Mode("responses", "gateway", "/v1/responses", "responses", _responses_body(RESPONSES_MODEL, True)),
    Mode("bridge", "gateway", "/v1/responses", "responses", _responses_body(CHAT_MODEL, True)),
    Mode("bridge-json", "gateway", "/v1/responses", "responses-json", _responses_body(CHAT_MODEL, False)),
    Mode("bridge-stored", "gateway", "/v1/responses", "responses", _responses_body(CHAT_MODEL, True, store=True)),
    Mode("direct-responses", "mock", "/v1/responses", "responses", _responses_body(RESPONSES_MODEL, True)),
)}
DEFAULT_MODES = ("direct", "floor", "chat", "responses", "bridge", "bridge-json", "bridge-stored")
CURRENT = "current"  # compare mode's label for this tree
COMPARE_MODES = ("bridge",)
COMPARE_LEVELS = (1, 50)
DEFAULT_ROUNDS = 3
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class TreeSpec:
    """A source tree whose gateway compare mode measures, and the env variables set for it alone."""

    label: str
    path: Path
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Tree:
    """A compared tree once set up: its database, client key and running gateway."""

    spec: TreeSpec
    database_url: str
    client_key: str = ""
    gateway: Server | None = None
    commit: str = ""

    @property
    def label(self) -> str:
        return self.spec.label


def auto_requests(level: int) -> int:
    """Requests per mode and level when not given: enough rounds for stable percentiles, bounded."""
    return min(max(200, 20 * level), max(2000, 4 * level))


def _ints(text: str) -> list[int]:
    values = [int(v) for v in text.replace(" ", "").split(",") if v]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("give positive integers, comma-separated")
    return values


def _modes(text: str) -> list[str]:
    names = [v for v in text.replace(" ", "").split(",") if v]
    unknown = [n for n in names if n not in MODES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown mode(s) {unknown}; known: {', '.join(MODES)}")
    return names


def _tree_spec(text: str) -> TreeSpec:
    label, sep, raw = text.partition("=")
    if not sep or not _LABEL.fullmatch(label) or not raw:
        raise argparse.ArgumentTypeError("give LABEL=PATH, e.g. old=/work/baseline (label: letters, digits, _.-)")
    if label == CURRENT:
        raise argparse.ArgumentTypeError(f"the label {CURRENT!r} is this tree's")
    path = Path(raw).expanduser().resolve()
    missing = [name for name in ("manage.py", "gatewaysite/asgi.py") if not (path / name).is_file()]
    if missing:
        raise argparse.ArgumentTypeError(f"{path} is not a checkout of the gateway (no {', '.join(missing)})")
    return TreeSpec(label, path)


def _env_spec(text: str) -> tuple[str, str, str]:
    label, sep, assignment = text.partition(":")
    name, eq, value = assignment.partition("=")
    if not sep or not eq or not _LABEL.fullmatch(label) or not _ENV_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError("give LABEL:KEY=VALUE, e.g. ttl0:GATEWAY_ROUTING_TTL=0")
    return label, name, value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("give a positive integer")
    return value


def _profile_spec(text: str) -> tuple[str, int]:
    mode, _, level = text.partition("@")
    if mode not in MODES or not level.isdigit():
        raise argparse.ArgumentTypeError("give MODE@CONCURRENCY, e.g. bridge@50")
    return mode, int(level)


def _trees(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[TreeSpec]:
    """The trees of compare mode, this one first (the base of the ratios); empty without --compare."""
    if not args.compare:
        if args.compare_env:
            parser.error("--compare-env needs --compare")
        return []
    specs = [TreeSpec(CURRENT, ROOT), *args.compare]
    labels = [spec.label for spec in specs]
    if len(set(labels)) < len(labels):
        parser.error(f"--compare labels must differ: {', '.join(labels[1:])}")
    for label, name, value in args.compare_env:
        if label not in labels:
            parser.error(f"--compare-env {label}:{name}: no tree labelled {label!r} (known: {', '.join(labels)})")
        next(spec for spec in specs if spec.label == label).env[name] = value
    return specs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(
        "Benchmark the gateway against the direct upstream and a bare relay (issue 6). "
        "Everything runs on 127.0.0.1, each server in its own process."),
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: concurrency {','.join(map(str, QUICK_LEVELS))}, "
                             f"{QUICK_REQUESTS} requests per mode, no soak")
    parser.add_argument("--modes", type=_modes, default=None, help=f"default: {','.join(DEFAULT_MODES)}")
    parser.add_argument("--concurrency", "--levels", dest="levels", type=_ints, default=None,
                        help=f"comma-separated levels (default {','.join(map(str, DEFAULT_LEVELS))})")
    parser.add_argument("--requests", type=int, default=None,
                        help="measured requests per mode and level (default: 200 at c=1 up to 2000)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="warm-up requests per run, at least one per connection (default: one per connection)")
    parser.add_argument("--deltas", type=int, default=100, help="content deltas per answer (default 100)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="mock delay between two deltas (default 0)")
    parser.add_argument("--soak", action="store_true", help="also run the soak (on a freshly started gateway)")
    parser.add_argument("--soak-only", action="store_true", help="run only the soak, no table")
    parser.add_argument("--soak-requests", type=int, default=20_000)
    parser.add_argument("--soak-concurrency", type=int, default=50)
    parser.add_argument("--soak-every", type=int, default=1_000, help="sample RSS every this many requests")
    parser.add_argument("--uvicorn", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the bridge mode with the gateway under uvicorn (default on)")
    parser.add_argument("--uvicorn-level", type=int, default=None,
                        help="concurrency of the uvicorn comparison (default 50 if measured, else the highest)")
    parser.add_argument("--profile", type=_profile_spec, action="append", default=[], metavar="MODE@C",
                        help="py-spy the serving process during an extra pass of MODE at concurrency C "
                             "(repeatable; needs py-spy in the venv)")
    parser.add_argument("--compare", type=_tree_spec, action="append", default=[], metavar="LABEL=PATH",
                        help="compare mode: also measure the gateway of the tree at PATH (a checkout of this "
                             "project, e.g. a git worktree), interleaved with this tree's (repeatable; see below)")
    parser.add_argument("--compare-env", type=_env_spec, action="append", default=[], metavar="LABEL:KEY=VALUE",
                        help=f"compare mode: set KEY=VALUE in the env of tree LABEL only ({CURRENT!r}: this tree; "
                             "repeatable), e.g. --compare ttl0=. --compare-env ttl0:GATEWAY_ROUTING_TTL=0")
    parser.add_argument("--rounds", type=_positive, default=DEFAULT_ROUNDS,
                        help=f"compare mode: interleaved rounds per mode and level (default {DEFAULT_ROUNDS})")
    parser.add_argument("--fresh", action="store_true",
                        help="compare mode: restart each tree's gateway before each of its runs "
                             "(default: one long-lived gateway per tree, settled before each run)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default 60)")
    parser.add_argument("--run-timeout", type=float, default=900.0, help="seconds per measured run (default 900)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results JSON (default {DEFAULT_OUT})")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the run's database and logs")
    args = parser.parse_args(argv)
    if args.quick:
        args.levels = args.levels or list(QUICK_LEVELS)
        args.requests = args.requests or QUICK_REQUESTS
    args.trees = _trees(parser, args)
    args.levels = args.levels or list(COMPARE_LEVELS if args.trees else DEFAULT_LEVELS)
    args.modes = args.modes or list(COMPARE_MODES if args.trees else DEFAULT_MODES)
    if args.trees:
        others = [name for name in args.modes if MODES[name].target != "gateway"]
        if others:
            parser.error(f"--compare measures gateway modes only, not {', '.join(others)}")
        if args.soak or args.soak_only or args.profile:
            parser.error("--compare does not combine with --soak, --soak-only or --profile")
        args.uvicorn = False
    if args.soak_only:
        args.soak = True
    if args.uvicorn_level is None:
        args.uvicorn_level = 50 if 50 in args.levels else max(args.levels)
    return args


class Bench:
    """One run: its servers, its client key, its measurements."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.servers = Servers(tmp)
        self.database_url = f"sqlite:///{tmp / 'bench.sqlite3'}"
        self.secret_key = new_secret_key()
        self.client_key = ""
        self.mock: Server | None = None
        self.floor: Server | None = None
        self.gateway: Server | None = None
        self.runs: list[dict[str, Any]] = []
        self.comparison: list[dict[str, Any]] = []
        self.soak: dict[str, Any] | None = None
        self.profiles: list[dict[str, Any]] = []
        self.trees: list[Tree] = []
        self.compare_runs: list[dict[str, Any]] = []
        self.failed = False

    # --- servers ---------------------------------------------------------------------

    def start(self) -> None:
        args = self.args
        self.mock = self.servers.start("mock", [PYTHON, "-m", "bench.mock", "--port", "{port}", "--deltas",
                                                str(args.deltas), "--delay", str(args.delay_ms / 1000)],
                                       base_env(), ready_path="/healthz")
        if args.trees:
            self.start_trees()
            return
        self.client_key = setup_database(gateway_env(self.database_url, self.secret_key), self.mock.url)
        if not args.soak_only and "floor" in args.modes:
            self.floor = self.servers.start(
                "floor", [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "bench.floor:app"],
                {**base_env(), "BENCH_FLOOR_UPSTREAM": self.mock.url}, ready_path="/healthz")
        self.gateway = self.start_gateway("daphne")

    def start_trees(self) -> None:
        """Give each compared tree its own database (its own migrations) and gateway, all started alike.

        The trees' databases are set up side by side (threads waiting on child processes), then
        their gateways started together from this thread: PR_SET_PDEATHSIG kills a child when
        the thread that started it ends, so a server must never be started from a worker thread.
        """
        assert self.mock is not None
        mock_url = self.mock.url
        self.trees = [Tree(spec, f"sqlite:///{self.tmp / f'bench-{spec.label}.sqlite3'}", commit=_git_commit(spec.path))
                      for spec in self.args.trees]

        def setup(tree: Tree) -> None:
            env = self.tree_env(tree)
            check_imports(tree.spec.path, env)
            tree.client_key = setup_database(env, mock_url, tree.spec.path)

        with ThreadPoolExecutor(max_workers=len(self.trees)) as pool:
            for future in [pool.submit(setup, tree) for tree in self.trees]:
                future.result(timeout=SETUP_TIMEOUT * 2 + LINE_SLACK)  # re-raises a tree's HarnessError
        for tree in self.trees:
            tree.gateway = self.start_gateway("daphne", tree, wait=False)
        for tree in self.trees:
            assert tree.gateway is not None
            tree.gateway.wait_ready()

    def tree_env(self, tree: Tree) -> dict[str, str]:
        """The env of a tree's gateway: the same production env for every tree, plus its --compare-env."""
        return {**gateway_env(tree.database_url, self.secret_key), **tree.spec.env}

    def start_gateway(self, server: str, tree: Tree | None = None, *, wait: bool = True) -> Server:
        """Start the gateway app under ``server`` (daphne as documented; uvicorn for the comparison).

        With ``tree`` (compare mode), that tree's gateway: its code (cwd), its database, its env;
        ``wait=False`` returns before it is ready (the caller then calls ``wait_ready``).
        """
        if tree is not None:
            return self.servers.start(f"gateway-{tree.label}", [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p",
                                                                "{port}", "gatewaysite.asgi:application"],
                                      self.tree_env(tree), ready_path="/healthz", kind=Gateway, cwd=tree.spec.path,
                                      wait=wait)
        if server == "daphne":
            command = [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "gatewaysite.asgi:application"]
        else:
            # Django's ASGI handler has no lifespan support; uvicorn picks h11/asyncio unless
            # httptools/uvloop are installed (recorded in the results).
            command = [PYTHON, "-m", "uvicorn", "gatewaysite.asgi:application", "--host", "127.0.0.1", "--port",
                       "{port}", "--lifespan", "off", "--no-access-log", "--log-level", "warning"]
        return self.servers.start(f"gateway-{server}", command, gateway_env(self.database_url, self.secret_key),
                                  ready_path="/healthz", kind=Gateway)

    def subject(self, mode: Mode) -> Server:
        server = {"mock": self.mock, "floor": self.floor, "gateway": self.gateway}[mode.target]
        if server is None:
            raise HarnessError(f"no {mode.target} server for mode {mode.name}")
        return server

    # --- one measurement ---------------------------------------------------------------

    async def measure(self, mode: Mode, level: int, *, server: Server | None = None, server_label: str | None = None,
                      requests: int | None = None, progress_every: int = 0,
                      on_progress: Callable[[int, int], None] | None = None,
                      profile_to: Path | None = None, tree: Tree | None = None) -> dict[str, Any]:
        """Run one load-generator process against one server and return its figures.

        ``tree`` (compare mode): measure that tree's gateway, with its client key and database.
        """
        args = self.args
        subject = (tree.gateway if tree else server) or self.subject(mode)
        client_key = tree.client_key if tree else self.client_key
        database_url = (tree.database_url if tree else self.database_url) if mode.target == "gateway" else None
        assert self.mock is not None
        requests = requests or args.requests or auto_requests(level)
        warmup = args.warmup if args.warmup is not None else max(level, 2)
        command = [PYTHON, "-m", "bench.load", "--url", subject.url + mode.path, "--kind", mode.kind,
                   "--body", orjson.dumps(mode.body).decode(), "--concurrency", str(level),
                   "--requests", str(requests), "--warmup", str(warmup), "--expect-deltas", str(args.deltas),
                   "--timeout", str(args.timeout), "--run-timeout", str(args.run_timeout),
                   "--progress-every", str(progress_every), "--wait-go", "--hold"]
        if mode.target == "gateway":
            command += ["--header", f"authorization: Bearer {client_key}"]
        log = (self.tmp / "loadgen.log").open("ab")
        process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, env=base_env(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=log, preexec_fn=die_with_parent)
        profiler = None
        try:
            ready = await self._line(process, "READY", args.run_timeout + LINE_SLACK)
            subject.settle()
            before = self._snapshot(subject, database_url)
            if profile_to is not None:
                profiler = profile.Profiler(subject.process.pid, profile_to)
                await asyncio.sleep(0.5)  # let py-spy attach before the load starts
            process.stdin.write(b"GO\n")  # type: ignore[union-attr]
            await process.stdin.drain()  # type: ignore[union-attr]
            result: dict[str, Any] | None = None
            for _ in range(requests // max(progress_every, 1) + MAX_STRAY_LINES):
                line = await self._line(process, None, args.run_timeout + LINE_SLACK)
                if line.startswith("RESULT "):
                    result = orjson.loads(line.removeprefix("RESULT "))
                    break
                if line.startswith("PROGRESS ") and on_progress:
                    done, ok = (int(v) for v in line.split()[1:3])
                    on_progress(done, ok)
            if result is None:
                raise HarnessError(f"no RESULT from the load generator ({mode.name}, c={level})")
            if profiler is not None:
                profiler.stop()
            subject.settle()
            after = self._snapshot(subject, database_url)
            process.stdin.write(b"BYE\n")  # type: ignore[union-attr]
            await process.stdin.drain()  # type: ignore[union-attr]
            process.stdin.close()  # type: ignore[union-attr]
            await asyncio.wait_for(process.wait(), LINE_SLACK)
        finally:
            if profiler is not None:
                profiler.stop()
            if process.returncode is None:
                process.kill()
                await asyncio.wait_for(process.wait(), LINE_SLACK)
            log.close()
        if not subject.alive():
            raise HarnessError(f"{subject.name} died during {mode.name} c={level}:\n{subject.log_tail()}")
        total = max(result["total"], 1)
        warm = orjson.loads(ready.removeprefix("READY ")) if ready.startswith("READY ") else None
        run = {
            "mode": mode.name, "server": server_label or ("mock" if mode.target == "mock" else "daphne"),
            "concurrency": level, **{k: result[k] for k in ("total", "ok", "errors", "elapsed_s", "rps", "ttfc_ms",
                                                            "total_ms", "deltas")},
            "cpu_ms_per_req": (after["cpu"] - before["cpu"]) * 1000 / total,
            "mock_cpu_ms_per_req": (after["mock_cpu"] - before["mock_cpu"]) * 1000 / total,
            "loadgen_cpu_ms_per_req": result["loadgen_cpu_s"] * 1000 / total,
            # New connections the mock accepted per request: 0 when the server pools upstream connections.
            "mock_connections_per_req": (after["mock"]["connections"] - before["mock"]["connections"]) / total,
            "mock_requests": after["mock"]["requests"] - before["mock"]["requests"],
            "rss_before_mb": before["rss"], "rss_after_mb": after["rss"],
            "fds_before": before["fds"], "fds_after": after["fds"],
            "warmup": {k: warm[k] for k in ("ok", "total", "errors", "elapsed_s")} if warm else None,
            # CPU the machine spent outside the measured processes (server, mock, load generator), in %
            # of one core over the measured window: another job on a shared machine shows up here.
            "foreign_cpu_pct": (after["busy"] - before["busy"] - (after["cpu"] - before["cpu"])
                                - (after["mock_cpu"] - before["mock_cpu"] if subject is not self.mock else 0.0)
                                - result["loadgen_cpu_s"] - (after["harness_cpu"] - before["harness_cpu"]))
            / max(after["wall"] - before["wall"], 1e-9) * 100,
            # The hypervisor's steal time, same unit: CPU the VM was denied.
            "steal_pct": (after["steal"] - before["steal"]) / max(after["wall"] - before["wall"], 1e-9) * 100,
            # One per request when every audit row was written (the gateway modes; None if unknown).
            "audit_rows_per_req": (after["audit"] - before["audit"]) / total
            if before.get("audit") is not None and after.get("audit") is not None else None,
            # Bytes of stored responses (Response object and items, encrypted) per request.
            "stored_bytes_per_req": (after["stored"] - before["stored"]) / total
            if before.get("stored") is not None and after.get("stored") is not None else None,
        }
        if run["ok"] < run["total"]:
            self.failed = True
        return run

    def _snapshot(self, subject: Server, database_url: str | None = None) -> dict[str, Any]:
        assert self.mock is not None
        # Read after the CPU figures: the /_stats request itself costs the mock a little.
        machine = psutil.cpu_times()
        snapshot = {"cpu": subject.cpu_seconds(), "mock_cpu": self.mock.cpu_seconds(), "rss": subject.rss_mb(),
                    "fds": subject.fds(), "audit": audit_rows(database_url) if database_url else None,
                    "stored": stored_bytes(database_url) if database_url else None,
                    "wall": time.monotonic(), "steal": getattr(machine, "steal", 0.0),
                    "harness_cpu": time.process_time(),
                    "busy": sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)}
        try:
            snapshot["mock"] = httpx.get(self.mock.url + "/_stats", timeout=5.0, trust_env=False).json()
        except (httpx.HTTPError, ValueError) as exc:
            raise HarnessError(f"the mock did not answer /_stats: {exc}") from None
        return snapshot

    async def _line(self, process: asyncio.subprocess.Process, expect: str | None, timeout: float) -> str:
        try:
            raw = await asyncio.wait_for(process.stdout.readline(), timeout)  # type: ignore[union-attr]
        except TimeoutError:
            raise HarnessError(f"the load generator said nothing for {timeout:.0f}s") from None
        if not raw:
            await asyncio.wait_for(process.wait(), LINE_SLACK)
            raise HarnessError(f"the load generator exited ({process.returncode}); see {self.tmp / 'loadgen.log'}:\n"
                               + _tail(self.tmp / "loadgen.log"))
        line = raw.decode().strip()
        if expect and not line.startswith(expect):
            raise HarnessError(f"the load generator said {line[:200]!r}, expected {expect}")
        return line

    # --- the plan ----------------------------------------------------------------------

    async def run(self) -> None:
        args = self.args
        self.start()
        if args.trees:
            await self.compare_pass()
            return
        if not args.soak_only:
            for level in args.levels:
                for name in args.modes:
                    self.runs.append(await self.measure(MODES[name], level))
                    _progress(self.runs[-1])
                    if (name, level) in args.profile:
                        await self.profile_pass(MODES[name], level)
                if args.uvicorn and level == args.uvicorn_level:
                    await self.uvicorn_pass(level)
        if args.soak:
            await self.soak_pass()

    async def compare_pass(self) -> None:
        """Each mode and level: every tree in turn, round after round, so drift and noise hit all alike."""
        args = self.args
        for level in args.levels:
            for name in args.modes:
                for round_ in range(1, args.rounds + 1):
                    for tree in self.trees:
                        if args.fresh:
                            assert tree.gateway is not None
                            self.servers.stop(tree.gateway)
                            tree.gateway = self.start_gateway("daphne", tree)
                        others = [t.gateway for t in self.trees if t is not tree and t.gateway is not None]
                        idle = sum(g.cpu_seconds() for g in others)
                        run = await self.measure(MODES[name], level, tree=tree)
                        run["tree"], run["round"] = tree.label, round_
                        # The other trees' gateways sit idle meanwhile: their CPU would be noise on this run.
                        run["others_cpu_ms_per_req"] = ((sum(g.cpu_seconds() for g in others) - idle) * 1000
                                                        / max(run["total"], 1))
                        self.compare_runs.append(run)
                        _progress(run)

    def compare_results(self) -> dict[str, Any] | None:
        """The compare mode's part of the JSON: the trees, every run, and the summary per tree."""
        if not self.trees:
            return None
        labels = [tree.label for tree in self.trees]
        return {"base": CURRENT, "rounds": self.args.rounds, "fresh": self.args.fresh,
                "order": "interleaved: every tree in turn within each round",
                "trees": [{"label": t.label, "path": str(t.spec.path), "commit": t.commit, "env": t.spec.env}
                          for t in self.trees],
                "runs": self.compare_runs, "summary": report.compare_summary(self.compare_runs, labels, CURRENT)}

    async def uvicorn_pass(self, level: int) -> None:
        uvicorn_gateway = self.start_gateway("uvicorn")
        try:
            run = await self.measure(MODES["bridge"], level, server=uvicorn_gateway, server_label="uvicorn")
        finally:
            self.servers.stop(uvicorn_gateway)
        run["http"] = "httptools" if _installed("httptools") else "h11"
        run["loop"] = "uvloop" if _installed("uvloop") else "asyncio"
        self.comparison.append(run)
        _progress(run)

    async def profile_pass(self, mode: Mode, level: int) -> None:
        if profile.py_spy() is None:
            print("bench: --profile needs py-spy (.venv/bin/pip install py-spy); skipped", file=sys.stderr)
            return
        raw = self.tmp / f"profile-{mode.name}-c{level}.txt"
        run = await self.measure(mode, level, profile_to=raw)
        if not (raw.exists() and raw.stat().st_size):
            print(f"bench: py-spy wrote no profile; see {raw.with_suffix('.log')}", file=sys.stderr)
            self.failed = True  # keeps the logs
            return
        # Saved as JSON beside the results: bench/results/ keeps only JSON (git-ignored).
        saved = self.args.out.parent / f"profile-{mode.name}-c{level}.json"
        stacks = profile.stacks(raw)
        saved.write_bytes(orjson.dumps(stacks))
        self.profiles.append({"mode": mode.name, "concurrency": level, "file": str(saved),
                              "rps_while_sampled": run["rps"], **profile.summarize(stacks["stacks"])})

    async def soak_pass(self) -> None:
        """20,000 bridged requests at concurrency 50 on a fresh gateway; RSS every 1,000 (issue 6, "soak")."""
        args = self.args
        if self.gateway is not None:
            self.servers.stop(self.gateway)
        self.gateway = self.start_gateway("daphne")
        gateway = self.gateway
        samples: list[dict[str, Any]] = []

        def sample(done: int, ok: int) -> None:
            samples.append({"requests": done, "ok": ok, "rss_mb": gateway.rss_mb(), "fds": gateway.fds()})
            print(f"bench: soak {done}/{args.soak_requests}  RSS {samples[-1]['rss_mb']:.1f} MB", file=sys.stderr)

        run = await self.measure(MODES["bridge"], args.soak_concurrency, requests=args.soak_requests,
                                 progress_every=args.soak_every, on_progress=sample)
        # The issue compares the 5,000th request with the 20,000th: a quarter in, and the end.
        mark = args.soak_requests / 4
        baseline = next((s for s in samples if s["requests"] >= mark), None)
        end = samples[-1] if samples else None
        growth = ((end["rss_mb"] - baseline["rss_mb"]) / baseline["rss_mb"] * 100
                  if baseline and end and baseline is not end else None)
        self.soak = {**run, "samples": samples, "baseline_request": baseline["requests"] if baseline else None,
                     "rss_baseline_mb": baseline["rss_mb"] if baseline else None,
                     "rss_end_mb": end["rss_mb"] if end else None, "rss_growth_pct": growth}

    # --- output ------------------------------------------------------------------------

    def results(self) -> dict[str, Any]:
        report.add_ratios(self.runs + self.comparison)
        for run in self.comparison:
            daphne = next((r for r in self.runs if r["mode"] == run["mode"] and r["server"] == "daphne"
                           and r["concurrency"] == run["concurrency"]), None)
            run["vs_daphne"] = report.ratios(run, daphne) if daphne else None
        args = self.args
        return {
            "meta": machine(),
            "config": {"levels": args.levels, "modes": args.modes, "deltas": args.deltas, "delay_ms": args.delay_ms,
                       "requests": args.requests or {str(c): auto_requests(c) for c in args.levels},
                       "warmup": args.warmup, "quick": args.quick, "gateway": {
                           "server": "daphne", "DEBUG": False, "database": "sqlite (fresh, temp dir)",
                           "cache": "locmem (REDIS_URL unset)", "client_key_rate_limit": "100000/m",
                           "log_level": "INFO"}},
            "runs": self.runs, "comparison": self.comparison, "soak": self.soak, "profiles": self.profiles,
            "compare": self.compare_results(),
            "targets": report.targets(self.runs, self.soak),
        }

    def print_tables(self, results: dict[str, Any]) -> None:
        meta = results["meta"]
        print(f"\ncodex-gateway bench  {meta['date']}  {meta['cpu_count']} CPU ({meta['cpu_model']}), "
              f"{meta['memory_gb']} GB, {meta['platform']}, Python {meta['python']}, commit {meta['commit']}")
        print(f"{self.args.deltas} deltas per answer, {self.args.delay_ms:g} ms between deltas; times in ms; "
              "CPU = the serving process's CPU time per request (the mock's for direct)\n")
        if self.runs:
            print(report.figures_table(self.runs))
            print("\nratios: xD = to direct at the same concurrency, xF = to the bare relay floor; "
                  "+ms = TTFC p50 added over direct\n")
            print(report.ratios_table(self.runs))
            stored = [r for r in self.runs if r.get("stored_bytes_per_req")]
            for run in stored:
                print(f"{run['mode']} at c={run['concurrency']}: {run['stored_bytes_per_req']:.0f} bytes stored "
                      "per request (Response object and items, encrypted)")
        if results["compare"]:
            compare = results["compare"]
            print(f"compare mode: {compare['rounds']} interleaved round(s) per mode and level, "
                  f"{'a fresh' if compare['fresh'] else 'a settled'} gateway per run")
            for tree in compare["trees"]:
                env = " ".join(f"{k}={v}" for k, v in tree["env"].items())
                print(f"  {tree['label']:<12} {tree['path']}  commit {tree['commit']}"
                      + (f"  env {env}" if env else ""))
            print(f"\nmedians over the rounds; 'x {CURRENT}' = ratio of the medians to the current tree's, "
                  "'per round' = the range of the ratios round by round\n")
            print(report.compare_table(compare["summary"], CURRENT))
        if self.comparison:
            print("\nanother ASGI server, same gateway app:\n")
            print(report.comparison_table(self.comparison))
        if self.soak:
            soak = self.soak
            print(f"\nsoak: {soak['ok']}/{soak['total']} bridged requests at c={soak['concurrency']}, "
                  f"{soak['rps']:.1f} req/s; RSS {_mb(soak['rss_baseline_mb'])} MB at request "
                  f"{soak['baseline_request']} -> {_mb(soak['rss_end_mb'])} MB at the end "
                  f"({_pct(soak['rss_growth_pct'])}); open fds {soak['fds_before']} -> {soak['fds_after']}\n")
            print(report.soak_table(soak))
        if results["targets"]:
            print()
            print(report.targets_table(results["targets"]))
        for summary in self.profiles:
            print(f"\nprofile of the serving process, {summary['mode']} at c={summary['concurrency']} "
                  f"({summary['file']}):")
            print(profile.render(summary))


def _progress(run: dict[str, Any]) -> None:
    where = f"{run['tree']:<10} r{run['round']} " if "tree" in run else ""
    print(f"bench: {run['mode']:<16} {run['server']:<7} {where}c={run['concurrency']:<4} {run['ok']}/{run['total']} ok "
          f"{run['rps']:8.1f} req/s  CPU {run['cpu_ms_per_req']:.2f} ms/req"
          + (f"  errors {run['errors']}" if run["errors"] else ""), file=sys.stderr, flush=True)


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f} %"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _installed(name: str) -> bool:
    try:
        importlib.metadata.version(name)
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def machine() -> dict[str, Any]:
    """The machine and software the figures were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "platform": platform.platform(),
            "cpu_model": model, "cpu_count": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30),
            "python": platform.python_version(), "packages": versions, "commit": _git_commit()}


def _git_commit(tree: Path = ROOT) -> str:
    """Return the tree's commit, "+dirty" if its tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=tree, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=tree,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (head or "unknown") + ("+dirty" if dirty else "")


def _raise_fd_limit() -> None:
    """500 streams cost the gateway ~1,000 sockets; children inherit the raised soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _terminate(number: int, frame: Any) -> None:
    raise SystemExit(128 + number)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)  # profiles are saved there mid-run
    _raise_fd_limit()
    signal.signal(signal.SIGTERM, _terminate)
    tmp = Path(tempfile.mkdtemp(prefix="codex-gateway-bench-"))
    bench = Bench(args, tmp)
    started = time.monotonic()
    keep = args.keep_tmp
    try:
        asyncio.run(bench.run())
        results = bench.results()
        bench.print_tables(results)
        args.out.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
        print(f"\nwrote {args.out} ({time.monotonic() - started:.0f}s)")
        if bench.failed:
            keep = True
            print(f"some requests failed: logs kept in {tmp}", file=sys.stderr)
        return 0
    except HarnessError as exc:
        keep = True
        print(f"bench: {exc}\nbench: logs kept in {tmp}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        bench.servers.stop_all()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)
