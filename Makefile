# What a user types (`make help` lists the targets). Each target sets up .venv on first use with what it needs:
# training and the experiments `pip install -e .`, bench adds the onnx extra, test and lint '.[dev]'.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
RUN_STAMP  := $(VENV)/.installed-run
ONNX_STAMP := $(VENV)/.installed-onnx
CONFIG ?= experiments/default.toml
ARGS   ?=
DATA   ?=

.PHONY: install train train-scenes train-paf train-ddp eval test test-slow bench lint tensorboard clean \
        ablate-supervision compare-heads compare-decoders report

.DEFAULT_GOAL := help

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP) $(RUN_STAMP) $(ONNX_STAMP)

# Training, evaluation and prediction: the runtime dependencies alone (no onnx, hypothesis, notebooks).
$(RUN_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e .
	touch $(RUN_STAMP)

$(ONNX_STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[onnx]'
	touch $(ONNX_STAMP) $(RUN_STAMP)

.PHONY: help
## help: this list of targets, one line each
help:
	@echo "make train [CONFIG=...] [DATA=...] [ARGS=...]  train CONFIG (experiments/default.toml: a 2-stage CPM, CPU)"
	@echo "make train-scenes [ARGS=...]                   many people: top-down CPM on 1-5-person depth scenes, COCO AP"
	@echo "make train-paf [ARGS=...]                      many people bottom-up: part affinity fields on the same scenes"
	@echo "make train-ddp NPROC=2 [CONFIG=...]            the same run on NPROC processes (torchrun)"
	@echo "make eval CKPT=runs/default/best.pt            per-stage PCK of a checkpoint on its held-out split"
	@echo "make test                                      the fast test suite (installs '.[dev]')"
	@echo "make test-slow                                 the long tests (real training runs)"
	@echo "make bench                                     speed of training, data, targets, decoders, inference"
	@echo "make bench-accuracy [CONFIG=...]               the accuracy cost of bf16: CONFIG trained in fp32 and bf16"
	@echo "make speedrun CONFIGS='a.toml b.toml' [ARGS=]  time to make train's accuracy of each recipe, side by side"
	@echo "make gpu-check [MINUTES=8]                     on a CUDA machine: CUDA tests, paper step, make train"
	@echo "make ablate-supervision [BUDGET=...]           stages x intermediate supervision grid (cpm/experiments)"
	@echo "make compare-heads [BUDGET=...]                heatmap vs regression vs integral heads x backbones grid"
	@echo "make compare-decoders [BUDGET=...]             every eval.decoder on the same trained models"
	@echo "make report                                    rebuild the experiment tables from committed summaries"
	@echo "make docs                                      regenerate docs/configuration.md from cpm/config.py"
	@echo "make lint                                      ruff check ."
	@echo "make tensorboard                               TensorBoard on runs/"
	@echo "make install                                   set up .venv with '.[dev]' only"
	@echo "make clean                                     remove runs/ and caches (not .venv)"
	@echo "make help                                      this list"

install: $(STAMP)

## train: a small CPM on the embedded synthetic depth data, posed by the procedural prior and, where ../shared/data
## has them, real motion (2 CPU cores: ~33 min on an AVX2-only CPU in fp32; cpm train says which CPU it found),
## per-stage PCK tables at the end, per pose source;
## DATA=/path/to/dataset sets data.root for a real-data config (experiments/lsp.toml, mpii.toml)
train: $(RUN_STAMP)
	$(VENV)/bin/cpm train $(CONFIG) $(if $(DATA),--set data.root=$(DATA)) $(ARGS)

## train-scenes: make train's model top-down on many people: depth scenes of 1-5 people rendered once into
## SCENES (COCO keypoints files), a crop per person's box, COCO keypoint AP of the held-out scenes at the end
SCENES ?= runs/scenes-data
train-scenes: $(RUN_STAMP)
	test -f $(SCENES)/train/annotations.json || $(VENV)/bin/cpm data render-scenes $(SCENES)/train --scenes 4000 --seed 0
	test -f $(SCENES)/val/annotations.json || $(VENV)/bin/cpm data render-scenes $(SCENES)/val --scenes 300 --seed 1000
	$(VENV)/bin/cpm train experiments/scenes.toml --set data.root=$(SCENES) $(ARGS)

## train-paf: bottom-up on the same scenes: part affinity fields (experiments/paf.toml), COCO AP at the end
train-paf: $(RUN_STAMP)
	test -f $(SCENES)/train/annotations.json || $(VENV)/bin/cpm data render-scenes $(SCENES)/train --scenes 4000 --seed 0
	test -f $(SCENES)/val/annotations.json || $(VENV)/bin/cpm data render-scenes $(SCENES)/val --scenes 300 --seed 1000
	$(VENV)/bin/cpm train experiments/paf.toml --set data.root=$(SCENES) $(ARGS)

## train-ddp: the same run on NPROC processes of this machine (torchrun; one GPU each on CUDA, gloo on CPU)
NPROC ?= 2
train-ddp: $(RUN_STAMP)
	$(VENV)/bin/torchrun --standalone --nproc_per_node=$(NPROC) -m cpm train $(CONFIG) $(if $(DATA),--set data.root=$(DATA)) $(ARGS)

## eval: per-stage PCK of a checkpoint, e.g. make eval CKPT=runs/default/best.pt
eval: $(RUN_STAMP)
	$(VENV)/bin/cpm eval $(CKPT) $(ARGS)

## test: the fast test suite (< 10 min on 2 cores), in TEST_WORKERS pytest-xdist processes of one thread each
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --durations=25

## test-slow: the long tests (real training runs)
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

## bench: speed of training, data, targets, decoders and inference, side by side in one run
BENCH_CONFIGS ?= experiments/default.toml experiments/paper_lsp.toml
bench: $(ONNX_STAMP)
	$(PY) -m cpm.bench $(BENCH_CONFIGS)
	$(PY) -m cpm.bench.decoders
	$(PY) -m cpm.bench.grouping
	$(PY) -m cpm.bench.variants experiments/default.toml --variant strided-1=model.trunk_strided_levels=1 \
		--variant strided-3=model.trunk_strided_levels=3

## gpu-check: on a CUDA machine, <= MINUTES (8) minutes: the CUDA tests, the paper step fp32 vs bf16 (+ compile) with
## TFLOP/s and the share of the bf16 peak, make train on the GPU, and grid cells (--parallel 3); all under OUT
MINUTES ?= 8
.PHONY: gpu-check
gpu-check: $(STAMP)
	$(PY) -m cpm.bench.gpu_check --minutes $(MINUTES) $(if $(OUT),--out $(OUT))

## speedrun: time to accuracy of recipes side by side in one sitting (the first of CONFIGS is the reference)
CONFIGS ?= experiments/default.toml
.PHONY: speedrun
speedrun: $(RUN_STAMP)
	$(PY) -m cpm.bench.speedrun $(CONFIGS) $(ARGS)

## bench-accuracy: the accuracy cost of bf16: CONFIG trained twice with the same seed, train.amp=off and bf16,
## both final PCKs (two full training runs)
.PHONY: bench-accuracy
bench-accuracy: $(RUN_STAMP)
	$(PY) -m cpm.bench.accuracy $(CONFIG) $(ARGS)

## ablate-supervision, compare-heads, compare-decoders: the experiment grids (cpm/experiments/): each cell is CONFIG
## (the defaults unless given) + the BUDGET overlay (BUDGET=none: CONFIG as it is) + ARGS' --set + the cell's factor,
## trained into runs/<target>/<setting>/<cell>-<hash>/; a summary per finished cell goes to
## experiments/results/runs/<target>/<setting>/ (commit it: a cell with a summary is skipped), the tables and plots
## to experiments/results/<target>/. ARGS='--only "T4-*" --set k=v --no-progress'
BUDGET ?= default
ablate-supervision compare-heads compare-decoders: $(RUN_STAMP)
	$(PY) -m cpm.experiments $@ --budget $(BUDGET) $(if $(filter command line environment,$(origin CONFIG)),--config $(CONFIG)) $(if $(DATA),--data $(DATA)) $(ARGS)

## report: rebuild every experiment table and plot from the committed cell summaries, without training
report: $(RUN_STAMP)
	$(PY) -m cpm.experiments report $(ARGS)

## docs: docs/configuration.md, the reference of every config key, generated from the dataclasses in cpm/config.py
.PHONY: docs
docs: $(RUN_STAMP)
	$(PY) -m cpm.config_reference --out docs/configuration.md

lint: $(STAMP)
	$(VENV)/bin/ruff check .

tensorboard: $(RUN_STAMP)
	$(VENV)/bin/tensorboard --logdir runs --bind_all

clean:
	rm -rf runs .pytest_cache .ruff_cache build dist *.egg-info
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
