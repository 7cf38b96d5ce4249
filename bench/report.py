"""Figures of a benchmark run: percentiles, ratios to the direct run and the floor, the tables, the targets.

Pure: no processes, no sockets; ``bench/run.py`` feeds it the measurements (issue 6, "Output").
"""
from __future__ import annotations

import math
from typing import Any

Run = dict[str, Any]
# Figures compared as ratios: (key in a run, how to read it).
RATIO_FIGURES = {
    "rps": lambda r: r["rps"],
    "ttfc_p50": lambda r: r["ttfc_ms"]["p50"],
    "ttfc_p99": lambda r: r["ttfc_ms"]["p99"],
    "total_p50": lambda r: r["total_ms"]["p50"],
    "total_p99": lambda r: r["total_ms"]["p99"],
    "cpu": lambda r: r["cpu_ms_per_req"],
}
FD_SLACK = 2


def percentile(ordered: list[float], p: float) -> float | None:
    """Return the nearest-rank ``p``th percentile of an ascending list."""
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize(values: list[float]) -> dict[str, float | int | None]:
    ordered = sorted(values)
    return {"n": len(ordered), "mean": sum(ordered) / len(ordered) if ordered else None,
            "p50": percentile(ordered, 50), "p90": percentile(ordered, 90), "p99": percentile(ordered, 99),
            "max": ordered[-1] if ordered else None}


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base <= 0:
        return None
    return value / base


def add_ratios(runs: list[Run]) -> None:
    """Give every run its figures as ratios to the direct run (and gateway runs to the floor) at its level."""
    by_key = {(r["mode"], r["server"], r["concurrency"]): r for r in runs}
    for run in runs:
        level = run["concurrency"]
        direct = by_key.get(("direct", "mock", level))
        floor = by_key.get(("floor", "daphne", level))
        run["vs_direct"] = ratios(run, direct) if direct and run is not direct else None
        run["vs_floor"] = ratios(run, floor) if floor and run["mode"] not in ("direct", "floor") else None
        run["ttfc_added_p50_ms"] = _added(run, direct)
        run["ttfc_added_p99_ms"] = _added(run, direct, "p99")


def ratios(run: Run, base: Run) -> dict[str, float | None]:
    """Return every figure of ``run`` divided by the same figure of ``base``."""
    return {name: _ratio(read(run), read(base)) for name, read in RATIO_FIGURES.items()}


def _added(run: Run, direct: Run | None, key: str = "p50") -> float | None:
    if direct is None or run["ttfc_ms"][key] is None or direct["ttfc_ms"][key] is None:
        return None
    return run["ttfc_ms"][key] - direct["ttfc_ms"][key]


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def figures_table(runs: list[Run]) -> str:
    header = ["mode", "server", "c", "ok/total", "req/s", "TTFC p50", "TTFC p99", "total p50", "total p99",
              "CPU ms/req", "mock CPU", "up conn/req", "RSS MB before>after"]
    rows = [[r["mode"], r["server"], str(r["concurrency"]), f"{r['ok']}/{r['total']}", _num(r["rps"]),
             _num(r["ttfc_ms"]["p50"], 2), _num(r["ttfc_ms"]["p99"], 2), _num(r["total_ms"]["p50"], 2),
             _num(r["total_ms"]["p99"], 2), _num(r["cpu_ms_per_req"], 2), _num(r["mock_cpu_ms_per_req"], 2),
             _num(r["mock_connections_per_req"], 2), f"{_num(r['rss_before_mb'])}>{_num(r['rss_after_mb'])}"]
            for r in runs]
    return _table(header, rows)


def ratios_table(runs: list[Run]) -> str:
    header = ["mode", "server", "c", "req/s xD", "TTFC50 xD", "TTFC99 xD", "tot50 xD", "tot99 xD", "CPU xD",
              "TTFC50 +ms", "req/s xF", "TTFC50 xF", "tot50 xF", "CPU xF"]
    rows = []
    for r in runs:
        d, f = r.get("vs_direct") or {}, r.get("vs_floor") or {}
        rows.append([r["mode"], r["server"], str(r["concurrency"]), _x(d.get("rps")), _x(d.get("ttfc_p50")),
                     _x(d.get("ttfc_p99")), _x(d.get("total_p50")), _x(d.get("total_p99")), _x(d.get("cpu")),
                     _num(r.get("ttfc_added_p50_ms"), 2), _x(f.get("rps")), _x(f.get("ttfc_p50")),
                     _x(f.get("total_p50")), _x(f.get("cpu"))])
    return _table(header, rows)


def targets(runs: list[Run], soak: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Check the issue's targets that this run measured; the others are left out."""
    at = {(r["mode"], r["server"], r["concurrency"]): r for r in runs}
    checks: list[dict[str, Any]] = []

    def check(name: str, value: float | None, limit: float, higher_is_better: bool, shown: str) -> None:
        verdict = None if value is None else (value >= limit if higher_is_better else value <= limit)
        checks.append({"target": name, "value": value, "limit": limit, "shown": shown,
                       "met": verdict})

    bridge50, direct50, floor50 = (at.get((m, s, 50)) for m, s in
                                   (("bridge", "daphne"), ("direct", "mock"), ("floor", "daphne")))
    if bridge50 and direct50:
        value = _ratio(bridge50["rps"], direct50["rps"])
        check("bridge c50 req/s >= 0.5x direct", value, 0.5, True, _x(value))
    if bridge50 and floor50:
        value = _ratio(bridge50["rps"], floor50["rps"])
        check("bridge c50 req/s >= 0.85x floor", value, 0.85, True, _x(value))
        value = _ratio(bridge50["cpu_ms_per_req"], floor50["cpu_ms_per_req"])
        check("bridge c50 CPU/req <= 1.4x floor", value, 1.4, False, _x(value))
        bridge_added, floor_added = bridge50.get("ttfc_added_p50_ms"), floor50.get("ttfc_added_p50_ms")
        # A floor that adds nothing measurable leaves the ratio undefined.
        value = _ratio(bridge_added, floor_added) if floor_added and floor_added > 0.05 else None
        check("bridge c50 TTFC p50 added <= 1.2x floor's", value, 1.2, False,
              f"{_num(bridge_added, 2)} ms vs {_num(floor_added, 2)} ms")
    bridge1 = at.get(("bridge", "daphne", 1))
    if bridge1 and bridge1.get("ttfc_added_p50_ms") is not None:
        value = bridge1["ttfc_added_p50_ms"]
        check("bridge c1 TTFC p50 added <= 5 ms", value, 5.0, False, f"{_num(value, 2)} ms")
    bridge500 = at.get(("bridge", "daphne", 500))
    if bridge500:
        failed = bridge500["total"] - bridge500["ok"]
        check("500 concurrent bridged streams all complete", failed, 0, False,
              f"{bridge500['ok']}/{bridge500['total']}")
    if soak:
        growth = soak.get("rss_growth_pct")
        end = soak["samples"][-1]["requests"] if soak.get("samples") else "end"
        check(f"soak RSS growth {soak.get('baseline_request')}->{end} < 5 %", growth, 5.0, False,
              f"{_num(growth, 2)} %")
        fds = soak["fds_after"] - soak["fds_before"] if soak.get("fds_after") is not None else None
        # Same sockets open at both snapshots (the load generator's, idle); a pooled upstream
        # connection or SQLite's WAL files may come and go, hence the slack of two.
        check(f"soak open fds do not grow (+-{FD_SLACK})", fds, FD_SLACK, False,
              f"{soak.get('fds_before')}>{soak.get('fds_after')}")
    return checks


def targets_table(checks: list[dict[str, Any]]) -> str:
    rows = [[c["target"], c["shown"], {True: "met", False: "MISSED", None: "n/a"}[c["met"]]] for c in checks]
    return _table(["target (issue 6)", "measured", "verdict"], rows)


def soak_table(soak: dict[str, Any]) -> str:
    rows = [[str(s["requests"]), str(s["ok"]), _num(s["rss_mb"]), str(s.get("fds", "-"))] for s in soak["samples"]]
    return _table(["requests", "ok", "RSS MB", "fds"], rows)


def comparison_table(rows: list[Run]) -> str:
    header = ["mode", "server", "c", "ok/total", "req/s", "TTFC p50", "total p50", "total p99", "CPU ms/req",
              "req/s vs daphne", "CPU vs daphne"]
    return _table(header, [[r["mode"], r["server"], str(r["concurrency"]), f"{r['ok']}/{r['total']}",
                            _num(r["rps"]), _num(r["ttfc_ms"]["p50"], 2), _num(r["total_ms"]["p50"], 2),
                            _num(r["total_ms"]["p99"], 2), _num(r["cpu_ms_per_req"], 2),
                            _x((r.get("vs_daphne") or {}).get("rps")), _x((r.get("vs_daphne") or {}).get("cpu"))]
                           for r in rows])
