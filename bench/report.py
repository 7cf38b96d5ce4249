"""Figures of a benchmark run: percentiles, ratios to the direct run and the floor, the tables, the targets.

Pure: no processes, no sockets; ``bench/run.py`` feeds it the measurements (issue 6, "Output").
"""
from __future__ import annotations

import math
from typing import Any

import orjson

from bench.profile import render as render_profile

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


# --- compare mode (python -m bench --compare) -------------------------------------------

# Figures summarized per tree over the rounds: (name, how to read it from a run).
COMPARE_FIGURES = {
    "cpu_ms_per_req": lambda r: r["cpu_ms_per_req"],
    "rps": lambda r: r["rps"],
    "ttfc_p50_ms": lambda r: r["ttfc_ms"]["p50"],
    "ttfc_p99_ms": lambda r: r["ttfc_ms"]["p99"],
    "total_p50_ms": lambda r: r["total_ms"]["p50"],
    # The other trees' gateways, idle meanwhile: noise on this run if not near zero.
    "others_cpu_ms_per_req": lambda r: r.get("others_cpu_ms_per_req"),
    # Other jobs on the machine during the run (% of one core) and the hypervisor's steal.
    "foreign_cpu_pct": lambda r: r.get("foreign_cpu_pct"),
    "steal_pct": lambda r: r.get("steal_pct"),
}
RATIO_OF = ("cpu_ms_per_req", "rps", "ttfc_p50_ms")


def median(values: list[float]) -> float | None:
    """Return the median (the mean of the middle two for an even count); None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _spread(values: list[float]) -> dict[str, float | list[float] | None]:
    mid = median(values)
    low, high = (min(values), max(values)) if values else (None, None)
    spread = (high - low) / mid * 100 if mid and low is not None and high is not None else None
    return {"median": mid, "min": low, "max": high, "spread_pct": spread, "rounds": values}


def compare_summary(runs: list[Run], labels: list[str], base: str) -> list[dict[str, Any]]:
    """Per mode, level and tree: medians over the rounds, their spread, and ratios to ``base``.

    The rounds interleave the trees, so round r of each tree met much the same machine: the
    per-round ratios (``paired``) show how much of a difference the noise could explain.
    """
    groups: dict[tuple[str, int], dict[str, list[Run]]] = {}
    for run in runs:
        groups.setdefault((run["mode"], run["concurrency"]), {}).setdefault(run["tree"], []).append(run)
    summary: list[dict[str, Any]] = []
    for (mode, level), by_tree in groups.items():
        base_runs = {r["round"]: r for r in by_tree.get(base, [])}
        base_stats = _stats(list(base_runs.values()))
        for label in labels:
            tree_runs = by_tree.get(label, [])
            if not tree_runs:
                continue
            entry = _compared(mode, level, label, tree_runs)
            if label != base and base_runs:
                entry["vs_base"] = {name: _ratio(entry[name]["median"], base_stats[name]["median"])
                                    for name in RATIO_OF}
                entry["paired"] = {name: [_ratio(COMPARE_FIGURES[name](r), COMPARE_FIGURES[name](base_runs[r["round"]]))
                                          for r in tree_runs if r["round"] in base_runs]
                                   for name in RATIO_OF}
            summary.append(entry)
    return summary


def _stats(runs: list[Run]) -> dict[str, dict[str, Any]]:
    """Each compared figure's median, range and spread over ``runs``."""
    return {name: _spread([v for r in runs if (v := read(r)) is not None]) for name, read in COMPARE_FIGURES.items()}


def _compared(mode: str, level: int, label: str, tree_runs: list[Run]) -> dict[str, Any]:
    """One tree's entry of the summary, before its ratios to the base."""
    audit = [r["audit_rows_per_req"] for r in tree_runs if r.get("audit_rows_per_req") is not None]
    return {"mode": mode, "concurrency": level, "tree": label, "rounds": len(tree_runs),
            "ok": sum(r["ok"] for r in tree_runs), "total": sum(r["total"] for r in tree_runs),
            "audit_rows_per_req": [min(audit), max(audit)] if audit else None, **_stats(tree_runs),
            "vs_base": None, "paired": None}


def _range(low: float | None, high: float | None, digits: int) -> str:
    return "-" if low is None or high is None else f"{low:.{digits}f}-{high:.{digits}f}"


def _paired_range(values: list[float | None] | None) -> str:
    known = [v for v in values or [] if v is not None]
    return f"{min(known):.2f}-{max(known):.2f} ({median(known):.2f})" if known else "-"


def compare_table(summary: list[dict[str, Any]], base: str) -> str:
    header = ["mode", "c", "tree", "rounds", "ok/total", "CPU ms/req", "CPU range", "req/s", "req/s range",
              "TTFC p50", "audit/req", "foreign % max", f"CPU x {base}", "per round (med)", f"req/s x {base}",
              "per round (med)", f"TTFC x {base}"]
    rows = []
    for s in summary:
        cpu, rps, ttfc = s["cpu_ms_per_req"], s["rps"], s["ttfc_p50_ms"]
        vs, paired = s.get("vs_base") or {}, s.get("paired") or {}
        audit = s.get("audit_rows_per_req")
        rows.append([s["mode"], str(s["concurrency"]), s["tree"], str(s["rounds"]), f"{s['ok']}/{s['total']}",
                     _num(cpu["median"], 3), _range(cpu["min"], cpu["max"], 3), _num(rps["median"]),
                     _range(rps["min"], rps["max"], 1), _num(ttfc["median"], 2),
                     "-" if audit is None else _range(audit[0], audit[1], 2), _num(s["foreign_cpu_pct"]["max"], 0),
                     _x(vs.get("cpu_ms_per_req")), _paired_range(paired.get("cpu_ms_per_req")),
                     _x(vs.get("rps")), _paired_range(paired.get("rps")), _x(vs.get("ttfc_p50_ms"))])
    return _table(header, rows)


def figures(mode: str, level: int, server_label: str, ready: str, result: dict[str, Any], before: dict[str, Any],
             after: dict[str, Any], *, with_mock: bool) -> dict[str, Any]:
    """One run's figures: the load generator's, and what the snapshots before and after say per request.

    ``with_mock``: the mock served beside the subject (its CPU is not the machine's foreign load).
    """
    total = max(result["total"], 1)
    warm = orjson.loads(ready.removeprefix("READY ")) if ready.startswith("READY ") else None
    wall = max(after["wall"] - before["wall"], 1e-9)
    return {
        "mode": mode, "server": server_label,
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
                            - (after["mock_cpu"] - before["mock_cpu"] if with_mock else 0.0)
                            - result["loadgen_cpu_s"] - (after["harness_cpu"] - before["harness_cpu"])) / wall * 100,
        # The hypervisor's steal time, same unit: CPU the VM was denied.
        "steal_pct": (after["steal"] - before["steal"]) / wall * 100,
        # One per request when every audit row was written (the gateway modes; None if unknown).
        "audit_rows_per_req": _per_request(before, after, "audit", total),
        # Bytes of stored responses (Response object and items, encrypted) per request.
        "stored_bytes_per_req": _per_request(before, after, "stored", total),
    }


def _per_request(before: dict[str, Any], after: dict[str, Any], name: str, total: int) -> float | None:
    if before.get(name) is None or after.get(name) is None:
        return None
    return float(after[name] - before[name]) / total


def print_results(results: dict[str, Any]) -> None:
    """Print a run's tables: its figures and ratios, the comparison, the soak, the targets and the profiles."""
    config, runs, comparison, soak = results["config"], results["runs"], results["comparison"], results["soak"]
    meta = results["meta"]
    print(f"\ncodex-gateway bench  {meta['date']}  {meta['cpu_count']} CPU ({meta['cpu_model']}), "
          f"{meta['memory_gb']} GB, {meta['platform']}, Python {meta['python']}, commit {meta['commit']}")
    print(f"{config['deltas']} deltas per answer, {config['delay_ms']:g} ms between deltas; times in ms; "
          "CPU = the serving process's CPU time per request (the mock's for direct)\n")
    if runs:
        print(figures_table(runs))
        print("\nratios: xD = to direct at the same concurrency, xF = to the bare relay floor; "
              "+ms = TTFC p50 added over direct\n")
        print(ratios_table(runs))
        stored = [r for r in runs if r.get("stored_bytes_per_req")]
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
        base = compare["base"]
        print(f"\nmedians over the rounds; 'x {base}' = ratio of the medians to the current tree's, "
              "'per round' = the range of the ratios round by round\n")
        print(compare_table(compare["summary"], base))
    if comparison:
        print("\nanother ASGI server, same gateway app:\n")
        print(comparison_table(comparison))
    if soak:
        print(f"\nsoak: {soak['ok']}/{soak['total']} bridged requests at c={soak['concurrency']}, "
              f"{soak['rps']:.1f} req/s; RSS {_mb(soak['rss_baseline_mb'])} MB at request "
              f"{soak['baseline_request']} -> {_mb(soak['rss_end_mb'])} MB at the end "
              f"({_pct(soak['rss_growth_pct'])}); open fds {soak['fds_before']} -> {soak['fds_after']}\n")
        print(soak_table(soak))
    if results["targets"]:
        print()
        print(targets_table(results["targets"]))
    for summary in results["profiles"]:
        print(f"\nprofile of the serving process, {summary['mode']} at c={summary['concurrency']} "
              f"({summary['file']}):")
        print(render_profile(summary))


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f} %"
