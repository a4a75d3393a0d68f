# Switchyard: `make run` starts the whole platform on embedded defaults, `make test` runs every test.
# Both install first (uv, the locked packages, the local model runtime, the model files).

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TOOLS := .cache/tools
UV := $(shell command -v uv 2>/dev/null || echo $(TOOLS)/bin/uv)
export UV_COMPILE_BYTECODE := 1
export UV_PYTHON := $(PYTHON)
STAMP := $(VENV)/.switchyard-installed
# mypy --strict checks every package in one run; each package's src folder is on MYPYPATH.
MYPY_PACKAGES := common cli gateway classifier router executor billing audit
empty :=
MYPYPATH_ALL := $(subst $(empty) $(empty),:,$(wildcard libs/*/src services/*/src))
PYTEST_ARGS ?=
# `make test` runs the suite in this many pytest-xdist workers, a file's tests in one worker (its
# module-scoped servers started once): most of a test's time is a service process starting or a bus timer,
# so two workers on CI's two cores take ~2/3 of the serial time. TEST_WORKERS=0: one process, in order.
TEST_WORKERS ?= 2

.PHONY: install run test test-unit test-integration test-e2e lint bench bench-scaling clean docs chaos soak fuzz compose-credentials

install: $(STAMP)

$(TOOLS)/bin/uv:
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv

$(STAMP): uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml) scripts/install.sh | $(UV)
	UV="$(UV)" PYTHON="$(PYTHON)" scripts/install.sh
	@touch $@

run: install
	$(BIN)/switchyard up

test: install
	scripts/test-prerequisites.sh
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-unit: install
	$(BIN)/python -m pytest -m unit $(PYTEST_ARGS)

test-integration: install
	scripts/test-prerequisites.sh
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

test-e2e: install
	scripts/test-prerequisites.sh
	$(BIN)/python -m pytest -m e2e $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check libs services tests bench scripts
	$(BIN)/ruff format --check libs services tests bench scripts
	$(BIN)/mypy --strict scripts/verify_ledger_proof.py
	MYPYPATH=$(MYPYPATH_ALL) $(BIN)/mypy --strict $(addprefix -p switchyard.,$(MYPY_PACKAGES))

# Switchyard vs LiteLLM on one mock upstream (bench/run.py); LiteLLM goes in its own venv.
bench/.venv-litellm/bin/litellm:
	$(PYTHON) -m venv bench/.venv-litellm
	bench/.venv-litellm/bin/pip install --quiet --disable-pip-version-check 'litellm[proxy]==1.80.17'

bench: install bench/.venv-litellm/bin/litellm
	scripts/bench-prerequisites.sh
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# Switchyard alone: throughput and CPU with 1, 2 and 4 executor and gateway replicas (docs/performance.md).
bench-scaling: install
	scripts/bench-prerequisites.sh
	$(BIN)/python bench/scaling.py $(BENCH_ARGS)

# Reliability (docs/reliability.md): long forms of the bounded suites in tests/chaos, tests/soak, tests/fuzz.
CHAOS_ARGS ?=
SOAK_ARGS ?=
chaos: install
	scripts/test-prerequisites.sh
	PYTHONPATH=. $(BIN)/python -m tests.chaos.run $(CHAOS_ARGS)

soak: install
	scripts/test-prerequisites.sh
	PYTHONPATH=. $(BIN)/python -m tests.soak.run $(SOAK_ARGS)

fuzz: install
	scripts/test-prerequisites.sh
	SWITCHYARD_LONG_TESTS=1 $(BIN)/python -m pytest tests/fuzz tests/security $(PYTEST_ARGS)

# docker compose's NATS users: a password per service and their hashes for the server (kept when there).
compose-credentials: install
	$(BIN)/switchyard bus credentials deploy/nats/credentials

docs: install
	$(BIN)/switchyard asyncapi --output docs/asyncapi.yaml

clean:
	rm -rf $(VENV) $(TOOLS)
