#!/bin/sh
# The timed sitting the AVX2 time-to-accuracy work needs, on a 2-core CPU without AVX512-BF16 (fp32 only, the kind
# most laptops have; the ONEDNN_MAX_CPU_ISA=AVX2 imitation on a newer CPU does not show what is slow there). Nothing
# else may run on the cores meanwhile (pause experiment lanes with kill -STOP). About 95 minutes:
#
#   nohup sh experiments/avx2-sitting.sh > logs/avx2-sitting.log 2>&1 &
#
# 1. where a training step's time goes: every convolution of make train's model timed alone against the CPU's
#    convolution ceiling, channels-last and NCHW (python -m cpm.bench.layers);
# 2. make bench's rows for make train's config (data path, step, images/s);
# 3. speedrun rows, side by side in this one sitting: make train's recipe, then the same with NCHW tensors, with
#    torch.compile (inductor), with batch 32, with the trunk's first three levels strided convolutions
#    (model.trunk_strided_levels = 3); appended to experiments/results/speedrun.md with the CPU kind,
#    command and revision;
# 4. every speedrun checkpoint on each pose source (cpm eval --pose-sources: procedural, held-out mocap subjects,
#    K2HPD test, LSP test poses), untimed, since a recipe counts only if both real-motion sources hold.
# Each part's output also goes to $OUT (default logs/avx2-sitting/) for the record.
set -eu
PY=${PY:-.venv/bin/python}
OUT=${OUT:-logs/avx2-sitting}
CONFIG=${CONFIG:-experiments/default.toml}
if grep -q avx512_bf16 /proc/cpuinfo && [ -z "${FORCE:-}" ]; then
    echo "avx2-sitting: this CPU computes bf16 (avx512_bf16 in /proc/cpuinfo): not the kind this sitting is for" \
         "(FORCE=1 runs it anyway)" >&2
    exit 2
fi
mkdir -p "$OUT"
{ date -u +%FT%TZ; git rev-parse --short HEAD; lscpu | grep -E "Model name|^CPU\(s\)"; grep -o -w -E \
    "avx2|avx512f|avx512_bf16|amx_bf16" /proc/cpuinfo | sort -u | tr '\n' ' '; echo; } | tee "$OUT/machine.txt"
echo "== layers, channels-last ($(date -u +%T))"
"$PY" -m cpm.bench.layers "$CONFIG" --fp32 | tee "$OUT/layers-channels-last.txt"
echo "== layers, NCHW ($(date -u +%T))"
"$PY" -m cpm.bench.layers "$CONFIG" --fp32 --nchw | tee "$OUT/layers-nchw.txt"
echo "== make bench rows ($(date -u +%T))"
"$PY" -m cpm.bench "$CONFIG" | tee "$OUT/bench.txt"
echo "== speedrun ($(date -u +%T))"
"$PY" -m cpm.bench.speedrun "$CONFIG" "$CONFIG" "$CONFIG" "$CONFIG" "$CONFIG" --set train.amp=off --no-progress \
    --recipe-set 2:train.channels_last=false --recipe-set 3:train.compile=true --recipe-set 4:train.batch_size=32 \
    --recipe-set 5:model.trunk_strided_levels=3 \
    --change "one step-speed lever (config column)" --runs "$OUT/runs" --record experiments/results/speedrun.md \
    | tee "$OUT/speedrun.txt"
echo "== per pose source ($(date -u +%T))"
for run in "$OUT"/runs/*/; do
    echo "-- $run"
    "$PY" -m cpm eval "$run/best.pt" --pose-sources --no-progress
done | tee "$OUT/pose-sources.txt"
echo "== done ($(date -u +%T))"
