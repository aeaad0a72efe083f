"""Intermediate supervision (Sec. 3.3 of the paper): a Euclidean loss at the output of every stage.

    loss = sum_t  stage_weight_t * mean_{b, k, pixels} w_bk * (b_t[b, k] - target[b, k])^2

with w_bk the target weight of joint k (0 for unlabeled or out-of-crop joints; 1 for the background
channel), or a weight per pixel where the codec gives one (part affinity fields).
``intermediate_supervision = False`` keeps only the last stage's term, so earlier stages learn only
through the gradient that flows back from the last one.

Heads that output coordinates (B, K, 2) (`cpm.models.heads`) are trained with a per-joint coordinate loss
on the normalised coordinates of `cpm.targets.codecs.RegressionCodec`, summed over x and y, weighted by the target
weights and averaged over B x K (``REGRESSION_LOSSES``: ``l2``, the baseline; ``l1``; ``smooth_l1``; ``rle``, the
negative log-likelihood of `rle_nll` for a head that also outputs a scale σ per joint, (B, K, 4)).
`staged_loss` reads either kind of output by its shape, so the training loop has one loss call.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812 - the usual name

from cpm.config import RegressionLoss, check_names

SMOOTH_L1_BETA = 0.05  # normalised units: quadratic within ~3 px of the truth on a 128 px crop, linear beyond
SIGMA_EPSILON = 1e-9  # added to σ where RLE divides by it (the paper's code's guard against a scale of 0)


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
    """prediction, target (B, C, h, w); weights (B, K) per channel with K = C or C - 1 (background weighted 1), or
    (B, C, h, w) per pixel (`cpm.targets.paf.PafCodec`'s). The mean over B, C and the cells of weight x squared
    error either way."""
    if weights.ndim == 4:
        return (((prediction.float() - target) ** 2) * weights).mean()
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


def _summed_over_xy(elementwise: Callable[[torch.Tensor], torch.Tensor]):
    """A loss of the error -> per_joint(prediction, target, flow=None) (B, K): the loss summed over x and y."""
    def per_joint(prediction: torch.Tensor, target: torch.Tensor, flow: torch.nn.Module | None = None) -> torch.Tensor:
        return elementwise(prediction.float() - target.float()).sum(dim=-1)

    return per_joint


# -log of RLE's unit density Q in one dimension at the residual r (the flow learns the rest, `rle_nll`)
RLE_DISTRIBUTIONS = {
    "laplace": lambda r: r.abs() + math.log(2),  # density exp(-|r|) / 2
    "gaussian": lambda r: r.square() / 2 + math.log(2 * math.pi) / 2,  # density exp(-r^2 / 2) / sqrt(2 pi)
}


def rle_nll(prediction: torch.Tensor, target: torch.Tensor, flow: torch.nn.Module | None,
            distribution: str = "laplace") -> torch.Tensor:
    """RLE's negative log-likelihood of the targets (Li et al. 2021, "Human Pose Regression with Residual
    Log-likelihood Estimation", the residual form): prediction (B, K, 4) = [μx, μy, σx, σy] with σ > 0, target
    (B, K, 2), both normalised -> (B, K)::

        x̄ = (target - μ) / σ
        -log p(target) = -log Q(x̄) - log G(x̄) + log σx + log σy

    with the paper's names: Q the unit ``distribution`` (Laplace or Gaussian) in each of x and y, G the learned
    density of the 2-vector x̄ that fits what Q misses (``flow.log_prob``, `cpm.models.realnvp.RealNVP`); log σ is
    the change of variables from x̄ back to the target. The normalising constant of Q·G is left out, as in the paper.
    The paper's code (and mmpose's ``RLELoss``) adds G's term and a second log σ to each of x and y; here each
    appears once, as the likelihood has them."""
    if flow is None:
        raise ValueError("the rle loss needs the flow of the model it trains (build_loss(config, model))")
    if prediction.shape[-1] != 4:
        raise ValueError(f"the rle loss reads μ and σ (B, K, 4); got outputs of shape {tuple(prediction.shape)}")
    mu, sigma = prediction[..., :2].float(), prediction[..., 2:].float()
    residual = (target.float() - mu) / (sigma + SIGMA_EPSILON)  # (B, K, 2)
    unit = RLE_DISTRIBUTIONS[distribution](residual).sum(dim=-1)  # -log Q(x̄)
    return -flow.log_prob(residual) + unit + sigma.log().sum(dim=-1)


REGRESSION_LOSSES = {"l2": _summed_over_xy(_squared), "l1": _summed_over_xy(torch.abs),
                     "smooth_l1": _summed_over_xy(_smooth_l1), "rle": rle_nll}
check_names(REGRESSION_LOSSES, RegressionLoss, "model.regression_loss")


def coordinate_loss(prediction: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, kind: str = "l2",
                    flow: torch.nn.Module | None = None) -> torch.Tensor:
    """prediction, target (B, K, 2) normalised (prediction (B, K, 4) with σ for ``rle``); weights (B, K) -> mean over
    B x K of w_bk * the joint's loss (summed over x and y; ``rle``: `rle_nll`, which reads the model's ``flow``)."""
    try:
        per_joint = REGRESSION_LOSSES[kind]
    except KeyError:
        raise ValueError(f"unknown regression loss {kind!r}; known: {', '.join(REGRESSION_LOSSES)}") from None
    return (per_joint(prediction, target, flow) * weights).mean()


def staged_loss(outputs: list[torch.Tensor], target: torch.Tensor, weights: torch.Tensor,
                stage_weights: list[float], *, regression_loss: str = "l2",
                flow: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """`staged_heatmap_loss` for belief maps (B, C, h, w); for coordinates (B, K, 2) (or (B, K, 4) with σ) the same
    per-stage terms with `coordinate_loss` of kind ``regression_loss`` (``rle`` reads the model's ``flow``)."""
    if target.ndim == 4:
        return staged_heatmap_loss(outputs, target, weights, stage_weights)
    if len(outputs) != len(stage_weights):
        raise ValueError(f"{len(outputs)} stages of outputs but {len(stage_weights)} stage weights")
    terms = {f"loss/stage{t}": coordinate_loss(o, target, weights, regression_loss, flow)
             for t, o in enumerate(outputs, start=1)}
    total = sum(w * term for w, term in zip(stage_weights, terms.values(), strict=True))
    return {"loss": total, **terms}
