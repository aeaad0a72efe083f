#!/bin/sh
# Fills the committed CPU grids (experiments/ablation.toml, experiments/heads.toml) in pieces, in the order that makes
# a table useful soonest: seed 0 of every cell, then seed 1, then seed 2. Cells whose summary already exists are
# skipped and an interrupted cell resumes from its last.pt, so the script can be stopped and started again at will.
#
#   nohup sh experiments/fill-grids.sh ablation > logs/ablation-grid.log 2>&1 &
#   nohup sh experiments/fill-grids.sh heads    > logs/heads-grid.log 2>&1 &
#   nohup sh experiments/fill-grids.sh heads-long > logs/heads-long.log 2>&1 &
#   nohup sh experiments/fill-grids.sh gate 0 > logs/gate-0.log 2>&1 &   # with gate 1 beside it: one seed each
#   nohup sh experiments/fill-grids.sh supervision 0 > logs/supervision-0.log 2>&1 &   # with supervision 1 beside it
#
# heads-long: the six stride-4 heads of the heads grid at four times its image budget (train.epochs=16: 48,000 images,
# the same cosine schedule stretched), three seeds; a setting of its own (compare-heads-heads+<hash>.md), which tells
# whether the heads still gaining at 12,000 images close the gap.
#
# gate SEED: the refinement gate of the intermediate-supervision study (experiments/gate/README.md): T = 1 and T = 3
# with intermediate supervision in each candidate setting, seed SEED; run `gate 0` and `gate 1` side by side.
#
# supervision LANE: the main arm of the intermediate-supervision study (experiments/supervision.toml, its seeds in
# its [grid] table): the pilot first (lane 0 T3-is-seed0, lane 1 T3-nois-seed0, at the file's length and at twice
# it), then, if `python -m cpm.experiments.pilot` says the length stands (both pilot cells within 1 point of PCK@0.1
# at twice the length), T in {1, 3, 6} x IS on / off, the seeds of the lane's parity; run lanes 0 and 1 side by side.
#
# heads-pilot LANE: the length pilot of the long heads study (experiments/heads-long.toml, step 1 of its plan): lane 0
# heatmap-sigma1-s8-seed0, lane 1 regression-grid4h-l1-s8-seed0, each at the file's length and at twice it; then
# `python -m cpm.experiments.pilot` says whether the length stands (run the lanes side by side).
#
# heads-sweep LANE: step 2 of experiments/heads-long.toml's plan, the rate sweep of the long heads study on seed LANE
# (run lanes 0 and 1 side by side), once the pilot has fixed the file's length.
#
# Each grid trains on one thread (train.threads=1), so the two grids together use two cores; each epoch's frames are
# rendered before it trains (data.prerender: the same frames and cells, no DataLoader worker rendering beside them).
# Commit each new summary under experiments/results/ with `python -m cpm.experiments report`.
set -u
PY=${PY:-.venv/bin/python}
extra=""
case "${1:-}" in
ablation)
    target=ablate-supervision; config=experiments/ablation.toml
    patterns="T4-is-seed0 T4-nois-seed0 T4-*-adamw-seed0 *-seed0 *-seed1 *-seed2 *" ;;
heads)
    target=compare-heads; config=experiments/heads.toml
    patterns="*-s4-seed0 *-s8-seed0 *-s16-seed0 *-s4-seed1 *-s8-seed1 *-s16-seed1 *-fourconv-seed0 *-vgg16-seed0 *-s4-seed2 *-fourconv-seed1 *-vgg16-seed1 *"
    ;;
heads-long)
    target=compare-heads; config=experiments/heads.toml; extra="--set train.epochs=16"
    patterns="*-s4-seed0 *-s4-seed1 *-s4-seed2" ;;
gate)
    seed=${2:?usage: sh experiments/fill-grids.sh gate SEED}
    for config in ablation-k3 train real-motion occlusion; do
        for cell in T3-is T1-is; do
            echo "== gate-$config $cell-seed$seed ($(date -u +%FT%TZ))"
            "$PY" -m cpm.experiments ablate-supervision --config "experiments/gate/gate-$config.toml" --budget none \
                --only "$cell-seed$seed" --set train.threads=1 --no-progress || echo "== $cell-seed$seed failed with status $?"
        done
    done
    exit 0 ;;
supervision)
    lane=${2:?usage: sh experiments/fill-grids.sh supervision LANE (0 or 1)}
    config=experiments/supervision.toml
    pilot=$([ "$lane" = 0 ] && echo T3-is-seed0 || echo T3-nois-seed0)
    epochs=$(sed -n 's/^epochs *= *\([0-9]*\).*/\1/p' "$config" | head -n 1)
    for extra in "" "--set train.epochs=$((2 * epochs))"; do
        echo "== supervision pilot $pilot $extra ($(date -u +%FT%TZ))"
        "$PY" -m cpm.experiments ablate-supervision --config "$config" --budget none --only "$pilot" $extra \
            --set train.threads=1 --no-progress || echo "== pilot $pilot failed with status $?"
    done
    # the rule of the file: the cells train only if both pilot cells change by under 1 point at twice the length
    # (their summaries are synced into this checkout's results while both lanes run); else this lane stops here
    while :; do
        "$PY" -m cpm.experiments.pilot "$config" --cells T3-is-seed0 T3-nois-seed0; verdict=$?
        [ "$verdict" = 3 ] || break
        sleep 120
    done
    if [ "$verdict" != 0 ]; then echo "== supervision: pilot says the length doubles; no cells trained"; exit 0; fi
    echo "== supervision cells, seeds = $lane mod 2 ($(date -u +%FT%TZ))"
    "$PY" -m cpm.experiments ablate-supervision --config "$config" --budget none --only 'T[136]-*' \
        --shard "$lane/2" --set train.threads=1 --no-progress || echo "== supervision cells failed with status $?"
    exit 0 ;;
heads-pilot)
    lane=${2:?usage: sh experiments/fill-grids.sh heads-pilot LANE (0 or 1)}
    config=experiments/heads-long.toml
    pilot=$([ "$lane" = 0 ] && echo heatmap-sigma1-s8-seed0 || echo regression-grid4h-l1-s8-seed0)
    epochs=$(sed -n 's/^epochs *= *\([0-9]*\).*/\1/p' "$config" | head -n 1)
    for extra in "" "--set train.epochs=$((2 * epochs))"; do
        echo "== heads-long pilot $pilot $extra ($(date -u +%FT%TZ))"
        "$PY" -m cpm.experiments compare-heads --config "$config" --budget none --only "$pilot" $extra \
            --set train.threads=1 --set data.prerender=true --no-progress || echo "== pilot $pilot failed with status $?"
    done
    "$PY" -m cpm.experiments.pilot "$config" --target compare-heads \
        --cells heatmap-sigma1-s8-seed0 regression-grid4h-l1-s8-seed0
    exit 0 ;;
heads-sweep)
    lane=${2:?usage: sh experiments/fill-grids.sh heads-sweep LANE (0 or 1: the seed)}
    config=experiments/heads-long.toml
    # step 2 of the file's plan: every head at stride 8 (heatmap-px8 at 16) at three rates centred on its
    # 4,800-image best. Widening past an edge is a further line here once the sweep's table shows it.
    for entry in "heatmap-sigma1-s8:0.005 0.01 0.02" "regression-flat-l1-s8:0.00125 0.0025 0.005" \
                 "regression-grid4h-l1-s8:0.00125 0.0025 0.005" "rle-grid4h-s8:0.00125 0.0025 0.005" \
                 "regression-l1-s8:0.005 0.01 0.02" "integral-l1-s8:0.0025 0.005 0.01" \
                 "heatmap-px4-s8:0.005 0.01 0.02" "heatmap-px8-s16:0.005 0.01 0.02"; do
        cell=${entry%%:*}-seed$lane
        for lr in ${entry#*:}; do
            echo "== heads-sweep $cell lr $lr ($(date -u +%FT%TZ))"
            "$PY" -m cpm.experiments compare-heads --config "$config" --budget none --only "$cell" \
                --set train.lr="$lr" --set train.threads=1 --set data.prerender=true --no-progress \
                || echo "== $cell lr $lr failed with status $?"
        done
    done
    exit 0 ;;
*)
    echo "usage: sh experiments/fill-grids.sh ablation|heads|heads-long|gate SEED|supervision LANE|heads-pilot LANE|heads-sweep LANE" >&2
    exit 2 ;;
esac
for pattern in $patterns; do
    echo "== $target --only '$pattern' ($(date -u +%FT%TZ))"
    "$PY" -m cpm.experiments "$target" --config "$config" --budget none --only "$pattern" $extra \
        --set train.threads=1 --set data.prerender=true --no-progress || echo "== $pattern failed with status $?"
done
