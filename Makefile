# Two commands do all the set-up: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# llama.cpp's own server (parallel slots, prompt cache), built from the llama.cpp source that this
# llama-cpp-python release vendors; cached per version, so only a machine's first install compiles
LLAMA_CPP_PYTHON := 0.3.36
LLAMA_SERVER := $(BIN)/llama-server
DEMO ?= bfcl_demo
export DAGSTER_HOME := $(CURDIR)/.dagster
export MAGNET_HOME ?= $(CURDIR)/.magnet
export MAGNET_TOOL_SETS_DIR ?= $(CURDIR)/tool_sets

.PHONY: install demo test test-fast lint bench dev clean

$(STAMP): pyproject.toml requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $@

$(LLAMA_SERVER): | $(STAMP)
	bash scripts/build-llama-server.sh $(BIN)/pip $(LLAMA_CPP_PYTHON) $@

install: $(STAMP) $(LLAMA_SERVER)

# The instance: embedded (SQLite under DAGSTER_HOME) by default; with DAGSTER_PG_HOST set, in the
# Postgres database the DAGSTER_PG_* variables name (dagster.postgres.yaml). Relinked on every call,
# so the variable decides each time.
DAGSTER_YAML := $(if $(DAGSTER_PG_HOST),dagster.postgres.yaml,dagster.yaml)
.PHONY: $(DAGSTER_HOME)/dagster.yaml
$(DAGSTER_HOME)/dagster.yaml: $(DAGSTER_YAML)
	mkdir -p $(DAGSTER_HOME)
	ln -sf $(CURDIR)/$(DAGSTER_YAML) $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/python -m magnet_dagster.defs.cli add $(DEMO)
	$(BIN)/dagster asset materialize -m magnet_dagster.definitions --select 'function_catalog*' --partition $(DEMO)
	$(BIN)/python -m magnet_dagster.report $(DEMO)

lint: install
	$(BIN)/ruff check magnet_dagster
	$(BIN)/ruff format --check magnet_dagster
	$(BIN)/mypy

# The fast tests (seconds, a scripted fake LLM where one is needed) first, then the integration
# tests against the real local server.
test: lint
	$(BIN)/python -m pytest -m "not integration"
	$(BIN)/python -m pytest -m integration

test-fast: lint
	$(BIN)/python -m pytest -m "not integration"

bench: install
	$(BIN)/python -m benchmarks

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf .magnet .dagster
