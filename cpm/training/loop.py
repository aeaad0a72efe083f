"""Training runs from a `Config` (pieces from `cpm.training.builders`): run directory, checkpoints, resume.

A run lives in ``<train.runs_dir>/<train.name>/``: ``config.toml`` (resolved), ``metrics.jsonl``
(one line per evaluation), ``steps.jsonl`` (the loss terms and lr every ``train.log_every`` steps),
TensorBoard events, ``last.pt`` (after every epoch, and where a stop signal ended a run) and ``best.pt``
(the epoch with the best ``train.best_metric``, by default final-stage PCK@0.2 when it is measured, else at the first
threshold; written after the first evaluation whatever its score, and naming its metric under ``best``).
"""

from __future__ import annotations

import functools
import math
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from cpm.config import Config, apply, best_metric, config_from_dict, validate
from cpm.data.loader import make_loader
from cpm.device import compile_model, resolve_amp, resolve_device
from cpm.errors import CheckpointError, CPMError
from cpm.evaluation.evaluate import evaluate
from cpm.evaluation.report import flatten_metrics
from cpm.io import append_jsonl
from cpm.models import set_trainable_stages
from cpm.skeleton import get_skeleton
from cpm.targets.codecs import HeatmapCodec, RegressionCodec
from cpm.training.builders import (
    build_codec,
    build_datasets,
    build_loss,
    build_network,
    build_optimizer,
    build_stage_weights,
    seed_everything,
)
from cpm.training.checkpoint import (
    git_revision,
    load_checkpoint,
    load_matching_state,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cpm.training.distributed import (
    DistributedContext,
    StopSignals,
    all_reduce_mean,
    any_rank,
    broadcast_object,
    init_distributed,
    shutdown_distributed,
)
from cpm.training.step import LossFn, prepare_batch, read_losses, train_step
from cpm.training.summaries import write_evaluation_summaries

SELECTION_THRESHOLD = 0.2  # best.pt keeps the best final-stage PCK at this threshold, when it is measured


def selection_score(results: dict, metric: str) -> float:
    """The value of `cpm.config.best_metric` ``metric`` in evaluation ``results``: final-stage PCK or loss."""
    if metric == "loss":
        return float(results["loss"][-1])
    by_name = {f"pck@{a:g}": a for a in results["pck"]}
    return float(results["pck"][by_name[metric]][-1])


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


def train_one_epoch(
    model: torch.nn.Module,
    loader: Iterable[dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    codec: HeatmapCodec | RegressionCodec,
    stage_weights: list[float],
    scaler: torch.amp.GradScaler,
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    grad_clip: float = 0.0,
    log_every: int = 25,
    step: int = 0,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    description: str = "train",
    should_stop: Callable[[bool], bool] | None = None,
    reduce_losses: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    loss_fn: LossFn,
    on_step: Callable[[int], None] | None = None,
) -> tuple[int, dict[str, float]]:
    """One pass over ``loader``, one `train_step` per batch. Returns (global step after the epoch, mean of each
    loss term).

    ``should_stop(at_log_step)`` is asked after every step; True ends the epoch early (a stop signal: the
    caller writes a checkpoint). ``on_step(step)`` runs after every step (mid-epoch checkpoints).
    ``reduce_losses`` (the mean over ranks) is applied before losses are read.
    ``loss_fn(outputs, targets, weights, stage_weights)`` -> {"loss", "loss/stage1", ...} (`cpm.targets.losses`)."""
    model.train()
    sums: dict[str, torch.Tensor] = {}
    pending: dict[str, torch.Tensor] = {}
    pending_steps = epoch_steps = seen = 0
    bar = tqdm(loader, desc=description, disable=not progress, dynamic_ncols=True, leave=False)
    start = time.perf_counter()
    for batch in bar:
        image, center_map, targets, weights = prepare_batch(batch, codec, device, channels_last)
        losses = train_step(model, image, center_map, targets, weights, optimizer=optimizer, loss_fn=loss_fn,
                            stage_weights=stage_weights, device=device, scaler=scaler, amp_dtype=amp_dtype,
                            grad_clip=grad_clip)
        scheduler.step()
        step += 1
        epoch_steps += 1
        seen += image.shape[0]
        for name, value in losses.items():
            detached = value.detach()
            sums[name] = sums.get(name, 0) + detached
            pending[name] = pending.get(name, 0) + detached
        pending_steps += 1
        at_log_step = step % log_every == 0
        if at_log_step:
            values = read_losses(reduce_losses(pending) if reduce_losses else pending, pending_steps, step)
            values["lr"] = optimizer.param_groups[0]["lr"]
            values["images_per_second"] = seen / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{values['loss']:.5f}", img_s=f"{values['images_per_second']:.0f}")
            if on_log is not None:
                on_log(step, values)
            pending, pending_steps = {}, 0
        if on_step is not None:
            on_step(step)
        if should_stop is not None and should_stop(at_log_step):
            break
    bar.close()
    return step, read_losses(reduce_losses(sums) if reduce_losses and sums else sums, epoch_steps, step)




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
          log=print, overrides: dict[str, dict[str, Any]] | None = None) -> dict:
    """Train from ``config`` (or continue the run whose ``last.pt`` is ``resume``, mid-epoch included, with
    ``overrides`` of `RESUMABLE_KEYS` applied to its saved config). Returns the final evaluation results plus
    ``run_dir``.

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
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    owns_group = not torch.distributed.is_initialized()
    context, device = init_distributed(resolve_device(config.train.device))
    try:
        with StopSignals() as signals:
            return _train(config, checkpoint=checkpoint, resume=resume, context=context, device=device,
                          signals=signals, progress=progress and context.is_main,
                          log=log if context.is_main else _quiet)
    finally:
        if owns_group:
            shutdown_distributed()


def _train(config: Config, *, checkpoint: dict | None, resume: str | Path | None, context: DistributedContext,
           device: torch.device, signals: StopSignals, progress: bool, log) -> dict:
    t = config.train
    if t.batch_size % context.world_size:
        raise CPMError(f"train.batch_size: the global batch {t.batch_size} does not divide among "
                       f"{context.world_size} processes")
    rank_batch = t.batch_size // context.world_size
    amp_dtype = resolve_amp(t.amp, device)
    if device.type == "cuda":  # fixed input sizes: let cuDNN pick the fastest convolution algorithms
        torch.backends.cudnn.benchmark = not t.deterministic
    run_dir = Path(resume).parent if resume is not None else new_run_dir(t.runs_dir, t.name)
    run_dir = Path(broadcast_object(str(run_dir), context))
    seed_everything(t.seed, t.deterministic)

    skeleton = get_skeleton(config.data.skeleton)
    codec = build_codec(config)
    train_set, val_set = build_datasets(config)
    train_loader = make_loader(train_set, batch_size=rank_batch, shuffle=True, workers=config.data.workers,
                               device=device, seed=t.seed, drop_last=True, world_size=context.world_size,
                               rank=context.rank)
    val_loader = make_loader(val_set, batch_size=config.eval.batch_size, shuffle=False,
                             workers=config.data.workers, device=device, seed=t.seed)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise CPMError(f"data.train_samples: {config.data.train_samples} is fewer than one batch of {t.batch_size}")

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
    optimizer, scheduler = build_optimizer(model, config, steps_per_epoch * t.epochs)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    stage_weights = build_stage_weights(config)
    loss_fn = build_loss(config)
    selection = best_metric(config)
    start_epoch, step, best, best_epoch, skip_batches = 0, 0, math.nan, 0, 0
    if checkpoint is not None:
        load_model_state(model, checkpoint["model"], resume)
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        start_epoch, step = checkpoint["epoch"], checkpoint["step"]
        saved = checkpoint.get("best") or {"metric": f"pck@{SELECTION_THRESHOLD:g}", "value": checkpoint["best_metric"]}
        if saved["metric"] == selection and saved["value"] >= 0:  # (before best was named: -1 or -step for none)
            best, best_epoch = float(saved["value"]), int(saved.get("epoch", 0))
        skip_batches = checkpoint.get("data_order", {}).get("batches", 0)
        set_rng_state(checkpoint["rng"])
        if start_epoch >= t.epochs:
            raise CPMError(f"{resume}: this run already finished its {t.epochs} epochs")
    network = model
    if context.enabled:  # gradients averaged over ranks; the wrapper shares the parameters of `model`
        network = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if t.compile:  # the training step only; evaluation and checkpoints use `model` itself
        network = compile_model(network, device)

    writer = None
    if context.is_main:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "config.toml").write_text(config.to_toml(), encoding="utf-8")
        except OSError as error:
            raise CPMError(f"train.runs_dir: cannot write the run folder {run_dir} ({error.strerror})") from None
        from torch.utils.tensorboard import SummaryWriter  # imported late: it is slow to import

        writer = SummaryWriter(log_dir=str(run_dir))
    parameters = sum(p.numel() for p in model.parameters())
    log(f"run {run_dir} | {parameters / 1e6:.2f}M parameters | {model.num_stages} stages | device {device}"
        f" | autocast {amp_dtype or 'off'} | {t.epochs} epochs x {steps_per_epoch} steps"
        + (f" | {context.world_size} processes x {rank_batch}" if context.enabled else ""))

    def on_log(at_step: int, values: dict[str, float]) -> None:
        if writer is None:
            return
        for name, value in values.items():
            writer.add_scalar(f"train/{name}", value, at_step)
        append_jsonl(run_dir / "steps.jsonl", {"step": at_step, **values})

    def should_stop(at_log_step: bool) -> bool:
        if not context.enabled:
            return signals.requested
        return at_log_step and any_rank(signals.requested, context, device)  # ranks agree at log steps only

    def save(epochs_done: int, batches: int, *, is_best: bool = False, at_step: int | None = None) -> Path:
        state = {
            "model": model.state_dict(), "config": config.to_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "epoch": epochs_done, "step": step if at_step is None else at_step,
            "best_metric": best,
            "best": {"metric": selection, "stage": "final", "value": best, "epoch": best_epoch},
            "data_order": {"seed": t.seed, "epoch": epochs_done, "batches": batches},
            "rng": rng_state(), "git_revision": git_revision(),
        }
        if context.is_main:
            save_checkpoint(state, run_dir / "last.pt")
            if is_best:
                save_checkpoint(state, run_dir / "best.pt")
        return run_dir / "last.pt"

    def checkpoint_now(at_step: int, *, epoch: int, first_step: int) -> None:
        """Every ``train.checkpoint_every`` steps, a mid-epoch last.pt that resumes at the next batch of ``epoch``
        (whose batch 0 was, or would have been, step ``first_step``)."""
        batches = at_step - first_step
        if t.checkpoint_every and at_step % t.checkpoint_every == 0 and batches < steps_per_epoch:
            save(epoch, batches, at_step=at_step)

    reduce_losses = functools.partial(all_reduce_mean, context=context) if context.enabled else None
    results: dict = {}
    try:
        for epoch in range(start_epoch, t.epochs):
            skipped = skip_batches if epoch == start_epoch else 0
            train_set.set_epoch(epoch)
            train_loader.sampler.set_epoch(epoch)
            train_loader.sampler.set_start(skipped * rank_batch)  # mid-epoch resume: the batches not yet seen
            epoch_start, started = step, time.perf_counter()

            step, train_losses = train_one_epoch(
                network, train_loader, optimizer, scheduler, codec, stage_weights, scaler, device=device,
                amp_dtype=amp_dtype, channels_last=t.channels_last, grad_clip=t.grad_clip,
                log_every=t.log_every, step=step, on_log=on_log, progress=progress,
                description=f"epoch {epoch + 1}/{t.epochs}", should_stop=should_stop, reduce_losses=reduce_losses,
                loss_fn=loss_fn,
                on_step=functools.partial(checkpoint_now, epoch=epoch, first_step=epoch_start - skipped),
            )
            batches = skipped + step - epoch_start
            if batches < steps_per_epoch:  # a stop signal ended the epoch early
                raise TrainingInterrupted(signals.received or signal.SIGTERM, step, save(epoch, batches))
            train_seconds = time.perf_counter() - started
            results = evaluate(model, val_loader, codec, torso=skeleton.torso, thresholds=config.eval.pck_thresholds,
                               decoder=config.eval.decoder, device=device, amp_dtype=amp_dtype,
                               channels_last=t.channels_last, progress=progress, loss_fn=loss_fn)
            metrics = {"epoch": epoch + 1, "step": step, "train_seconds": round(train_seconds, 2),
                       "images_per_second": round((step - epoch_start) * t.batch_size / train_seconds, 1),
                       **{f"train/{k}": v for k, v in train_losses.items()}, **flatten_metrics(results)}
            if writer is not None:
                for name, value in metrics.items():
                    if name.startswith(("train/", "val/")) or name == "images_per_second":
                        writer.add_scalar(name, value, step)
                append_jsonl(run_dir / "metrics.jsonl", metrics)
                write_evaluation_summaries(writer, model, optimizer, step=step, results=results, val_set=val_set,
                                           codec=codec, skeleton=skeleton, device=device)
            score = selection_score(results, selection)
            final = {a: f"{100 * v[-1]:.1f}" for a, v in results["pck"].items()}
            log(f"epoch {epoch + 1}/{t.epochs} | loss {train_losses.get('loss', math.nan):.5f} | "
                f"{metrics['images_per_second']:.0f} img/s | final-stage PCK " +
                " ".join(f"@{a:g} {v}" for a, v in final.items()))
            is_best = is_better(score, best, selection)
            if is_best:
                best, best_epoch = score, epoch + 1
            last = save(epoch + 1, 0, is_best=is_best)
            if epoch + 1 < t.epochs and should_stop(True):
                raise TrainingInterrupted(signals.received or signal.SIGTERM, step, last)
    finally:
        if writer is not None:
            writer.close()
    results["run_dir"], results["rank"] = str(run_dir), context.rank
    return results
