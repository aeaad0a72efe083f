"""The batch a model reads: images, centre maps and targets on the device, encoded in one batched call by the
codec. Training (`cpm.training.step`), evaluation (`cpm.evaluation.evaluate`) and the benchmarks prepare every
batch here, so that they all see the same tensors."""

from __future__ import annotations

import torch

from cpm.targets.codecs import HeatmapCodec, RegressionCodec


def prepare_batch(batch: dict[str, torch.Tensor], codec: HeatmapCodec | RegressionCodec, device: torch.device,
                  channels_last: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """-> image (B, C, H, W), center_map (B, 1, h, w), targets (B, K[+1], h, w) — (B, K, 2) normalised
    coordinates with a `RegressionCodec` —, weights (B, K). With a `cpm.targets.paf.PafCodec` (a bottom-up batch
    of whole images, keypoints (B, P, K, 3) of every person): center_map None, targets and weights
    (B, K[+1] + 2L, h, w)."""
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
