"""Pose metrics. PCK@a normalised by the torso, the CPM / LSP protocol (Wei et al. 2016, Sec. 4.1):

    a joint is correct when ||prediction - truth|| <= a * ||truth[left shoulder] - truth[right hip]||

Only labeled joints count (v > 0); a sample whose normaliser is zero or not finite is excluded and
reported in ``excluded``. Arrays are numpy; shapes (N, K, 2) predictions and (N, K, 3) ground truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def torso_size(ground_truth: np.ndarray, torso: tuple[int, int]) -> np.ndarray:
    """(N, K, 2+) -> (N,) distance between the two torso joints; NaN where either is unlabeled."""
    a, b = torso
    size = np.linalg.norm(ground_truth[:, a, :2] - ground_truth[:, b, :2], axis=-1)
    if ground_truth.shape[-1] > 2:
        labeled = (ground_truth[:, a, 2] > 0) & (ground_truth[:, b, 2] > 0)
        size = np.where(labeled, size, np.nan)
    return size


@dataclass
class PCKResult:
    threshold: float
    per_joint: np.ndarray  # (K,) fraction correct, NaN for joints never labeled
    mean: float  # pooled over every counted joint (the CPM protocol)
    counted: int  # joints that entered the score
    excluded: int  # samples left out because their normaliser was zero or not finite


def pck(predictions: np.ndarray, ground_truth: np.ndarray, normaliser: np.ndarray, threshold: float) -> PCKResult:
    """PCK@threshold. predictions (N, K, 2), ground_truth (N, K, 3), normaliser (N,) in pixels."""
    predictions = np.asarray(predictions, dtype=np.float64)
    ground_truth = np.asarray(ground_truth, dtype=np.float64)
    normaliser = np.asarray(normaliser, dtype=np.float64)
    if predictions.shape[:2] != ground_truth.shape[:2] or predictions.shape[-1] < 2:
        raise ValueError(f"predictions {predictions.shape} do not match ground truth {ground_truth.shape}")
    valid_sample = np.isfinite(normaliser) & (normaliser > 0)  # (N,)
    counted = (ground_truth[..., 2] > 0) & valid_sample[:, None]  # (N, K)
    distance = np.linalg.norm(predictions[..., :2] - ground_truth[..., :2], axis=-1)  # (N, K)
    safe_normaliser = np.where(valid_sample, normaliser, 1.0)[:, None]
    # A non-finite prediction is a miss, never a hit.
    correct = (distance <= threshold * safe_normaliser) & np.isfinite(distance) & counted
    per_joint_count = counted.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_joint = correct.sum(axis=0) / per_joint_count
    total = int(counted.sum())
    return PCKResult(
        threshold=threshold,
        per_joint=per_joint,
        mean=float(correct.sum() / total) if total else float("nan"),
        counted=total,
        excluded=int((~valid_sample).sum()),
    )


def pck_torso(predictions: np.ndarray, ground_truth: np.ndarray, torso: tuple[int, int],
              threshold: float = 0.2) -> PCKResult:
    return pck(predictions, ground_truth, torso_size(ground_truth, torso), threshold)
