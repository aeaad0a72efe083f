"""Pose metrics: PCK with a named normaliser, per joint group; PDJ curve and AUC; PCP; EPE. Vectorised numpy.

Glossary: N samples, K joints, T thresholds, L limbs. Predictions are (N, K, 2) pixels, ground truth is
(N, K, 3) with the visibility flag v (0 unlabeled, 1 occluded, 2 visible) in the same pixel frame.

PCK@a (Sapp & Taskar 2013; the CPM protocol, Wei et al. 2016, Sec. 4.1): a joint is correct when

    ||prediction - truth|| <= a * normaliser(sample)

with the normaliser chosen by name (``normaliser_size``):

- ``torso``: ||truth[left shoulder] - truth[right hip]|| (CPM / LSP / FLIC; bearpaw/eval_pose ``eval_pck.m``).
- ``bbox``: the longer side of the ground-truth person box, as mmpose's ``PCKAccuracy(norm_item='bbox')``
  (``np.max(bbox[2:] - bbox[:2])`` of the xyxy box); without a box, the box around the labeled keypoints.
  mmpose compares with ``<``, CPM with ``<=``; we use ``<=`` everywhere.
- ``head``: PCKh, 0.6 x the diagonal of the head box (MPII; ``SC_BIAS = 0.6`` in the MPII evaluation code
  and in HRNet's / mmpose's ``MpiiPCKAccuracy``).

Only labeled joints count (v > 0). A sample whose normaliser is zero or not finite is left out and counted
in ``excluded``. A non-finite prediction is a miss. The mean is pooled over every counted joint (the CPM
protocol; for MPII it equals mmpose's count-weighted mean over the joints it keeps).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

NORMALISERS = ("torso", "bbox", "head")
HEAD_BOX_FACTOR = 0.6  # PCKh: 0.6 x head-box diagonal (MPII evaluation, SC_BIAS)
PDJ_THRESHOLDS = np.round(np.arange(51) * 0.01, 2)  # a in 0..0.5, as eval_pose's eval_pdj.m

# Joint groups of the CPM / MPII result tables, found from words in the joint names, so the LSP 14, ITOP 15,
# MPII 16 and FLIC orders all work. Joints in no group (pelvis, thorax, torso) still count in the mean.
_GROUP_WORDS = {
    "head": ("head", "neck", "nose", "eye", "ear"),
    "shoulders": ("shoulder",),
    "elbows": ("elbow",),
    "wrists": ("wrist", "hand"),
    "hips": ("hip",),
    "knees": ("knee",),
    "ankles": ("ankle", "foot"),
}
JOINT_GROUPS = tuple(_GROUP_WORDS)


def joint_groups(joint_names: Sequence[str]) -> dict[str, list[int]]:
    """{group: joint indices} for the groups that have at least one joint, in the table's order."""
    groups: dict[str, list[int]] = {}
    for group, words in _GROUP_WORDS.items():
        members = [k for k, name in enumerate(joint_names) if set(name.lower().split("_")) & set(words)]
        if members:
            groups[group] = members
    return groups


# ---------------------------------------------------------------------------------------------- normalisers


def torso_size(ground_truth: np.ndarray, torso: tuple[int, int]) -> np.ndarray:
    """(N, K, 2+) -> (N,) distance between the two torso joints; NaN where either is unlabeled."""
    a, b = torso
    size = np.linalg.norm(ground_truth[:, a, :2] - ground_truth[:, b, :2], axis=-1)
    if ground_truth.shape[-1] > 2:
        labeled = (ground_truth[:, a, 2] > 0) & (ground_truth[:, b, 2] > 0)
        size = np.where(labeled, size, np.nan)
    return size


def bbox_size(ground_truth: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
    """(N,) longer side of each person box (x1, y1, x2, y2), or of the box around the labeled keypoints."""
    if boxes is not None:
        boxes = np.asarray(boxes, dtype=np.float64)  # (N, 4)
        return np.max(boxes[:, 2:] - boxes[:, :2], axis=-1)
    labeled = ground_truth[..., 2] > 0  # (N, K)
    xy = np.where(labeled[..., None], ground_truth[..., :2], np.nan)  # (N, K, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: nothing labeled, NaN size on purpose
        size = np.max(np.nanmax(xy, axis=1) - np.nanmin(xy, axis=1), axis=-1)
    return size  # NaN where nothing is labeled, 0 where one joint is: both excluded


def head_size(head_boxes: np.ndarray) -> np.ndarray:
    """(N, 4) head boxes x1, y1, x2, y2 -> (N,) PCKh normaliser 0.6 x diagonal."""
    head_boxes = np.asarray(head_boxes, dtype=np.float64)
    return HEAD_BOX_FACTOR * np.linalg.norm(head_boxes[:, 2:] - head_boxes[:, :2], axis=-1)


def normaliser_size(kind: str, ground_truth: np.ndarray, *, torso: tuple[int, int] | None = None,
                    head_boxes: np.ndarray | None = None, boxes: np.ndarray | None = None) -> np.ndarray:
    """(N,) normaliser by name: ``torso`` (needs ``torso``), ``bbox`` (``boxes`` optional), ``head`` (needs
    ``head_boxes``)."""
    if kind == "torso":
        if torso is None:
            raise ValueError("the torso normaliser needs the torso joint pair")
        return torso_size(ground_truth, torso)
    if kind == "bbox":
        return bbox_size(ground_truth, boxes)
    if kind == "head":
        if head_boxes is None:
            raise ValueError("the head normaliser (PCKh) needs one head box per sample")
        return head_size(head_boxes)
    raise ValueError(f"unknown normaliser {kind!r}; known: {', '.join(NORMALISERS)}")


# ---------------------------------------------------------------------------------------------------- PCK


@dataclass
class PCKResult:
    threshold: float
    per_joint: np.ndarray  # (K,) fraction correct, NaN for joints never labeled
    mean: float  # pooled over every counted joint (the CPM protocol)
    counted: int  # joints that entered the score
    excluded: int  # samples left out because their normaliser was zero or not finite


def _prepare(predictions, ground_truth, normaliser):
    """-> distance (N, K) with inf for non-finite predictions, counted (N, K), valid sample (N,), safe normaliser."""
    predictions = np.asarray(predictions, dtype=np.float64)
    ground_truth = np.asarray(ground_truth, dtype=np.float64)
    normaliser = np.asarray(normaliser, dtype=np.float64)
    if predictions.shape[:2] != ground_truth.shape[:2] or predictions.shape[-1] < 2 or ground_truth.shape[-1] < 3:
        raise ValueError(f"predictions {predictions.shape} do not match ground truth {ground_truth.shape}")
    if normaliser.shape != ground_truth.shape[:1]:
        raise ValueError(f"normaliser {normaliser.shape} does not match {len(ground_truth)} samples")
    valid_sample = np.isfinite(normaliser) & (normaliser > 0)  # (N,)
    counted = (ground_truth[..., 2] > 0) & valid_sample[:, None]  # (N, K)
    distance = np.linalg.norm(predictions[..., :2] - ground_truth[..., :2], axis=-1)  # (N, K)
    distance = np.where(np.isfinite(distance), distance, np.inf)  # a non-finite prediction is a miss
    return distance, counted, valid_sample, np.where(valid_sample, normaliser, 1.0)


def _ratio(hits: np.ndarray, total: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return hits / total


def pck(predictions: np.ndarray, ground_truth: np.ndarray, normaliser: np.ndarray, threshold: float) -> PCKResult:
    """PCK@threshold. predictions (N, K, 2), ground_truth (N, K, 3), normaliser (N,) in pixels."""
    distance, counted, valid_sample, safe = _prepare(predictions, ground_truth, normaliser)
    correct = (distance <= threshold * safe[:, None]) & counted  # (N, K)
    total = int(counted.sum())
    return PCKResult(
        threshold=threshold,
        per_joint=_ratio(correct.sum(axis=0), counted.sum(axis=0)),
        mean=float(correct.sum() / total) if total else float("nan"),
        counted=total,
        excluded=int((~valid_sample).sum()),
    )


def pck_torso(predictions: np.ndarray, ground_truth: np.ndarray, torso: tuple[int, int],
              threshold: float = 0.2) -> PCKResult:
    return pck(predictions, ground_truth, torso_size(ground_truth, torso), threshold)


@dataclass
class PCKTable:
    """PCK per joint, per group and pooled; fractions in [0, 1], NaN where nothing was counted."""

    threshold: float
    joint_names: tuple[str, ...]
    per_joint: np.ndarray  # (K,)
    per_group: dict[str, float]
    mean: float  # pooled over the counted joints of ``mean_joints``
    counted: int
    excluded: int
    joint_counts: np.ndarray = field(repr=False)  # (K,) counted joints per joint


def pck_table(predictions: np.ndarray, ground_truth: np.ndarray, normaliser: np.ndarray, threshold: float,
              joint_names: Sequence[str], mean_joints: Sequence[int] | None = None,
              groups: dict[str, Sequence[int]] | None = None) -> PCKTable:
    """PCK@threshold per joint, per group (pooled over the group's joints; default ``joint_groups(joint_names)``)
    and pooled over ``mean_joints`` (default: all). MPII leaves pelvis and thorax out of its mean (mmpose
    ``MpiiPCKAccuracy``)."""
    if len(joint_names) != np.shape(ground_truth)[1]:
        raise ValueError(f"{len(joint_names)} joint names for {np.shape(ground_truth)[1]} joints")
    distance, counted, valid_sample, safe = _prepare(predictions, ground_truth, normaliser)
    correct = (distance <= threshold * safe[:, None]) & counted  # (N, K)
    hits, counts = correct.sum(axis=0), counted.sum(axis=0)  # (K,)
    groups = joint_groups(joint_names) if groups is None else groups
    per_group = {name: float(_ratio(hits[list(idx)].sum(), counts[list(idx)].sum())) for name, idx in groups.items()}
    keep = list(range(len(joint_names))) if mean_joints is None else list(mean_joints)
    return PCKTable(
        threshold=threshold, joint_names=tuple(joint_names), per_joint=_ratio(hits, counts), per_group=per_group,
        mean=float(_ratio(hits[keep].sum(), counts[keep].sum())), counted=int(counts[keep].sum()),
        excluded=int((~valid_sample).sum()), joint_counts=counts,
    )


# ------------------------------------------------------------------------------------------ curves and AUC


@dataclass
class PCKCurve:
    thresholds: np.ndarray  # (T,)
    per_joint: np.ndarray  # (T, K) fraction correct at each threshold
    mean: np.ndarray  # (T,) pooled over all counted joints
    counted: int
    excluded: int


def pck_curve(predictions: np.ndarray, ground_truth: np.ndarray, normaliser: np.ndarray,
              thresholds: Sequence[float]) -> PCKCurve:
    """PCK at every threshold at once."""
    thresholds = np.asarray(thresholds, dtype=np.float64)  # (T,)
    distance, counted, valid_sample, safe = _prepare(predictions, ground_truth, normaliser)
    correct = (distance[None] <= thresholds[:, None, None] * safe[None, :, None]) & counted[None]  # (T, N, K)
    total = int(counted.sum())
    return PCKCurve(
        thresholds=thresholds,
        per_joint=_ratio(correct.sum(axis=1), counted.sum(axis=0)[None]),
        mean=correct.sum(axis=(1, 2)) / total if total else np.full(len(thresholds), np.nan),
        counted=total, excluded=int((~valid_sample).sum()),
    )


def pdj_curve(predictions: np.ndarray, ground_truth: np.ndarray, torso: tuple[int, int],
              thresholds: Sequence[float] = PDJ_THRESHOLDS) -> PCKCurve:
    """PDJ (Toshev & Szegedy 2014): fraction of joints within a x torso for a in 0..0.5 (eval_pose ``eval_pdj.m``)."""
    return pck_curve(predictions, ground_truth, torso_size(np.asarray(ground_truth, np.float64), torso), thresholds)


def auc(thresholds: Sequence[float], values: Sequence[float], a_max: float | None = None) -> float:
    """Normalised area under a PCK curve over [thresholds[0], a_max]: the trapezoid rule on the piecewise-linear
    curve, divided by the interval's length (eval_pose integrates the same interpolant with ``quadgk``)."""
    x = np.asarray(thresholds, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    a_max = float(x[-1]) if a_max is None else float(a_max)
    if len(x) < 2 or a_max <= x[0] or a_max > x[-1]:
        raise ValueError(f"a_max {a_max} must lie in ({x[0]}, {x[-1]}] and the curve needs two points")
    inside = x < a_max
    x = np.append(x[inside], a_max)
    y = np.append(y[inside], np.interp(a_max, thresholds, values))
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2) / (a_max - x[0]))


def plot_curves(thresholds: np.ndarray, curves: dict[str, np.ndarray], path: str | Path, *,
                title: str = "PDJ", xlabel: str = "normalised distance threshold a") -> Path:
    """Write a PNG of {label: (T,) fraction} against the thresholds (Agg canvas: no display, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for label, values in curves.items():
        axes.plot(thresholds, 100 * np.asarray(values), label=label, linewidth=2)
    axes.set(xlim=(thresholds[0], thresholds[-1]), ylim=(0, 100), xlabel=xlabel, ylabel="detection rate (%)",
             title=title)
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right")
    path = Path(path)
    figure.savefig(path, dpi=100)
    return path


# --------------------------------------------------------------------------------------------- PCP and EPE


@dataclass
class PCPResult:
    per_limb: np.ndarray  # (L,) fraction of correct limbs, NaN for limbs never counted
    mean: float  # pooled over all counted limbs
    counted: int  # limbs with both endpoints labeled and a non-zero length
    excluded: int  # labeled limbs of zero length


def pcp(predictions: np.ndarray, ground_truth: np.ndarray, limbs: Sequence[tuple[int, int]], alpha: float = 0.5,
        kind: str = "strict") -> PCPResult:
    """Percentage of correct parts. A limb (a, b) of ground-truth length ``len`` is correct when

    - ``strict`` (Ferrari et al. 2008; Eichner et al. 2012; eval_pose ``eval_pcp.m``): both predicted endpoints lie
      within alpha x len of their true endpoints;
    - ``loose`` (the variant much of the LSP literature reported, e.g. Yang & Ramanan; named by Pishchulin et al.
      2012): the mean of the two endpoint distances is within alpha x len.
    """
    if kind not in ("strict", "loose"):
        raise ValueError(f"unknown PCP kind {kind!r}; known: strict, loose")
    predictions = np.asarray(predictions, dtype=np.float64)
    ground_truth = np.asarray(ground_truth, dtype=np.float64)
    a, b = np.asarray(limbs, dtype=np.int64).reshape(-1, 2).T  # (L,), (L,)
    length = np.linalg.norm(ground_truth[:, a, :2] - ground_truth[:, b, :2], axis=-1)  # (N, L)
    labeled = (ground_truth[:, a, 2] > 0) & (ground_truth[:, b, 2] > 0)  # (N, L)
    counted = labeled & (length > 0)
    error = np.linalg.norm(predictions[..., :2] - ground_truth[..., :2], axis=-1)  # (N, K)
    error = np.where(np.isfinite(error), error, np.inf)
    with np.errstate(invalid="ignore"):
        if kind == "strict":
            correct = (error[:, a] <= alpha * length) & (error[:, b] <= alpha * length)
        else:
            correct = (error[:, a] + error[:, b]) / 2 <= alpha * length
    correct &= counted  # (N, L)
    total = int(counted.sum())
    return PCPResult(per_limb=_ratio(correct.sum(axis=0), counted.sum(axis=0)),
                     mean=float(correct.sum() / total) if total else float("nan"),
                     counted=total, excluded=int((labeled & ~(length > 0)).sum()))


@dataclass
class EPEResult:
    per_joint: np.ndarray  # (K,) mean end-point error in pixels over labeled joints with finite predictions
    mean: float  # pooled over the same joints
    counted: int
    non_finite: int  # labeled joints whose prediction was NaN or inf: left out of the mean, reported here


def epe(predictions: np.ndarray, ground_truth: np.ndarray) -> EPEResult:
    """End-point error: Euclidean distance in pixels between prediction and truth, over labeled joints."""
    predictions = np.asarray(predictions, dtype=np.float64)
    ground_truth = np.asarray(ground_truth, dtype=np.float64)
    distance = np.linalg.norm(predictions[..., :2] - ground_truth[..., :2], axis=-1)  # (N, K)
    labeled = ground_truth[..., 2] > 0
    counted = labeled & np.isfinite(distance)
    summed = np.where(counted, distance, 0.0)
    total = int(counted.sum())
    return EPEResult(per_joint=_ratio(summed.sum(axis=0), counted.sum(axis=0)),
                     mean=float(summed.sum() / total) if total else float("nan"),
                     counted=total, non_finite=int((labeled & ~np.isfinite(distance)).sum()))

