"""Where the gateway's time goes: a py-spy sampling profile of one mode, summarized.

``python -m bench --profile bridge@50`` attaches ``py-spy record`` (not a requirement:
``pip install py-spy`` into the venv) to the gateway during an extra pass of that mode, after
the measured one, so the sampler's overhead never reaches the table. The collapsed stacks
are saved beside the results as JSON (``profile-MODE-cC.json``); this module reads them.
"""
from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from bench.servers import die_with_parent

_FILE = re.compile(r"\((.*?)(?::\d+)?\)$")
# Leaf frames that are a thread waiting, not working (see ``summarize``).
WAIT_LEAVES = frozenset({"_worker (concurrent/futures/thread.py)", "Condition.wait (threading.py)",
                         "Thread._wait_for_tstate_lock (threading.py)", "Event.wait (threading.py)"})
_THREAD_NUMBER = re.compile(r"-\d+_\d+$")  # ThreadPoolExecutor-145_0: one executor per request context
GATEWAY_PACKAGES = ("api", "bridge", "logs", "plumbing", "state", "upstreams", "gatewaysite")
STOP_TIMEOUT = 30.0


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Profiler:
    """``py-spy record`` attached to one process until ``stop()``."""

    def __init__(self, pid: int, output: Path, rate: int = 200) -> None:
        binary = py_spy()
        if binary is None:
            raise FileNotFoundError("py-spy is not installed (pip install py-spy into the venv)")
        self.output = output
        self.log = output.with_suffix(".log").open("wb")
        # --threads: per-thread stacks, to tell the event loop from the sync_to_async threads.
        self.process = subprocess.Popen([binary, "record", "--pid", str(pid), "--format", "raw", "--nolineno",
                                         "--threads", "--rate", str(rate), "--output", str(output)],
                                        stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                        preexec_fn=die_with_parent)

    def stop(self) -> bool:
        """Stop sampling and write the stacks; return whether py-spy wrote them."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_TIMEOUT)
        self.log.close()
        return self.output.exists() and self.output.stat().st_size > 0


def package_of(frame: str) -> str:
    """Return the top-level package (or stdlib module) a ``func (path/file.py)`` frame belongs to."""
    match = _FILE.search(frame)
    path = match.group(1) if match else frame
    path = path.replace("\\", "/")
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            if marker.startswith("/lib"):
                path = path.split("/", 1)[1] if "/" in path else path
    for package in GATEWAY_PACKAGES:
        if f"/{package}/" in f"/{path}":
            return package
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") or "?"


def stacks(path: Path) -> dict[str, Any]:
    """Return a raw py-spy profile as JSON-ready data: each stack (outermost frame first) with its samples."""
    rows = []
    with path.open(errors="replace") as lines:
        for line in lines:
            stack, _, count = line.rstrip("\n").rpartition(" ")
            if stack and count.isdigit():
                rows.append([stack, int(count)])
    rows.sort(key=lambda row: -row[1])
    return {"tool": "py-spy record --format raw --nolineno", "stacks": rows}


def summarize(rows: list[list[Any]], top: int = 20) -> dict[str, Any]:
    """Return the busiest threads, packages and frames of ``stacks()`` rows, as shares of the busy samples.

    py-spy counts a thread blocked in a C call made from Python (a pool thread waiting on its
    queue) as busy; those samples (``WAIT_LEAVES``) are counted apart, not as work.
    """
    total = waiting = 0
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    thread_ids: set[str] = set()
    for stack, n in rows:
        frames = stack.split(";")
        thread = ""
        if frames[0].startswith("thread ("):  # --threads: "thread (1234): MainThread"
            ident, _, name = frames.pop(0).partition(": ")
            thread_ids.add(ident)
            thread = _THREAD_NUMBER.sub("", name)
        if not frames:
            continue
        if frames[-1] in WAIT_LEAVES:
            waiting += n
            continue
        total += n
        threads[thread] += n
        self_time[frames[-1]] += n
        packages[package_of(frames[-1])] += n
        for frame in set(frames):
            inclusive[frame] += n

    def share(counter: Counter[str], limit: int) -> list[list[Any]]:
        return [[name, round(100 * n / total, 1)] for name, n in counter.most_common(limit)] if total else []

    gateway = Counter({f: n for f, n in inclusive.items() if package_of(f) in GATEWAY_PACKAGES})
    return {"samples": total, "waiting_samples": waiting, "threads_seen": len(thread_ids),
            "by_thread_pct": share(threads, top), "self_by_package_pct": share(packages, top),
            "top_self_pct": share(self_time, top), "top_inclusive_pct": share(inclusive, top),
            "gateway_inclusive_pct": share(gateway, top)}


def render(summary: dict[str, Any], top: int = 15) -> str:
    """Return the summary as text; the inclusive top frames (mostly the event loop) stay in the JSON."""
    out = [f"{summary['samples']} busy samples ({summary['waiting_samples']} more were threads waiting), "
           f"{summary['threads_seen']} threads seen"]
    for title, key in (("by thread", "by_thread_pct"), ("self time by package", "self_by_package_pct"),
                       ("top frames, self time", "top_self_pct"),
                       ("gateway frames, inclusive", "gateway_inclusive_pct")):
        out.append(f"  {title}:")
        out += [f"    {pct:5.1f}%  {name}" for name, pct in summary[key][:top]]
    return "\n".join(out)
