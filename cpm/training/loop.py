"""Training runs from a `Config` (pieces from `cpm.runtime` and `cpm.training.optim`): run folder, checkpoints, resume.

A run lives in ``<train.runs_dir>/<train.name>/``: ``config.toml`` (resolved), ``metrics.jsonl``
(one line per evaluation; ``elapsed_seconds`` is the wall time since the run (re)started, ``run_seconds`` that of
all its sittings together, each counted to its last checkpoint, so that a resumed run's time is what one sitting
would have taken), ``steps.jsonl`` (the
loss terms and lr every ``train.log_every`` steps), TensorBoard events, ``last.pt`` (after every epoch, and where a
stop signal ended a run) and ``best.pt`` (the epoch with the best ``train.best_metric``, by default final-stage
PCK@0.2 when it is measured, else at the first threshold, and the held-out loss for a paf model, whose evaluation
here is its loss per stage (`held_out_loss`); written after the first evaluation whatever its score, and naming its
metric under ``best``).

The checkpoint is the record of what was trained, and the logs follow it: rows are written as the work is done, the
rows up to a checkpoint reach the disk before it, and a resumed run first cuts every log back to the checkpoint it
goes on from (`align_records`: metrics.jsonl, steps.jsonl, a grid cell's train.log; TensorBoard's ``purge_step``),
so that a run killed anywhere (SIGKILL, a power cut) and resumed has the records of one uninterrupted run. An
epoch's metrics.jsonl row is written after the epoch's checkpoint, which carries it (``metrics_row``) for a kill
between the two.
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from cpm.config import BEST_THRESHOLD, Config, apply, best_metric, config_from_dict, validate
from cpm.data.dataset import usable_cores
from cpm.data.loader import make_loader
from cpm.device import autocast, compile_model, resolve_amp, resolve_device
from cpm.errors import CheckpointError, CPMError
from cpm.evaluation.evaluate import evaluate
from cpm.evaluation.report import flatten_metrics
from cpm.io import (
    append_jsonl,
    atomic_write,
    fault_point,
    last_of_each,
    read_log,
    remove_orphaned_temporaries,
    sync_file,
    write_jsonl,
)
from cpm.models import set_trainable_stages
from cpm.runtime.batch import prepare_batch
from cpm.runtime.build import (
    build_codec,
    build_datasets,
    build_loss,
    build_network,
    build_stage_weights,
    seed_everything,
)
from cpm.runtime.checkpoint import (
    git_revision,
    load_checkpoint,
    load_matching_state,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cpm.skeleton import get_skeleton
from cpm.targets.codecs import HeatmapCodec, RegressionCodec
from cpm.training.distributed import (
    DistributedContext,
    StopSignals,
    all_reduce_mean,
    any_rank,
    broadcast_object,
    init_distributed,
    shutdown_distributed,
)
from cpm.training.ema import WeightAverage
from cpm.training.optim import build_optimizer
from cpm.training.step import read_losses, train_step
from cpm.training.summaries import write_evaluation_summaries


def selection_score(results: dict, metric: str) -> float:
    """The value of `cpm.config.best_metric` ``metric`` in evaluation ``results``: final-stage PCK or loss."""
    if metric == "loss":
        return float(results["loss"][-1])
    by_name = {f"pck@{a:g}": a for a in results["pck"]}
    return float(results["pck"][by_name[metric]][-1])


@torch.no_grad()
def held_out_loss(model: torch.nn.Module, loader, codec, *, device: torch.device, amp_dtype: torch.dtype | None,
                  channels_last: bool, progress: bool, loss_fn: Callable[..., dict[str, torch.Tensor]]) -> dict:
    """The per-epoch evaluation of a model whose outputs training does not decode (a paf model: its people come from
    grouping, `cpm.targets.grouping`): every stage's held-out loss, each weighted 1, averaged over the batches as
    `cpm.evaluation.evaluate.evaluate` averages them -> {"samples", "pck": {} (none measured), "loss": [per stage]}."""
    model.eval()
    stage_losses, samples = [], 0
    for batch in tqdm(loader, desc="eval", disable=not progress, dynamic_ncols=True, leave=False):
        image, center_map, targets, weights = prepare_batch(batch, codec, device, channels_last)
        with autocast(device, amp_dtype):
            outputs = model(image, center_map)
        losses = loss_fn(outputs, targets, weights, [1.0] * len(outputs))
        stage_losses.append(torch.stack([losses[f"loss/stage{t}"] for t in range(1, len(outputs) + 1)]))
        samples += image.shape[0]
    return {"samples": samples, "pck": {}, "loss": torch.stack(stage_losses).mean(dim=0).tolist()}


def is_better(score: float, best: float, metric: str) -> bool:
    """Whether ``score`` beats ``best`` (NaN: nothing yet, so any score does); loss is minimised, PCK maximised."""
    if math.isnan(best):
        return True
    return score < best if metric == "loss" else score > best


def new_run_dir(runs_dir: str, name: str) -> Path:
    """``runs/<name>``, or ``runs/<name>-2``, ``-3``... when that exists: a new run never overwrites."""
    base = Path(runs_dir)
    candidate, n = base / name, 1
    while candidate.exists():
        n += 1
        candidate = base / f"{name}-{n}"
    return candidate


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as file:
        file.seek(0, os.SEEK_END)
        if file.tell() == 0:
            return True
        file.seek(-1, os.SEEK_END)
        return file.read(1) == b"\n"


_EPOCH_LINE = re.compile(r"epoch (\d+)/\d+ \|")


def align_records(run_dir: str | Path, checkpoint: dict, log: Callable[[str], None] = print) -> None:
    """Cut the records of the run in ``run_dir`` back to ``checkpoint`` (the last.pt it goes on from): metrics.jsonl
    to the epochs it completed, steps.jsonl to the steps it trained, ``train.log`` (a grid cell's log) to the lines
    before its next epoch's. The rows of work done after the checkpoint by a sitting that was then killed go: the
    resumed run does that work again and writes them again. A last line cut short is dropped, an epoch row that a
    kill between the checkpoint and metrics.jsonl left out is written from the checkpoint (``metrics_row``), and the
    temporary files of writes a killed process cut short are removed, each said in one line to ``log``; files that
    already match are left alone."""
    run_dir = Path(run_dir)
    for orphan in remove_orphaned_temporaries(run_dir):
        log(f"{orphan}: removed (a write cut short by a stopped process)")
    epoch, step = int(checkpoint["epoch"]), int(checkpoint["step"])
    carried = checkpoint.get("metrics_row") or {}
    for name, key, upto in (("metrics.jsonl", "epoch", epoch), ("steps.jsonl", "step", step)):
        path = run_dir / name
        rows, cut = read_log(path) if path.is_file() else ([], None)
        kept = last_of_each(rows, key, upto=upto, path=path)
        restored = key == "epoch" and carried.get("epoch") == epoch > 0 and (not kept or kept[-1]["epoch"] < epoch)
        if restored:
            kept.append(carried)
        if cut:
            log(cut)
        dropped = len(rows) - (len(kept) - restored)
        if dropped:
            log(f"{path}: cut back to the checkpoint (epoch {epoch}, step {step}): {dropped} rows of work done "
                "after it dropped, to be done again")
        if restored:
            log(f"{path}: the row of epoch {epoch} written from its checkpoint (a stop before it was written)")
        if kept != rows or cut or (path.is_file() and not _ends_with_newline(path)):
            write_jsonl(path, kept)
    path = run_dir / "train.log"
    if path.is_file():
        text = path.read_text(encoding="utf-8", errors="replace")
        lines = text.splitlines()
        if lines and not text.endswith("\n"):
            lines.pop()  # a line cut short
        later = [i for i, line in enumerate(lines) if (m := _EPOCH_LINE.match(line)) and int(m[1]) > epoch]
        kept_lines = lines[:later[0]] if later else lines
        if kept_lines != text.splitlines():
            with atomic_write(path, "w") as file:
                file.write("".join(line + "\n" for line in kept_lines))


class TrainingInterrupted(Exception):  # noqa: N818 - a stop the user asked for, not an error
    """SIGTERM or SIGINT stopped training after a whole step and ``last.pt`` holds that step. `cpm train` then
    exits with status 128 + the signal's number: 143 for SIGTERM, 130 for SIGINT (Ctrl-C)."""

    def __init__(self, signum: int, step: int, checkpoint: Path) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        super().__init__(f"{name} at step {step}: wrote {checkpoint}; continue with cpm train --resume {checkpoint}")


def _quiet(*_args, **_kwargs) -> None:
    pass


# What ``--set`` may change when a run is resumed: its length and how it runs, not what it trains.
RESUMABLE_KEYS = frozenset({"train.epochs", "train.log_every", "train.checkpoint_every", "train.device",
                            "train.threads", "train.compile", "data.workers", "eval.batch_size"})


def resumed_config(checkpoint: dict, path: str | Path, overrides: dict[str, dict[str, Any]] | None) -> Config:
    """The config saved in a checkpoint, with ``overrides`` ({section: {key: value}}) of `RESUMABLE_KEYS` applied:
    a larger ``train.epochs`` extends the run (the learning-rate schedule is recomputed for the new length)."""
    try:
        config = config_from_dict(checkpoint["config"])
    except CPMError as error:
        raise CheckpointError(f"{path}: {error}") from None
    if overrides:
        keys = [f"{section}.{key}" for section, values in overrides.items() for key in values]
        fixed = [key for key in keys if key not in RESUMABLE_KEYS]
        if fixed:
            raise CPMError(f"--set {fixed[0]}: cannot change when resuming {path} (only "
                           f"{', '.join(sorted(RESUMABLE_KEYS))}); start a new run instead")
        config = validate(apply(config, overrides, source="--set"))
    return config


def train(config: Config | None, *, resume: str | Path | None = None, progress: bool = True,
          log=print, overrides: dict[str, dict[str, Any]] | None = None,
          until: Callable[[dict], bool] | None = None) -> dict:
    """Train from ``config`` (or continue the run whose ``last.pt`` is ``resume``, mid-epoch included, with
    ``overrides`` of `RESUMABLE_KEYS` applied to its saved config). Returns the final evaluation results plus
    ``run_dir``. ``until(metrics)`` (the epoch's ``metrics.jsonl`` line) returning True ends the run after that
    epoch's evaluation and checkpoint, as if it had been given that many epochs (``--resume`` goes on from there).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the ranks form a process group (`cpm.training.distributed`), the model is
    wrapped in DistributedDataParallel and ``train.batch_size`` stays the global batch: each rank trains on
    ``batch_size / world_size`` samples of it. Every rank evaluates the whole held-out split with the same
    weights, so the metrics are the same on every rank; rank 0 alone writes files, logs and progress bars.
    SIGTERM / SIGINT finish the current step, write ``last.pt`` and raise `TrainingInterrupted`."""
    checkpoint = None
    if resume is not None:
        checkpoint = load_checkpoint(resume)
        config = resumed_config(checkpoint, resume, overrides)
    if config is None:
        raise CPMError("train: give a config or a checkpoint to resume")
    if checkpoint is None:  # data.missing_pose_files = "procedural": the mixture this machine's files allow
        from cpm.data.synthetic.sources import drop_missing_pose_files

        config = drop_missing_pose_files(config, log if os.environ.get("RANK", "0") == "0" else _quiet)
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    owns_group = not torch.distributed.is_initialized()
    context, device = init_distributed(resolve_device(config.train.device))
    try:
        with StopSignals() as signals:
            trainer = Trainer(config, checkpoint=checkpoint, resume=resume, context=context, device=device,
                              signals=signals, progress=progress and context.is_main,
                              log=log if context.is_main else _quiet, until=until)
            return trainer.run()
    finally:
        if owns_group:
            shutdown_distributed()


@dataclass
class RunState:
    """What a run carries from step to step and saves in ``last.pt``: the position (``epoch``: epochs completed,
    ``step``), the best score so far and the epoch it came from (NaN, 0: none yet), and ``seconds``: the wall time
    of the earlier sittings, each up to its last checkpoint. `Trainer.checkpoint` writes it with the weights and the
    optimiser; `Trainer.restore` reads it back."""

    epoch: int = 0
    step: int = 0
    best: float = math.nan
    best_epoch: int = 0
    seconds: float = 0.0


@dataclass
class EpochSums:
    """The loss terms summed over the epoch in progress (``epoch``, ``steps``: its mean train/ terms in
    metrics.jsonl) and over the steps since the last steps.jsonl row (``pending``, ``pending_steps``). A mid-epoch
    last.pt of a one-process run holds them, so that the resumed epoch logs what one sitting would have."""

    epoch: dict[str, torch.Tensor] = field(default_factory=dict)
    steps: int = 0
    pending: dict[str, torch.Tensor] = field(default_factory=dict)
    pending_steps: int = 0

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        for name, value in losses.items():
            detached = value.detach()
            self.epoch[name] = self.epoch.get(name, 0) + detached
            self.pending[name] = self.pending.get(name, 0) + detached
        self.steps += 1
        self.pending_steps += 1

    def state(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "steps": self.steps, "pending": self.pending, "pending_steps": self.pending_steps}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None, device: torch.device) -> EpochSums:
        if not state:
            return cls()
        return cls({k: v.to(device) for k, v in state["epoch"].items()}, int(state["steps"]),
                   {k: v.to(device) for k, v in state["pending"].items()}, int(state["pending_steps"]))


class Trainer:
    """One training run of ``config`` on this process: the datasets and loaders, the network (wrapped for
    DistributedDataParallel / `torch.compile` as ``network``; ``model`` is the plain module that is evaluated
    and saved), the optimiser and schedule, the step's settings and the `RunState`. `run` trains the remaining
    epochs; a resumed run starts from ``checkpoint`` (read from ``resume``), mid-epoch included."""

    def __init__(self, config: Config, *, checkpoint: dict | None, resume: str | Path | None,
                 context: DistributedContext, device: torch.device, signals: StopSignals, progress: bool,
                 log: Callable[[str], None], until: Callable[[dict], bool] | None = None) -> None:
        t = config.train
        if t.batch_size % context.world_size:
            raise CPMError(f"train.batch_size: the global batch {t.batch_size} does not divide among "
                           f"{context.world_size} processes")
        self.config, self.context, self.device, self.signals = config, context, device, signals
        self.progress, self.log, self.until = progress, log, until
        self.last_metrics: dict = {}  # the last epoch's metrics.jsonl line
        self.sums = EpochSums()  # of the epoch in progress
        self.resumed_step: int | None = None  # the step of the checkpoint this sitting goes on from
        self.render_seconds = 0.0  # data.prerender: the rendering ahead of this epoch (in its train_seconds)
        self.started = time.perf_counter()  # reset when `run` starts; checkpoints count from here until then
        self.rank_batch = t.batch_size // context.world_size
        self.amp_dtype = resolve_amp(t.amp, device)
        if device.type == "cuda":  # fixed input sizes: let cuDNN pick the fastest convolution algorithms
            torch.backends.cudnn.benchmark = not t.deterministic
        run_dir = Path(resume).parent if resume is not None else new_run_dir(t.runs_dir, t.name)
        self.run_dir = Path(broadcast_object(str(run_dir), context))
        seed_everything(t.seed, t.deterministic)

        self.skeleton = get_skeleton(config.data.skeleton)
        self.codec = build_codec(config)  # the held-out split's, at data.input_size
        self.codecs = {config.data.input_size: self.codec}
        self.train_set, self.val_set = build_datasets(config)
        self.train_loader = self.make_train_loader()
        self.val_loader = make_loader(self.val_set, batch_size=config.eval.batch_size, shuffle=False,
                                      workers=config.data.workers, device=device, seed=t.seed)
        self.steps_per_epoch = len(self.train_loader)
        if self.steps_per_epoch == 0:
            raise CPMError(f"data.train_samples: {config.data.train_samples} is fewer than one batch of "
                           f"{t.batch_size}")

        model = build_network(config)
        if config.model.backbone_weights and checkpoint is None:  # ImageNet weights, only when a run starts
            model.image_features.load_vgg_weights(config.model.backbone_weights)
        if t.init_from and checkpoint is None:  # stage-wise training: start from the previous stages' weights
            copied = load_matching_state(model, t.init_from)
            log(f"init_from {t.init_from}: {len(copied)} of {len(model.state_dict())} tensors")
        set_trainable_stages(model, t.trainable_stages)
        model = model.to(device)
        if t.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.optimizer, self.scheduler = build_optimizer(model, config, self.steps_per_epoch * t.epochs)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp_dtype == torch.float16)
        self.stage_weights = build_stage_weights(config)
        self.loss_fn = build_loss(config, model)
        self.selection = best_metric(config)
        self.state = RunState()
        # train.ema: the average of the weights is what evaluations score and checkpoints hold as "model"
        self.average = WeightAverage(model, t.ema) if t.ema > 0 else None
        self.skip_batches = self.restore(checkpoint, resume) if checkpoint is not None else 0
        network = model
        if context.enabled:  # gradients averaged over ranks; the wrapper shares the parameters of `model`
            network = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        if t.compile:  # the training step only; evaluation and checkpoints use `model` itself
            network = compile_model(network, device)
        self.network = network
        self.reduce_losses = functools.partial(all_reduce_mean, context=context) if context.enabled else None
        self.writer = None

    # ---- saving and resuming ------------------------------------------------------------------------------

    @property
    def evaluated(self) -> torch.nn.Module:
        """The model that evaluations score and checkpoints hold as "model": the weights' average with
        ``train.ema``, else the trained model."""
        return self.average.average if self.average is not None else self.model

    def checkpoint(self, batches: int = 0) -> dict[str, Any]:
        """The checkpoint of the run as it stands; ``batches`` of the next epoch already trained (mid-epoch, with
        the epoch's `EpochSums` when one process trains). With ``train.ema``, "model" is the average and
        "raw_model" the weights training goes on from. "metrics_row" is the last epoch's metrics.jsonl row."""
        s = self.state
        raw = {"raw_model": self.model.state_dict()} if self.average is not None else {}
        sums = {"epoch_sums": self.sums.state()} if batches and not self.context.enabled else {}
        return {**sums, "metrics_row": self.last_metrics,
            "model": self.evaluated.state_dict(), **raw, "config": self.config.to_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "epoch": s.epoch, "step": s.step, "best_metric": s.best,
            "best": {"metric": self.selection, "stage": "final", "value": s.best, "epoch": s.best_epoch},
            "data_order": {"seed": self.config.train.seed, "epoch": s.epoch, "batches": batches},
            "rng": rng_state(), "git_revision": git_revision(), "run_seconds": round(self.run_seconds(), 2),
        }

    def run_seconds(self) -> float:
        """Wall seconds of the run: the earlier sittings' (to their last checkpoints) and this one's so far."""
        return self.state.seconds + time.perf_counter() - self.started

    def restore(self, checkpoint: dict, path: str | Path) -> int:
        """Load the weights, optimiser, schedule, scaler, `RunState`, `EpochSums` and random generators of
        ``checkpoint``, after cutting the run's records back to it (`align_records`) and making best.pt whole.
        Returns the batches of its epoch already trained."""
        batches = checkpoint.get("data_order", {}).get("batches", 0)
        if self.context.is_main:
            align_records(self.run_dir, checkpoint, self.log)
        self.resumed_step, self.last_metrics = int(checkpoint["step"]), checkpoint.get("metrics_row") or {}
        self.sums = EpochSums.from_state(checkpoint.get("epoch_sums") if batches else None, self.device)
        load_model_state(self.model, checkpoint.get("raw_model", checkpoint["model"]), path)
        if self.average is not None:
            load_model_state(self.average.average, checkpoint["model"], path)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.scaler.load_state_dict(checkpoint["scaler"])
        self.state = RunState(epoch=checkpoint["epoch"], step=checkpoint["step"],
                              seconds=float(checkpoint.get("run_seconds", 0.0)))
        # a checkpoint without "best" holds only best_metric: final-stage PCK at BEST_THRESHOLD, or a negative
        # number where none was measured
        saved = checkpoint.get("best") or {"metric": f"pck@{BEST_THRESHOLD:g}", "value": checkpoint["best_metric"]}
        if saved["metric"] == self.selection and saved["value"] >= 0:
            self.state.best, self.state.best_epoch = float(saved["value"]), int(saved.get("epoch", 0))
        set_rng_state(checkpoint["rng"])
        if self.context.is_main and not batches and self.state.best_epoch == self.state.epoch > 0:
            self.complete_best(path)
        if self.state.epoch >= self.config.train.epochs:
            raise CPMError(f"{path}: this run already finished its {self.config.train.epochs} epochs")
        return batches

    def complete_best(self, path: str | Path) -> None:
        """best.pt is written after last.pt: a stop between the two leaves a last.pt whose epoch is the best and an
        older best.pt. Copy ``path`` (that last.pt) over it then."""
        best = self.run_dir / "best.pt"
        try:
            held = torch.load(best, map_location="cpu", weights_only=True, mmap=True)["step"]
        except Exception:  # noqa: BLE001 - a best.pt that cannot be read is replaced like a stale one
            held = None
        if held != self.state.step:
            with open(path, "rb") as source, atomic_write(best) as file:
                shutil.copyfileobj(source, file)
            self.log(f"{best}: behind {path} (a stop between the two writes): copied it from {Path(path).name}")

    def save(self, batches: int = 0, *, is_best: bool = False) -> Path:
        """``last.pt`` (and ``best.pt`` when ``is_best``), written by rank 0 alone, once the records of the work it
        holds are on disk. Returns the path of last.pt."""
        if self.context.is_main:
            if self.writer is not None:
                self.writer.flush()
            sync_file(self.run_dir / "steps.jsonl")
            sync_file(self.run_dir / "metrics.jsonl")
            state = self.checkpoint(batches)
            save_checkpoint(state, self.run_dir / "last.pt")
            if is_best:
                save_checkpoint(state, self.run_dir / "best.pt")
        return self.run_dir / "last.pt"

    # ---- one epoch ------------------------------------------------------------------------------------------

    def codec_at(self, epoch: int) -> HeatmapCodec | RegressionCodec:
        """The codec of the training crops of ``epoch`` (``data.epoch_input_sizes``: one per crop side)."""
        size = self.train_set.size_at(epoch)
        if size not in self.codecs:
            self.codecs[size] = build_codec(self.config, size)
        return self.codecs[size]

    def should_stop(self, at_log_step: bool) -> bool:
        """Whether a stop signal asks to end the run after this step (ranks agree at log steps only)."""
        if not self.context.enabled:
            return self.signals.requested
        return at_log_step and any_rank(self.signals.requested, self.context, self.device)

    def log_steps(self, values: dict[str, float]) -> None:
        """The loss terms, lr and speed of the last ``train.log_every`` steps: TensorBoard and steps.jsonl."""
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(f"train/{name}", value, self.state.step)
        append_jsonl(self.run_dir / "steps.jsonl", {"step": self.state.step, **values})
        fault_point("steps-row")

    def train_epoch(self, epoch: int, skipped: int = 0) -> dict[str, float]:
        """One pass over the training loader, one `train_step` per batch (``skipped`` batches of it were trained
        before a resume). Returns the mean of each loss term. A stop signal ends the pass early, after a whole
        step, with ``last.pt`` written: `TrainingInterrupted`. Every ``train.checkpoint_every`` steps a mid-epoch
        ``last.pt`` resumes at the next batch."""
        t, s = self.config.train, self.state
        self.network.train()
        if not skipped:
            self.sums = EpochSums()  # a mid-epoch resume goes on with the checkpoint's
        sums = self.sums
        batches = skipped  # of this epoch, the resumed ones included
        seen = 0
        codec = self.codec_at(epoch)
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{t.epochs}", disable=not self.progress,
                   dynamic_ncols=True, leave=False)
        start = time.perf_counter()
        for batch in bar:
            image, center_map, targets, weights = prepare_batch(batch, codec, self.device, t.channels_last)
            losses = train_step(self.network, image, center_map, targets, weights, optimizer=self.optimizer,
                                loss_fn=self.loss_fn, stage_weights=self.stage_weights, device=self.device,
                                scaler=self.scaler, amp_dtype=self.amp_dtype, grad_clip=t.grad_clip)
            self.scheduler.step()
            s.step += 1
            if self.average is not None:
                self.average.update(s.step)
            batches += 1
            seen += image.shape[0]
            sums.add(losses)
            fault_point("step")
            at_log_step = s.step % t.log_every == 0
            if at_log_step:
                pending = sums.pending
                values = read_losses(self.reduce_losses(pending) if self.reduce_losses else pending,
                                     sums.pending_steps, s.step)
                values["lr"] = self.optimizer.param_groups[0]["lr"]
                values["images_per_second"] = seen / (time.perf_counter() - start)
                bar.set_postfix(loss=f"{values['loss']:.5f}", img_s=f"{values['images_per_second']:.0f}")
                sums.pending, sums.pending_steps = {}, 0
                self.log_steps(values)
            if t.checkpoint_every and s.step % t.checkpoint_every == 0 and batches < self.steps_per_epoch:
                self.save(batches)
            if self.should_stop(at_log_step):
                break
        bar.close()
        if batches < self.steps_per_epoch:  # a stop signal ended the epoch early
            raise TrainingInterrupted(self.signals.received or signal.SIGTERM, s.step, self.save(batches))
        totals = sums.epoch
        return read_losses(self.reduce_losses(totals) if self.reduce_losses and totals else totals, sums.steps, s.step)

    # ---- the run --------------------------------------------------------------------------------------------

    def open_run_dir(self) -> None:
        """config.toml and the TensorBoard writer (rank 0)."""
        if not self.context.is_main:
            return
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.toml").write_text(self.config.to_toml(), encoding="utf-8")
        except OSError as error:
            raise CPMError(f"train.runs_dir: cannot write the run folder {self.run_dir} ({error.strerror})") from None
        from torch.utils.tensorboard import SummaryWriter  # imported late: it is slow to import

        # a resumed run: TensorBoard hides the events a killed sitting wrote after the checkpoint
        purge = None if self.resumed_step is None else self.resumed_step + 1
        self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=purge)

    def end_of_epoch(self, epoch: int, train_losses: dict[str, float], train_seconds: float, steps: int) -> dict:
        """Evaluate on the held-out split, write the summaries, log one line, write last.pt (and best.pt), then
        metrics.jsonl (the checkpoint carries the row: `align_records` writes it where a stop came between)."""
        t, s = self.config.train, self.state
        bottom_up = self.config.model.head == "paf"  # no decoding here: the held-out loss alone
        scoring = held_out_loss if bottom_up else functools.partial(
            evaluate, torso=self.skeleton.torso, thresholds=self.config.eval.pck_thresholds,
            decoder=self.config.eval.decoder)
        results = scoring(self.evaluated, self.val_loader, self.codec, device=self.device, amp_dtype=self.amp_dtype,
                          channels_last=t.channels_last, progress=self.progress, loss_fn=self.loss_fn)
        fault_point("evaluated")
        metrics = {"epoch": epoch + 1, "step": s.step, "train_seconds": round(train_seconds, 2),
                   "elapsed_seconds": round(time.perf_counter() - self.started, 2),
                   "run_seconds": round(self.run_seconds(), 2),
                   "images_per_second": round(steps * t.batch_size / train_seconds, 1),
                   **({"render_seconds": round(self.render_seconds, 2)} if self.render_seconds else {}),
                   **{f"train/{k}": v for k, v in train_losses.items()}, **flatten_metrics(results)}
        if self.writer is not None:
            for name, value in metrics.items():
                if name.startswith(("train/", "val/")) or name == "images_per_second":
                    self.writer.add_scalar(name, value, s.step)
        if self.writer is not None and not bottom_up:  # its images draw decoded keypoints
            write_evaluation_summaries(self.writer, self.model, self.optimizer, step=s.step, results=results,
                                       val_set=self.val_set, codec=self.codec, skeleton=self.skeleton,
                                       device=self.device)
        self.last_metrics, self.render_seconds = metrics, 0.0
        final = {a: f"{100 * v[-1]:.1f}" for a, v in results["pck"].items()}
        scores = ("held-out loss per stage " + " ".join(f"{v:.5f}" for v in results["loss"]) if bottom_up else
                  "final-stage PCK " + " ".join(f"@{a:g} {v}" for a, v in final.items()))
        self.log(f"epoch {epoch + 1}/{t.epochs} | loss {train_losses.get('loss', math.nan):.5f} | "
                 f"{metrics['images_per_second']:.0f} img/s | {scores}")
        s.epoch = epoch + 1
        score = selection_score(results, self.selection)
        is_best = is_better(score, s.best, self.selection)
        if is_best:
            s.best, s.best_epoch = score, epoch + 1
        self.save(is_best=is_best)
        fault_point("saved")
        if self.writer is not None:
            append_jsonl(self.run_dir / "metrics.jsonl", metrics)
            fault_point("metrics-row")
        return results

    def render_block(self, epoch: int) -> None:
        """``data.prerender``: the frames of ``epoch``'s block, rendered on every core before it trains, and a new
        training loader whose worker starts with them (the last one's worker holds the last block's frames)."""
        self.train_loader = None  # its worker ends (and frees the last block's frames) before the rendering
        started = time.perf_counter()
        fault_point("prerender")
        # the processes of one machine (torchrun's LOCAL_WORLD_SIZE) share its cores; each renders the whole block
        sharing = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        self.train_set.prerender(epoch, processes=max(1, usable_cores() // sharing), progress=self.progress)
        self.render_seconds = time.perf_counter() - started
        self.train_loader = self.make_train_loader()

    def make_train_loader(self):
        """This process's share of each epoch's training batches (`make_loader`)."""
        return make_loader(self.train_set, batch_size=self.rank_batch, shuffle=True, workers=self.config.data.workers,
                           device=self.device, seed=self.config.train.seed, drop_last=True,
                           world_size=self.context.world_size, rank=self.context.rank)

    def run(self) -> dict:
        """Train the remaining epochs. Returns the last evaluation's results plus ``run_dir`` and ``rank``."""
        t = self.config.train
        self.started = time.perf_counter()  # metrics.jsonl's elapsed_seconds: wall time since the run (re)started
        self.open_run_dir()
        parameters = sum(p.numel() for p in self.model.parameters())
        self.log(f"run {self.run_dir} | {parameters / 1e6:.2f}M parameters | {self.model.num_stages} stages | "
                 f"device {self.device} | autocast {self.amp_dtype or 'off'} | {t.epochs} epochs x "
                 f"{self.steps_per_epoch} steps"
                 + (f" | {self.context.world_size} processes x {self.rank_batch}" if self.context.enabled else ""))
        results: dict = {}
        try:
            first_epoch = self.state.epoch
            for epoch in range(first_epoch, t.epochs):
                skipped = self.skip_batches if epoch == first_epoch else 0
                first_step, started = self.state.step, time.perf_counter()
                if self.config.data.prerender and (epoch == first_epoch or epoch % self.config.data.render_epochs == 0):
                    self.render_block(epoch)  # counted in the epoch's time
                self.train_set.set_epoch(epoch)
                self.train_loader.sampler.set_epoch(epoch)
                self.train_loader.sampler.set_start(skipped * self.rank_batch)  # mid-epoch resume: the rest
                train_losses = self.train_epoch(epoch, skipped)
                results = self.end_of_epoch(epoch, train_losses, time.perf_counter() - started,
                                            self.state.step - first_step)
                if epoch + 1 < t.epochs and self.until is not None and self.until(self.last_metrics):
                    self.log(f"stopped after epoch {epoch + 1} of {t.epochs}: the run's stopping condition is met")
                    break
                if epoch + 1 < t.epochs and self.should_stop(True):
                    raise TrainingInterrupted(self.signals.received or signal.SIGTERM, self.state.step,
                                              self.run_dir / "last.pt")
        finally:
            if self.writer is not None:
                self.writer.close()
        results["run_dir"], results["rank"] = str(self.run_dir), self.context.rank
        return results
