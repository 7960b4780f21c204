# The few verbs people use. Every target installs what it needs first, so each one works on
# a fresh machine (the README's quick start is `make serve` and `make test`).
PYTHON ?= python3
PIP := $(PYTHON) -m pip

.PHONY: install serve test lint services bench

install:
	@# torch first, pinned to the CPU build: otherwise pip resolves a multi-GB CUDA build.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev]'

serve: install
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
