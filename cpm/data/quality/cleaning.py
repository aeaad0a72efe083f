"""Label checks: find keypoint annotations that are probably wrong, with the reason.

Reasons (a sample may have several):

- ``nan``: a labeled joint (v > 0) with a NaN or infinite coordinate;
- ``outside``: a labeled joint outside the image (x < 0, y < 0, x > W - 1 or y > H - 1);
- ``duplicate``: two labeled joints on the same spot (closer than 0.25 px + 0.2 % of the torso);
- ``bone``: a limb far longer than the dataset's own limbs relative to the sample's median limb length
  (robust z-score of the log length ratio above `BONE_Z`) in a pose away from the prior (``d2 > BONE_D2``);
- ``swap``: swapping one left/right pair (elbows, hands, knees, feet) brings the pose closer to the pose prior
  (the squared Mahalanobis distance drops by more than `SWAP_MARGIN`, to less than `SWAP_RATIO` of itself);
- ``prior``: the pose is far from the pose prior (squared Mahalanobis distance above `PRIOR_D2`).

The pose prior is a Gaussian of the torso-normalised, centred poses (`cpm.data.quality.realism.normalise`) fitted to the
dataset itself, refitted once without its 5 % most distant poses, so that the errors it looks for do not shape it.
`inject_errors` corrupts clean keypoints with one error of a known kind per chosen sample, to measure precision
and recall (`measure`); ``cpm data check --synthetic N`` prints them.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from cpm.errors import CPMError
from cpm.skeleton import ITOP_15

KINDS = ("nan", "outside", "duplicate", "bone", "swap")
REASONS = (*KINDS, "prior")
BONE_Z, BONE_D2, SWAP_MARGIN, SWAP_RATIO, PRIOR_D2 = 5.0, 60.0, 4.0, 0.8, 600.0
SWAP_PAIRS = ((4, 5), (6, 7), (11, 12), (13, 14))  # elbows, hands, knees, feet (ITOP_15)
LIMB_ENDS = ((1, 0), (2, 4), (4, 6), (3, 5), (5, 7), (9, 11), (11, 13), (10, 12), (12, 14))  # (parent, moved)


def _normalised(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, 2) -> centred poses (N, K, 2) divided by the torso, and the torso (N,) (NaN where undefined)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a pose without shoulders and hips: NaN centre
        centre = np.nanmean(points[:, [2, 3, 9, 10]], axis=1, keepdims=True)
    left_shoulder, right_hip = ITOP_15.torso
    torso = np.linalg.norm(points[:, left_shoulder] - points[:, right_hip], axis=-1)
    torso = np.where(torso > 1e-6, torso, np.nan)
    return (points - centre) / torso[:, None, None], torso


class PosePrior:
    """Gaussian of normalised poses (N, K*2): mean, inverse covariance; ``distance2(poses)`` (N,)."""

    def __init__(self, poses: np.ndarray) -> None:
        flat = poses.reshape(len(poses), -1)
        self.columns = np.isfinite(flat).mean(axis=0) >= 0.5  # joints the dataset labels (LSP has no torso)
        flat = flat[:, self.columns]
        flat = flat[np.isfinite(flat).all(axis=1)]
        if len(flat) < 2 * flat.shape[1]:
            raise CPMError(f"{len(flat)} complete poses are too few to fit a pose prior")
        self._fit(flat)
        d2 = np.einsum("ni,ij,nj->n", flat - self.mean, self.precision, flat - self.mean)
        self._fit(flat[d2 <= np.quantile(d2, 0.95)])

    def _fit(self, flat: np.ndarray) -> None:
        self.mean = flat.mean(axis=0)
        covariance = np.cov(flat, rowvar=False) + 1e-3 * np.eye(flat.shape[1])
        self.precision = np.linalg.inv(covariance)

    def distance2(self, poses: np.ndarray) -> np.ndarray:
        flat = poses.reshape(len(poses), -1)[:, self.columns] - self.mean
        flat = np.where(np.isfinite(flat), flat, 0.0)  # unlabeled joints count as average
        return np.einsum("ni,ij,nj->n", flat, self.precision, flat)


def check_labels(keypoints: np.ndarray, *, sizes: np.ndarray | None = None) -> list[dict[str, str]]:
    """ITOP_15 keypoints (N, 15, 3) and image sizes (N, 2) [width, height] -> one dict per sample,
    {reason: detail} for each reason it is flagged for (empty when it looks fine)."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    n = len(keypoints)
    labeled = keypoints[..., 2] > 0
    points = np.where(labeled[..., None], keypoints[..., :2], np.nan)  # (N, K, 2), NaN where unlabeled
    flags: list[dict[str, str]] = [{} for _ in range(n)]
    bad = labeled & ~np.isfinite(keypoints[..., :2]).all(axis=-1)
    for i, j in zip(*np.nonzero(bad), strict=True):
        flags[i].setdefault("nan", ITOP_15.joint_names[j])
    points[bad] = np.nan
    if sizes is not None:
        sizes = np.asarray(sizes, dtype=np.float64)[:, None, :]
        with np.errstate(invalid="ignore"):
            outside = ((points < 0) | (points > sizes - 1)).any(axis=-1)
        for i, j in zip(*np.nonzero(outside), strict=True):
            flags[i].setdefault("outside", ITOP_15.joint_names[j])
        points[outside] = np.nan
    poses, torso = _normalised(points)
    gaps = np.linalg.norm(points[:, :, None] - points[:, None, :], axis=-1)  # (N, K, K)
    limit = (0.25 + 0.002 * np.nan_to_num(torso, nan=0.0))[:, None, None]
    with np.errstate(invalid="ignore"):
        same = np.triu(gaps < limit, k=1)
    for i, a, b in zip(*np.nonzero(same), strict=True):
        flags[i].setdefault("duplicate", f"{ITOP_15.joint_names[a]}={ITOP_15.joint_names[b]}")
    prior = PosePrior(poses)
    d2 = prior.distance2(poses)
    ends = np.array(LIMB_ENDS)
    lengths = np.linalg.norm(points[:, ends[:, 1]] - points[:, ends[:, 0]], axis=-1)  # (N, L)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: samples or limbs without labels
        scale = np.nanmedian(np.concatenate([lengths, torso[:, None]], axis=1), axis=1)
        ratios = np.log(lengths / scale[:, None] + 1e-6)
        median = np.nanmedian(ratios, axis=0)
        spread = 1.4826 * np.nanmedian(np.abs(ratios - median), axis=0) + 1e-6
        long = ((ratios - median) / spread > BONE_Z) & (d2[:, None] > BONE_D2)
    for i, k in zip(*np.nonzero(long), strict=True):
        flags[i].setdefault("bone", ITOP_15.joint_names[ends[k, 1]])
    for a, b in SWAP_PAIRS:
        swapped = poses.copy()
        swapped[:, [a, b]] = swapped[:, [b, a]]
        s2 = prior.distance2(swapped)
        for i in np.flatnonzero((d2 - s2 > SWAP_MARGIN) & (s2 < SWAP_RATIO * d2)):
            flags[i].setdefault("swap", f"{ITOP_15.joint_names[a]}<->{ITOP_15.joint_names[b]}")
    for i in np.flatnonzero(d2 > PRIOR_D2):
        if not flags[i]:  # the other reasons explain a far pose better
            flags[i]["prior"] = f"d2={d2[i]:.0f}"
    return flags


def inject_errors(keypoints: np.ndarray, *, sizes: np.ndarray, fraction: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """Corrupt ``fraction`` of the samples with one label error each, kinds in turn (`KINDS`). Returns the
    keypoints and each sample's kind ("" for clean samples)."""
    keypoints = np.array(keypoints, dtype=np.float64)
    kinds = [""] * len(keypoints)
    chosen = rng.choice(len(keypoints), size=int(round(fraction * len(keypoints))), replace=False)
    for count, i in enumerate(chosen):
        kind = KINDS[count % len(KINDS)]
        kinds[i] = kind
        kp = keypoints[i]
        labeled = np.flatnonzero(kp[:, 2] > 0)
        torso = np.linalg.norm(kp[3, :2] - kp[9, :2])
        if kind == "nan":
            kp[rng.choice(labeled), rng.integers(2)] = np.nan
        elif kind == "outside":
            width, height = sizes[i]
            kp[rng.choice(labeled), :2] = (-rng.uniform(3, 30), rng.uniform(0, height)) if rng.random() < 0.5 \
                else (rng.uniform(0, width), height - 1 + rng.uniform(3, 30))
            kp[kp[:, 2] == 0, 2] = 0
        elif kind == "duplicate":
            a, b = rng.choice(labeled, 2, replace=False)
            kp[b, :2] = kp[a, :2]
        elif kind == "bone":  # a click far from the joint: the limb becomes 1.5-2.5 torsos long
            parent, moved = LIMB_ENDS[rng.integers(len(LIMB_ENDS))]
            angle = rng.uniform(0, 2 * np.pi)
            kp[moved, :2] = kp[parent, :2] + rng.uniform(1.5, 2.5) * torso * np.array([np.cos(angle), np.sin(angle)])
            kp[moved, 2] = 2
        else:  # swap: left and right of one pair exchanged
            a, b = SWAP_PAIRS[rng.integers(len(SWAP_PAIRS))]
            kp[[a, b]] = kp[[b, a]]
    return keypoints, kinds


def measure(flags: list[dict[str, str]], kinds: list[str]) -> dict:
    """Precision and recall of the flags against the injected kinds: overall (a flagged sample is right when it
    was corrupted), recall per injected kind, and precision per reason."""
    flagged = np.array([bool(f) for f in flags])
    corrupted = np.array([bool(k) for k in kinds])
    result = {"overall": {"precision": _ratio(flagged & corrupted, flagged), "recall": _ratio(flagged & corrupted,
                                                                                                corrupted),
                          "flagged": int(flagged.sum()), "corrupted": int(corrupted.sum())}}
    for kind in KINDS:
        injected = np.array([k == kind for k in kinds])
        right = np.array([kind in f for f in flags])
        result[kind] = {"injected": int(injected.sum()), "recall": _ratio(flagged & injected, injected),
                        "recall_same_reason": _ratio(right & injected, injected)}
    for reason in REASONS:
        given = np.array([reason in f for f in flags])
        result.setdefault(reason, {}).update({"flagged": int(given.sum()), "precision": _ratio(given & corrupted,
                                                                                                  given)})
    return result


def _ratio(hits: np.ndarray, total: np.ndarray) -> float:
    return float(hits.sum() / total.sum()) if total.sum() else float("nan")


def format_measure(result: dict) -> str:
    lines = ["| kind | injected | recall | recall (same reason) | flagged as | precision |",
             "|---|---:|---:|---:|---:|---:|"]
    o = result["overall"]
    lines.append(f"| all | {o['corrupted']} | {o['recall']:.3f} | | {o['flagged']} | {o['precision']:.3f} |")
    for kind in REASONS:
        r = result[kind]
        injected = f"{r['injected']} | {r['recall']:.3f} | {r['recall_same_reason']:.3f}" if "injected" in r else "| |"
        lines.append(f"| {kind} | {injected} | {r['flagged']} | {r['precision']:.3f} |")
    return "\n".join(lines)


def synthetic_clean_keypoints(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 15, 3) keypoints of the renderer's scenes (v = 2 inside the frame, 0 outside) and their sizes."""
    from cpm.data.quality.realism import synthetic_keypoints
    from cpm.data.synthetic.camera import FRAME_HEIGHT, FRAME_WIDTH

    points = synthetic_keypoints(n, seed=seed)
    inside = ((points >= 0) & (points <= (FRAME_WIDTH - 1, FRAME_HEIGHT - 1))).all(axis=-1)
    keypoints = np.concatenate([points, 2.0 * inside[..., None]], axis=-1)
    return keypoints, np.tile([FRAME_WIDTH, FRAME_HEIGHT], (n, 1))


def write_flags(path: str | Path, flags: list[dict[str, str]], names: list[str]) -> int:
    """CSV ``index, image, reasons, details`` of the flagged samples; returns how many."""
    rows = [(i, names[i], ";".join(f), ";".join(f"{k}:{v}" for k, v in f.items())) for i, f in enumerate(flags) if f]
    with Path(path).open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(("index", "image", "reasons", "details"))
        writer.writerows(rows)
    return len(rows)
