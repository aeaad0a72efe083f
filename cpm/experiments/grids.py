"""The experiments as grids of ordinary training runs: ``python -m cpm.experiments TARGET``.

Targets (also make targets of the same names):

* ``ablate-supervision``: T = 1..6 stages x intermediate supervision on / off x seeds (Wei et al. 2016,
  Sec. 3.3 and 4.1, Fig. 5-7), plus the paper's other regimes for T = 6: stage-wise training (stage t
  trained alone, stages 1..t-1 frozen, started from the (t-1)-stage model) and stage-wise then joint
  fine-tuning of all stages; and the per-layer gradient magnitudes early in training with and without
  intermediate supervision (the paper's Fig. 5).
* ``compare-heads``: heatmap (CPM stages), regression (FC to K x 2, with L2, L1 and smooth-L1 losses) and
  integral (soft-argmax) heads on the CPM trunk, VGG16 and the baseline 4-conv backbone.
* ``compare-decoders``: every decoder of `cpm.targets.decoders` on the same trained heatmap models.
* ``report``: the tables and plots of all three from the run directories, without training.
* ``repair-records``: a one-off for cell summaries written before resumed runs cut their logs back to their
  checkpoint: each epoch of the per-epoch metrics and each step of the loss curve kept once (the last written).

Each cell of a grid is one `cpm.training.loop.train` call with config overrides, into ``runs/<target>/<name>``
(``name`` ends in ``-seed<s>``). A run whose ``last.pt`` already holds its final epoch is not trained again, an
interrupted one (a stop signal, SIGKILL, a power cut) resumes from its ``last.pt`` with its logs cut back to it, so a
target can be stopped anywhere and started again. After each run
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
import dataclasses
import hashlib
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import tomllib

from cpm.config import MOVED_KEYS, Config, apply, toml_value
from cpm.errors import ConfigError, CPMError
from cpm.experiments.figure5 import figure5, figure5_cell
from cpm.experiments.report_heads import compare_decoders_report, compare_heads_report
from cpm.experiments.reports import _json_file, ablate_supervision_report, load_runs
from cpm.experiments.runs import (
    MACHINE_KEYS,
    REPORT_THRESHOLDS,
    Cell,
    Run,
    current_names,
    is_cell_summary,
    make_config,
    read_summary,
    resolve_cells,
    run_cells,
)
from cpm.io import fault_point, write_text_atomic

TARGETS = ("ablate-supervision", "compare-heads", "compare-decoders")
MAX_STAGES = 6

_SMALL = {  # the default budget's CPM: the procedural recipe's 4-stage model at a quarter of its width, on 64 px crops
    "data.input_size": 64, "model.trunk_widths": [8, 16, 16], "model.trunk_kernel": 3, "model.feature_channels": 8,
    "model.stage1_width": 32, "model.stage1_kernel": 5, "model.stage_width": 16, "model.stage_kernel": 5,
    "model.vgg_cpm_widths": [64, 32], "model.regression_hidden": 128,
}
SMOKE_MODEL = {  # the smoke budget's CPM: seconds per run (the test suite trains it too)
    "data.input_size": 64, "model.trunk_widths": [4, 8, 8], "model.trunk_kernel": 3, "model.feature_channels": 4,
    "model.stage1_width": 8, "model.stage1_kernel": 3, "model.stage_width": 8, "model.stage_kernel": 3,
    "model.vgg_cpm_widths": [8], "model.regression_hidden": 16,
}
EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"  # the repository's experiments/
PAPER_CONFIG = EXPERIMENTS / "paper_lsp.toml"
_COMMON = {"data.workers": 0, "eval.pck_thresholds": REPORT_THRESHOLDS, "train.log_every": 10}


@dataclass(frozen=True)
class Budget:
    """One ``--budget``: what every cell of a grid changes in the user's config, the seeds, the steps of the Fig. 5
    gradient record, and the sentence the tables quote. ``overlay``: a TOML file of config sections whose values
    every cell gets too (``overrides`` win over it); ``overrides`` are dotted keys, and ``config`` among them names
    the base config file in place of the user's."""

    description: str
    overrides: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0, 1, 2)
    figure5_steps: int = 50
    overlay: Path | None = None

    def config_overrides(self) -> dict[str, Any]:
        """The overlay file's values and ``overrides``, as dotted keys."""
        if self.overlay is None:
            return dict(self.overrides)
        try:
            sections = tomllib.loads(self.overlay.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise CPMError(f"{self.overlay}: cannot read the budget's overlay ({error})") from None
        flat = {f"{section}.{key}": value for section, values in sections.items() for key, value in values.items()}
        return flat | self.overrides


BUDGETS: dict[str, Budget] = {
    "smoke": Budget(
        "smoke budget: a tiny model, 1 epoch of 32 frames at 64 px, 16 held-out frames (tests only)",
        _COMMON | SMOKE_MODEL | {"data.train_samples": 32, "data.val_samples": 16, "train.batch_size": 8,
                                 "train.epochs": 1, "train.warmup_steps": 2, "eval.batch_size": 16,
                                 "train.log_every": 2}, seeds=(0,), figure5_steps=4),
    "default": Budget(
        "default CPU budget: quarter-width CPM (0.15 M parameters with 6 stages), 64 px crops, 3 epochs of 4,800 "
        "frames at batch 16 (900 steps), AdamW lr 2e-3 cosine, 2,000 held-out frames",
        _COMMON | _SMALL | {"data.workers": 1, "data.train_samples": 4800, "data.val_samples": 2000,
                            "train.batch_size": 16, "train.epochs": 3, "train.warmup_steps": 50,
                            "eval.batch_size": 50}),
    "none": Budget("the config as given, with no budget overlay"),
    "full": Budget(
        "full budget: the procedural recipe's 4-stage model and length (experiments/procedural.toml: 128 px, 3 "
        "epochs of 15,000 frames at batch 16, 500 held-out frames)",
        {"data.train_samples": 15000, "train.batch_size": 16, "train.epochs": 3,
         "eval.pck_thresholds": REPORT_THRESHOLDS}, figure5_steps=200),
    "paper": Budget(
        "paper budget (a GPU): the released LSP network of experiments/paper_lsp.toml (368 px RGB input, stride 8) "
        "trained with AdamW lr 5e-4 cosine, bf16 where the device has it, 10 epochs of 16,000 frames at batch 16, 500 "
        "held-out frames",
        {"config": str(PAPER_CONFIG), "data.train_samples": 16000, "data.val_samples": 500, "data.workers": 8,
         "train.epochs": 10, "train.batch_size": 16, "train.optimizer": "adamw", "train.caffe_lr": False,
         "train.lr": 5e-4, "train.schedule": "cosine", "train.warmup_steps": 500, "train.stage1_lr_mult": 1.0,
         "train.bias_lr_mult": 1.0, "train.amp": "auto", "eval.batch_size": 32,
         "eval.pck_thresholds": REPORT_THRESHOLDS}, figure5_steps=200),
    "gpu": Budget(
        "gpu budget: the paper's 368 px geometry, released layers and Caffe init (stride 8, 46 x 46 maps, 11x11 "
        "stages), Caffe's base lr 8e-5 in Caffe's units with step decay at 1/2 and 3/4, 10 epochs of 16,000 frames at "
        "batch 16, bf16 where the device has it, 2,000 held-out frames",
        {"eval.pck_thresholds": REPORT_THRESHOLDS}, overlay=EXPERIMENTS / "budgets" / "gpu.toml"),
}

# On top of a budget, per target: compare-heads trains VGG16 (8 M parameters, the slowest cells), so fewer steps.
TARGET_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "default": {"compare-heads": {"data.train_samples": 1600}},
}


# Each backbone with the stride it has and its own settings (sigma in cells keeps the target ~8 px wide).
BACKBONE_OVERRIDES: dict[str, dict[str, Any]] = {
    "cpm": {"model.backbone": "cpm", "model.stride": 8},
    # VGG16 has no batch norm; at the CPM's lr its ten plain convolutions diverge in the first steps.
    "vgg16": {"model.backbone": "vgg16", "model.stride": 8, "model.feature_channels": 0, "model.stage1_layers": 0,
              "train.lr": 2e-4},
    "fourconv": {"model.backbone": "fourconv", "model.stride": 2, "targets.sigma": 4.0, "targets.center_sigma": 10.0},
}
HEAD_CELLS = (("heatmap", None), ("regression", "l2"), ("regression", "l1"), ("regression", "smooth_l1"),
              ("integral", "l1"))
COMPARE_STAGES = 3  # stages of the heatmap and integral heads in compare-heads and compare-decoders


ABLATION_STAGES = (1, 2, 3, 4, 6)
STAGEWISE_STAGES = 4  # the stage-wise regimes and the optimiser pair are run for this T
PAPER_STAGEWISE_STAGES = 3  # stage-wise with every phase on the whole budget (the paper's regime) is run for this T
ADAMW = {"train.optimizer": "adamw", "train.lr": 2e-3, "train.caffe_lr": False, "train.weight_decay": 1e-4,
         "train.stage1_lr_mult": 1.0, "train.refinement_lr_mult": 1.0, "train.bias_lr_mult": 1.0,
         "train.schedule": "cosine"}


def ablate_supervision_runs(seeds: Sequence[int]) -> list[Run]:
    """T stages x intermediate supervision on / off (one stage: the two are the same run), the T = 4 pair again
    under AdamW, and for T = 4 stage-wise training (stage t trained with 1..t-1 frozen, started from the t-1
    model) and stage-wise then joint fine-tuning, each phase on a share of the joint run's frames so that every
    regime sees the same number of images (``train_share``, resolved against ``data.train_samples``); and for T = 3
    the paper's stage-wise regime, every phase and the joint fine-tuning on the whole budget, with the joint run
    that sees as many images as they do together."""
    runs = []
    for seed in seeds:
        for stages in ABLATION_STAGES:
            for supervised in (True, False) if stages > 1 else (True,):
                runs.append(Run(f"T{stages}-{'is' if supervised else 'nois'}-seed{seed}",
                                {"model.stages": stages, "train.intermediate_supervision": supervised,
                                 "train.seed": seed}))
        for supervised in (True, False):
            runs.append(Run(f"T{STAGEWISE_STAGES}-{'is' if supervised else 'nois'}-adamw-seed{seed}",
                            ADAMW | {"model.stages": STAGEWISE_STAGES, "train.intermediate_supervision": supervised,
                                     "train.seed": seed}))
        for joint in (False, True):
            phases = STAGEWISE_STAGES + joint
            prefix = "stagewise-joint" if joint else "stagewise"
            share = {"train_share": 1 / phases}
            previous = None
            for stages in range(1, STAGEWISE_STAGES + 1):
                name = f"{prefix}{stages}-seed{seed}"
                overrides = {"model.stages": stages, "train.trainable_stages": [stages], "train.seed": seed,
                             "train.stage_weights": [0.0] * (stages - 1) + [1.0]}
                runs.append(Run(name, overrides | share, after=previous))
                previous = name
            if joint:
                runs.append(Run(f"stagewise-joint-seed{seed}", {"model.stages": STAGEWISE_STAGES, "train.seed": seed,
                                                                 "train.intermediate_supervision": True} | share,
                                after=previous))
        # Stage-wise as the paper trained it: every phase on the whole budget (stage t with 1..t-1 frozen, from the
        # t-1 model), then joint fine-tuning on the whole budget again; beside it joint training on as many images
        # as all those phases together (equal total images; the equal-final-images comparison is T3-is itself).
        previous = None
        for stages in range(1, PAPER_STAGEWISE_STAGES + 1):
            name = f"paper-stagewise{stages}-seed{seed}"
            runs.append(Run(name, {"model.stages": stages, "train.trainable_stages": [stages], "train.seed": seed,
                                   "train.stage_weights": [0.0] * (stages - 1) + [1.0]}, after=previous))
            previous = name
        runs.append(Run(f"paper-stagewise-joint-seed{seed}",
                        {"model.stages": PAPER_STAGEWISE_STAGES, "train.seed": seed,
                         "train.intermediate_supervision": True}, after=previous))
        runs.append(Run(f"paper-joint-x{PAPER_STAGEWISE_STAGES + 1}-seed{seed}",
                        {"model.stages": PAPER_STAGEWISE_STAGES, "train.intermediate_supervision": True,
                         "train.seed": seed, "train_share": PAPER_STAGEWISE_STAGES + 1}))
    return runs


_STAGE1_REGRESSION = {"model.head": "regression", "model.regression_features": "stage1", "model.regression_pool": 1,
                      "model.regression_hidden": 0}
_GRID_REGRESSION = _STAGE1_REGRESSION | {"model.regression_pool": 4, "model.regression_hidden": 256}
# Heads that differ only in their last layer and loss: one stage each, on the same trunk and stage-1 convolutions.
# regression-<loss>: global average pooling, one FC layer; regression-flat: the whole map flattened, one FC layer
# (DeepPose's form; "pool_to_map" sets regression_pool to the map's side); grid4h: a 4 x 4 pooled grid, a hidden FC
# layer of 256 (the seed regressors' form); rle: that regressor trained with residual log-likelihood estimation.
# heatmap-px<N>: a target sigma of N input pixels ("sigma_px": N / stride cells) instead of a fixed number of cells.
HEAD_VARIANTS: dict[str, dict[str, Any]] = {
    "heatmap-sigma1": {"model.head": "heatmap", "model.stages": 1, "targets.sigma": 1.0},
    "heatmap-sigma2": {"model.head": "heatmap", "model.stages": 1, "targets.sigma": 2.0},
    "integral-l1": {"model.head": "integral", "model.stages": 1, "model.regression_loss": "l1"},
    **{f"regression-{loss}": _STAGE1_REGRESSION | {"model.regression_loss": loss}
       for loss in ("l2", "l1", "smooth_l1")},
    "regression-flat-l1": _STAGE1_REGRESSION | {"model.regression_loss": "l1", "pool_to_map": True},
    "regression-grid4h-l1": _GRID_REGRESSION | {"model.regression_loss": "l1"},
    "rle-grid4h": _GRID_REGRESSION | {"model.regression_loss": "rle"},
    "heatmap-px4": {"model.head": "heatmap", "model.stages": 1, "sigma_px": 4.0},
    "heatmap-px8": {"model.head": "heatmap", "model.stages": 1, "sigma_px": 8.0},
}
RESOLUTIONS = {"s4": 4, "s8": 8, "s16": 16}  # map strides of the resolution sweep (32, 16, 8 cells at 128 px)
# The baselines' comparison: the FC regressor (L2) and a heatmap head on VGG16 and its 4-conv network.
SEED_CELLS: dict[str, dict[str, Any]] = {
    f"{head}-{backbone}": BACKBONE_OVERRIDES[backbone] | overrides
    for backbone in ("vgg16", "fourconv")
    for head, overrides in (("heatmap", {"model.head": "heatmap", "model.stages": 1}),
                            ("regression-l2", {"model.head": "regression", "model.regression_loss": "l2"}))
}


def compare_heads_runs(seeds: Sequence[int]) -> list[Run]:
    """Every `HEAD_VARIANTS` head at every `RESOLUTIONS` stride (``trunk_levels``: the config's trunk, cut or
    extended to log2(stride) pooling levels), named ``<head>-s<stride>``, and the baseline cells `SEED_CELLS`."""
    runs = []
    for seed in seeds:
        for resolution, stride in RESOLUTIONS.items():
            for head, overrides in HEAD_VARIANTS.items():
                runs.append(Run(f"{head}-{resolution}-seed{seed}", overrides | {
                    "model.backbone": "cpm", "model.stride": stride, "trunk_levels": stride.bit_length() - 1,
                    "train.seed": seed}))
        runs += [Run(f"{cell}-seed{seed}", overrides | {"train.seed": seed}) for cell, overrides in SEED_CELLS.items()]
    return runs


def compare_decoders_runs(seeds: Sequence[int]) -> list[Run]:
    return [Run(f"heatmap-cpm-seed{seed}", BACKBONE_OVERRIDES["cpm"] | {"model.stages": COMPARE_STAGES,
                                                                          "train.seed": seed}) for seed in seeds]


GRIDS: dict[str, Callable[[Sequence[int]], list[Run]]] = {
    "ablate-supervision": ablate_supervision_runs, "compare-heads": compare_heads_runs,
    "compare-decoders": compare_decoders_runs,
}


def setting_name(budget: str, config: str | None, sets: dict[str, Any] | None = None,
                 cell_sets: dict[str, dict[str, Any]] | None = None) -> str:
    """The folder a grid's runs and summaries go to: the budget, the config's stem for ``none``, both otherwise;
    with ``--set`` (or ``--cell-set``) values, a short hash of them after a ``+`` (another request, another folder
    and table). Keys that only say where or how fast a cell runs (`MACHINE_KEYS`: threads, device, ...) are not
    part of it; a key that moved (`cpm.config.MOVED_KEYS`) is hashed under its old name, as a cell's config is."""
    name = budget if config is None else (Path(config).stem if budget == "none" else f"{Path(config).stem}-{budget}")
    old_names = {new: old for old, new in MOVED_KEYS.items()}
    sets = {old_names.get(key, key): value for key, value in (sets or {}).items() if key not in MACHINE_KEYS}
    cell_sets = {pattern: {old_names.get(key, key): value for key, value in values.items()}
                 for pattern, values in (cell_sets or {}).items()}
    if sets or cell_sets:
        hashed = sets | ({"cell_sets": cell_sets} if cell_sets else {})
        name += "+" + hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()[:6]
    return name


@dataclass
class GridRequest:
    """What the user asked for: target, base config, budget, ``--set`` overrides, data root."""

    target: str
    budget: str = "default"
    config: str | None = None
    sets: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    cell_sets: dict[str, dict[str, Any]] = field(default_factory=dict)  # cell-name glob -> overrides (they win)

    @property
    def setting(self) -> str:
        return setting_name(self.budget, self.config, self.sets, self.cell_sets)

    def to_json(self) -> dict:
        return {"target": self.target, "budget": self.budget, "config": self.config, "sets": self.sets,
                "data": self.data, **({"cell_sets": self.cell_sets} if self.cell_sets else {})}


def budget_for(budget_name: str, target: str) -> Budget:
    """The budget ``budget_name`` as ``target`` runs it: the overlay file's values, its overrides and the target's own
    (`TARGET_OVERRIDES`, said in the description) as dotted ``overrides``."""
    if budget_name not in BUDGETS:
        raise CPMError(f"--budget: unknown budget {budget_name!r}; known: {', '.join(BUDGETS)}")
    budget = BUDGETS[budget_name]
    extra = TARGET_OVERRIDES.get(budget_name, {}).get(target, {})
    description = budget.description
    if extra:
        description += "; for this target " + ", ".join(f"{key} = {value}" for key, value in extra.items())
    return dataclasses.replace(budget, overrides=budget.config_overrides() | extra, description=description,
                               overlay=None)


def cell_overrides(path: str | Path) -> dict[str, dict[str, Any]]:
    """The ``[cells]`` table of the config file at ``path``: values for the grid cells whose name matches a glob (a
    sweep's chosen learning rate per head, say), as {glob: {"section.key": value}}, each key checked as a config's
    (`cpm.config.apply`) and under its current name (`current_names`). `cpm.config.load_config`, what ``cpm train``
    reads, leaves the table out unread; ``--cell-set`` on the command line wins over it."""
    path = Path(path)
    cells = _config_table(path, "cells")
    if not isinstance(cells, dict) or not all(isinstance(values, dict) for values in cells.values()):
        raise ConfigError(f'{path}: [cells] must map a cell-name glob to settings, e.g. "integral-*".train.lr = 0.005')
    flat: dict[str, dict[str, Any]] = {}
    for pattern, values in cells.items():
        apply(Config(), values, source=f"{path}: [cells] {pattern!r}")  # names and types, as for [train] etc.
        flat[pattern] = current_names({f"{section}.{key}": value for section, keys in values.items()
                                       for key, value in keys.items()})
    return flat


def _config_table(path: Path, name: str) -> Any:
    """The ``[name]`` table of the config file at ``path`` as read ({} without one); ConfigError naming the file if
    it cannot be read."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8")).get(name, {})
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: cannot read config file ({error})") from None


def _grid_table(path: Path) -> dict[str, Any]:
    """The ``[grid]`` table of the config file at ``path`` ({} without one), its keys checked."""
    grid = _config_table(path, "grid")
    if not isinstance(grid, dict) or set(grid) - {"seeds", "margin"}:
        raise ConfigError(f"{path}: [grid] takes seeds = [0, 1, ...] and margin = POINTS")
    return grid


def grid_seeds(path: str | Path) -> tuple[int, ...] | None:
    """The ``seeds`` of the ``[grid]`` table of the config file at ``path`` (a list of distinct integers >= 0), or
    None where the file has no such table: the seeds its grid trains in place of the budget's, so that a study's
    file states its n. `cpm.config.load_config` leaves the table out unread."""
    path = Path(path)
    seeds = _grid_table(path).get("seeds")
    if seeds is None:
        return None
    if (not isinstance(seeds, list) or not seeds or len(set(seeds)) != len(seeds)
            or not all(isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 for seed in seeds)):
        raise ConfigError(f"{path}: [grid] seeds must be a list of distinct integers >= 0, got {seeds!r}")
    return tuple(seeds)


def grid_margin(path: str | Path) -> float | None:
    """The ``margin`` of the ``[grid]`` table of the config file at ``path`` (points of final-stage PCK@0.1, > 0):
    the decision rule's equivalence margin, which makes the ablate-supervision report write its decision section
    (`cpm.experiments.decision`); None where the file states none."""
    path = Path(path)
    margin = _grid_table(path).get("margin")
    if margin is None:
        return None
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 < margin < 100:
        raise ConfigError(f"{path}: [grid] margin must be a number of points in (0, 100), got {margin!r}")
    return float(margin)


def grid_cells(request: GridRequest, *, runs_root: Path, results_root: Path, device: str = "auto",
               only: str = "*") -> list[Cell]:
    """The cells of ``request`` whose name matches ``only``, resolved (config, hash, run directory, summary path).
    A cell that starts from another (stage-wise) is kept with the cells it needs."""
    chosen = budget_for(request.budget, request.target)
    budget, seeds = current_names(chosen.overrides), chosen.seeds
    base_path = budget.pop("config", None) if request.config is None else request.config
    base = make_config({}, base_path)
    seeds = (grid_seeds(base_path) if base_path else None) or seeds
    user = current_names(request.sets) | ({"data.root": request.data} if request.data else {})
    runs = GRIDS[request.target](seeds)
    common = make_config(budget | user, base)
    train_samples, widths = common.data.train_samples, list(common.model.trunk_widths)
    input_size = common.data.input_size
    # The config file's [cells] is part of the file (a --set of the same key wins over it); --cell-set wins over all.
    file_cells = {pattern: {key: value for key, value in values.items() if key not in user}
                  for pattern, values in (cell_overrides(base_path) if base_path else {}).items()}
    cell_sets = {pattern: current_names(values) for pattern, values in request.cell_sets.items()}
    for run in runs:
        for pattern, values in [*file_cells.items(), *cell_sets.items()]:
            if fnmatch(run.name, pattern):
                run.overrides |= values
        share = run.overrides.pop("train_share", None)  # a share of the frames (stage-wise phases, equal images)
        if share is not None:
            run.overrides["data.train_samples"] = max(1, round(train_samples * share))
        levels = run.overrides.pop("trunk_levels", None)  # the config's trunk cut or extended to this many pools
        if levels is not None:
            run.overrides["model.trunk_widths"] = (widths + [widths[-1]] * levels)[:levels]
        stride = run.overrides.get("model.stride", common.model.stride)
        if run.overrides.pop("pool_to_map", False):  # flatten the whole map: pool to its own side
            run.overrides["model.regression_pool"] = input_size // stride
        sigma_px = run.overrides.pop("sigma_px", None)  # a target width in input pixels, in cells of this stride
        if sigma_px is not None:
            run.overrides["targets.sigma"] = sigma_px / stride
    cells = resolve_cells(runs, base=base, layers=[budget, user], device=device,
                          runs_root=runs_root / request.target / request.setting,
                          results_root=results_root / "runs" / request.target / request.setting)
    chosen = {cell.name for cell in cells if fnmatch(cell.name, only)}
    by_name = {cell.name: cell for cell in cells}
    for cell in cells:  # keep the chain a chosen stage-wise cell starts from
        if cell.name in chosen:
            after = cell.run.after
            while after:
                chosen.add(after)
                after = by_name[after].run.after
    return [cell for cell in cells if cell.name in chosen]


def write_target_report(request: GridRequest, *, results_root: Path, runs_root: Path = Path("runs")) -> Path:
    """``<results_root>/<target>/<setting>.md`` (and its plots) from the committed summaries of the grid's cells.

    The summaries in the setting's folder are the record, whatever the config file says today, with the current
    cells' summaries kept under another folder of the same config stem (`kept_run`): a cell with one
    summary is reported from it; a cell with several (its config changed and it ran again) from the one whose hash
    the current config gives, else `CPMError` naming them. Rows follow the grid's order."""
    folder = results_root / "runs" / request.target / request.setting
    cells = grid_cells(request, runs_root=runs_root, results_root=results_root)
    order = {cell.name: i for i, cell in enumerate(cells)}
    current = {cell.summary_path.name for cell in cells}
    by_cell: dict[str, list[Path]] = {}
    for path in sorted(folder.glob("*.json")):
        if is_cell_summary(path):
            by_cell.setdefault(path.stem.rsplit("-", 1)[0], []).append(path)
    for cell in cells:  # a current cell whose run is kept under another folder of the setting (`kept_run`)
        if cell.summary_path.parent != folder and cell.summary_path.is_file():
            by_cell.setdefault(cell.name, []).append(cell.summary_path)
    summaries = []
    for name, paths in sorted(by_cell.items(), key=lambda item: (order.get(item[0], len(order)), item[0])):
        chosen = [p for p in paths if p.name in current] if len(paths) > 1 else paths
        if len(chosen) != 1:
            raise CPMError(f"{folder}: {len(paths)} summaries of cell {name} ({', '.join(p.name for p in paths)}) "
                           "and none of them is the current config's; move the stale ones away")
        summaries.append(read_summary(chosen[0]))
    if not summaries:
        raise CPMError(f"{folder}: no cell summaries of {request.target} / {request.setting} "
                       f"(run make {request.target} first)")
    note = _json_file(folder / "grid.json") or {}
    note |= {"description": budget_for(request.budget, request.target).description, "setting": request.setting}
    out = results_root / request.target
    out.mkdir(parents=True, exist_ok=True)
    reports = {"ablate-supervision": ablate_supervision_report, "compare-heads": compare_heads_report,
               "compare-decoders": compare_decoders_report}
    config = request.config or note.get("config")
    margin = grid_margin(config) if config and Path(config).is_file() else None
    return reports[request.target](load_runs(summaries), note, out, request.setting, extra_folder=folder,
                                   margin=margin, config_path=config)


def request_from_note(note: dict) -> GridRequest:
    """The `GridRequest` a ``grid.json`` records."""
    return GridRequest(note["target"], note["budget"], note["config"], note["sets"], note["data"],
                       note.get("cell_sets", {}))


def request_argv(request: GridRequest) -> list[str]:
    """``python -m cpm.experiments`` arguments that make ``request`` again (machine keys of its ``--set`` left
    out: the machine that runs it chooses those)."""
    argv = [request.target, "--budget", request.budget]
    argv += ["--config", request.config] if request.config else []
    argv += ["--data", request.data] if request.data else []
    for key, value in request.sets.items():
        if key not in MACHINE_KEYS:
            argv += ["--set", f"{key}={toml_value(value)}"]
    for pattern, values in request.cell_sets.items():
        for key, value in values.items():
            argv += ["--cell-set", f"{pattern}:{key}={toml_value(value)}"]
    return argv


# Options that choose which cells of a request train, where and how they report: not part of what the grid is.
_PIECE_OPTIONS = {"--only": True, "--shard": True, "--parallel": True, "--device": True, "--no-progress": False}


def without_options(argv: Sequence[str], names: Sequence[str]) -> list[str]:
    """``argv`` without the options ``names`` (each of `_PIECE_OPTIONS`), given as ``--name value`` or
    ``--name=value`` (flags stand alone)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        name = arg.split("=", 1)[0]
        if name in names:
            skip = _PIECE_OPTIONS[name] and "=" not in arg
            continue
        kept.append(arg)
    return kept


def whole_grid_command(argv: Sequence[str]) -> str:
    """The command that trains every cell of the request ``argv`` makes: ``argv`` without the options that pick a
    piece of it (``--only``, ``--shard``, ``--parallel``), the device or the progress display. The reports quote it,
    since a grid filled in pieces is still the one grid."""
    return shlex.join(["python", "-m", "cpm.experiments", *without_options(argv, list(_PIECE_OPTIONS))])


def write_grid_note(request: GridRequest, *, results_root: Path, command: str) -> None:
    """``grid.json`` beside the summaries: the request, the command and the revision, quoted by the report."""
    from cpm.runtime.checkpoint import git_revision

    folder = results_root / "runs" / request.target / request.setting
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(folder / "grid.json", json.dumps(request.to_json() | {"command": command,
                                                                            "revision": git_revision()},
                                                       indent=1, sort_keys=True) + "\n")


def seed_of(name: str) -> int:
    return int(name.rsplit("-seed", 1)[1])


def run_target(request: GridRequest, *, runs_root: Path = Path("runs"),
               results_root: Path = Path("experiments/results"),
               device: str = "auto", only: str = "*", command: str = "", progress: bool = True,
               log: Callable[[str], None] = print, shard: tuple[int, int] = (0, 1), parallel: int = 1,
               argv: Sequence[str] = ()) -> Path | None:
    """Train the cells of ``request`` that match ``only`` and have no summary yet, then write the report.

    ``shard = (i, n)`` keeps the cells whose seed is i modulo n (a seed's stage-wise chain stays together);
    ``parallel = n`` runs the n shards at once in n processes (``argv`` + ``--shard i/n``), for a GPU that one
    small cell cannot fill; the report is written when all have finished. A shard writes no report."""
    from cpm.targets.codecs import DECODERS

    cells = grid_cells(request, runs_root=runs_root, results_root=results_root, device=device, only=only)
    write_grid_note(request, results_root=results_root, command=command)  # a request whose cells resolve only
    if parallel > 1:
        workers = [subprocess.Popen([sys.executable, "-m", "cpm.experiments", *argv, "--shard", f"{i}/{parallel}",
                                     "--no-progress"]) for i in range(parallel)]
        failed = [code for code in (worker.wait() for worker in workers) if code]
        if failed:
            raise CPMError(f"--parallel: {len(failed)} of {parallel} workers failed (exit {failed[0]})")
    else:
        cells = [cell for cell in cells if seed_of(cell.name) % shard[1] == shard[0]]
        run_cells(cells, target=request.target, setting=request.setting, device=device, progress=progress, log=log,
                  decoders=DECODERS if request.target == "compare-decoders" else ())
        if shard[1] > 1:
            return None
    if request.target == "ablate-supervision":  # once per grid, with the piece that holds its deepest IS model
        steps = budget_for(request.budget, request.target).figure5_steps
        every = grid_cells(request, runs_root=runs_root, results_root=results_root, device=device, only="*")
        if figure5_cell(every) in {cell.name for cell in cells}:
            figure5(results_root / "runs" / request.target / request.setting, every, steps, device=device, log=log)
    fault_point("report")
    return write_target_report(request, results_root=results_root, runs_root=runs_root)


def _parse_sets(texts: Sequence[str]) -> dict[str, Any]:
    """["train.epochs=40", ...] -> {"train.epochs": 40, ...} (values parsed as `cpm --set` parses them)."""
    from cpm.config import parse_override

    sets: dict[str, Any] = {}
    for text in texts:
        for section, values in parse_override(text).items():
            sets |= {f"{section}.{key}": value for key, value in values.items()}
    return sets


def _parse_cell_sets(texts: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["regression-*:train.lr=0.005", ...]`` -> {glob: {dotted key: value}}."""
    cell_sets: dict[str, dict[str, Any]] = {}
    for text in texts:
        pattern, sep, override = text.partition(":")
        if not sep or not pattern or not override:
            raise CPMError(f"--cell-set: expected GLOB:SECTION.KEY=VALUE, got {text!r}")
        cell_sets.setdefault(pattern, {}).update(_parse_sets([override]))
    return cell_sets


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cpm.experiments", description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=[*TARGETS, "report", "repair-records"])
    parser.add_argument("--config", help="TOML config the grid's cells are applied on top of (default: the defaults)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value in every cell (repeatable); a cell's own factor wins")
    parser.add_argument("--cell-set", dest="cell_sets", action="append", default=[], metavar="GLOB:SECTION.KEY=VALUE",
                        help="override a config value in the cells whose name matches GLOB (repeatable); wins over "
                             "the cell's own factors (e.g. a learning rate chosen per head)")
    parser.add_argument("--data", help="dataset folder (data.root) of a real-data config")
    parser.add_argument("--sweep", metavar="SECTION.KEY",
                        help="train nothing: tabulate the committed cells (--only; with --set, only runs with those "
                             "values) of every request of TARGET by the value of this key (e.g. train.lr), into "
                             "<results>/<target>/<target>-sweep-<key>.md")
    parser.add_argument("--budget", default="default", help=f"one of {', '.join(BUDGETS)} (default: default)")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="run directories (default: runs/)")
    parser.add_argument("--results", type=Path, default=Path("experiments/results"),
                        help="tables, plots and cell summaries (default: experiments/results/)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--only", default="*", help="train only the cells whose name matches this glob")
    parser.add_argument("--no-progress", action="store_true", help="one line per epoch instead of progress bars")
    parser.add_argument("--parallel", type=int, default=1, metavar="N",
                        help="train N shards of the grid's seeds at once, in N processes (several small cells on "
                             "one GPU)")
    parser.add_argument("--shard", default="0/1", metavar="I/N", help="train only the cells whose seed is I mod N")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from cpm.training.loop import TrainingInterrupted

    given = list(sys.argv[1:] if argv is None else argv)
    try:
        sets, cell_sets = _parse_sets(args.sets), _parse_cell_sets(args.cell_sets)
        if args.sweep:
            return _sweep(args, sets, command=shlex.join(["python", "-m", "cpm.experiments", *given]))
        if args.target == "repair-records":
            from cpm.experiments.runs import repair_summaries

            repair_summaries(args.results)
            return 0
        if args.target == "report":
            return _report_all(args.results, args.runs)
        request = GridRequest(args.target, args.budget, args.config, sets, args.data, cell_sets)
        path = run_target(request, runs_root=args.runs, results_root=args.results, device=args.device,
                          only=args.only, command=whole_grid_command(given), progress=not args.no_progress,
                          shard=_parse_shard(args.shard), parallel=_parse_parallel(args.parallel),
                          argv=without_options(given, ["--parallel"]))  # each shard's process runs the rest
        if path is not None:
            print(f"wrote {path}")
    except CPMError as error:
        print(f"cpm.experiments {args.target}: error: {error}", file=sys.stderr)
        return 2
    except TrainingInterrupted as stop:  # SIGTERM / SIGINT: the run resumes from last.pt next time
        print(f"cpm.experiments {args.target}: stopped by {stop}; run the same command again to go on",
              file=sys.stderr)
        return 128 + stop.signum
    return 0


def _sweep(args: argparse.Namespace, sets: dict[str, Any], *, command: str) -> int:
    """``--sweep KEY``: the committed cells of every request of the target tabulated by KEY; nothing trains."""
    from cpm.experiments.sweeps import sweep_table

    if args.target == "report":
        raise CPMError("--sweep: name the target whose cells were swept")
    out = sweep_table(args.results, args.target, args.sweep, only=args.only, config=args.config, where=sets,
                      command=command)
    print(f"wrote {out}")
    return 0


def _report_all(results: Path, runs: Path) -> int:
    """``report``: every grid under ``<results>/runs/`` with a finished cell, its tables rebuilt from the summaries."""
    wrote = 0
    for note_path in sorted(results.glob("runs/*/*/grid.json")):
        note = json.loads(note_path.read_text(encoding="utf-8"))
        request = request_from_note(note)
        if not any(is_cell_summary(p) for p in note_path.parent.glob("*.json")):
            print(f"skipped {note_path.parent}: no cell has finished yet")
            continue
        print(f"wrote {write_target_report(request, results_root=results, runs_root=runs)}")
        wrote += 1
    if not wrote:
        raise CPMError(f"{results}/runs: no grid summaries to report")
    return 0


def _parse_shard(text: str) -> tuple[int, int]:
    """``--shard I/N`` -> (I, N) with 0 <= I < N."""
    try:
        shard = tuple(int(part) for part in text.split("/"))
        if len(shard) != 2 or not 0 <= shard[0] < shard[1]:
            raise ValueError
    except ValueError:
        raise CPMError(f"--shard: expected I/N with 0 <= I < N, got {text!r}") from None
    return shard  # type: ignore[return-value]


def _parse_parallel(processes: int) -> int:
    if processes < 1:
        raise CPMError(f"--parallel: expected a positive number of processes, got {processes}")
    return processes
