"""``cpm score``: score a prediction file against ground truth with the protocol a paper used.

    cpm score --gt lsp/lsp-joints-PC.mat --pred LSP_prediction_model_LSP_6s.mat --protocol lsp

Protocols (all pooled over the counted joints; distances compared with ``<=``):

- ``lsp``: PCK@0.2, torso = ||left shoulder - right hip|| of the ground truth, every annotated joint counts
  (occluded ones too). A 2000-image LSP file is cut to its test half, images 1001-2000 (indices 1000..1999).
  This is ``util_get_bodysize_size`` in CPM's ``run_benchmark.m`` and eval_pose's ``eval_pck.m``; scoring the
  original CPM's predictions against the person-centric labels gives the paper's 84.32 % (LSP model) and
  90.50 % (MPII+LSP model).
- ``flic``: PCK@0.2 on FLIC's observer-centric test labels (10 joints), torso = ||left shoulder - right hip||
  of the ground truth, i.e. joints 7 and 6 (1-based) of ``FLIC_10`` as in eval_pose's ``get_dist_pck``. A
  9-joint CPM prediction file is scored on its 9 joints. This gives the CPM paper's elbows 97.59 % and wrists
  95.03 %. (CPM's own ``run_benchmark.m`` printed a running score with the *predicted* torso, "following MODEC";
  that gives 97.54 % / 94.98 %, not the published figures.)
- ``mpii``: PCKh@0.5, 0.6 x head-box diagonal; the mean leaves out pelvis and thorax (MPII evaluation,
  HRNet's and mmpose's ``MpiiPCKAccuracy``). Predictions: a 16-joint ``prediction_all`` file in MPII order,
  or Tompson's own ``keypointsAll`` detections.
- ``pdj``: the PDJ curve (fraction within a x torso, a in 0..0.5), its AUC, and a table at a = 0.1..0.5.

Every protocol also reports strict PCP (percentage of correct parts; Ferrari et al. 2008, Eichner et al. 2012): a
part is correct when both its predicted endpoints lie within half the part's ground-truth length of its true ones.
The parts are eval_pose's sticks (``keypoints2sticks.m``, `PCP_PARTS`): on LSP the lower and upper legs and arms,
the head (neck - head top) and the torso (hips' midpoint - shoulders' midpoint); on FLIC the arms, the head (nose -
neck) and the torso (neck - hips' midpoint); on MPII the LSP parts with its upper neck for the neck. A part counts
where all of its joints are labeled and it has a length; left and right parts are pooled, as the joints of a group.

Groups (``metrics.joint_groups``) pool their joints: the LSP head is neck + head top, which reproduces the
CPM paper's LSP table; on MPII the head is the head top alone and pelvis and thorax stay out of the mean, as in
HRNet's and mmpose's MPII tables (whose groups average left and right instead of pooling: equal when the counts
are). Every protocol also reports the AUC of its curve (over [0, threshold]; 0..0.5 for ``pdj``) and the EPE in
pixels (over labeled joints with finite predictions).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cpm.data.datasets.matfiles import (
    FLIC_10_TO_CPM_9,
    GroundTruth,
    read_ground_truth,
    read_predictions,
)
from cpm.errors import CPMError
from cpm.evaluation.metrics import (
    PDJ_THRESHOLDS,
    auc,
    epe,
    joint_groups,
    normaliser_size,
    pck_curve,
    pck_table,
    pcp,
    plot_curves,
)

__all__ = ["PCP_PARTS", "PROTOCOLS", "format_table", "pcp_parts", "score"]

LSP_TEST = slice(1000, 2000)  # LSP images 1001-2000 are the test set


@dataclass(frozen=True)
class Protocol:
    description: str
    normaliser: str  # "torso" or "head"
    threshold: float
    layouts: tuple[str, ...]  # ground-truth layouts it applies to
    curve: bool = False  # report the PDJ curve


PROTOCOLS = {
    "lsp": Protocol("PCK@0.2, torso = ||left shoulder - right hip|| (CPM paper, LSP)", "torso", 0.2, ("lsp", "lspet")),
    "flic": Protocol("PCK@0.2, torso = ||left shoulder - right hip|| (CPM paper, FLIC observer-centric)", "torso",
                     0.2, ("flic",)),
    "mpii": Protocol("PCKh@0.5, 0.6 x head-box diagonal, mean without pelvis and thorax (MPII)", "head", 0.5,
                     ("mpii",)),
    "pdj": Protocol("PDJ: fraction within a x torso, a in 0..0.5 (Toshev & Szegedy 2014)", "torso", 0.2,
                    ("lsp", "lspet", "flic", "mpii"), curve=True),
}
PDJ_TABLE = (0.1, 0.2, 0.3, 0.4, 0.5)
MPII_NOT_IN_MEAN = ("pelvis", "thorax")
PCP_ALPHA = 0.5  # strict PCP: both endpoints within half the part's length


def _limbs(side: str) -> tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]:
    """The lower and upper legs and arms of one side (``right`` or ``left``), each from its outer joint."""
    limbs = (("lower legs", "ankle", "knee"), ("upper legs", "knee", "hip"), ("lower arms", "wrist", "elbow"),
             ("upper arms", "elbow", "shoulder"))
    return tuple((part, (f"{side}_{a}",), (f"{side}_{b}",)) for part, a, b in limbs)


_LSP_PARTS = (*_limbs("right"), *_limbs("left"), ("head", ("neck",), ("head_top",)),
              ("torso", ("right_hip", "left_hip"), ("right_shoulder", "left_shoulder")))
# PCP's parts per ground-truth layout: (part, the joints averaged into one end, those of the other).
PCP_PARTS: dict[str, tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]] = {
    "lsp": _LSP_PARTS,
    "lspet": _LSP_PARTS,
    "flic": (*(limb for limb in _LSP_PARTS if "arms" in limb[0]), ("head", ("nose",), ("neck",)),
             ("torso", ("neck",), ("right_hip", "left_hip"))),
    "mpii": tuple((part, tuple("upper_neck" if j == "neck" else j for j in a), b) for part, a, b in _LSP_PARTS),
}


def _align(gt: GroundTruth, predictions: np.ndarray, gt_path, pred_path):
    """-> (ground-truth joint index of each predicted joint, the ground-truth samples the predictions cover)."""
    samples = slice(None)
    if len(predictions) != len(gt.keypoints):
        if gt.layout == "lsp" and len(gt.keypoints) == 2000 and len(predictions) == 1000:
            samples = LSP_TEST
        else:
            raise CPMError(f"{pred_path}: {len(predictions)} predictions for {len(gt.keypoints)} ground-truth "
                           f"samples in {gt_path}")
    k_gt, k_pred = gt.keypoints.shape[1], predictions.shape[1]
    if k_pred == k_gt:
        joints = list(range(k_gt))
    elif gt.layout == "flic" and k_pred == len(FLIC_10_TO_CPM_9):
        joints = list(FLIC_10_TO_CPM_9)
    else:
        raise CPMError(f"{pred_path}: {k_pred} joints per prediction, but {gt_path} has {k_gt} ({gt.layout})")
    return joints, samples


def _percent(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else 100 * value


def _group_curves(per_joint: np.ndarray, counts: np.ndarray, groups: dict, keep: list) -> dict[str, list]:
    """Pool (T, K) per-joint fractions into (T,) per group and over ``keep`` (the mean), weighting by counts."""
    hits = np.nan_to_num(per_joint) * counts  # (T, K) hits
    pooled = {**groups, "mean": keep}
    with np.errstate(invalid="ignore", divide="ignore"):
        return {group: [_percent(v) for v in hits[:, idx].sum(1) / counts[idx].sum()] for group, idx in pooled.items()}


def score(gt_path: str | Path, pred_path: str | Path, protocol: str, *, threshold: float | None = None,
          plot: str | Path | None = None) -> dict:
    """Score a prediction file against a ground-truth file. Percentages; None where nothing was counted.

    Returns {"protocol", "description", "gt", "pred", "samples", "metric", "threshold", "normaliser", "mean",
    "groups": {group: %}, "joints": {name: %}, "counted", "excluded", "auc", "epe_px", "pcp"} ("pcp": `pcp_parts`),
    and for ``pdj`` also "curve": {"thresholds", group: [%]...} and "table": {a: {group: %}}. ``plot``: write the
    curves per group (over [0, threshold], or 0..0.5 for ``pdj``) to this PNG and add its path as "plot".
    """
    spec, threshold = _protocol(protocol, threshold)
    if plot is not None and not Path(plot).parent.is_dir():
        raise CPMError(f"{plot}: the folder for the plot does not exist")
    gt = read_ground_truth(gt_path)
    if gt.layout not in spec.layouts:
        raise CPMError(f"{gt_path}: {gt.layout} ground truth does not fit protocol {protocol!r} "
                       f"(it takes {', '.join(spec.layouts)})")
    predictions = read_predictions(pred_path)
    joints, samples = _align(gt, predictions, gt_path, pred_path)
    keypoints, normaliser = gt.keypoints[samples][:, joints], _normaliser(gt, spec)[samples]  # (N, K, 3), (N,)
    names = tuple(gt.joint_names[j] for j in joints)
    groups, keep = _groups(names, gt.layout)
    table = pck_table(predictions, keypoints, normaliser, threshold, names, mean_joints=keep, groups=groups)
    thresholds = PDJ_THRESHOLDS if spec.curve else np.linspace(0, threshold, 21)
    curves = _group_curves(pck_curve(predictions, keypoints, normaliser, thresholds).per_joint,
                           table.joint_counts, groups, keep)
    end_point_error = epe(predictions, keypoints).mean
    result = {
        "protocol": protocol, "description": spec.description, "gt": str(gt_path), "pred": str(pred_path),
        "samples": len(keypoints), "metric": f"{'PCKh' if spec.normaliser == 'head' else 'PCK'}@{threshold:g}",
        "threshold": threshold, "normaliser": spec.normaliser, "mean": _percent(table.mean),
        "groups": {group: _percent(value) for group, value in table.per_group.items()},
        "joints": {name: _percent(value) for name, value in zip(names, table.per_joint, strict=True)},
        "not_in_mean": [names[k] for k in range(len(names)) if k not in keep],
        "counted": table.counted, "excluded": table.excluded,
        "auc": _percent(auc(thresholds, [np.nan if v is None else v / 100 for v in curves["mean"]])),
        "epe_px": None if math.isnan(end_point_error) else end_point_error,
        "pcp": pcp_parts(predictions, keypoints, names, PCP_PARTS[gt.layout]),
    }
    if spec.curve:
        result["metric"] = f"PDJ@{threshold:g}"
        result["curve"] = {"thresholds": thresholds.tolist(), **curves}
        result["table"] = {f"{a:g}": {group: values[int(round(a * 100))] for group, values in curves.items()}
                           for a in PDJ_TABLE}
    if plot is not None:
        fractions = {group: np.array(values, dtype=float) / 100 for group, values in curves.items()}
        title = f"{'PDJ' if spec.curve else result['metric']} curve, {Path(pred_path).name}"
        result["plot"] = str(plot_curves(thresholds, fractions, plot, title=title))
    return result


def _protocol(protocol: str, threshold: float | None) -> tuple[Protocol, float]:
    """The protocol named ``protocol`` and the threshold to score at (its own unless given)."""
    if protocol not in PROTOCOLS:
        raise CPMError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    spec = PROTOCOLS[protocol]
    threshold = spec.threshold if threshold is None else float(threshold)
    if not 0 < threshold <= 1:
        raise CPMError(f"threshold {threshold} must lie in (0, 1]")
    return spec, threshold


def _normaliser(gt: GroundTruth, spec: Protocol) -> np.ndarray:
    """(N,) the torso (left shoulder - right hip) or head size of every ground-truth sample, on all its joints."""
    if spec.normaliser == "torso":
        torso = (gt.joint_names.index("left_shoulder"), gt.joint_names.index("right_hip"))
        return normaliser_size("torso", gt.keypoints, torso=torso)
    return normaliser_size("head", gt.keypoints, head_boxes=gt.head_boxes)


def _groups(names: tuple[str, ...], layout: str) -> tuple[dict[str, list[int]], list[int]]:
    """The joint groups of ``names`` and the joints of the mean: on MPII, as the tables of HRNet and mmpose, the
    head is the head top and pelvis and thorax stay out of the mean."""
    groups = joint_groups(names)
    keep = list(range(len(names)))
    if layout == "mpii":
        groups["head"] = [names.index("head_top")]
        keep = [k for k, name in enumerate(names) if name not in MPII_NOT_IN_MEAN]
    return groups, keep


def pcp_parts(predictions: np.ndarray, keypoints: np.ndarray, names: Sequence[str],
              parts: Sequence[tuple[str, tuple[str, ...], tuple[str, ...]]]) -> dict | None:
    """Strict PCP of ``predictions`` (N, K, 2) against ``keypoints`` (N, K, 3) whose joints are ``names``, on the
    ``parts`` (`PCP_PARTS`) whose joints are all there: {"mean": %, "parts": {part: %} pooled over left and right,
    "counted": parts counted, "excluded": labeled parts of zero length}; None when no part can be formed. An end of
    several joints is their midpoint, labeled where all of them are."""
    index = {name: k for k, name in enumerate(names)}
    usable = [part for part in parts if all(j in index for j in (*part[1], *part[2]))]
    if not usable:
        return None
    ends = [[index[j] for j in end] for _, *pair in usable for end in pair]  # 2P ends, each a list of joints
    truth = np.stack([np.concatenate([keypoints[:, end, :2].mean(axis=1), keypoints[:, end, 2:].min(axis=1)], axis=-1)
                      for end in ends], axis=1)  # (N, 2P, 3)
    predicted = np.stack([np.asarray(predictions, dtype=np.float64)[:, end, :2].mean(axis=1) for end in ends], axis=1)
    limbs = [(2 * p, 2 * p + 1) for p in range(len(usable))]
    overall = pcp(predicted, truth, limbs, alpha=PCP_ALPHA)
    names_in_order = list(dict.fromkeys(part for part, _, _ in usable))
    by_part = {name: pcp(predicted, truth, [limbs[p] for p, part in enumerate(usable) if part[0] == name],
                         alpha=PCP_ALPHA).mean for name in names_in_order}
    return {"mean": _percent(overall.mean), "parts": {name: _percent(value) for name, value in by_part.items()},
            "counted": overall.counted, "excluded": overall.excluded}


def _cell(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def format_table(result: dict) -> str:
    """Markdown: a header line, the per-group table (or the PDJ table), then one row per joint."""
    lines = [f"**{result['protocol']}**: {result['description']}", "",
             f"gt `{result['gt']}`, pred `{result['pred']}`: {result['samples']} samples, {result['counted']} joints "
             f"counted, {result['excluded']} samples excluded (zero normaliser)", ""]
    groups = list(result["groups"]) + ["mean"]
    if "table" in result:
        lines += ["| a | " + " | ".join(groups) + " |", "|---:|" + "---:|" * len(groups)]
        lines += [f"| {a} | " + " | ".join(_cell(row[g]) for g in groups) + " |" for a, row in result["table"].items()]
        lines += ["", f"AUC over a in [0, 0.5]: {_cell(result['auc'])} %"]
    else:
        values = [result["groups"][g] for g in groups[:-1]] + [result["mean"]]
        lines += ["| " + " | ".join(groups) + " |", "|" + "---:|" * len(groups),
                  "| " + " | ".join(_cell(v) for v in values) + " |", "",
                  f"{result['metric']} mean {_cell(result['mean'])} %, AUC over [0, {result['threshold']:g}] "
                  f"{_cell(result['auc'])} %, EPE {_cell(result['epe_px'])} px"]
    if result.get("pcp"):
        parts = result["pcp"]["parts"]
        lines += ["", f"strict PCP (both ends within {PCP_ALPHA:g} x the part's length), {result['pcp']['counted']} "
                  "parts counted:", "", "| " + " | ".join([*parts, "mean"]) + " |", "|" + "---:|" * (len(parts) + 1),
                  "| " + " | ".join(_cell(v) for v in [*parts.values(), result["pcp"]["mean"]]) + " |"]
    lines += ["", f"| joint | {result['metric']} (%) |", "|---|---:|"]
    lines += [f"| {name}{' (not in mean)' if name in result['not_in_mean'] else ''} | {_cell(value)} |"
              for name, value in result["joints"].items()]
    return "\n".join(lines)
