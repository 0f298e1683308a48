# Everything runs from .venv, created from the pinned requirements on first use, on the Python minor version
# the function image runs (infra/image.py names it; a test holds this line to it).
PYTHON_VERSION := 3.12
# The first interpreter of that version that runs: on PATH, or installed by pyenv but not selected.
PYTHON ?= $(firstword $(foreach p,python$(PYTHON_VERSION) $(wildcard $(HOME)/.pyenv/versions/$(PYTHON_VERSION).*/bin/python$(PYTHON_VERSION)) /usr/local/bin/python$(PYTHON_VERSION) /usr/bin/python$(PYTHON_VERSION),$(shell $(p) -c 'import sys; assert sys.version_info[:2] == ($(subst .,$(comma),$(PYTHON_VERSION)))' >/dev/null 2>&1 && echo $(p))))
comma  := ,
VENV   := .venv
BIN    := $(VENV)/bin
# Named by version: a .venv left by another Python version is rebuilt, not reused.
STAMP  := $(VENV)/.installed-$(PYTHON_VERSION)

.PHONY: help install test test-models test-unit test-integration test-infra lint format demo local bench bench-anchors clean

help:           ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python $(PYTHON_VERSION) is needed (the function image's version); install it or pass PYTHON=..."; exit 1; }
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP) ## create .venv from the pinned requirements

test: $(STAMP) $(ASL_STAMP)  ## every test tier: unit, integration (local cloud), infra (Pulumi mocks), model projects
	$(BIN)/pytest
	$(MAKE) --no-print-directory test-models

test-models: $(STAMP)  ## each model project's unit, component and integration tests (flywheel test MODEL)
	@for project in models/*/; do $(BIN)/flywheel test "$$(basename "$$project")" || exit 1; done

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

test-integration: $(STAMP)
	$(BIN)/pytest tests/integration

test-infra: $(STAMP) $(ASL_STAMP)
	$(BIN)/pytest tests/infra

# The ASL validator the preflight holds state machines to (npm, pinned by its lock file).
ASL    := infra/preflight/asl
ASL_STAMP := $(ASL)/node_modules/.installed

$(ASL_STAMP): $(ASL)/package.json $(ASL)/package-lock.json
	npm ci --prefix $(ASL) --no-audit --no-fund --loglevel=error
	touch $(ASL_STAMP)

lint: $(STAMP) $(ASL_STAMP)  ## ruff, mypy, workflow schemas, and the deploy preflight: AWS's rules, IAM linter, ASL, image wheels
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared functions infra
	$(BIN)/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(BIN)/cfn-lint infra/bootstrap/*.yaml
	$(BIN)/python -m infra.preflight --wheels

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: $(STAMP)  ## the whole loop on the local cloud, as a story
	$(BIN)/python -m examples.demo

local: $(STAMP) ## the local cloud in the foreground (Ctrl-C stops it)
	$(BIN)/flywheel local

bench: $(STAMP) ## benchmarks: ratios against a baseline measured in the same run
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

# The peers Flywheel is measured against, each side in an environment of its own pins: MLflow beside
# Flywheel's own pins (same pandas 3, same scikit-learn), Evidently and Feast beside pandas 2, which they need.
ANCHORS := .venv-anchors
PEERS   := .venv-anchors-peers

$(ANCHORS)/.installed: requirements-anchors.txt constraints-anchors.txt requirements.txt requirements-dev.txt
	@test -n "$(PYTHON)" || { echo "Python $(PYTHON_VERSION) is needed; install it or pass PYTHON=..."; exit 1; }
	rm -rf $(ANCHORS)
	$(PYTHON) -m venv $(ANCHORS)
	$(ANCHORS)/bin/pip install --quiet --upgrade pip
	$(ANCHORS)/bin/pip install --quiet -r requirements-anchors.txt -c constraints-anchors.txt
	touch $@

$(PEERS)/.installed: requirements-anchors-peers.txt constraints-anchors-peers.txt
	@test -n "$(PYTHON)" || { echo "Python $(PYTHON_VERSION) is needed; install it or pass PYTHON=..."; exit 1; }
	rm -rf $(PEERS)
	$(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/pip install --quiet --upgrade pip
	$(PEERS)/bin/pip install --quiet -r requirements-anchors-peers.txt -c constraints-anchors-peers.txt
	touch $@

bench-anchors: $(ANCHORS)/.installed $(PEERS)/.installed ## Flywheel beside MLflow, Evidently and Feast, one run
	$(ANCHORS)/bin/python bench/anchors/run.py --peers-python $(PEERS)/bin/python

clean:
	rm -rf $(VENV) $(ANCHORS) $(PEERS) $(ASL)/node_modules .pytest_cache .mypy_cache .ruff_cache
