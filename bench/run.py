"""The harness: start the servers, measure every mode at every concurrency level, print and save the figures.

What is measured, and the command line, are bench/plan.py's. Every wait has a timeout and
every loop a bound; every child is stopped at the end, even on error.
"""
from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

from bench import profile, report
from bench.machine import git_commit, installed, machine
from bench.plan import CURRENT, MODES, Mode, Tree, auto_requests, parse_args
from bench.servers import (
    PYTHON,
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

LINE_SLACK = 60.0  # seconds a load generator may take beyond its own run timeout to report
MAX_STRAY_LINES = 100


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
        self.trees = [Tree(spec, f"sqlite:///{self.tmp / f'bench-{spec.label}.sqlite3'}", commit=git_commit(spec.path))
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
            # BENCH_WORKERS=N (a --compare-env): that tree serves as N daphne workers on one socket.
            workers = tree.spec.env.get("BENCH_WORKERS")
            command = ([PYTHON, "-m", "plumbing.listen", "--workers", workers, "--port", "{port}"] if workers else
                       [PYTHON, "-m", "daphne", "-b", "127.0.0.1", "-p", "{port}", "gatewaysite.asgi:application"])
            return self.servers.start(f"gateway-{tree.label}", command,
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
        subject = (tree.gateway if tree else server) or self.subject(mode)
        database_url = (tree.database_url if tree else self.database_url) if mode.target == "gateway" else None
        requests = requests or self.args.requests or auto_requests(level)
        command = self._command(mode, level, subject, requests, progress_every,
                                tree.client_key if tree else self.client_key)
        ready, result, before, after = await self._drive(command, f"{mode.name}, c={level}", subject, database_url,
                                                         requests // max(progress_every, 1), on_progress, profile_to)
        if not subject.alive():
            raise HarnessError(f"{subject.name} died during {mode.name} c={level}:\n{subject.log_tail()}")
        label = server_label or ("mock" if mode.target == "mock" else "daphne")
        run = report.figures(mode.name, level, label, ready, result, before, after, with_mock=subject is not self.mock)
        if run["ok"] < run["total"]:
            self.failed = True
        return run

    def _command(self, mode: Mode, level: int, subject: Server, requests: int, progress_every: int,
                 client_key: str) -> list[str]:
        args = self.args
        warmup = args.warmup if args.warmup is not None else max(level, 2)
        command = [PYTHON, "-m", "bench.load", "--url", subject.url + mode.path, "--kind", mode.kind,
                   "--body", orjson.dumps(mode.body).decode(), "--concurrency", str(level),
                   "--requests", str(requests), "--warmup", str(warmup), "--expect-deltas", str(args.deltas),
                   "--timeout", str(args.timeout), "--run-timeout", str(args.run_timeout),
                   "--progress-every", str(progress_every), "--wait-go", "--hold"]
        if mode.target == "gateway":
            command += ["--header", f"authorization: Bearer {client_key}"]
        return command

    async def _drive(self, command: list[str], what: str, subject: Server, database_url: str | None,
                     progress_lines: int, on_progress: Callable[[int, int], None] | None,
                     profile_to: Path | None) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Start the load generator, snapshot the subject, let it go, read its result, snapshot again.

        Returns its READY line, its result and the snapshots before and after.
        """
        timeout = self.args.run_timeout + LINE_SLACK
        log = (self.tmp / "loadgen.log").open("ab")
        process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, env=base_env(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=log, preexec_fn=die_with_parent)
        profiler = None
        try:
            ready = await self._line(process, "READY", timeout)
            subject.settle()
            before = self._snapshot(subject, database_url)
            if profile_to is not None:
                profiler = profile.Profiler(subject.process.pid, profile_to)
                await asyncio.sleep(0.5)  # let py-spy attach before the load starts
            await _say(process, b"GO\n")
            result = await self._result(process, timeout, progress_lines, on_progress)
            if result is None:
                raise HarnessError(f"no RESULT from the load generator ({what})")
            if profiler is not None:
                profiler.stop()
            subject.settle()
            after = self._snapshot(subject, database_url)
            await _say(process, b"BYE\n")
            process.stdin.close()  # type: ignore[union-attr]
            await asyncio.wait_for(process.wait(), LINE_SLACK)
        finally:
            if profiler is not None:
                profiler.stop()
            if process.returncode is None:
                process.kill()
                await asyncio.wait_for(process.wait(), LINE_SLACK)
            log.close()
        return ready, result, before, after

    async def _result(self, process: asyncio.subprocess.Process, timeout: float, progress_lines: int,
                      on_progress: Callable[[int, int], None] | None) -> dict[str, Any] | None:
        """Read the load generator's lines up to its RESULT, handing each PROGRESS line to ``on_progress``."""
        for _ in range(progress_lines + MAX_STRAY_LINES):
            line = await self._line(process, None, timeout)
            if line.startswith("RESULT "):
                result: dict[str, Any] = orjson.loads(line.removeprefix("RESULT "))
                return result
            if line.startswith("PROGRESS ") and on_progress:
                done, ok = (int(v) for v in line.split()[1:3])
                on_progress(done, ok)
        return None

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
        run["http"] = "httptools" if installed("httptools") else "h11"
        run["loop"] = "uvloop" if installed("uvloop") else "asyncio"
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


async def _say(process: asyncio.subprocess.Process, line: bytes) -> None:
    process.stdin.write(line)  # type: ignore[union-attr]
    await process.stdin.drain()  # type: ignore[union-attr]


def _progress(run: dict[str, Any]) -> None:
    where = f"{run['tree']:<10} r{run['round']} " if "tree" in run else ""
    print(f"bench: {run['mode']:<16} {run['server']:<7} {where}c={run['concurrency']:<4} {run['ok']}/{run['total']} ok "
          f"{run['rps']:8.1f} req/s  CPU {run['cpu_ms_per_req']:.2f} ms/req"
          + (f"  errors {run['errors']}" if run["errors"] else ""), file=sys.stderr, flush=True)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


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
        report.print_results(results)
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
