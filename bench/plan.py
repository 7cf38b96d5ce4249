"""What a benchmark run measures: the modes, the concurrency levels, the trees compared, and its command line.

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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.servers import ANTHROPIC_MODEL, CHAT_MODEL, RESPONSES_MODEL, ROOT, Server

DEFAULT_OUT = ROOT / "bench" / "results" / "latest.json"
DEFAULT_LEVELS = (1, 50, 200, 500)
QUICK_LEVELS = (1, 2)
QUICK_REQUESTS = 5


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
    # /v1/responses bridged to Anthropic Messages (bridge/dialects/anthropic/): against "bridge", the Chat bridge.
    Mode("anthropic", "gateway", "/v1/responses", "responses", _responses_body(ANTHROPIC_MODEL, True)),
)}
DEFAULT_MODES = ("direct", "floor", "chat", "responses", "bridge", "bridge-json", "bridge-stored", "anthropic")
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


def _compare_only(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse what compare mode does not measure; it runs no uvicorn pass."""
    others = [name for name in args.modes if MODES[name].target != "gateway"]
    if others:
        parser.error(f"--compare measures gateway modes only, not {', '.join(others)}")
    if args.soak or args.soak_only or args.profile:
        parser.error("--compare does not combine with --soak, --soak-only or --profile")
    args.uvicorn = False


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
    return _completed(parser, parser.parse_args(argv))


def _completed(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.Namespace:
    """Fill in the defaults that depend on other arguments, and refuse what does not combine."""
    if args.quick:
        args.levels = args.levels or list(QUICK_LEVELS)
        args.requests = args.requests or QUICK_REQUESTS
    args.trees = _trees(parser, args)
    args.levels = args.levels or list(COMPARE_LEVELS if args.trees else DEFAULT_LEVELS)
    args.modes = args.modes or list(COMPARE_MODES if args.trees else DEFAULT_MODES)
    if args.trees:
        _compare_only(parser, args)
    if args.soak_only:
        args.soak = True
    if args.uvicorn_level is None:
        args.uvicorn_level = 50 if 50 in args.levels else max(args.levels)
    return args
