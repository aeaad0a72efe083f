"""TensorBoard summaries written at evaluation time only (the training step stays free of extra work).

After each evaluation `write_evaluation_summaries` adds, at the global step:

- ``lr/<group>``: the learning rate of every optimiser parameter group;
- ``weights/<layer>`` and ``gradients/<layer>``: histograms of each layer's weights and of the gradients the
  last training step left on them;
- ``zero_fraction/<layer>``: the fraction of each layer's weights that are (near) zero (`zero_fractions`);
- ``images/skeletons``: fixed held-out crops with the true skeleton (left) and the prediction (right);
- ``images/beliefs_<i>``: every stage's belief maps of the first two crops, rows = stages (Wei et al. 2016, Fig. 1
  and Sec. 3.1: refinement across stages becomes visible); heatmap and integral heads.

A *layer* is a weight tensor of two or more dimensions (conv kernel, fully connected matrix), named by its
module path.
"""

from __future__ import annotations

import numpy as np
import torch

from cpm.data.dataset import PIXEL_MEAN, PIXEL_STD
from cpm.skeleton import Skeleton

IMAGE_SAMPLES = 4  # held-out samples drawn at every evaluation (the first ones: fixed from epoch to epoch)
BELIEF_SAMPLES = 2  # of which the belief maps of every stage are drawn
ZERO_TOLERANCE = 0.01  # a weight counts as zero when |w| <= ZERO_TOLERANCE * max |w| of its layer


def zero_fractions(state: dict[str, torch.Tensor], *, tolerance: float = ZERO_TOLERANCE) -> dict[str, float]:
    """{layer: fraction of its weights with |w| <= tolerance * max |w|} for every weight tensor of >= 2 dims.

    Exact zeros are rare after gradient descent; relative to each layer's largest weight, this measures the
    sparsity by which the regression baselines are compared (weights that barely contribute)."""
    fractions = {}
    for name, value in state.items():
        if value.ndim < 2 or not value.is_floating_point():
            continue
        magnitude = value.detach().float().abs()
        peak = magnitude.max()
        fractions[name.removesuffix(".weight")] = float((magnitude <= tolerance * peak).float().mean()) if peak > 0 \
            else 1.0
    return fractions


def _crop_uint8(image: torch.Tensor) -> np.ndarray:
    """A normalised crop (C, H, W) -> (H, W) or (H, W, 3) uint8, as the model saw it."""
    pixels = (image.float() * PIXEL_STD + PIXEL_MEAN).clamp(0, 1).mul(255).round().byte().cpu().numpy()
    return pixels[0] if pixels.shape[0] == 1 else pixels[:3].transpose(1, 2, 0)


@torch.no_grad()
def write_evaluation_summaries(writer, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *, step: int,
                               results: dict, val_set, codec, skeleton: Skeleton, device: torch.device) -> None:
    """Everything above, for ``model`` after an evaluation whose ``results`` came from `evaluate`
    over ``val_set`` (its predictions are in source pixels; the images show them in the crops)."""
    from cpm.viz import belief_mosaic, draw_skeleton

    for index, group in enumerate(optimizer.param_groups):
        writer.add_scalar(f"lr/{group.get('name', index)}", group["lr"], step)
    for name, fraction in zero_fractions(model.state_dict()).items():
        writer.add_scalar(f"zero_fraction/{name}", fraction, step)
    for name, parameter in model.named_parameters():
        if parameter.ndim < 2:
            continue
        layer = name.removesuffix(".weight")
        writer.add_histogram(f"weights/{layer}", parameter.detach().float().cpu(), step)
        if parameter.grad is not None:
            writer.add_histogram(f"gradients/{layer}", parameter.grad.detach().float().cpu(), step)

    count = min(IMAGE_SAMPLES, len(val_set))
    samples = [val_set[i] for i in range(count)]
    predictions = np.asarray(results["predictions"])[:count, -1]  # (n, K, 2) source pixels, last stage
    panels = []
    for sample, predicted in zip(samples, predictions, strict=True):
        matrix = sample["matrix"].double().numpy()  # (2, 3) source -> crop
        in_crop = predicted @ matrix[:, :2].T + matrix[:, 2]  # (K, 2)
        crop = _crop_uint8(sample["image"])
        truth = sample["keypoints"].numpy()
        visible = np.where(truth[:, 2:3] > 0, truth[:, :2], np.nan)
        panels.append(np.concatenate([draw_skeleton(crop, visible, skeleton), draw_skeleton(crop, in_crop, skeleton)],
                                     axis=1))
    if panels:
        writer.add_image("images/skeletons", np.concatenate(panels, axis=0), step, dataformats="HWC")

    if not samples:
        return
    heads = getattr(model, "forward_beliefs", None)  # the integral head's maps before its soft-argmax
    was_training = model.training
    model.eval()
    samples = samples[:BELIEF_SAMPLES]
    image = torch.stack([s["image"] for s in samples]).to(device)
    center_map = codec.center_map(torch.stack([s["center"] for s in samples]).to(device))
    outputs = (heads or model)(image, center_map)
    model.train(was_training)
    if outputs[0].ndim != 4:
        return  # a regression head has no maps to show
    maps = torch.stack(outputs, dim=1).float()  # (n, T, K[+1], h, w)
    if heads is not None:  # integral head: logits -> the spatial softmax it takes the expectation of
        maps = model.probability_maps(maps)
    maps = maps.cpu().numpy()
    for i, (sample, beliefs) in enumerate(zip(samples, maps, strict=True)):
        mosaic = belief_mosaic(beliefs, skeleton.num_joints, image=_crop_uint8(sample["image"]), tile=40, gap=2)
        writer.add_image(f"images/beliefs_{i}", mosaic, step, dataformats="HWC")
