"""How daphne listens: one process with a backlog fit for bursts, or N workers sharing one listening socket.

daphne's ``-b``/``-p`` listen with Twisted's default backlog of 50: with 500 clients
connecting at once, 14 % of them were reset, and with 1,000, 2.2 % (issue 12), before the
gateway saw them, so no audit row could say so. An endpoint string (``-e``) sets it. The
kernel caps it at ``net.core.somaxconn`` (4096 on current Linux; raise it where it is lower).

One daphne process uses one core. ``Workers`` runs N of them on one socket the parent
opened and listens on (each adopts it: ``-e fd:fileno=N``), so the kernel hands each new
connection to whichever is accepting: no port per worker and no balancer in front. A
worker that dies is replaced (the new one writes the audit rows the dead one left in its
journal, as any process starting on the host does: logs/audit/journal.py), and its live
gauges are dropped from the shared metrics (PROMETHEUS_MULTIPROC_DIR). SIGTERM to the
parent drains every worker (plumbing/shutdown.py) and waits for them before it exits.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import multiprocess

BACKLOG = 2048
APP = "gatewaysite.asgi:application"
logger = logging.getLogger("gateway")


def endpoint(host: str, port: int, backlog: int = BACKLOG) -> str:
    """Return daphne's ``-e`` endpoint for ``host:port`` (colons of an IPv6 address escaped, as Twisted wants)."""
    return f"tcp:port={port}:interface={host.replace(':', chr(92) + ':')}:backlog={backlog}"


def check_shareable(host: str) -> None:
    """Raise ValueError unless workers can share a socket on ``host``.

    IPv4 only: Twisted's ``fd:`` endpoint adopts an AF_INET socket (its string form cannot
    name another family).
    """
    if ":" in host:
        raise ValueError(f"workers share an IPv4 socket; {host} is not an IPv4 address")


def listening_socket(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A socket bound to ``host:port`` (IPv4: ``check_shareable``) and listening, that child processes inherit."""
    check_shareable(host)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def adopted(sock: socket.socket) -> str:
    """Return daphne's ``-e`` endpoint that adopts ``sock`` (an IPv4 socket listening already, with its backlog)."""
    return f"fd:fileno={sock.fileno()}"


class Workers:
    """N daphne processes serving one socket: started, replaced when one dies, drained together."""

    def __init__(self, command: list[str], count: int, sock: socket.socket, env: dict[str, str],
                 on_death: Callable[[int], None] | None = None) -> None:
        self.command, self.count, self.sock, self.env = command, count, sock, env
        self.on_death = on_death
        self.processes: list[subprocess.Popen[bytes]] = []
        self.replaced = 0
        self.stopping = False

    def start(self) -> None:
        self.processes = [self._spawn() for _ in range(self.count)]

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.command, env=self.env, pass_fds=(self.sock.fileno(),))

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def watch(self, interval: float = 0.2) -> None:
        """Replace each worker that exits, until ``stop`` (from a signal handler) is called."""
        while not self.stopping:
            for n, process in enumerate(self.processes):
                if process.poll() is not None and not self.stopping:
                    self.processes[n] = self._spawn()
                    self.replaced += 1
                    if self.on_death is not None:
                        self.on_death(process.pid)
                    logger.warning("worker %d (pid %d) exited with code %s; replaced by pid %d",
                                   n + 1, process.pid, process.returncode, self.processes[n].pid)
            time.sleep(interval)

    def stop(self, grace: float) -> None:
        """SIGTERM every worker (each drains its requests), wait for them all, then close the socket."""
        self.stopping = True
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace + 15
        for process in self.processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.sock.close()


@contextmanager
def workers_on(host: str, port: int, count: int, grace: float, app: str = APP) -> Iterator[Workers]:
    """``count`` daphne processes serving ``app`` on one socket at ``host:port``, stopped (drained) on the way out.

    They share their metrics through PROMETHEUS_MULTIPROC_DIR: the one set, else a directory
    of their own, removed at the end. A SIGTERM while they drain is ignored (the drain is
    already under way); SIGTERM before it raises SystemExit, which ends the block.
    """
    sock = listening_socket(host, port)
    env = os.environ.copy()
    made = "" if env.get("PROMETHEUS_MULTIPROC_DIR") else tempfile.mkdtemp(prefix="cgw-metrics-")
    if made:
        env["PROMETHEUS_MULTIPROC_DIR"] = made
    directory = env["PROMETHEUS_MULTIPROC_DIR"]
    # A dead worker's live gauges go with it (its counters stay, as they should).
    workers = Workers([sys.executable, "-m", "daphne", "-e", adopted(sock), app], count, sock, env,
                      on_death=lambda pid: multiprocess.mark_process_dead(pid, directory))
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        workers.start()
        yield workers
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        workers.stop(grace)
        signal.signal(signal.SIGTERM, previous)
        if made:
            shutil.rmtree(made, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    """``python -m plumbing.listen --workers N --port P``: the gateway's workers alone (the bench starts them so)."""
    parser = argparse.ArgumentParser(prog="python -m plumbing.listen", description=main.__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("app", nargs="?", default=APP)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with workers_on(args.host, args.port, args.workers, args.grace, args.app) as workers:
        workers.watch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
