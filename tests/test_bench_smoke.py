"""The benchmark harness (bench/, `make bench`) in its quickest form, so it cannot rot.

It asserts what the harness produced, never how fast: timings on a shared machine are noise
to a test (issue 6: "tests never assert wall-clock thresholds").
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.run import DEFAULT_MODES, QUICK_LEVELS

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
