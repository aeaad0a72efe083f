"""The training step and the evaluation pass, as plain functions over a model, a loader and a codec.

Targets are encoded on the training device from the batch's keypoints (one batched call), the
forward pass runs under ``torch.autocast`` when an autocast dtype is given, and the losses are read
back to the host only every ``log_every`` steps, so a CUDA step never waits on the host. Under
``torchrun`` the model is a DistributedDataParallel wrapper; ``reduce_losses`` averages the logged losses
over ranks, so every rank logs, and checks for non-finite values, the same numbers.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from tqdm import tqdm

from cpm.codecs import HeatmapCodec, RegressionCodec
from cpm.errors import CPMError
from cpm.losses import staged_loss
from cpm.metrics import pck, torso_size


class NonFiniteLossError(CPMError):
    """Training diverged; the message lists the loss terms."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CPMError(f"train.device: unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CPMError(f"train.device: {name!r} requested but CUDA is not available")
    return device


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 convolutions are then several times faster than fp32 on the CPU."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device``; None means full fp32."""
    if amp == "off":
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise CPMError("train.amp: fp16 needs a CUDA device (use bf16 or off)")
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def compile_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``torch.compile(model)`` (TorchInductor), once a one-line function has been compiled and run on ``device``:
    inductor builds C++ (CPU) or Triton (CUDA) kernels, and where it cannot, ``train.compile`` fails here with
    one line instead of a long traceback at the first step."""
    try:
        probe = torch.compile(lambda x: torch.relu(x) * 2, dynamic=False)
        probe(torch.ones(8, device=device))
    except Exception as error:  # noqa: BLE001 - whatever breaks inside inductor, the user gets one line
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CPMError(f"train.compile: torch.compile cannot build kernels for {device} on this machine "
                       f"({first_line[:300]}); set train.compile = false") from None
    return torch.compile(model)


def prepare_batch(batch: dict[str, torch.Tensor], codec: HeatmapCodec | RegressionCodec, device: torch.device,
                  channels_last: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """-> image (B, C, H, W), center_map (B, 1, h, w), targets (B, K[+1], h, w) — (B, K, 2) normalised
    coordinates with a `RegressionCodec` —, weights (B, K)."""
    non_blocking = device.type == "cuda"
    image = batch["image"].to(device, non_blocking=non_blocking)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    keypoints = batch["keypoints"].to(device, non_blocking=non_blocking)
    center = batch["center"].to(device, non_blocking=non_blocking)
    with torch.no_grad():
        targets, weights = codec.encode(keypoints)
        center_map = codec.center_map(center)
    return image, center_map, targets, weights


def train_one_epoch(
    model: torch.nn.Module,
    loader: Iterable[dict[str, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    codec: HeatmapCodec,
    stage_weights: list[float],
    *,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    channels_last: bool = False,
    grad_clip: float = 0.0,
    log_every: int = 25,
    step: int = 0,
    on_log: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    description: str = "train",
    should_stop: Callable[[bool], bool] | None = None,
    reduce_losses: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
    loss_fn: Callable[..., dict[str, torch.Tensor]] = staged_loss,
) -> tuple[int, dict[str, float]]:
    """One pass over ``loader``. Returns (global step after the epoch, mean of each loss term).

    ``should_stop(at_log_step)`` is asked after every step; True ends the epoch early (a stop signal: the
    caller writes a checkpoint). ``reduce_losses`` (the mean over ranks) is applied before losses are read.
    ``loss_fn(outputs, targets, weights, stage_weights)`` -> {"loss", "loss/stage1", ...} (`cpm.losses`)."""
    model.train()
    sums: dict[str, torch.Tensor] = {}
    pending: dict[str, torch.Tensor] = {}
    pending_steps = epoch_steps = seen = 0
    bar = tqdm(loader, desc=description, disable=not progress, dynamic_ncols=True, leave=False)
    start = time.perf_counter()
    for batch in bar:
        image, center_map, targets, weights = prepare_batch(batch, codec, device, channels_last)
        with autocast(device, amp_dtype):
            beliefs = model(image, center_map)
        losses = loss_fn(beliefs, targets, weights, stage_weights)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None and scaler.is_enabled():
            scaler.scale(losses["loss"]).backward()
            scaler.unscale_(optimizer)
        else:
            losses["loss"].backward()
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None and scaler.is_enabled():
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
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
            values = _read_losses(reduce_losses(pending) if reduce_losses else pending, pending_steps, step)
            values["lr"] = optimizer.param_groups[0]["lr"]
            values["images_per_second"] = seen / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{values['loss']:.5f}", img_s=f"{values['images_per_second']:.0f}")
            if on_log is not None:
                on_log(step, values)
            pending, pending_steps = {}, 0
        if should_stop is not None and should_stop(at_log_step):
            break
    bar.close()
    return step, _read_losses(reduce_losses(sums) if reduce_losses and sums else sums, epoch_steps, step)


def _read_losses(sums: dict[str, torch.Tensor], steps: int, step: int) -> dict[str, float]:
    """Mean loss terms as floats (one host sync); stop with every term named if any is not finite."""
    values = {name: float(total) / max(steps, 1) for name, total in sums.items()}
    if not all(math.isfinite(v) for v in values.values()):
        terms = ", ".join(f"{name}={value:.6g}" for name, value in values.items())
        raise NonFiniteLossError(f"non-finite loss at step {step}: {terms}")
    return values


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: Iterable[dict[str, torch.Tensor]],
    codec: HeatmapCodec,
    *,
    torso: tuple[int, int],
    thresholds: list[float] | tuple[float, ...] = (0.1, 0.2),
    decoder: str = "parabola",
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = False,
    progress: bool = True,
    loss_fn: Callable[..., dict[str, torch.Tensor]] = staged_loss,
) -> dict:
    """Decode every stage's outputs (belief maps or coordinates: the codec reads either), map them back to
    source pixels and score them.

    Returns {"samples", "excluded", "pck": {threshold: [per stage]}, "per_joint": {threshold: (K,)
    of the last stage}, "loss": [per stage], "predictions": (N, T, K, 2) source pixels,
    "confidence": (N, T, K), "ground_truth": (N, K, 3)}.
    """
    model.eval()
    predictions, confidences, truths, stage_losses = [], [], [], []
    for batch in tqdm(loader, desc="eval", disable=not progress, dynamic_ncols=True, leave=False):
        image, center_map, targets, weights = prepare_batch(batch, codec, device, channels_last)
        with autocast(device, amp_dtype):
            beliefs = model(image, center_map)
        losses = loss_fn(beliefs, targets, weights, [1.0] * len(beliefs))
        stage_losses.append(torch.stack([losses[f"loss/stage{t}"] for t in range(1, len(beliefs) + 1)]))
        inverse = _invert_affine(batch["matrix"].to(device).double())  # (B, 2, 3) crop -> source
        per_stage_points, per_stage_confidence = [], []
        for stage_beliefs in beliefs:
            points, confidence = codec.decode(stage_beliefs, method=decoder)  # (B, K, 2) crop pixels
            points = points.double() @ inverse[:, :, :2].transpose(1, 2) + inverse[:, None, :, 2]
            per_stage_points.append(points)
            per_stage_confidence.append(confidence)
        predictions.append(torch.stack(per_stage_points, dim=1).cpu())  # (B, T, K, 2)
        confidences.append(torch.stack(per_stage_confidence, dim=1).cpu())
        truths.append(batch["source_keypoints"])
    predicted = torch.cat(predictions).numpy()
    ground_truth = torch.cat(truths).numpy().astype(np.float64)
    normaliser = torso_size(ground_truth, torso)
    stages = predicted.shape[1]
    results: dict = {"samples": len(ground_truth), "pck": {}, "per_joint": {}}
    for threshold in thresholds:
        scores = [pck(predicted[:, t], ground_truth, normaliser, threshold) for t in range(stages)]
        results["pck"][threshold] = [s.mean for s in scores]
        results["per_joint"][threshold] = scores[-1].per_joint
        results["excluded"] = scores[-1].excluded
    results["loss"] = torch.stack(stage_losses).mean(dim=0).tolist()
    results["predictions"] = predicted
    results["confidence"] = torch.cat(confidences).numpy()
    results["ground_truth"] = ground_truth
    return results


def _invert_affine(matrix: torch.Tensor) -> torch.Tensor:
    linear = torch.linalg.inv(matrix[:, :, :2])
    return torch.cat([linear, -linear @ matrix[:, :, 2:]], dim=2)
