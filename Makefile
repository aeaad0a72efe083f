# What a user types. Every target sets up .venv on first use (pip install -e '.[dev]').
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= experiments/default.toml
ARGS   ?=
DATA   ?=

.PHONY: install train train-ddp eval test test-slow bench lint tensorboard clean \
        ablate-supervision compare-heads compare-decoders report

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## train: a small CPM on the embedded synthetic depth data (CPU, ~13 min on 2 cores), per-stage PCK table at the end;
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
BENCH_CONFIGS ?= experiments/default.toml experiments/paper_lsp.toml
bench: $(STAMP)
	$(PY) -m cpm.bench $(BENCH_CONFIGS)
	$(PY) -m cpm.bench.decoders

## bench-accuracy: the accuracy cost of bf16: CONFIG trained twice with the same seed, train.amp=off and bf16,
## both final PCKs (two full training runs)
.PHONY: bench-accuracy
bench-accuracy: $(STAMP)
	$(PY) -m cpm.bench.accuracy $(CONFIG) $(ARGS)

## ablate-supervision, compare-heads, compare-decoders: the experiment grids of cpm/experiments/, each run into
## runs/<target>/<name> (finished runs are skipped), tables and plots into experiments/results/<target>.md;
## BUDGET=default fits each in 90 min on 2 CPU cores, BUDGET=smoke takes minutes (into runs/smoke/),
## BUDGET=full (the make-train model) and BUDGET=paper (the paper's network, 368 px) for a GPU
BUDGET ?= default
ablate-supervision compare-heads compare-decoders: $(STAMP)
	$(PY) -m cpm.experiments $@ --budget $(BUDGET) $(ARGS)

## report: rebuild the experiment tables and plots from the run directories, without training
report: $(STAMP)
	$(PY) -m cpm.experiments report --budget $(BUDGET) $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir runs --bind_all

clean:
	rm -rf runs .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
