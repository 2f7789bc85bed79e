# One-command entry points. Nothing needs activating first: every recipe puts the
# environment's bin/ on PATH itself (DVC stages call `papermill` by name).
#   make results environment + `dvc pull` of every result (checkpoints, tables, figures);
#                no computing, offline: the in-repository store
#   make repro   environment + data snapshots + `dvc repro report@pokemon tour@pokemon` (default profile);
#                `make repro DATASET=name` for any dataset of params.yaml
#   make emoji   the same for the second dataset: `make repro DATASET=emoji`
#   make test    environment + data snapshots + the test suite
#   make smoke   the whole pipeline on tiny settings, in a temporary copy of the repo
#   make test-cuda  the GPU tests (tests/test_cuda.py), on a machine with a CUDA GPU
# An already active virtualenv or conda env is used as it is; otherwise .venv is made.

PYTHON ?= python3
ifdef VIRTUAL_ENV
  ENV_DIR := $(VIRTUAL_ENV)
else ifdef CONDA_PREFIX
  ENV_DIR := $(CONDA_PREFIX)
else
  ENV_DIR := $(CURDIR)/.venv
endif
BIN := $(ENV_DIR)/bin
export PATH := $(BIN):$(PATH)
STAMP := $(ENV_DIR)/.pxby-installed
PYTEST_ARGS ?=
SMOKE_DIR ?=
DATASET ?= pokemon

.PHONY: env data results repro emoji paper test test-cuda lint smoke

env: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(ENV_DIR)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

# Restore data/ from the DVC remote (an in-repository store: works offline).
data: env
	$(BIN)/dvc pull -q data.dvc

# Every output of dvc.lock from the in-repository store, then where to look.
results: env
	$(BIN)/dvc pull -q
	@$(BIN)/dvc status -q || { echo "make results: dvc status is not clean after the pull" >&2; exit 1; }
	@echo "Every result is here (nothing was recomputed):"
	@echo "  verdicts and Table 1   reports/pokemon/claims.md, reports/pokemon/table1.md (and reports/emoji/)"
	@echo "  completions            reports/pokemon/completions.md, reports/pokemon/figures/figure1_generation.png"
	@echo "  figures                reports/pokemon/figures/ (Figure 2: figure2_training.png)"
	@echo "  executed notebooks     reports/notebooks/ (the tour: reports/notebooks/tour/pokemon.ipynb)"
	@echo "  a tour in JupyterLab   $(BIN)/jupyter lab notebooks/00_tour.ipynb"

repro: data
	$(BIN)/python -m pxby_lib.config validate params.yaml
	$(BIN)/dvc repro report@$(DATASET) tour@$(DATASET)

emoji:
	$(MAKE) repro DATASET=emoji

# The paper's schedule (profiles/paper.yaml: 200 epochs, seq_len 256) as a DVC experiment; GPU recommended.
paper: data
	$(BIN)/python -m pxby_lib.config validate params.yaml --profile profiles/paper.yaml
	$(BIN)/dvc exp run $$($(BIN)/python -m pxby_lib.config set-flags profiles/paper.yaml) report@pokemon

# pytest exits 5 when it collected nothing: that is a broken suite, not a pass.
test: data
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: the suite is missing" >&2; fi; exit $$rc

test-cuda: data
	CUBLAS_WORKSPACE_CONFIG=:4096:8 $(BIN)/python -m pytest -m cuda tests/test_cuda.py $(PYTEST_ARGS)

lint: env
	$(BIN)/ruff check pxby_lib tests benchmarks

smoke: data
	SMOKE_DIR="$(SMOKE_DIR)" bash scripts/smoke.sh
