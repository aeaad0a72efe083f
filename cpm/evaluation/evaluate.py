"""Held-out evaluation: every stage's outputs decoded, mapped back to source pixels and scored (PCK per stage).

With ``eval.scales`` other than [1.0], `evaluate_checkpoint` (``cpm eval``) crops every held-out person at each
scale and decodes the maps averaged over scales (`cpm.targets.multiscale`), around what ``eval.crop`` names (the
person, or the released benchmark's image-centred or MPII objpos crops: `cpm.data.benchmark`); the per-epoch
evaluation of training decodes the one training-size crop. With ``eval.flip_test`` `evaluate_checkpoint` runs the
model on every crop and its mirror and averages their outputs before decoding (`cpm.targets.flip.FlipTest`; with
``eval.scales``, every scale's crop), training's evaluation never."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from cpm.config import apply, validate
from cpm.data.loader import make_loader
from cpm.data.synthetic.sources import drop_missing_pose_files
from cpm.data.transforms import apply_affine, invert_affine
from cpm.device import autocast, resolve_amp, resolve_device
from cpm.evaluation.metrics import pck, torso_size
from cpm.runtime.batch import prepare_batch
from cpm.runtime.build import build_codec, build_datasets, build_loss
from cpm.runtime.checkpoint import load_model
from cpm.skeleton import get_skeleton
from cpm.targets.codecs import HeatmapCodec
from cpm.targets.flip import FlipTest
from cpm.targets.losses import staged_loss
from cpm.targets.multiscale import predict_scales


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
        inverse = invert_affine(batch["matrix"].to(device).double())  # (B, 2, 3) crop -> source
        per_stage_points, per_stage_confidence = [], []
        if "scale_images" in batch:  # eval.scales: every scale's maps averaged on the base crop's grid, decoded
            points_all, confidence_all, _ = _predict_batch_scales(model, batch, codec, decoder, device=device,
                                                                  amp_dtype=amp_dtype, channels_last=channels_last)
            decoded = zip(points_all.unbind(1), confidence_all.unbind(1), strict=True)
        else:
            decoded = (codec.decode(stage_beliefs, method=decoder) for stage_beliefs in beliefs)
        for points, confidence in decoded:  # (B, K, 2) crop pixels, (B, K)
            per_stage_points.append(apply_affine(points.double(), inverse))
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


def _predict_batch_scales(model: torch.nn.Module, batch: dict[str, torch.Tensor], codec: HeatmapCodec, decoder: str,
                          **run) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """`cpm.targets.multiscale.predict_scales` of a `cpm.data.multiscale.MultiScaleDataset` batch: keypoints
    (B, T, K, 2) in base crop pixels, confidence (B, T, K), the averaged maps. ``run``: device, amp_dtype,
    channels_last."""
    device, scales = run["device"], range(batch["scale_images"].shape[1])
    images = [batch["scale_images"][:, s].to(device) for s in scales]
    center_maps = [codec.center_map(batch["scale_centers"][:, s].to(device)) for s in scales]
    return predict_scales(model, images, center_maps, batch["matrix"].to(device), batch["scale_matrices"].to(device),
                          codec, decoder, **run)


def evaluate_checkpoint(path: str | Path, *, overrides: dict[str, Any] | None = None, progress: bool = True,
                        device_name: str = "auto") -> dict:
    """Rebuild the model of a checkpoint and evaluate it on the held-out split of its config. ``best`` in the
    results is what the training run chose the checkpoint by ({"metric", "stage", "value", "epoch"}; None for a
    checkpoint that does not say)."""

    device = resolve_device(device_name)
    model, config = load_model(path, device)
    best = _selection(path)
    if overrides:
        validate(apply(config, overrides, source="--set"))
    channels_last = config.train.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    _, val_set = build_datasets(drop_missing_pose_files(config))
    if config.eval.crop != "person":  # the released benchmark's crops: around the image or MPII's objpos
        from cpm.data.benchmark import BenchmarkCrops

        val_set.source = BenchmarkCrops(val_set.source, crop=config.eval.crop, crop_padding=config.data.crop_padding,
                                        image_fraction=config.eval.image_fraction)
    if config.eval.scales != [1.0]:  # the released CPM's search over scales (cpm.targets.multiscale)
        from cpm.data.multiscale import MultiScaleDataset

        val_set = MultiScaleDataset(val_set, config.eval.scales)
    loader = make_loader(val_set, batch_size=config.eval.batch_size, shuffle=False, workers=config.data.workers,
                         device=device, seed=0)
    skeleton = get_skeleton(config.data.skeleton)
    evaluated = FlipTest(model, skeleton.flip_permutation) if config.eval.flip_test else model
    results = evaluate(evaluated, loader, build_codec(config), torso=skeleton.torso,
                       thresholds=config.eval.pck_thresholds, decoder=config.eval.decoder, device=device,
                       amp_dtype=resolve_amp(config.train.amp, device), channels_last=channels_last,
                       progress=progress, loss_fn=build_loss(config, model))
    results["best"] = best
    return results


def _selection(path: str | Path) -> dict | None:
    """The ``best`` entry of a checkpoint (`cpm.training.loop`), read without loading the weights twice (mmap)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - load_model has already read this file; a checkpoint without it says nothing
        return None
    best = checkpoint.get("best") if isinstance(checkpoint, dict) else None
    return dict(best) if isinstance(best, dict) else None
