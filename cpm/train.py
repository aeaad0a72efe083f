"""Entry points that read a `Config`: build data, model and optimiser; train with checkpoints; evaluate.

A run lives in ``<train.runs_dir>/<train.name>/``: ``config.toml`` (resolved), ``metrics.jsonl``
(one line per evaluation), ``steps.jsonl`` (the loss terms and lr every ``train.log_every`` steps),
TensorBoard events, ``last.pt`` (after every epoch, and where a stop signal ended a run) and ``best.pt``
(best final-stage PCK@0.2).
"""

from __future__ import annotations

import functools
import json
import math
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from cpm.checkpoint import (
    git_revision,
    load_checkpoint,
    load_matching_state,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from cpm.codecs import HeatmapCodec, RegressionCodec
from cpm.config import Config, config_from_dict, output_stages
from cpm.data.dataset import PoseDataset
from cpm.data.synthetic import SyntheticPoses
from cpm.distributed import (
    DistributedContext,
    ShardedSampler,
    StopSignals,
    all_reduce_mean,
    any_rank,
    broadcast_object,
    init_distributed,
    shutdown_distributed,
)
from cpm.engine import compile_model, evaluate, resolve_amp, resolve_device, train_one_epoch
from cpm.errors import CheckpointError, CPMError
from cpm.losses import stage_weights_for, staged_loss
from cpm.models import COORDINATE_HEADS, build_model, set_trainable_stages
from cpm.skeleton import get_skeleton
from cpm.summaries import write_evaluation_summaries

SELECTION_THRESHOLD = 0.2  # best.pt keeps the best final-stage PCK at this threshold


# The keyword arguments of the regression head, among those of the CPM (the integral head takes all of those).
REGRESSION_KWARGS = ("num_joints", "in_channels", "backbone", "stride", "trunk_widths", "trunk_kernel",
                     "vgg_cpm_widths", "batch_norm", "dropout")


def model_kwargs(config: Config) -> dict[str, Any]:
    """The keyword arguments of the ``model.head`` class, from the config (saved in every checkpoint)."""
    m = config.model
    kwargs = {
        "num_joints": get_skeleton(config.data.skeleton).num_joints, "in_channels": m.in_channels, "stages": m.stages,
        "stride": m.stride, "backbone": m.backbone, "trunk_widths": list(m.trunk_widths),
        "trunk_kernel": m.trunk_kernel, "caffe_pooling": m.caffe_pooling, "vgg_cpm_widths": list(m.vgg_cpm_widths),
        "feature_channels": m.feature_channels, "stage1_width": m.stage1_width, "stage1_kernel": m.stage1_kernel,
        "stage1_layers": m.stage1_layers, "stage_width": m.stage_width, "stage_kernel": m.stage_kernel,
        "stage_layers": m.stage_layers, "center_map": m.center_map, "center_pool": m.center_pool,
        "background": m.background, "batch_norm": m.batch_norm, "dropout": m.dropout, "init": m.init,
        **({"checkpoint_stages": True} if m.checkpoint_stages else {}),  # only when on: other heads need not know it
    }
    if m.head == "regression":
        return {key: kwargs[key] for key in REGRESSION_KWARGS} | {"hidden": m.regression_hidden,
                                                                  "pool_size": m.regression_pool}
    return kwargs


class InputResolutionCenterCodec(HeatmapCodec):
    """`HeatmapCodec` whose centre map is the Caffe CPM's: a Gaussian at input resolution (B, 1, H, W) with
    sigma = center_sigma * stride pixels (21 px in the paper), which the model average-pools to (B, 1, h, w)."""

    def center_map(self, centers: torch.Tensor) -> torch.Tensor:
        """centers (B, 2) in input pixels -> (B, 1, H, W)."""
        height, width = self.input_size
        sigma = self.center_sigma * self.stride
        x = torch.arange(width, device=centers.device, dtype=torch.float32)
        y = torch.arange(height, device=centers.device, dtype=torch.float32)
        gx = torch.exp(-((x - centers[:, 0:1].float()) ** 2) / (2 * sigma**2))  # (B, W)
        gy = torch.exp(-((y - centers[:, 1:2].float()) ** 2) / (2 * sigma**2))  # (B, H)
        return (gy[:, :, None] * gx[:, None, :])[:, None]


def build_codec(config: Config) -> HeatmapCodec | RegressionCodec:
    """`HeatmapCodec` for the heatmap head; `RegressionCodec` for heads that output coordinates, with the
    heatmap codec making their centre maps."""
    size = config.data.input_size
    codec = InputResolutionCenterCodec if config.model.center_pool else HeatmapCodec
    heatmaps = codec(input_size=(size, size), stride=config.model.stride, sigma=config.model.sigma,
                     background=config.model.background, center_sigma=config.model.center_sigma)
    if config.model.head in COORDINATE_HEADS:
        return RegressionCodec(input_size=(size, size), center_codec=heatmaps)
    return heatmaps


def build_loss(config: Config):
    """``loss_fn(outputs, targets, weights, stage_weights)`` of `cpm.engine`: `cpm.losses.staged_loss`, which reads
    belief maps or coordinates, with the config's ``model.regression_loss``."""
    return functools.partial(staged_loss, regression_loss=config.model.regression_loss)


def build_datasets(config: Config) -> tuple[PoseDataset, PoseDataset]:
    data = config.data
    skeleton = get_skeleton(data.skeleton)
    common = {"input_size": data.input_size, "flip_permutation": skeleton.flip_permutation,
              "crop_padding": data.crop_padding, "channels": config.model.in_channels}
    augmentation = {"augment": True, "scale_range": tuple(data.scale_range), "rotation": data.rotation,
                    "flip": data.flip, "shift": data.shift, "occlusion": data.occlusion,
                    "seed": data.seed}
    if data.source != "synthetic":  # a real dataset: all of its training split each epoch, up to train_samples
        from cpm.data.readers import split_dataset

        train_source, val_source = split_dataset(
            source=data.source, root=data.root, annotations=data.annotations, val_annotations=data.val_annotations,
            val_samples=data.val_samples, skeleton=data.skeleton, exclude=data.exclude)
        train_set = PoseDataset(train_source, **common, **augmentation,
                                length=min(data.train_samples, len(train_source)))
        return train_set, PoseDataset(val_source, **common)
    poses = {}
    if data.pose_source != "procedural":  # opt-in: the default stream stays exactly what it was
        from cpm.data.synthetic import pose_sampler

        poses = {"pose_source": pose_sampler(data.pose_source, data.pose_files)}
    train_set = PoseDataset(
        SyntheticPoses(seed=data.seed, size=data.train_samples * config.train.epochs, **poses), **common,
        **augmentation, length=data.train_samples, resample_each_epoch=True,
    )
    val_set = PoseDataset(SyntheticPoses(seed=data.val_seed, size=data.val_samples, **poses), **common)
    return train_set, val_set


class _EpochTaggedSampler(ShardedSampler):
    """`ShardedSampler` whose indices carry the epoch they belong to: (epoch, index)."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, indices = self.epoch, super().__iter__()
        return ((epoch, index) for index in indices)


class _AtEpoch(Dataset):
    """``dataset[(epoch, index)]`` is sample ``index`` of epoch ``epoch``, in whichever process reads it.

    Persistent DataLoader workers keep the copy of the dataset they started with, so an epoch set on the
    dataset in the main process (``set_epoch``) would never reach them; the epoch travels with each index."""

    def __init__(self, dataset: PoseDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = item
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


def make_loader(dataset: PoseDataset, *, batch_size: int, shuffle: bool, workers: int, device: torch.device,
                seed: int, drop_last: bool = False, world_size: int = 1, rank: int = 0) -> DataLoader:
    """``rank``'s share of each epoch, in an order that is a function of (seed, epoch) alone
    (``loader.sampler.set_epoch``; `cpm.distributed.ShardedSampler`), so a resumed run, and a run on any
    number of processes, sees the same global batches as an uninterrupted one. The sampler's epoch is also
    the dataset's: sample i of epoch e is ``dataset.set_epoch(e); dataset[i]``.

    With ``workers`` > 0 the workers persist from epoch to epoch (no new processes, no re-imports) and each
    keeps 4 batches in flight; on CUDA the batches come in pinned memory (asynchronous copies)."""
    sampler = _EpochTaggedSampler(len(dataset), world_size=world_size, rank=rank, shuffle=shuffle, seed=seed)
    return DataLoader(_AtEpoch(dataset), batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", drop_last=drop_last, persistent_workers=workers > 0,
                      prefetch_factor=4 if workers else None)


def lr_factor(step: int, *, total_steps: int, warmup_steps: int, schedule: str, step_size: int = 0) -> float:
    """Linear warm-up, then cosine to zero, steps of x0.333 (at 1/2 and 3/4 of training, or every
    ``step_size`` steps as Caffe's "step" policy), or constant."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "step" and step_size:
        return 0.333 ** ((step - warmup_steps) // step_size)
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    if schedule == "step":
        return 0.333 ** sum(progress >= milestone for milestone in (0.5, 0.75))
    return 1.0


def caffe_loss_scale(model: torch.nn.Module, config: Config) -> float:
    """Caffe's EuclideanLoss (sum / 2N) over our loss (mean over batch, channels and cells): (K+1) * h * w / 2."""
    cells = (config.data.input_size // config.model.stride) ** 2
    return model.out_channels * cells / 2


def build_optimizer(model: torch.nn.Module, config: Config, total_steps: int):
    """Parameter groups with the released prototxts' lr_mult / decay_mult (`parameter_groups` of the model):
    weights at ``lr * <part>_lr_mult`` with weight decay, biases and norms at ``bias_lr_mult`` times that
    without. Groups with equal settings are merged (all multipliers 1: one group with decay, one without).
    With ``caffe_lr``, lr and weight_decay are Caffe's: Caffe's gradients are `caffe_loss_scale` times ours,
    so lr is multiplied and weight decay divided by it, which gives Caffe's updates exactly."""
    t = config.train
    lr, weight_decay = t.lr, t.weight_decay
    if t.caffe_lr:
        scale = caffe_loss_scale(model, config)
        lr, weight_decay = lr * scale, weight_decay / scale
    if hasattr(model, "parameter_groups"):
        named = model.parameter_groups()
    else:
        named = {"stage1.weight": [p for p in model.parameters() if p.ndim > 1],
                 "stage1.bias": [p for p in model.parameters() if p.ndim <= 1]}
    merged: dict[tuple[float, str], dict] = {}
    for name, params in named.items():
        part, kind = name.split(".")
        mult = t.stage1_lr_mult if part == "stage1" else t.refinement_lr_mult
        if kind == "bias":  # biases and normalisation parameters: never decayed
            mult *= t.bias_lr_mult
        group = merged.setdefault((mult, kind), {"params": [], "lr": lr * mult, "name": [],
                                                 "weight_decay": weight_decay if kind == "weight" else 0.0})
        group["params"] += params
        group["name"].append(name)
    groups = [g | {"name": "+".join(g["name"])} for g in merged.values() if g["params"]]
    if t.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=lr, momentum=t.momentum)
    else:
        optimizer = torch.optim.AdamW(groups, lr=lr)
    factor = functools.partial(lr_factor, total_steps=total_steps, warmup_steps=t.warmup_steps, schedule=t.schedule,
                               step_size=t.lr_step_size)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - for user code that draws from the global generator
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def new_run_dir(runs_dir: str, name: str) -> Path:
    """``runs/<name>``, or ``runs/<name>-2``, ``-3``... when that exists: a new run never overwrites."""
    base = Path(runs_dir)
    candidate, n = base / name, 1
    while candidate.exists():
        n += 1
        candidate = base / f"{name}-{n}"
    return candidate


def flatten_metrics(results: dict, prefix: str = "val") -> dict[str, float]:
    flat: dict[str, float] = {}
    for threshold, per_stage in results["pck"].items():
        for t, value in enumerate(per_stage, start=1):
            flat[f"{prefix}/pck@{threshold:g}/stage{t}"] = value
    for t, value in enumerate(results["loss"], start=1):
        flat[f"{prefix}/loss/stage{t}"] = value
    return flat


def format_stage_table(results: dict) -> str:
    """Markdown table: one row per stage, one column per PCK threshold (torso-normalised)."""
    thresholds = sorted(results["pck"])
    header = "| stage | " + " | ".join(f"PCK@{a:g}" for a in thresholds) + " |"
    rule = "|---:|" + "---:|" * len(thresholds)
    rows = [
        f"| {t + 1} | " + " | ".join(f"{100 * results['pck'][a][t]:.2f}" for a in thresholds) + " |"
        for t in range(len(results["pck"][thresholds[0]]))
    ]
    note = f"\n{results['samples']} held-out samples, torso-normalised PCK in %"
    if results.get("excluded"):
        note += f"; {results['excluded']} samples excluded (zero torso)"
    return "\n".join([header, rule, *rows]) + note


class TrainingInterrupted(Exception):  # noqa: N818 - a stop the user asked for, not an error
    """SIGTERM or SIGINT stopped training after a whole step and ``last.pt`` holds that step. `cpm train` then
    exits with status 128 + the signal's number: 143 for SIGTERM, 130 for SIGINT (Ctrl-C)."""

    def __init__(self, signum: int, step: int, checkpoint: Path) -> None:
        self.signum, self.step, self.checkpoint = signum, step, checkpoint
        name = signal.Signals(signum).name
        super().__init__(f"{name} at step {step}: wrote {checkpoint}; continue with cpm train --resume {checkpoint}")


def _quiet(*_args, **_kwargs) -> None:
    pass


def train(config: Config, *, resume: str | Path | None = None, progress: bool = True,
          log=print) -> dict:
    """Train from ``config`` (or continue the run whose ``last.pt`` is ``resume``, mid-epoch included).
    Returns the final evaluation results plus ``run_dir``.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the ranks form a process group (`cpm.distributed`), the model is
    wrapped in DistributedDataParallel and ``train.batch_size`` stays the global batch: each rank trains on
    ``batch_size / world_size`` samples of it. Every rank evaluates the whole held-out split with the same
    weights, so the metrics are the same on every rank; rank 0 alone writes files, logs and progress bars.
    SIGTERM / SIGINT finish the current step, write ``last.pt`` and raise `TrainingInterrupted`."""
    checkpoint = None
    if resume is not None:
        checkpoint = load_checkpoint(resume)
        try:
            config = config_from_dict(checkpoint["config"])
        except CPMError as error:
            raise CheckpointError(f"{resume}: {error}") from None
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

    kwargs = model_kwargs(config)
    model = build_model(config.model.head, **kwargs)
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
    stage_weights = stage_weights_for(output_stages(config), intermediate_supervision=t.intermediate_supervision,
                                      stage_weights=t.stage_weights)
    loss_fn = build_loss(config)
    start_epoch, step, best, skip_batches = 0, 0, -1.0, 0
    if checkpoint is not None:
        load_model_state(model, checkpoint["model"], resume)
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        start_epoch, step, best = checkpoint["epoch"], checkpoint["step"], checkpoint["best_metric"]
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
    log(f"run {run_dir} | {parameters / 1e6:.2f}M parameters | {config.model.stages} stages | device {device}"
        f" | autocast {amp_dtype or 'off'} | {t.epochs} epochs x {steps_per_epoch} steps"
        + (f" | {context.world_size} processes x {rank_batch}" if context.enabled else ""))

    def on_log(at_step: int, values: dict[str, float]) -> None:
        if writer is None:
            return
        for name, value in values.items():
            writer.add_scalar(f"train/{name}", value, at_step)
        with open(run_dir / "steps.jsonl", "a", encoding="utf-8") as file:
            file.write(json.dumps({"step": at_step, **values}) + "\n")

    def should_stop(at_log_step: bool) -> bool:
        if not context.enabled:
            return signals.requested
        return at_log_step and any_rank(signals.requested, context, device)  # ranks agree at log steps only

    def save(epochs_done: int, batches: int, *, is_best: bool = False) -> Path:
        state = {
            "model": model.state_dict(), "model_kwargs": kwargs, "config": config.to_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict(), "epoch": epochs_done, "step": step, "best_metric": best,
            "data_order": {"seed": t.seed, "epoch": epochs_done, "batches": batches},
            "rng": rng_state(), "git_revision": git_revision(),
        }
        if context.is_main:
            save_checkpoint(state, run_dir / "last.pt")
            if is_best:
                save_checkpoint(state, run_dir / "best.pt")
        return run_dir / "last.pt"

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
                network, train_loader, optimizer, scheduler, codec, stage_weights, device=device,
                amp_dtype=amp_dtype, scaler=scaler, channels_last=t.channels_last, grad_clip=t.grad_clip,
                log_every=t.log_every, step=step, on_log=on_log, progress=progress,
                description=f"epoch {epoch + 1}/{t.epochs}", should_stop=should_stop, reduce_losses=reduce_losses,
                loss_fn=loss_fn,
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
                with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as file:
                    file.write(json.dumps(metrics) + "\n")
                write_evaluation_summaries(writer, model, optimizer, step=step, results=results, val_set=val_set,
                                           codec=codec, skeleton=skeleton, device=device)
            score = results["pck"][SELECTION_THRESHOLD][-1] if SELECTION_THRESHOLD in results["pck"] else -step
            final = {a: f"{100 * v[-1]:.1f}" for a, v in results["pck"].items()}
            log(f"epoch {epoch + 1}/{t.epochs} | loss {train_losses.get('loss', math.nan):.5f} | "
                f"{metrics['images_per_second']:.0f} img/s | final-stage PCK " +
                " ".join(f"@{a:g} {v}" for a, v in final.items()))
            is_best = score > best
            best = max(best, score)
            last = save(epoch + 1, 0, is_best=is_best)
            if epoch + 1 < t.epochs and should_stop(True):
                raise TrainingInterrupted(signals.received or signal.SIGTERM, step, last)
    finally:
        if writer is not None:
            writer.close()
    results["run_dir"], results["rank"] = str(run_dir), context.rank
    return results


def evaluate_checkpoint(path: str | Path, *, overrides: dict[str, Any] | None = None, progress: bool = True,
                        device_name: str = "auto") -> dict:
    """Rebuild the model of a checkpoint and evaluate it on the held-out split of its config."""
    from cpm.inference import load_model  # names the file when the config or weights do not fit

    device = resolve_device(device_name)
    model, config = load_model(path, device)
    if overrides:
        from cpm.config import apply, validate

        validate(apply(config, overrides, source="--set"))
    channels_last = config.train.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    _, val_set = build_datasets(config)
    loader = make_loader(val_set, batch_size=config.eval.batch_size, shuffle=False, workers=config.data.workers,
                         device=device, seed=0)
    return evaluate(model, loader, build_codec(config), torso=get_skeleton(config.data.skeleton).torso,
                    thresholds=config.eval.pck_thresholds, decoder=config.eval.decoder, device=device,
                    amp_dtype=resolve_amp(config.train.amp, device), channels_last=channels_last,
                    progress=progress, loss_fn=build_loss(config))
