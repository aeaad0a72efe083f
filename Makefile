# What a user types. Every target sets up .venv on first use (pip install -e '.[dev]').
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= experiments/default.toml
ARGS   ?=
DATA   ?=

.PHONY: install train train-ddp eval test test-slow bench lint tensorboard clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## train: a small CPM on the embedded synthetic depth data (CPU, ~10 min), per-stage PCK table at the end;
## DATA=/path/to/dataset sets data.root for a real-data config (experiments/lsp.toml, mpii.toml)
train: $(STAMP)
	$(VENV)/bin/cpm train $(CONFIG) $(if $(DATA),--set data.root=$(DATA)) $(ARGS)

## train-ddp: the same run on NPROC processes of this machine (torchrun; one GPU each on CUDA, gloo on CPU)
NPROC ?= 2
train-ddp: $(STAMP)
	$(VENV)/bin/torchrun --standalone --nproc_per_node=$(NPROC) -m cpm train $(CONFIG) $(if $(DATA),--set data.root=$(DATA)) $(ARGS)

## eval: per-stage PCK of a checkpoint, e.g. make eval CKPT=runs/default/best.pt
eval: $(STAMP)
	$(VENV)/bin/cpm eval $(CKPT) $(ARGS)

## test: the fast test suite (< 10 min on 2 cores)
test: $(STAMP)
	$(PY) -m pytest -q

## test-slow: the long tests (real training runs)
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

## bench: speed of training, data, targets, decoders and inference, side by side in one run
BENCH_CONFIGS ?= experiments/default.toml
bench: $(STAMP)
	$(PY) -m cpm.bench $(BENCH_CONFIGS)
	$(PY) -m cpm.bench_decode

lint: $(STAMP)
	$(VENV)/bin/ruff check .

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir runs --bind_all

clean:
	rm -rf runs .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
