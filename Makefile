# Developer entry points. `make test` is what CI runs (.ci/run); the local stack it starts is
# left running for the next run (`make stack-down` stops it).
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Developer tooling (tools/, not part of the product package). The stack CLI imports nothing of
# the product, so the stack starts even while the product's code does not import.
STACK := $(PY) -m tools.stack
DEMO := $(PY) -m tools.demo
VENV_STAMP := $(VENV)/.installed-pyproject
DURATION ?= 60

# Commands the stack and the tests need, and the Debian packages that provide them.
DEB_COMMANDS := prometheus prometheus-alertmanager promtool kcat docker-compose java mvn
DEB_PACKAGES := prometheus prometheus-alertmanager kcat docker-compose default-jre-headless maven
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
# Byte-code caches are written even where the environment says not to (this machine sets
# PYTHONDONTWRITEBYTECODE=1): without them each pytest process rewrites the assertions of every
# test module and plugin again (~1.5 CPU-s each) and each worker or `spm` process the tests start
# compiles the product's modules again. The caches go to the ignored __pycache__/ folders.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: venv deps kafka stack-up stack-down stack-status lint check test demo bench

venv: $(VENV_STAMP)

$(VENV_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

deps:
	@missing=""; \
	for cmd in $(DEB_COMMANDS); do command -v $$cmd >/dev/null || missing="$$missing $$cmd"; done; \
	if [ -n "$$missing" ]; then \
	  echo "missing:$$missing; installing Debian packages"; \
	  $(SUDO) apt-get update; \
	  $(SUDO) apt-get install -y --no-install-recommends $(DEB_PACKAGES); \
	fi

kafka: venv
	$(STACK) jars

stack-up: venv deps kafka
	$(STACK) up

stack-down: venv
	$(STACK) down

stack-status: venv
	$(STACK) status

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint Dockerfile

# The edit-test loop: lint, types, unit tests and the in-process agent test.
# Both run test modules in parallel (pytest-xdist, --dist loadfile: a module stays on one
# worker, so its module-scoped fixtures start worker processes once). tests/conftest.py puts
# the slowest modules first and hands out the modules that must not overlap together;
# --no-loadscope-reorder keeps that order. -n as measured on 2 cores (issue 15): the tests
# mostly wait on Kafka and worker processes, so more processes than cores help: make test
# gained up to -n 5 (-n 6 was no faster), make check up to -n 3.
check: lint stack-up
	$(VENV)/bin/mypy streams
	$(VENV)/bin/pytest -q -n 3 --dist loadfile --no-loadscope-reorder tests/unit tests/integration/test_in_process.py

test: lint stack-up
	$(VENV)/bin/mypy streams
	$(VENV)/bin/pytest -q -n 5 --dist loadfile --no-loadscope-reorder tests/

# The main job: stack, worker (background, log in var/log/worker-demo.log), synthetic
# organisation and traffic with a live leaderboard for DURATION seconds, then a summary.
demo: stack-up
	@mkdir -p var/log
	$(PY) -m faust -A streams.worker worker -l info >var/log/worker-demo.log 2>&1 & worker=$$!; \
	  trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null || true' EXIT; \
	  $(DEMO) run --duration $(DURATION)

bench: stack-up
	shopt -s nullglob; for script in bench/*.py; do PYTHONPATH=. $(PY) "$$script" --duration $(DURATION); done
