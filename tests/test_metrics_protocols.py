"""Hand-computed checks of every metric: normalisers, groups, PCK tables, PDJ, AUC, PCP, EPE."""

import numpy as np
import pytest

from cpm.data.datasets.matfiles import FLIC_10_NAMES as FLIC_10
from cpm.data.datasets.matfiles import MPII_16_NAMES as MPII_16
from cpm.evaluation.metrics import (
    auc,
    bbox_size,
    epe,
    head_size,
    joint_groups,
    normaliser_size,
    pck_curve,
    pck_table,
    pcp,
    pdj_curve,
    plot_curves,
)
from cpm.evaluation.protocols import PCP_PARTS, pcp_parts
from cpm.skeleton import ITOP_15, LSP_14


def labeled(xy) -> np.ndarray:
    """(N, K, 2) -> (N, K, 3) with every joint visible."""
    xy = np.asarray(xy, dtype=np.float64)
    return np.concatenate([xy, np.full(xy.shape[:-1] + (1,), 2.0)], axis=-1)


def test_bbox_normaliser_is_the_longer_side_of_the_labeled_keypoints_box():
    truth = labeled([[[0, 0], [30, 0], [10, 40], [500, 500]]])
    truth[0, 3, 2] = 0  # unlabeled joint far away: not part of the box
    assert bbox_size(truth).tolist() == [40.0]
    # mmpose: np.max(bbox[2:] - bbox[:2]) of the ground-truth xyxy person box.
    assert bbox_size(truth, boxes=np.array([[5, 5, 105, 55]])).tolist() == [100.0]


def test_bbox_normaliser_of_one_or_no_labeled_joint_is_excluded():
    truth = labeled(np.zeros((2, 3, 2)))
    truth[0, 1:, 2] = 0  # one labeled joint: size 0
    truth[1, :, 2] = 0  # nothing labeled: NaN
    size = bbox_size(truth)
    assert size[0] == 0 and np.isnan(size[1])
    result = pck_table(truth[..., :2], truth, size, 0.2, ("a", "b", "c"))
    assert (result.excluded, result.counted) == (2, 0)
    assert np.isnan(result.mean)


def test_head_normaliser_is_six_tenths_of_the_head_box_diagonal():
    boxes = np.array([[10.0, 20.0, 40.0, 60.0]])  # 30 x 40: diagonal 50
    assert head_size(boxes).tolist() == pytest.approx([30.0])
    truth = labeled([[[0, 0], [0, 0]]])
    predictions = np.array([[[14.9, 0.0], [0.0, 15.1]]])  # PCKh@0.5: threshold 15 px
    table = pck_table(predictions, truth, normaliser_size("head", truth, head_boxes=boxes), 0.5, ("a", "b"))
    assert table.per_joint.tolist() == [1.0, 0.0]


def test_normaliser_by_name_and_its_errors():
    truth = labeled([[[0, 0], [3, 4]]])
    assert normaliser_size("torso", truth, torso=(0, 1)).tolist() == [5.0]
    assert normaliser_size("bbox", truth).tolist() == [4.0]
    with pytest.raises(ValueError, match="head box"):
        normaliser_size("head", truth)
    with pytest.raises(ValueError, match="torso"):
        normaliser_size("torso", truth)
    with pytest.raises(ValueError, match="unknown normaliser"):
        normaliser_size("knee", truth)


def test_joint_groups_come_from_the_names_in_every_joint_order():
    assert joint_groups(LSP_14.joint_names) == {
        "head": [12, 13], "shoulders": [8, 9], "elbows": [7, 10], "wrists": [6, 11],
        "hips": [2, 3], "knees": [1, 4], "ankles": [0, 5]}
    itop = joint_groups(ITOP_15.joint_names)
    assert (itop["head"], itop["wrists"], itop["ankles"]) == ([0, 1], [6, 7], [13, 14])  # hands and feet
    assert 8 not in sum(itop.values(), [])  # "torso" joint is in no group
    mpii = joint_groups(MPII_16)
    assert mpii["head"] == [8, 9] and 6 not in sum(mpii.values(), []) and 7 not in sum(mpii.values(), [])
    flic = joint_groups(FLIC_10)
    assert list(flic) == ["head", "shoulders", "elbows", "wrists", "hips"] and flic["head"] == [0, 1]


def test_pck_table_pools_groups_and_mean_over_counted_joints():
    names = ("left_wrist", "right_wrist", "pelvis", "neck")
    truth = labeled(np.zeros((2, 4, 2)))
    truth[1, 1, 2] = 0  # unlabeled: never counts, even with a wild prediction
    predictions = np.zeros((2, 4, 2))
    predictions[0, 0] = [3, 0]  # normaliser 10, a = 0.2 -> 2 px: miss
    predictions[1, 1] = [99, 99]  # unlabeled
    predictions[1, 2] = [np.nan, 0]  # NaN prediction: a miss
    table = pck_table(predictions, truth, np.array([10.0, 10.0]), 0.2, names)
    assert table.per_joint.tolist() == [0.5, 1.0, 0.5, 1.0]
    assert table.per_group == {"head": 1.0, "wrists": pytest.approx(2 / 3)}  # pooled: 2 hits of 3 counted
    assert (table.mean, table.counted, table.excluded) == (pytest.approx(5 / 7), 7, 0)
    without_pelvis = pck_table(predictions, truth, np.array([10.0, 10.0]), 0.2, names, mean_joints=[0, 1, 3])
    assert (without_pelvis.mean, without_pelvis.counted) == (pytest.approx(4 / 5), 5)
    custom = pck_table(predictions, truth, np.array([10.0, 10.0]), 0.2, names, groups={"arm": [0]})
    assert custom.per_group == {"arm": 0.5}


def test_pck_table_excludes_samples_with_zero_or_missing_torso():
    truth = labeled(np.zeros((3, 2, 2)))  # sample 0: both torso joints at the origin, a zero torso
    truth[1, 1] = [5, 0, 2]  # sample 1: a 5 px torso
    truth[2, 1] = [0, 5, 2]
    truth[2, 0, 2] = 0  # sample 2: a 5 px torso whose joint 0 is unlabeled: normaliser NaN, by the flag alone
    predictions = truth[..., :2] + 100  # all far off
    predictions[2, 1] = truth[2, 1, :2]  # exact: were sample 2 counted, it would add a hit
    size = normaliser_size("torso", truth, torso=(0, 1))
    assert size[:2].tolist() == [0.0, 5.0] and np.isnan(size[2])
    table = pck_table(predictions, truth, size, 0.2, ("a", "b"))
    assert (table.excluded, table.counted, table.mean) == (2, 2, 0.0)


def test_pdj_curve_counts_joints_within_a_times_torso():
    truth = labeled(np.zeros((1, 6, 2)))
    truth[0, 5] = [0, 100, 2]  # torso joints 4 (origin) and 5: torso 100 px
    predictions = truth[..., :2].copy()
    predictions[0, :4, 0] = [5, 15, 25, 35]  # 0.05, 0.15, 0.25, 0.35 torso
    curve = pdj_curve(predictions, truth, (4, 5), thresholds=[0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert curve.per_joint[:, 0].tolist() == [0, 1, 1, 1, 1, 1]
    assert curve.per_joint[:, 3].tolist() == [0, 0, 0, 0, 1, 1]
    assert curve.mean.tolist() == pytest.approx([2 / 6, 3 / 6, 4 / 6, 5 / 6, 1, 1])  # joints 4, 5 exact hits
    same = pck_curve(predictions, truth, np.array([100.0]), [0.2])
    assert same.mean.tolist() == pytest.approx([4 / 6])


def test_auc_is_the_normalised_trapezoid_area():
    x = np.linspace(0, 0.5, 6)
    assert auc(x, x / 0.5) == pytest.approx(0.5)  # a straight line from 0 to 1
    assert auc(x, np.ones(6)) == pytest.approx(1.0)
    assert auc([0, 0.1, 0.2], [0.0, 1.0, 1.0]) == pytest.approx(0.75)
    # a_max inside the range: the curve is cut there, by linear interpolation: area 0.5 * 0.1 * 0.5 over 0.1.
    assert auc([0, 0.2], [0.0, 1.0], a_max=0.1) == pytest.approx(0.25)
    with pytest.raises(ValueError):
        auc([0, 0.2], [0.0, 1.0], a_max=0.3)


def test_pcp_strict_needs_both_endpoints_loose_their_mean():
    truth = labeled([[[0, 0], [10, 0]]] * 4)  # one limb of length 10: tolerance 5 px
    predictions = truth[..., :2].copy()
    predictions[0] += [[0, 4], [0, 6]]  # 4 and 6: strict miss, loose hit (mean 5)
    predictions[1] += [[0, 1], [0, 4.9]]  # both hits
    predictions[2] += [[0, 0], [0, 11]]  # mean 5.5: both miss
    predictions[3, 0] = np.nan  # NaN endpoint: a miss
    strict = pcp(predictions, truth, [(0, 1)], kind="strict")
    loose = pcp(predictions, truth, [(0, 1)], kind="loose")
    assert (strict.mean, loose.mean) == (0.25, 0.5)
    assert strict.per_limb.tolist() == [0.25] and (strict.counted, strict.excluded) == (4, 0)


def test_pcp_skips_unlabeled_limbs_and_excludes_zero_length_ones():
    truth = labeled([[[0, 0], [10, 0], [10, 0]]] * 2)
    truth[1, 0, 2] = 0  # limb (0, 1) unlabeled in sample 1
    result = pcp(truth[..., :2], truth, [(0, 1), (1, 2)])  # (1, 2) has zero length everywhere
    assert (result.counted, result.excluded, result.mean) == (1, 2, 1.0)
    assert result.per_limb[0] == 1.0 and np.isnan(result.per_limb[1])
    with pytest.raises(ValueError, match="PCP kind"):
        pcp(truth[..., :2], truth, [(0, 1)], kind="medium")


def test_strict_pcp_of_the_lsp_sticks_by_hand():
    """Two people in LSP order, standing: legs 40 px per bone, upper arms 30, forearms 20, head 20, torso (hips'
    midpoint to shoulders' midpoint) 60. A part is correct when both predicted ends are within half its length."""
    joints = {"right_ankle": (0, 100), "right_knee": (0, 60), "right_hip": (0, 20), "left_hip": (20, 20),
              "left_knee": (20, 60), "left_ankle": (20, 100), "right_wrist": (-10, 10), "right_elbow": (-10, -10),
              "right_shoulder": (-10, -40), "left_shoulder": (30, -40), "left_elbow": (30, -10),
              "left_wrist": (30, 10), "neck": (10, -50), "head_top": (10, -70)}
    truth = labeled([[joints[name] for name in LSP_14.joint_names]] * 2)
    predictions = truth[..., :2].copy()
    moved = {"right_ankle": (19, 0),  # right lower leg: 19 <= 20, correct
             "right_hip": (0, 21),  # right upper leg: 21 > 20, wrong (the torso's end moves 10.5 <= 30)
             "left_ankle": (20, 0),  # left lower leg: exactly half its length, correct
             "right_wrist": (10, 0),  # right forearm: 10 <= 10, correct
             "right_shoulder": (0, 16),  # right upper arm: 16 > 15, wrong (the torso's end moves 8)
             "head_top": (11, 0)}  # head: 11 > 10, wrong
    for name, offset in moved.items():
        predictions[0, LSP_14.joint_names.index(name)] += offset
    # person 2, predicted exactly: a head of zero length (excluded) and an unlabeled left wrist (not counted)
    truth[1, LSP_14.joint_names.index("head_top"), :2] = joints["neck"]
    predictions[1, LSP_14.joint_names.index("head_top")] = joints["neck"]
    truth[1, LSP_14.joint_names.index("left_wrist"), 2] = 0
    result = pcp_parts(predictions, truth, LSP_14.joint_names, PCP_PARTS["lsp"])
    assert result["parts"] == {"lower legs": 100.0, "upper legs": 75.0, "lower arms": 100.0, "upper arms": 75.0,
                               "head": 0.0, "torso": 100.0}
    assert (result["counted"], result["excluded"]) == (10 + 8, 1)
    assert result["mean"] == pytest.approx(100 * (7 + 8) / 18)


def test_pcp_parts_are_those_whose_joints_are_scored():
    cpm_flic_9 = ("left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
                  "left_hip", "right_hip", "nose")  # no neck: FLIC's head and torso sticks cannot be formed
    truth = labeled(np.arange(18, dtype=float).reshape(1, 9, 2) * [1, 7])
    result = pcp_parts(truth[..., :2], truth, cpm_flic_9, PCP_PARTS["flic"])
    assert list(result["parts"]) == ["lower arms", "upper arms"] and result["mean"] == 100.0
    assert pcp_parts(truth[..., :2], truth, ("nose", "neck"), PCP_PARTS["lsp"]) is None
    assert [part for part, _, _ in PCP_PARTS["mpii"]][-2:] == ["head", "torso"]
    assert PCP_PARTS["mpii"][-2][1] == ("upper_neck",)


def test_epe_is_the_mean_pixel_distance_over_labeled_finite_joints():
    truth = labeled(np.zeros((2, 2, 2)))
    truth[1, 1, 2] = 0
    predictions = np.array([[[3.0, 4.0], [6.0, 8.0]], [[np.nan, 0.0], [50.0, 0.0]]])
    result = epe(predictions, truth)
    assert result.per_joint.tolist() == [5.0, 10.0]
    assert (result.mean, result.counted, result.non_finite) == (7.5, 2, 1)


def test_plot_curves_writes_a_png(tmp_path):
    x = np.linspace(0, 0.5, 11)
    path = plot_curves(x, {"wrists": x * 2, "mean": np.minimum(1, x * 3)}, tmp_path / "pdj.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
