"""The benchmark harness (bench/, `make bench`) in its quickest form, so it cannot rot.

It asserts what the harness produced, never how fast: timings on a shared machine are noise
to a test (issue 6: "tests never assert wall-clock thresholds").
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.plan import DEFAULT_MODES, QUICK_LEVELS
from tests.conftest import REDIS_URL

pytestmark = pytest.mark.processes  # each test starts servers or programs

ROOT = Path(__file__).resolve().parent.parent


def test_quick_bench_measures_every_mode_with_every_request_ok(tmp_path: Path) -> None:
    """A quick run exits 0, prints the table and saves every mode at both levels, all requests complete."""
    out = tmp_path / "latest.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=240)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok/total" in done.stdout and "req/s xD" in done.stdout
    results = json.loads(out.read_text())
    measured = {(run["mode"], run["concurrency"]) for run in results["runs"]}
    assert measured == {(mode, level) for mode in DEFAULT_MODES for level in QUICK_LEVELS}
    for run in results["runs"] + results["comparison"]:
        assert run["total"] > 0 and run["ok"] == run["total"], run
        assert run["errors"] == {}, run
    assert [run["server"] for run in results["comparison"]] == ["uvicorn"]
    assert results["soak"] is None


def test_compare_mode_interleaves_the_trees_and_reports_ratios(tmp_path: Path) -> None:
    """--compare of this tree against itself (with an env override): every round of every tree, in turn."""
    out = tmp_path / "compare.json"
    done = subprocess.run([sys.executable, "-m", "bench", "--quick", "--compare", "same=.", "--compare-env",
                           "same:GATEWAY_ROUTING_TTL=0", "--concurrency", "1", "--requests", "3", "--rounds", "2",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "x current" in done.stdout
    compare = json.loads(out.read_text())["compare"]
    assert [(t["label"], t["env"]) for t in compare["trees"]] == [
        ("current", {}), ("same", {"GATEWAY_ROUTING_TTL": "0"})]
    assert [(r["tree"], r["round"]) for r in compare["runs"]] == [
        ("current", 1), ("same", 1), ("current", 2), ("same", 2)]
    for run in compare["runs"]:
        assert run["mode"] == "bridge" and run["ok"] == run["total"] == 3, run
        assert run["audit_rows_per_req"] == 1.0, run  # every request's audit row written
    same = next(s for s in compare["summary"] if s["tree"] == "same")
    assert same["rounds"] == 2 and same["vs_base"]["cpu_ms_per_req"] > 0
    assert len(same["paired"]["cpu_ms_per_req"]) == 2


def test_the_session_bench_measures_both_transports_turn_by_turn(tmp_path: Path) -> None:
    """bench.codex.session, 3 turns, 1 round: each turn measured over HTTP and over the WebSocket."""
    out = tmp_path / "session.json"
    done = subprocess.run([sys.executable, "-m", "bench.codex.session", "--turns", "3", "--rounds", "1",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "bytes ws/http" in done.stdout
    turns = json.loads(out.read_text())["per_turn"]
    assert [row["turn"] for row in turns] == [1, 2, 3]
    assert all(row[f"{t}_cpu_ms"] > 0 for row in turns for t in ("http", "websocket"))
    # The first turn is the whole request either way; later ones send only the new items over the socket.
    assert turns[0]["websocket_bytes"] >= turns[0]["http_bytes"]
    assert turns[2]["websocket_bytes"] < turns[2]["http_bytes"] and turns[1]["websocket_bytes"] == turns[2][
        "websocket_bytes"]


def test_the_compaction_bench_compacts_a_long_history_in_several_calls(tmp_path: Path) -> None:
    """bench.codex.compaction on 200 KB: more than one summarizing call (32K-token window), one sealed item."""
    out = tmp_path / "compaction.json"
    done = subprocess.run([sys.executable, "-m", "bench.codex.compaction", "--history-kb", "200",
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["history_bytes"] >= 200 * 1024 and result["upstream_calls"] >= 2
    assert result["sealed_bytes"] > result["summary_bytes"]


def test_the_cache_bench_reads_each_turns_predecessor_from_the_cache(tmp_path: Path) -> None:
    """With breakpoints, every turn after the first reads the whole request before it; without, nothing."""
    out = tmp_path / "cache.json"
    done = subprocess.run([sys.executable, "-m", "bench.codex.cache", "--turns", "4", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    turns = result["breakpoints"]["turns"]
    totals = [t["input_tokens"] + t["cache_read_input_tokens"] + t["cache_creation_input_tokens"] for t in turns]
    assert [t["cache_read_input_tokens"] for t in turns] == [0, *totals[:-1]]
    assert result["none"]["cached_share"] == 0 and 0 < result["breakpoints"]["cached_share"] < 1


@pytest.mark.parametrize("redis", [False, True], ids=["no Redis", "Redis"])
def test_the_budget_bench_holds_and_settles_through_the_ledger(tmp_path: Path, redis: bool) -> None:
    """``python -m bench.parts.budget``: each request of the budgeted key is held and settled (its total says so)."""
    out, redis_url = tmp_path / "budget.json", REDIS_URL if redis else ""
    done = subprocess.run([sys.executable, "-m", "bench.parts.budget", "--requests", "20", "--rounds", "2",
                           "--redis", redis_url, "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert [len(result["cpu_ms_per_request"][name]) for name in ("budget", "none")] == [2, 2]
    assert result["settled_tokens"] == 300 * (50 + 2 * 20)  # the warm-up's and both rounds' requests
    assert "a budget costs" in done.stdout


def test_the_pools_bench_times_each_turn_with_and_without_affinity(tmp_path: Path) -> None:
    """``python -m bench.parts.pools``: three mock members, a first-token time per turn for each way of routing."""
    out = tmp_path / "pools.json"
    done = subprocess.run([sys.executable, "-m", "bench.parts.pools", "--sessions", "2", "--turns", "3",
                           "--prefill-ms-per-kb", "1", "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert [len(result[label]["median_ttft_s"]) for label in ("affinity", "no affinity")] == [3, 3]
    assert all(t > 0 for label in ("affinity", "no affinity") for t in result[label]["median_ttft_s"])
