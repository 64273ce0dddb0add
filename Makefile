# Two entry points: `make demo` and `make test`. Both build .venv from nothing on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

CHROMIUM := /usr/bin/chromium
# The docs' search from file:// runs its web worker through this shim (npm package, installed here).
SHIM     := $(VENV)/npm/node_modules/iframe-worker/shim/index.js

.PHONY: demo test lint typecheck bench docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.demo-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) torch==2.13.0
	$(PIP) -e '.[demo]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	touch $@ $(VENV)/.demo-installed

demo: $(VENV)/.demo-installed
	$(BIN)/gradclip demo --overwrite  # the demo replaces its own runs/demo each time it is run

# The explorer's browser tests drive Debian's chromium (no browser download: it comes from apt).
$(CHROMIUM):
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

$(SHIM): | $(BIN)/python
	command -v npm >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null)
	npm install --prefix $(VENV)/npm --no-audit --no-fund --silent iframe-worker@1.0.4

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(VENV)/.dev-installed
	$(BIN)/python -m mypy

test: lint typecheck $(CHROMIUM) $(SHIM)
	$(BIN)/python -m pytest

docs: $(VENV)/.dev-installed $(SHIM)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	@echo "open build/site/index.html (search works from disk too)"

bench: $(VENV)/.demo-installed
	$(BIN)/python bench/clip_bench.py

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache .hypothesis
