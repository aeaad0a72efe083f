"""Intermediate supervision (Sec. 3.3 of the paper): a Euclidean loss at the output of every stage.

    loss = sum_t  stage_weight_t * mean_{b, k, pixels} w_bk * (b_t[b, k] - target[b, k])^2

with w_bk the target weight of joint k (0 for unlabeled or out-of-crop joints; 1 for the background
channel). ``intermediate_supervision = False`` keeps only the last stage's term, so earlier stages
learn only through the gradient that flows back from the last one.

Heads that output coordinates (B, K, 2) (`cpm.models.heads`) are trained with a per-joint coordinate loss
on the normalised coordinates of `cpm.targets.codecs.RegressionCodec`, summed over x and y, weighted by the target
weights and averaged over B x K (``REGRESSION_LOSSES``: ``l2``, the baseline; ``l1``; ``smooth_l1``).
`staged_loss` reads either kind of output by its shape, so the training loop has one loss call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

SMOOTH_L1_BETA = 0.05  # normalised units: quadratic within ~3 px of the truth on a 128 px crop, linear beyond


def stage_weights_for(stages: int, *, intermediate_supervision: bool = True,
                      stage_weights: list[float] | tuple[float, ...] = ()) -> list[float]:
    """Explicit ``stage_weights`` win; else all ones, or (0, ..., 0, 1) without intermediate supervision."""
    if stage_weights:
        if len(stage_weights) != stages:
            raise ValueError(f"{len(stage_weights)} stage weights for {stages} stages")
        return [float(w) for w in stage_weights]
    if intermediate_supervision:
        return [1.0] * stages
    return [0.0] * (stages - 1) + [1.0]


def weighted_mse(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """prediction, target (B, C, h, w); weights (B, K) with K = C or C - 1 (background weighted 1)."""
    batch, channels = prediction.shape[:2]
    if weights.shape[1] < channels:
        weights = torch.cat([weights, weights.new_ones(batch, channels - weights.shape[1])], dim=1)
    squared = (prediction.float() - target) ** 2  # (B, C, h, w)
    return (squared.mean(dim=(2, 3)) * weights).mean()


def staged_heatmap_loss(beliefs: list[torch.Tensor], target: torch.Tensor, weights: torch.Tensor,
                        stage_weights: list[float]) -> dict[str, torch.Tensor]:
    """Returns {"loss": weighted sum, "loss/stage1": ..., "loss/stageT": ...} (per-stage terms unweighted).

    A target with twice the beliefs' channels holds stage 1's target, then that of stages >= 2 (Caffe's
    ``label_1st_lower`` and ``label_lower``; `cpm.targets.codecs.HeatmapCodec` with ``stage1_all_people``)."""
    if len(beliefs) != len(stage_weights):
        raise ValueError(f"{len(beliefs)} stages of beliefs but {len(stage_weights)} stage weights")
    channels = beliefs[0].shape[1]
    first = later = target
    if target.shape[1] == 2 * channels:
        first, later = target[:, :channels], target[:, channels:]
    terms = {f"loss/stage{t}": weighted_mse(b, first if t == 1 else later, weights)
             for t, b in enumerate(beliefs, start=1)}
    total = sum(w * term for w, term in zip(stage_weights, terms.values(), strict=True))
    return {"loss": total, **terms}


def _squared(error: torch.Tensor) -> torch.Tensor:
    return error.square()


def _smooth_l1(error: torch.Tensor) -> torch.Tensor:
    return F.smooth_l1_loss(error, torch.zeros_like(error), reduction="none", beta=SMOOTH_L1_BETA)


REGRESSION_LOSSES = {"l2": _squared, "l1": torch.abs, "smooth_l1": _smooth_l1}


def coordinate_loss(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, kind: str = "l2"
                    ) -> torch.Tensor:
    """prediction, target (B, K, 2) normalised; weights (B, K) -> mean over B x K of w_bk * sum_xy loss(error)."""
    try:
        elementwise = REGRESSION_LOSSES[kind]
    except KeyError:
        raise ValueError(f"unknown regression loss {kind!r}; known: {', '.join(REGRESSION_LOSSES)}") from None
    per_joint = elementwise(prediction.float() - target.float()).sum(dim=-1)  # (B, K)
    return (per_joint * weights).mean()


def staged_loss(outputs: list[torch.Tensor], target: torch.Tensor, weights: torch.Tensor,
                stage_weights: list[float], *, regression_loss: str = "l2") -> dict[str, torch.Tensor]:
    """`staged_heatmap_loss` for belief maps (B, C, h, w); for coordinates (B, K, 2) the same per-stage
    terms with `coordinate_loss` of kind ``regression_loss``."""
    if target.ndim == 4:
        return staged_heatmap_loss(outputs, target, weights, stage_weights)
    if len(outputs) != len(stage_weights):
        raise ValueError(f"{len(outputs)} stages of outputs but {len(stage_weights)} stage weights")
    terms = {f"loss/stage{t}": coordinate_loss(o, target, weights, regression_loss)
             for t, o in enumerate(outputs, start=1)}
    total = sum(w * term for w, term in zip(stage_weights, terms.values(), strict=True))
    return {"loss": total, **terms}
