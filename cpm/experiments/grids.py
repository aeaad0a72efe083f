"""The experiments as grids of ordinary training runs: ``python -m cpm.experiments TARGET``.

Targets (also make targets of the same names):

* ``ablate-supervision``: T = 1..6 stages x intermediate supervision on / off x seeds (Wei et al. 2016,
  Sec. 3.3 and 4.1, Fig. 5-7), plus the paper's other regimes for T = 6: stage-wise training (stage t
  trained alone, stages 1..t-1 frozen, started from the (t-1)-stage model) and stage-wise then joint
  fine-tuning of all stages; and the per-layer gradient magnitudes early in training with and without
  intermediate supervision (the paper's Fig. 5).
* ``compare-heads``: heatmap (CPM stages), regression (FC to K x 2, with L2, L1 and smooth-L1 losses) and
  integral (soft-argmax) heads on the CPM trunk, VGG16 and the seed's 4-conv backbone.
* ``compare-decoders``: every decoder of `cpm.targets.decoders` on the same trained heatmap models.
* ``report``: the tables and plots of all three from the run directories, without training.

Each cell of a grid is one `cpm.training.loop.train` call with config overrides, into ``runs/<target>/<name>``
(``name`` ends in ``-seed<s>``). A run whose ``metrics.jsonl`` already has its final epoch is skipped, an
interrupted one resumes from its ``last.pt``, so a target can be stopped and started again. After each run
``summary.json`` stores what the tables need beyond ``metrics.jsonl`` (PCK at 0.05/0.1/0.2 per stage, EPE,
the PDJ curve, per-layer weight sparsity). `cpm.experiments.reports` writes ``experiments/results/<target>.md``
and PNG plots, with mean ± std over seeds, the budget, the command and the git revision.

Budgets (``--budget`` / ``make ... BUDGET=``): ``default`` fits each target in 90 minutes on 2 CPU cores (small
widths, 64 px crops, few steps; the tables say so), ``smoke`` runs every grid in a few minutes with a tiny model
(for tests; its results go under ``runs/smoke/``), ``full`` is the `make train` model and data, ``paper`` the
paper's network (`experiments/paper_lsp.toml`) at 368 px (both for GPUs).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from cpm.errors import CPMError
from cpm.experiments.figure5 import figure5
from cpm.experiments.report_heads import compare_decoders_report, compare_heads_report
from cpm.experiments.reports import ablate_supervision_report
from cpm.experiments.runs import REPORT_THRESHOLDS, evaluate_decoders, run_grid

TARGETS = ("ablate-supervision", "compare-heads", "compare-decoders")
MAX_STAGES = 6

_SMALL = {  # the default budget's CPM: the make-train model at a quarter of its width, on 64 px crops
    "data.input_size": 64, "model.trunk_widths": [8, 16, 16], "model.trunk_kernel": 3, "model.feature_channels": 8,
    "model.stage1_width": 32, "model.stage1_kernel": 5, "model.stage_width": 16, "model.stage_kernel": 5,
    "model.vgg_cpm_widths": [64, 32], "model.regression_hidden": 128,
}
_TINY = {  # tests/helpers.TINY_MODEL: seconds per run
    "data.input_size": 64, "model.trunk_widths": [4, 8, 8], "model.trunk_kernel": 3, "model.feature_channels": 4,
    "model.stage1_width": 8, "model.stage1_kernel": 3, "model.stage_width": 8, "model.stage_kernel": 3,
    "model.vgg_cpm_widths": [8], "model.regression_hidden": 16,
}
PAPER_CONFIG = Path(__file__).resolve().parents[2] / "experiments" / "paper_lsp.toml"
_COMMON = {"data.workers": 0, "eval.pck_thresholds": REPORT_THRESHOLDS, "train.log_every": 10}

# name -> (config overrides for every run, seeds, steps of the Fig. 5 gradient record, a sentence for the tables)
BUDGETS: dict[str, tuple[dict[str, Any], tuple[int, ...], int, str]] = {
    "smoke": (_COMMON | _TINY | {"data.train_samples": 32, "data.val_samples": 16, "train.batch_size": 8,
                                 "train.epochs": 1, "train.warmup_steps": 2, "eval.batch_size": 16,
                                 "train.log_every": 2}, (0,), 4,
              "smoke budget: a tiny model, 1 epoch of 32 frames at 64 px, 16 held-out frames (tests only)"),
    "default": (_COMMON | _SMALL | {"data.workers": 1, "data.train_samples": 4800, "data.val_samples": 200,
                                    "train.batch_size": 16, "train.epochs": 3, "train.warmup_steps": 50,
                                    "eval.batch_size": 50}, (0, 1, 2), 50,
                "default CPU budget: quarter-width CPM (0.15 M parameters with 6 stages), 64 px crops, 3 epochs of "
                "4,800 frames at batch 16 (900 steps), AdamW lr 2e-3 cosine, 200 held-out frames"),
    "full": ({"data.train_samples": 15000, "train.batch_size": 16, "train.epochs": 3,
              "eval.pck_thresholds": REPORT_THRESHOLDS}, (0, 1, 2), 200,
             "full budget: the make-train model (128 px, 3 epochs of 15,000 frames at batch 16, 500 held-out frames)"),
    "paper": ({"config": str(PAPER_CONFIG), "data.train_samples": 16000, "data.val_samples": 500, "data.workers": 8,
               "train.epochs": 10, "train.batch_size": 16, "train.optimizer": "adamw", "train.caffe_lr": False,
               "train.lr": 5e-4, "train.schedule": "cosine", "train.warmup_steps": 500, "train.stage1_lr_mult": 1.0,
               "train.bias_lr_mult": 1.0, "train.amp": "auto", "eval.batch_size": 32,
               "eval.pck_thresholds": REPORT_THRESHOLDS}, (0, 1, 2), 200,
              "paper budget (a GPU): the released LSP network of experiments/paper_lsp.toml (368 px RGB input, "
              "stride 8) trained with AdamW lr 5e-4 cosine, bf16 where the device has it, 10 epochs of 16,000 "
              "frames at batch 16, 500 held-out frames"),
}

# On top of a budget, per target: compare-heads trains VGG16 (8 M parameters, ~0.5 s a step on 2 cores), so fewer steps.
TARGET_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "default": {"compare-heads": {"data.train_samples": 1600}},
}


def budget_for(budget_name: str, target: str) -> tuple[dict[str, Any], tuple[int, ...], int, str]:
    """(overrides, seeds, Fig. 5 steps, description) of ``budget_name`` for ``target``."""
    if budget_name not in BUDGETS:
        raise CPMError(f"--budget: unknown budget {budget_name!r}; known: {', '.join(BUDGETS)}")
    overrides, seeds, steps, sentence = BUDGETS[budget_name]
    extra = TARGET_OVERRIDES.get(budget_name, {}).get(target, {})
    if extra:
        sentence += "; for this target " + ", ".join(f"{key} = {value}" for key, value in extra.items())
    return overrides | extra, seeds, steps, sentence


# Each backbone with the stride it has and its own settings (sigma in cells keeps the target ~8 px wide).
BACKBONE_OVERRIDES: dict[str, dict[str, Any]] = {
    "cpm": {"model.backbone": "cpm", "model.stride": 8},
    # VGG16 has no batch norm; at the CPM's lr its ten plain convolutions diverge in the first steps.
    "vgg16": {"model.backbone": "vgg16", "model.stride": 8, "model.feature_channels": 0, "model.stage1_layers": 0,
              "train.lr": 2e-4},
    "fourconv": {"model.backbone": "fourconv", "model.stride": 2, "model.sigma": 4.0, "model.center_sigma": 10.0},
}
HEAD_CELLS = (("heatmap", None), ("regression", "l2"), ("regression", "l1"), ("regression", "smooth_l1"),
              ("integral", "l1"))
COMPARE_STAGES = 3  # stages of the heatmap and integral heads in compare-heads and compare-decoders


@dataclass
class Run:
    """One cell of a grid: ``runs/<target>/<name>`` trained with ``overrides`` (dotted keys); ``after`` names
    the run whose ``last.pt`` initialises this one (stage-wise training)."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    after: str | None = None


def ablate_supervision_runs(seeds: Sequence[int]) -> list[Run]:
    runs = []
    for seed in seeds:
        for stages in range(1, MAX_STAGES + 1):
            for supervised in (True, False) if stages > 1 else (True,):  # one stage: the two are the same
                runs.append(Run(f"T{stages}-{'is' if supervised else 'nois'}-seed{seed}",
                                {"model.stages": stages, "train.intermediate_supervision": supervised,
                                 "train.seed": seed}))
        previous = f"T1-is-seed{seed}"  # stage-wise stage 1 is the 1-stage model
        for stages in range(2, MAX_STAGES + 1):
            name = f"stagewise{stages}-seed{seed}"
            runs.append(Run(name, {"model.stages": stages, "train.trainable_stages": [stages], "train.seed": seed,
                                   "train.stage_weights": [0.0] * (stages - 1) + [1.0]}, after=previous))
            previous = name
        runs.append(Run(f"stagewise-joint-seed{seed}", {"model.stages": MAX_STAGES, "train.seed": seed,
                                                         "train.intermediate_supervision": True}, after=previous))
    return runs


def compare_heads_runs(seeds: Sequence[int]) -> list[Run]:
    runs = []
    for seed in seeds:
        for backbone, settings in BACKBONE_OVERRIDES.items():
            for head, loss in HEAD_CELLS:
                overrides = settings | {"model.head": head, "model.stages": COMPARE_STAGES, "train.seed": seed}
                if loss:
                    overrides["model.regression_loss"] = loss
                runs.append(Run(f"{head}{'-' + loss if loss else ''}-{backbone}-seed{seed}", overrides))
    return runs


def compare_decoders_runs(seeds: Sequence[int]) -> list[Run]:
    return [Run(f"heatmap-cpm-seed{seed}", BACKBONE_OVERRIDES["cpm"] | {"model.stages": COMPARE_STAGES,
                                                                          "train.seed": seed}) for seed in seeds]


GRIDS: dict[str, Callable[[Sequence[int]], list[Run]]] = {
    "ablate-supervision": ablate_supervision_runs, "compare-heads": compare_heads_runs,
    "compare-decoders": compare_decoders_runs,
}


def write_target_report(target: str, *, root: Path, out: Path) -> Path:
    """``<out>/<target>.md`` (and its plots) from ``<root>/<target>/``."""
    folder = root / target
    if not folder.is_dir():
        raise CPMError(f"{folder}: no runs of {target} (run make {target} first)")
    out.mkdir(parents=True, exist_ok=True)
    reports = {"ablate-supervision": ablate_supervision_report, "compare-heads": compare_heads_report,
               "compare-decoders": compare_decoders_report}
    return reports[target](folder, out)


def write_experiment_note(root: Path, target: str, *, budget_name: str, command: str) -> None:
    """``runs/<target>/experiment.json``: budget, command and git revision, quoted by the report."""
    from cpm.training.checkpoint import git_revision

    folder = root / target
    folder.mkdir(parents=True, exist_ok=True)
    overrides, seeds, steps, sentence = budget_for(budget_name, target)
    (folder / "experiment.json").write_text(json.dumps({
        "budget": budget_name, "description": sentence, "overrides": overrides, "seeds": list(seeds),
        "command": command, "revision": git_revision(),
    }, indent=2))


def run_target(target: str, *, budget_name: str = "default", root: Path = Path("runs"),
               out: Path = Path("experiments/results"), device: str = "auto", only: str = "*",
               command: str = "", log: Callable[[str], None] = print) -> Path:
    """Train the grid of ``target`` (the runs whose name matches the glob ``only``), then write its report."""
    budget, seeds, steps, _ = budget_for(budget_name, target)
    runs = [run for run in GRIDS[target](seeds) if fnmatch(run.name, only)]
    write_experiment_note(root, target, budget_name=budget_name, command=command)
    run_dirs = run_grid(target, runs, budget=budget, root=root, device=device, log=log)
    if target == "ablate-supervision" and only == "*":
        figure5(root, budget, steps, stages=MAX_STAGES, device=device, log=log)
    if target == "compare-decoders":
        evaluate_decoders(run_dirs, device=device, log=log)
    return write_target_report(target, root=root, out=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpm.experiments", description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=[*TARGETS, "report"])
    parser.add_argument("--budget", default="default", help=f"one of {', '.join(BUDGETS)} (default: default)")
    parser.add_argument("--runs", type=Path, help="runs folder (default: runs/, runs/smoke/ for the smoke budget)")
    parser.add_argument("--out", type=Path, help="tables and plots (default: experiments/results/, "
                                                 "runs/smoke/results/ for the smoke budget)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--only", default="*", help="train only the runs whose name matches this glob")
    args = parser.parse_args(argv)
    from cpm.training.loop import TrainingInterrupted

    smoke = args.budget == "smoke"
    root = args.runs or Path("runs/smoke" if smoke else "runs")
    out = args.out or (root / "results" if smoke else Path("experiments/results"))
    command = shlex.join(["python", "-m", "cpm.experiments", *(sys.argv[1:] if argv is None else argv)])
    try:
        out.mkdir(parents=True, exist_ok=True)
        if args.target == "report":
            for target in TARGETS:
                if (root / target).is_dir():
                    print(f"wrote {write_target_report(target, root=root, out=out)}")
            return 0
        path = run_target(args.target, budget_name=args.budget, root=root, out=out, device=args.device,
                          only=args.only, command=command)
        print(f"wrote {path}")
    except CPMError as error:
        print(f"cpm.experiments {args.target}: error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stop:  # SIGTERM / SIGINT: the run resumes from last.pt next time
        print(f"cpm.experiments {args.target}: stopped by {stop}; run the same command again to go on",
              file=sys.stderr)
        return 128 + stop.signum
    return 0
