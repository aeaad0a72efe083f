#!/bin/sh
# Many people: bottom-up (part affinity fields) against top-down, at equal training compute, seeds paired.
#
#   sh experiments/multiperson/run.sh SEED        # the three cells of one seed, one after the other
#   python -m cpm.experiments.multiperson         # the table, from the committed cell results
#
# Cells, each on the scenes of make train-scenes (runs/scenes-data: 4,000 training frames of seed 0, 300 held-out
# frames of seed 1000, 880 people with a labeled joint), seed S in {0, 1, 2} setting train.seed and data.seed:
#   td-seedS       experiments/scenes.toml (make train's 2-stage CPM on a 128 px crop around each person's box,
#                  0.171 G forward multiply-adds a crop) for 10 epochs: 118,240 crops, 20.2 T multiply-adds
#   bu-seedS       experiments/paf.toml (3 stages, 192 px whole frames at stride 4, 1.197 G a frame), 4 epochs:
#                  16,000 frames, 19.2 T multiply-adds (make train-paf's run)
#   bu-nois-seedS  the same with train.intermediate_supervision = false (the last stage's loss alone)
# Scores (the end of each run, best.pt, the COCO API): top-down AP on ground-truth boxes and on detector-like boxes
# (flip test off and on), bottom-up AP with greedy and with optimal matching.
#
# Decision rule, fixed before the runs (paired by seed, n = 3, 95 % t-intervals of the differences in AP):
#   1. bottom-up (greedy) - top-down on ground-truth boxes, and - top-down on detector-like boxes (flip test off):
#      bottom-up is better / worse where the interval excludes 0, else no difference detected at this n.
#   2. optimal - greedy matching within each bottom-up run: the same reading.
#   3. intermediate supervision: bu - bu-nois, the same reading.
#   Every cell on one revision of cpm/ (the table names each cell's); the mean pose in each ground-truth box is the
#   table's baseline row. Budget: about 25 min a seed on a 2-core CPU with native bf16 (13 min top-down, 4 min each
#   bottom-up), nothing else running.
#
# `python -m cpm` (not the venv's `cpm` script), so that a checkout pinned for the cells runs its own code. Each
# finished cell's scores go to experiments/results/multiperson/<cell>.json (commit them); a cell whose file is
# there is skipped.
set -u
seed=${1:?usage: sh experiments/multiperson/run.sh SEED}
VENV=${VENV:-.venv}
SCENES=${SCENES:-runs/scenes-data}
OUT=experiments/results/multiperson
mkdir -p "$OUT"
test -f "$SCENES/train/annotations.json" || "$VENV/bin/python" -m cpm data render-scenes "$SCENES/train" --scenes 4000 --seed 0
test -f "$SCENES/val/annotations.json" || "$VENV/bin/python" -m cpm data render-scenes "$SCENES/val" --scenes 300 --seed 1000
cell() {
    name=$1; shift
    if [ -f "$OUT/$name.json" ]; then echo "== $name: done"; return; fi
    echo "== $name ($(date -u +%FT%TZ))"
    rm -rf "runs/multiperson/$name"  # an unfinished run of this cell starts again
    "$VENV/bin/python" -m cpm train "$@" --set "data.root=$SCENES" --set "train.seed=$seed" --set "data.seed=$seed" \
        --set "train.name=multiperson/$name" --no-progress --no-pose-sources \
        && "$VENV/bin/python" -m cpm.experiments.multiperson --collect "runs/multiperson/$name" --out "$OUT/$name.json"
}
cell "td-seed$seed" experiments/scenes.toml --set train.epochs=10
cell "bu-seed$seed" experiments/paf.toml
cell "bu-nois-seed$seed" experiments/paf.toml --set train.intermediate_supervision=false
