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

## gpu-check: on a CUDA machine, <= MINUTES (8) minutes: the CUDA tests, the paper step fp32 vs bf16 (+ compile) with
## TFLOP/s and the share of the bf16 peak, make train on the GPU, and grid cells (--parallel 3); all under OUT
MINUTES ?= 8
.PHONY: gpu-check
gpu-check: $(STAMP)
	$(PY) -m cpm.bench.gpu_check --minutes $(MINUTES) $(if $(OUT),--out $(OUT))

## bench-accuracy: the accuracy cost of bf16: CONFIG trained twice with the same seed, train.amp=off and bf16,
## both final PCKs (two full training runs)
.PHONY: bench-accuracy
bench-accuracy: $(STAMP)
	$(PY) -m cpm.bench.accuracy $(CONFIG) $(ARGS)

## ablate-supervision, compare-heads, compare-decoders: the experiment grids (cpm/experiments/): each cell is CONFIG
## (the defaults unless given) + the BUDGET overlay (BUDGET=none: CONFIG as it is) + ARGS' --set + the cell's factor,
## trained into runs/<target>/<setting>/<cell>-<hash>/; a summary per finished cell goes to
## experiments/results/runs/<target>/<setting>/ (commit it: a cell with a summary is skipped), the tables and plots
## to experiments/results/<target>/. ARGS='--only "T4-*" --set k=v --no-progress'
BUDGET ?= default
ablate-supervision compare-heads compare-decoders: $(STAMP)
	$(PY) -m cpm.experiments $@ --budget $(BUDGET) $(if $(filter command line environment,$(origin CONFIG)),--config $(CONFIG)) $(if $(DATA),--data $(DATA)) $(ARGS)

## report: rebuild every experiment table and plot from the committed cell summaries, without training
report: $(STAMP)
	$(PY) -m cpm.experiments report $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir runs --bind_all

clean:
	rm -rf runs .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
