# The few verbs people use. Every target installs what it needs first, so each one works on
# a fresh machine (the README's quick start is `make serve` and `make test`).
#
# Everything installs from requirements.lock (exact versions, with hashes) into a virtual
# environment: the active one if there is one, else .venv here (the image installs
# requirements-runtime.lock, the same versions without the dev tools). `make lock` refreshes the lock
# from pyproject.toml's ranges; tests/unit/test_lock.py fails when the two disagree.
VENV ?= $(or $(VIRTUAL_ENV),.venv)
PYTHON := $(VENV)/bin/python
BIN := $(VENV)/bin
PIP := $(PYTHON) -m pip
# torch is locked as its CPU build (2.13.0+cpu), which is not on PyPI: pip takes it from a
# --find-links folder where the machine configures one (this workplace keeps a copy there),
# else from the PyTorch CPU index.
FIND_LINKS := $(shell python3 -m pip config list 2>/dev/null \
  | sed -n "s/.*find-links='\(.*\)'/\1/p" | head -n1)
TORCH_SOURCE := $(if $(FIND_LINKS),--find-links $(FIND_LINKS),\
  --extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
LOCK_FLAGS := --generate-hashes --python-version 3.11 \
  --python-platform x86_64-manylinux_2_28 --no-header

.PHONY: install serve test lint audit services tools bench lock

$(PYTHON):
	python3 -m venv $(VENV)

install: $(PYTHON)
	$(PIP) install --quiet --require-hashes --no-deps \
	  $(filter-out --index-strategy unsafe-best-match,$(TORCH_SOURCE)) -r requirements.lock
	@# the project itself, editable, built with the locked setuptools (no unpinned download)
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	$(PIP) check

# Local service on the built-in models and the SQLite file under var/. The API key for curl
# is made once, kept in var/api-key (0600) unless HAPPYKUBE_BOOTSTRAP_API_KEY is set.
serve: install
	$(BIN)/happykube db upgrade
	@mkdir -p var && test -s var/api-key || (umask 077 && $(PYTHON) -c \
	  'import secrets; print("hk_" + secrets.token_urlsafe(32))' > var/api-key)
	@echo "API key: var/api-key   docs: http://127.0.0.1:8000/docs   dashboard: http://127.0.0.1:8265 (token: ray get-auth-token; RAY_AUTH_MODE=token serve status)"
	PATH="$(abspath $(BIN)):$$PATH" \
	RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=serve_app.middleware.proxy_middlewares \
	HAPPYKUBE_BOOTSTRAP_API_KEY="$${HAPPYKUBE_BOOTSTRAP_API_KEY:-$$(cat var/api-key)}" \
	  $(BIN)/serve run serve_config.yaml

services:
	bash .ci/services

tools:
	bash .ci/tools

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Known advisories against the locked versions (skips with one line where no database answers).
audit:
	PATH="$(abspath $(BIN)):$$PATH" bash .ci/audit

test: install services tools lint audit
	PATH="$(abspath $(BIN)):$$PATH" $(PYTHON) -m pytest

bench: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/happykube bench

# Re-resolve requirements.lock from pyproject.toml (newest versions inside its ranges), then
# requirements-runtime.lock, the image's subset (no dev tools) at the same versions.
lock: $(PYTHON)
	echo "torch==2.13.0+cpu" | $(BIN)/uv pip compile pyproject.toml - --extra dev $(LOCK_FLAGS) \
	  $(TORCH_SOURCE) -o requirements.lock
	echo "torch==2.13.0+cpu" | $(BIN)/uv pip compile pyproject.toml - $(LOCK_FLAGS) \
	  --constraint requirements.lock $(TORCH_SOURCE) -o requirements-runtime.lock
