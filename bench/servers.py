"""The benchmark's child processes: start them on loopback, watch their CPU and memory, always stop them.

Every child gets ``PR_SET_PDEATHSIG`` (Linux), so even a killed harness leaves no server behind;
the normal path is ``Servers.stop_all()`` in the harness's ``finally``.
"""
from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PYTHON = sys.executable
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
SETTLE_TIMEOUT = 15.0
SETUP_TIMEOUT = 300.0
# The bench's models: one served by a Chat-only upstream (bridged), one by a Responses-speaking one.
CHAT_MODEL = "bench-chat"
RESPONSES_MODEL = "bench-responses"
ANTHROPIC_MODEL = "bench-claude"
# High enough never to trigger, so the rate limiter runs (one cache INCR per request) but never refuses.
BENCH_RATE_LIMIT = "100000/m"


class HarnessError(RuntimeError):
    """The harness itself failed (a server did not start, a child died): no figures."""


def _cpu_of(pid: int, ps: psutil.Process) -> float:
    try:
        return time.clock_gettime(((~pid) << 3) | 2)  # CPUCLOCK_SCHED of the whole process
    except (OSError, OverflowError, AttributeError):
        try:
            times = ps.cpu_times()
        except psutil.Error:  # gone since it was listed
            return 0.0
        return times.user + times.system


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """Ask the kernel to kill this child when the harness dies (preexec_fn; Linux only).

    The kernel sends the signal when the *thread* that forked the child ends: servers are
    started from the harness's main thread only (workers may run short-lived commands).
    """
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Server:
    """One child process serving HTTP on a loopback port, with its log in the run's folder."""

    def __init__(self, name: str, args: list[str], port: int, env: dict[str, str], log_dir: Path,
                 ready_path: str | None = None, cwd: Path = ROOT) -> None:
        self.name, self.port, self.ready_path = name, port, ready_path
        self.log_path = log_dir / f"{name}-{port}.log"
        self._log = self.log_path.open("wb")
        # cwd decides which tree's code `python -m daphne gatewaysite.asgi:...` imports (compare mode).
        self.process = subprocess.Popen(args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=self._log,
                                        stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        self.ps = psutil.Process(self.process.pid)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HarnessError(f"{self.name} exited with code {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self.ready_path is None:
                    socket.create_connection((HOST, self.port), timeout=0.5).close()
                    return
                if httpx.get(self.url + self.ready_path, timeout=2.0, trust_env=False).status_code == 200:
                    return
            except (OSError, httpx.HTTPError):
                pass
            time.sleep(0.1)
        raise HarnessError(f"{self.name} was not ready on port {self.port} after {timeout:.0f}s:\n{self.log_tail()}")

    def alive(self) -> bool:
        return self.process.poll() is None

    def cpu_seconds(self) -> float:
        """Return the process's CPU time, all threads, to the nanosecond where Linux allows it.

        psutil's figure moves in 10 ms clock ticks, too coarse for a few hundred requests;
        the process CPU clock (clock_getcpuclockid) is exact and counts exited threads too.
        """
        total = _cpu_of(self.process.pid, self.ps)
        for child in self.ps.children(recursive=True):  # the workers of `python -m plumbing.listen`
            total += _cpu_of(child.pid, child)
        return total

    def rss_mb(self) -> float:
        return self.ps.memory_info().rss / 2**20

    def fds(self) -> int | None:
        try:
            return self.ps.num_fds()
        except (AttributeError, psutil.Error):
            return None

    def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait until nothing is in flight; only the gateway can tell (see ``Gateway.settle``)."""

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        self._log.close()


class Gateway(Server):
    def settle(self, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait until no stream is open and every audit row is written (the /metrics gauges)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                text = httpx.get(self.url + "/metrics", timeout=2.0, trust_env=False).text
            except httpx.HTTPError:
                return
            gauges = [float(line.split()[1]) for line in text.splitlines()
                      if line.startswith(("gateway_audit_pending ", "gateway_active_streams "))]
            if not any(gauges):
                return
            time.sleep(0.02)


class Servers:
    """Every child of a run, stopped together."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Server] = []

    def start(self, name: str, args: list[str], env: dict[str, str], *, ready_path: str | None = None,
              kind: type[Server] = Server, cwd: Path = ROOT, wait: bool = True) -> Server:
        """Start a child (from the main thread: see ``die_with_parent``); ``wait``: until it is ready."""
        port = free_port()
        args = [a.replace("{port}", str(port)) for a in args]
        server = kind(name, args, port, env, self.log_dir, ready_path, cwd)
        self.started.append(server)
        if wait:
            server.wait_ready()
        return server

    def stop(self, server: Server) -> None:
        server.stop()
        if server in self.started:
            self.started.remove(server)

    def stop_all(self) -> None:
        for server in reversed(self.started):
            try:
                server.stop()
            except Exception as exc:  # keep stopping the others
                print(f"bench: could not stop {server.name}: {exc}", file=sys.stderr)
        self.started.clear()


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    # A multiprocess metrics dir or another settings module would change what is measured.
    for name in ("PROMETHEUS_MULTIPROC_DIR", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    return env


def gateway_env(database_url: str, secret_key: str) -> dict[str, str]:
    """The production settings the gateway runs with: DEBUG off, keys required, a rate limit, INFO logs."""
    return {**base_env(), "DJANGO_SETTINGS_MODULE": "gatewaysite.settings", "DATABASE_URL": database_url,
            "DEBUG": "false", "SECRET_KEY": secret_key, "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "GATEWAY_ALLOW_ANONYMOUS": "false", "GATEWAY_RATE_LIMIT": "", "UPSTREAM_BASE_URL": "",
            "REDIS_URL": "", "LOG_LEVEL": "INFO", "GATEWAY_SHUTDOWN_GRACE": "5",
            "GATEWAY_JOURNAL_DIR": tempfile.mkdtemp(prefix="cgw-bench-journal-")}


SETUP_CODE = """
import os
from upstreams.models import ClientKey, Upstream
mock = os.environ["BENCH_MOCK_URL"]
# A tree from before the API choice (compare mode) has the supports_responses switch instead.
fields = {field.name for field in Upstream._meta.get_fields()}
def speaks(api):
    return {"api": api} if "api" in fields else {"supports_responses": api == "responses"}
Upstream.objects.create(name="bench-chat", base_url=mock + "/v1", models=os.environ["BENCH_CHAT_MODEL"],
                        **speaks("chat"))
Upstream.objects.create(name="bench-responses", base_url=mock + "/v1", models=os.environ["BENCH_RESPONSES_MODEL"],
                        **speaks("responses"))
if "api" in fields:
    Upstream.objects.create(name="bench-anthropic", base_url=mock, models=os.environ["BENCH_ANTHROPIC_MODEL"],
                            api="anthropic", prompt_caching=False)
# BENCH_TOKEN_BUDGET (a --compare-env): the key has a budget never reached, so every request is checked,
# held and settled (the budget A/B of issue 24); a tree from before budgets has none.
budget = os.environ.get("BENCH_TOKEN_BUDGET")
budgeted = budget and "token_budget" in {f.name for f in ClientKey._meta.get_fields()}
keyed = {"token_budget": int(budget)} if budgeted else {}
_, secret = ClientKey.objects.create_key("bench", rate_limit=os.environ["BENCH_RATE_LIMIT"], **keyed)
print("BENCH_KEY=" + secret)
"""


def setup_database(env: dict[str, str], mock_url: str, tree: Path = ROOT) -> str:
    """Migrate the run's fresh database, add the two upstreams and a client key; return the key's secret.

    ``tree``'s own ``manage.py`` does it, from that tree: its migrations make its schema (compare mode).
    """
    manage = [PYTHON, str(tree / "manage.py")]
    _run([*manage, "migrate", "--noinput", "-v", "0"], env, tree)
    out = _run([*manage, "shell", "-c", SETUP_CODE],
               {**env, "BENCH_MOCK_URL": mock_url, "BENCH_CHAT_MODEL": CHAT_MODEL,
                "BENCH_RESPONSES_MODEL": RESPONSES_MODEL, "BENCH_ANTHROPIC_MODEL": ANTHROPIC_MODEL,
                "BENCH_RATE_LIMIT": BENCH_RATE_LIMIT}, tree)
    for line in out.splitlines():
        if line.startswith("BENCH_KEY="):
            return line.removeprefix("BENCH_KEY=").strip()
    raise HarnessError(f"the database setup printed no key:\n{out}")


def check_imports(tree: Path, env: dict[str, str]) -> None:
    """Fail unless Python started in ``tree`` imports that tree's gateway, not another (PYTHONPATH, .pth files)."""
    out = _run([PYTHON, "-c", "import gatewaysite; print(gatewaysite.__file__)"], env, tree).strip()
    if not Path(out).resolve().is_relative_to(tree.resolve()):
        raise HarnessError(f"Python started in {tree} imports the gateway from {out}")


def audit_rows(database_url: str) -> int | None:
    """Count the audit rows in a run's SQLite database (one per API request); None if it cannot tell.

    A check on the compared trees: a variant that skipped writing them would look cheaper than it is.
    The table has kept its name across layouts (logs.RequestLog's db_table).
    """
    path = database_url.removeprefix("sqlite:///")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)) as db:
            return int(db.execute("SELECT COUNT(*) FROM upstreams_requestlog").fetchone()[0])
    except sqlite3.Error:
        return None


def stored_bytes(database_url: str) -> int | None:
    """Sum the bytes of stored responses and their items in a run's SQLite database (encrypted, as kept).

    None when it cannot tell, or when the tree has no such tables (a layout from before stored responses).
    """
    path = database_url.removeprefix("sqlite:///")
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)) as db:
            return sum(int(db.execute(f"SELECT COALESCE(SUM(LENGTH(body)), 0) FROM {table}").fetchone()[0])
                       for table in ("state_storedresponse", "state_storeditem"))
    except sqlite3.Error:
        return None


def _run(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> str:
    try:
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=SETUP_TIMEOUT,
                              preexec_fn=die_with_parent)
    except subprocess.TimeoutExpired as exc:
        raise HarnessError(f"{' '.join(args[:3])} took over {SETUP_TIMEOUT:.0f}s") from exc
    if done.returncode != 0:
        raise HarnessError(f"{' '.join(args[:3])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def new_secret_key() -> str:
    return secrets.token_urlsafe(50)
