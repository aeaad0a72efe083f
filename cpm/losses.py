"""Intermediate supervision (Sec. 3.3 of the paper): a Euclidean loss at the output of every stage.

    loss = sum_t  stage_weight_t * mean_{b, k, pixels} w_bk * (b_t[b, k] - target[b, k])^2

with w_bk the target weight of joint k (0 for unlabeled or out-of-crop joints; 1 for the background
channel). ``intermediate_supervision = False`` keeps only the last stage's term, so earlier stages
learn only through the gradient that flows back from the last one.
"""

from __future__ import annotations

import torch


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
    """Returns {"loss": weighted sum, "loss/stage1": ..., "loss/stageT": ...} (per-stage terms unweighted)."""
    if len(beliefs) != len(stage_weights):
        raise ValueError(f"{len(beliefs)} stages of beliefs but {len(stage_weights)} stage weights")
    terms = {f"loss/stage{t}": weighted_mse(b, target, weights) for t, b in enumerate(beliefs, start=1)}
    total = sum(w * term for w, term in zip(stage_weights, terms.values(), strict=True))
    return {"loss": total, **terms}
