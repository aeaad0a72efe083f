"""``make gpu-check``: one command for a lent GPU, every result under one folder to bring back.

    python -m cpm.bench.gpu_check --out gpu-check --minutes 8

1. the CUDA-marked tests (``pytest -m gpu``);
2. the paper config's training step, fp32 NCHW against channels-last + bf16 and against that + ``torch.compile``:
   images/s, achieved TFLOP/s (``torch.utils.flop_counter``) and the fraction of the GPU's dense bf16 peak;
3. the ``make train`` model trained on the GPU: wall time and its per-stage PCK table;
4. the committed experiment grids (`GPU_GRIDS`: the requests their ``grid.json`` records, e.g. ablate-supervision
   on ``experiments/ablation.toml``) with ``--device cuda --parallel 3`` until the time is up; their cell summaries
   land in ``<out>/results/runs/``
   and are copied into ``experiments/results/runs/`` to be committed (finished cells are skipped next time).

Each step gets what is left of ``--minutes`` (a grid is stopped with SIGTERM at the deadline: the cell in progress
keeps its checkpoint). A step that fails is reported and the next one runs. ``--tiny`` runs every step with tiny
sizes on any device (the test suite runs it on the CPU). Writes ``<out>/report.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

# Dense bf16 tensor-core peaks (FLOP/s) of common GPUs, from the vendors' data sheets (without sparsity).
BF16_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12,
              "RTX 4090": 165e12, "RTX 3090": 71e12, "V100": 0.0}
ROOT = Path(__file__).resolve().parents[2]
TINY_SETS = ["data.input_size=64", "model.trunk_widths=[4, 8, 8]", "model.trunk_kernel=3", "model.feature_channels=4",
             "model.stage1_width=8", "model.stage1_kernel=3", "model.stage_width=8", "model.stage_kernel=3",
             "data.train_samples=32", "data.val_samples=16", "train.batch_size=8", "train.epochs=1",
             "data.workers=0", "eval.batch_size=16"]


def bf16_peak(name: str) -> float | None:
    for key, peak in BF16_PEAKS.items():
        if key in name:
            return peak or None
    return None


class Deadline:
    def __init__(self, minutes: float) -> None:
        self.end = time.monotonic() + 60 * minutes

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())


def step_tests(out: Path, deadline: Deadline, tiny: bool) -> str:
    if tiny:
        return "skipped with --tiny"
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"], cwd=ROOT,
                            capture_output=True, text=True, timeout=max(30.0, deadline.left()))
    (out / "tests.txt").write_text(result.stdout + result.stderr, encoding="utf-8")
    return (result.stdout.strip().splitlines() or ["(no output)"])[-1]


def step_speed(out: Path, deadline: Deadline, tiny: bool, device_name: str) -> str:
    import torch

    from cpm.bench.timing import TrainStep, timed_alternately
    from cpm.config import load_config
    from cpm.device import resolve_device

    device = resolve_device(device_name)
    config = load_config(ROOT / "experiments" / "paper_lsp.toml", TINY_SETS if tiny else [])
    batch = 2 if tiny else 16
    steps = {"fp32 NCHW": TrainStep(config, batch=batch, device=device, fast=False),
             "channels-last + bf16": TrainStep(config, batch=batch, device=device, fast=True)}
    if not tiny:  # compiling takes minutes on a CPU
        compiled = TrainStep(config, batch=batch, device=device, fast=True)
        try:
            compiled.model = torch.compile(compiled.model)
            compiled()  # compile now, outside the timing
            steps["channels-last + bf16 + torch.compile"] = compiled
        except Exception as error:  # noqa: BLE001 - inductor may be unavailable; the other rows still count
            print(f"torch.compile unavailable: {str(error).splitlines()[0][:200]}", file=sys.stderr)
    flops = {label: step.flops() for label, step in steps.items()}
    seconds = timed_alternately({label: step for label, step in steps.items()},
                                seconds=0.5 if tiny else min(20.0, max(1.0, deadline.left() / 10)),
                                device=device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    peak = bf16_peak(name)
    lines = [f"Training step of experiments/paper_lsp.toml{' (tiny)' if tiny else ''}, batch {batch}, on {name}:", "",
             "| path | img/s | TFLOP/s | of the bf16 peak |", "|---|---:|---:|---:|"]
    for label, step_seconds in seconds.items():
        achieved = flops[label] / step_seconds
        share = f"{100 * achieved / peak:.0f} %" if peak else "n/a"
        lines.append(f"| {label} | {batch / step_seconds:.1f} | {achieved / 1e12:.2f} | {share} |")
    text = "\n".join(lines)
    (out / "speed.md").write_text(text + "\n", encoding="utf-8")
    return text


def step_train(out: Path, deadline: Deadline, tiny: bool, device_name: str) -> str:
    from cpm.config import load_config
    from cpm.evaluation.report import format_stage_table
    from cpm.training.loop import train

    sets = [f"train.runs_dir={json.dumps(str(out / 'runs'))}", f"train.device={json.dumps(device_name)}"]
    if not tiny:
        sets.append("data.workers=8")
    config = load_config(ROOT / "experiments" / "default.toml", sets + (TINY_SETS if tiny else []))
    log_file = out / "train.log"
    started = time.perf_counter()
    with open(log_file, "w", encoding="utf-8") as file:
        results = train(config, progress=False, log=lambda message: print(message, file=file, flush=True))
    minutes = (time.perf_counter() - started) / 60
    text = f"`make train` model on {device_name}: {minutes:.1f} min\n\n{format_stage_table(results)}"
    (out / "train.md").write_text(text + "\n", encoding="utf-8")
    return text


def committed_grids() -> list[list[str]]:
    """``python -m cpm.experiments`` arguments of the committed grids in `GPU_GRIDS`, read from their grid.json:
    the GPU trains the very requests whose tables are committed (same settings, same cell hashes)."""
    from cpm.experiments.grids import request_argv, request_from_note

    grids = []
    for setting in GPU_GRIDS:
        note = json.loads((ROOT / "experiments" / "results" / "runs" / setting / "grid.json").read_text())
        grids.append(request_argv(request_from_note(note)))
    return grids


def step_grids(out: Path, deadline: Deadline, tiny: bool, device_name: str) -> str:
    grids = [["ablate-supervision", "--budget", "smoke", "--only", "T1-*"]] if tiny else committed_grids()
    lines = []
    for grid in grids:
        if deadline.left() < 30:
            lines.append(f"{grid[0]}: no time left")
            continue
        command = [sys.executable, "-m", "cpm.experiments", *grid, "--device", device_name, "--no-progress",
                   "--runs", str(out / "runs"), "--results", str(out / "results"),
                   *([] if tiny else ["--parallel", "3"])]
        with open(out / f"{grid[0]}.log", "w", encoding="utf-8") as file:
            process = subprocess.Popen(command, cwd=ROOT, stdout=file, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                code = process.wait(timeout=deadline.left())
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGTERM)  # every worker saves its checkpoint and stops
                code = process.wait(timeout=120)
        summaries = sorted((out / "results" / "runs" / grid[0]).glob("*/*-*.json"))
        lines.append(f"{grid[0]}: exit {code}, {len(summaries)} cell summaries")
    return "\n".join(lines)


# The grids a GPU fills (<target>/<setting> under experiments/results/runs/), in this order.
GPU_GRIDS = ("ablate-supervision/ablation", "compare-heads/heads")

STEPS: dict[str, Callable[..., str]] = {"tests": step_tests, "speed": step_speed, "train": step_train,
                                        "grids": step_grids}


def run(out: Path, *, minutes: float, tiny: bool, device_name: str, only: list[str] | None = None) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    deadline = Deadline(minutes)
    sections = []
    for name, step in STEPS.items():
        if only and name not in only:
            continue
        started = time.perf_counter()
        try:
            kwargs = {} if name == "tests" else {"device_name": device_name}
            text = step(out, deadline, tiny, **kwargs)
        except Exception:  # noqa: BLE001 - report the failure and go on with the next step
            text = "failed:\n\n```\n" + traceback.format_exc()[-3000:] + "```"
        sections.append(f"## {name} ({time.perf_counter() - started:.0f} s)\n\n{text}\n")
        print(sections[-1], flush=True)
    report = out / "report.md"
    report.write_text(f"# gpu-check{' (tiny)' if tiny else ''}\n\n" + "\n".join(sections), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpm.bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu-check")))
    parser.add_argument("--minutes", type=float, default=8.0, help="time for all steps together (default 8)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, any device (for tests)")
    parser.add_argument("--only", nargs="*", choices=list(STEPS), help="run only these steps")
    args = parser.parse_args(argv)
    print(f"wrote {run(args.out, minutes=args.minutes, tiny=args.tiny, device_name=args.device, only=args.only)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
