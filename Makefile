# The repository's commands. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch for the PyTorch Keras backend (a CPU build of this version installs offline here)
TORCH_VERSION ?= 2.13.0

.PHONY: help setup data lint format check-structure test test-demo test-unit test-notebooks test-backends reproduce report sweep rehearse rehearsal-report clean distclean

help: ## list every target with one line each
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: ## create .venv from nothing and install the package with its dev extras
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "error: Python 3.10+ is needed (3.11 recommended); set PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@echo "environment ready: $(VENV) (activate with 'source $(VENV)/bin/activate')"

data: ## fetch the real microarray sets that install here (Bioconductor ALL, golub) into data/raw/debian
	$(PY) -m common.data fetch bioc_all
	@echo "image datasets cannot be downloaded from here: python -m common.data fetch <dataset> prints the steps"

lint: ## the style gate: ruff check and ruff format --check over src/, tests/ and the notebooks
	$(VENV)/bin/ruff check src tests notebooks
	$(VENV)/bin/ruff format --check src tests notebooks

format: ## apply ruff's formatter and its safe fixes (then `make lint` shows what is left)
	$(VENV)/bin/ruff format src tests notebooks
	$(VENV)/bin/ruff check --fix src tests notebooks

test: lint test-unit test-notebooks ## run the whole suite: the style gate, unit tests, then every notebook in smoke mode (nbval)

test-demo: ## README's demo numbers vs results/canonical/ (RUN=1: rerun the demo profiles first, ~30 min; TOL=0.02)
	$(PY) -m common.demo_check $(if $(filter 1 yes true,$(RUN)),--run) $(if $(TOL),--tolerance $(TOL))

test-unit: ## pytest over tests/ (the harness itself; each notebook runs once, in test-notebooks)
	REPRO_PROFILE=smoke $(PY) -m pytest -m "not multibackend and not notebooks" tests

check-structure: ## the cell-order rules over every notebook alone (make test runs them too)
	$(PY) -m pytest -q -m structure tests/test_notebook_structure.py

test-notebooks: ## nbval over notebooks/ in the smoke profile, then check each run's declared outputs
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
	  tmp=$$(mktemp -d); \
	  REPRO_PROFILE=smoke REPRO_RESULTS_DIR=$$tmp $(PY) -m pytest --nbval-lax -p no:cacheprovider notebooks \
	    && $(PY) -m common.notebooks check $$tmp; \
	else echo "no notebooks in notebooks/ yet: nbval has nothing to run"; fi

test-backends: ## model tests under the PyTorch backend, Grad-CAM on TF/JAX/torch (installs CPU torch and jax into .venv)
	$(PY) -c 'import torch' 2>/dev/null || $(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -c 'import jax' 2>/dev/null || $(PY) -m pip install --quiet jax jaxlib
	KERAS_BACKEND=torch REPRO_PROFILE=smoke $(PY) -m pytest -m "backend or multibackend" tests

reproduce: ## run every notebook (demo profile) into results/, refresh results/canonical/, figures/ and README's demo table
	$(PY) -m common.reproduce

report: ## reviewer report over every run under results/ and the committed results/canonical/: results/report/
	$(PY) -m common.report

sweep: ## papermill sweep: make sweep SPEC=sweeps/x.yaml [SHARD=i/n] [EXECUTOR=serial|pool|submitit] [WORKERS=n]
	@test -n "$(SPEC)" || { echo "error: give the sweep spec, e.g. make sweep SPEC=sweeps/02_alhammadi_smoke_epochs.yaml (see sweeps/README.md)"; exit 2; }
	$(PY) -m common.sweep plan $(SPEC)
	$(PY) -m common.sweep run $(SPEC) $(if $(SHARD),--shard $(SHARD)) --executor $(or $(EXECUTOR),serial) $(if $(WORKERS),--workers $(WORKERS)); status=$$?; \
	  $(PY) -m common.sweep collect $(SPEC); exit $$status

rehearse: ## what a paper profile costs: make rehearse NB=04 SCALE=0.01 [PX=32] [EPOCHS=1] (see README)
	@test -n "$(NB)" || { echo "error: give the notebook, e.g. make rehearse NB=04 SCALE=0.01 (PX=, EPOCHS= reduce and are projected back)"; exit 2; }
	$(PY) -m common.rehearse $(NB) --scale $(or $(SCALE),0.01) $(if $(PX),--image-size $(PX)) $(if $(EPOCHS),--epochs $(EPOCHS))

rehearsal-report: ## fit growth from results/rehearsal/ and regenerate README's "What the paper profile costs"
	$(PY) -m common.rehearse report --readme README.md

clean: ## remove run outputs and caches (keeps .venv, data, figures/ and the committed results/rehearsal/, results/canonical/)
	find results -mindepth 1 -maxdepth 1 -not -name rehearsal -not -name canonical -exec rm -rf {} + 2>/dev/null; rm -rf .pytest_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean ## also remove .venv
	rm -rf $(VENV)
