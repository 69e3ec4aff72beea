# Two entry points (README): `make demo` runs the main job end to end, `make test` runs the test suite.
# Each creates .venv and installs what it needs on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-slow lint format venv protos clean system-deps container-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sensorium-serve demo

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Debian packages the tests start for real: PostgreSQL, Prometheus (+ promtool), Chromium (idempotent).
system-deps:
	scripts/ensure_postgres.sh
	scripts/ensure_prometheus.sh
	scripts/ensure_chromium.sh

# podman + debootstrap: the slow container test builds the Dockerfile for real (only `make test-slow` needs them).
container-deps:
	scripts/ensure_podman.sh

test: lint system-deps
	$(PY) -m pytest

# Slow end-to-end tests (CI runs them after `make test`), the container image build among them.
test-slow: $(STAMP) system-deps container-deps
	$(PY) -m pytest -m slow

# Regenerate the gRPC stubs from protos/ (a test fails when they are stale).
protos: $(STAMP)
	$(PY) scripts/gen_protos.py

clean:
	rm -rf runs .pytest_cache .ruff_cache
