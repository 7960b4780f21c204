# The few verbs people use. Every target installs what it needs first, so each one works on
# a fresh machine (the README's quick start is `make serve` and `make test`).
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install serve test lint services bench

install:
	@# torch first, pinned to the CPU build: otherwise pip resolves a multi-GB CUDA build.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'

# Local service on the built-in models and the SQLite file under var/. The API key for curl
# is made once, kept in var/api-key (0600) unless HAPPYKUBE_BOOTSTRAP_API_KEY is set.
serve: install
	happykube db upgrade
	@mkdir -p var && test -s var/api-key || (umask 077 && $(PYTHON) -c \
	  'import secrets; print("hk_" + secrets.token_urlsafe(32))' > var/api-key)
	@echo "API key: var/api-key   docs: http://127.0.0.1:8000/docs   dashboard: http://127.0.0.1:8265"
	HAPPYKUBE_BOOTSTRAP_API_KEY="$${HAPPYKUBE_BOOTSTRAP_API_KEY:-$$(cat var/api-key)}" \
	  serve run serve_config.yaml

services:
	bash .ci/services

lint:
	ruff check .
	ruff format --check .
	mypy

test: install services lint
	$(PYTHON) -m pytest

bench: install
	happykube bench
