# tsfm — `make help` lists the targets. The environment step (venv + editable install) runs
# automatically before train/test/eval/bench the first time, and again when pyproject.toml changes.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tsfm-installed
ARGS ?=
# pytest-xdist workers for `make test` (auto: one per core); tests of one module share a worker (their fixtures run once)
TEST_WORKERS ?= auto

.DEFAULT_GOAL := help
.PHONY: help install train pipeline test test-full test-dist lint format eval bench gpu-check clean

help: ## show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install tsfm with dev extras (torch 2.13.0 CPU build)

train: $(STAMP) ## the quickstart: a small Chronos-2 (4 x 128) on the synthetic corpus (~11 min on 2 CPU cores), then the dev-suite table; ARGS="trainer.max_steps=50"
	$(PY) -m tsfm.train $(ARGS)

pipeline: $(STAMP) ## corpus -> lr search -> train -> evaluate -> register -> serve (python -m tsfm.pipeline); ARGS="experiment=pipeline_smoke"
	$(PY) -m tsfm.pipeline $(ARGS)

test: $(STAMP) ## run the default (fast, CPU-only) test suite, on every core (TEST_WORKERS=auto; 0: one process)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope $(ARGS)

test-full: $(STAMP) ## run every test, slow and multi-process (dist) ones included
	$(PY) -m pytest -q -m "not gpu" $(ARGS)

test-dist: $(STAMP) ## run the 2-process gloo tests: every family under DDP and FSDP2 (CI stage 2, ~8 min)
	$(PY) -m pytest -q -m dist $(ARGS)

lint: $(STAMP) ## ruff lint
	$(VENV)/bin/ruff check tsfm tests experiments hydra_plugins

format: $(STAMP) ## ruff format + autofix
	$(VENV)/bin/ruff format tsfm tests experiments
	$(VENV)/bin/ruff check --fix tsfm tests experiments

eval: $(STAMP) ## evaluate; ARGS="model=seasonal_naive eval=dev"
	$(PY) -m tsfm.evaluate $(ARGS)

bench: $(STAMP) ## run every benchmark script under experiments/benchmarks (prints figures)
	for f in experiments/benchmarks/*.py; do echo "== $$f"; $(PY) $$f $(ARGS) || exit 1; done

gpu-check: $(STAMP) ## the GPU check (<= 8 min, one GPU), report in OUT=dir; ARGS="--dry-run" on a CPU
	$(PY) experiments/gpu/check.py $(ARGS)

clean: ## remove caches and run outputs (keeps .venv and data/)
	rm -rf .pytest_cache .ruff_cache logs outputs multirun lightning_logs
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
