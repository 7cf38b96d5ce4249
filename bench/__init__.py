"""The benchmark harness of issue 6: the gateway measured against the direct upstream and a bare relay.

``make bench`` (``python -m bench``) starts on loopback, each in its own process, a fast mock
upstream (``bench/mock.py``), the bare relay floor (``bench/floor.py``), the gateway under
daphne, and the load generator (``bench/load.py``); ``bench/run.py`` drives them and
``bench/report.py`` prints the table and writes ``bench/results/latest.json``. Nothing here is
imported by the gateway, and ``make test`` only runs a smoke run (tests/test_bench_smoke.py).

    make bench                                   # levels 1,50,200,500, six modes, uvicorn at 50
    make bench BENCH_ARGS="--quick"              # a few requests per mode at 1 and 2
    python -m bench --levels 1,50 --profile bridge@50    # + a py-spy profile of the gateway
    python -m bench --soak-only                  # 20,000 bridged requests at 50, RSS every 1,000
    python -m bench --compare old=../baseline --levels 1,50 --rounds 5   # A/B against another tree
    python -m bench.codex.compaction --history-kb 400  # the gateway's remote compaction of a long Codex history
    python -m bench.parts.budget --requests 3000 --rounds 5   # the CPU a budget costs a request (check, hold, settle)
    python -m bench.parts.pools --sessions 6 --turns 10       # first token per turn in a pool, affinity or not
    python -m bench --compare two=. --compare-env two:BENCH_WORKERS=2 --levels 50   # two workers against one
"""
