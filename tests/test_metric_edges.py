"""The edges of the metrics, where a plausible one-character bug changes a score and nothing else notices.

- a torso joint that is unlabeled (v = 0) but sits at its own coordinates, away from the other torso joint, must
  still leave the sample out: the visibility flag decides, not a zero distance;
- a prediction at exactly a x normaliser is a hit (``<=``, the CPM protocol) in `pck`, `pck_table`, `pck_curve`
  and `pdj_curve`, for the torso and for PCKh's head size.

Every boundary is built from a 3-4-5 (or 6-8-10) triangle, so distances and thresholds are exact in floating
point; each test first asserts that exactness, so it cannot pass or fail by rounding.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from cpm.evaluation.metrics import (
    HEAD_BOX_FACTOR,
    PDJ_THRESHOLDS,
    head_size,
    normaliser_size,
    pck,
    pck_curve,
    pck_table,
    pck_torso,
    pdj_curve,
    torso_size,
)

TORSO = (0, 1)  # joint 0 "left shoulder", joint 1 "right hip" of a 3-joint toy skeleton
NAMES = ("left_shoulder", "right_hip", "left_wrist")


def person(shoulder=(10.0, 10.0), hip=(13.0, 14.0), wrist=(20.0, 30.0), flags=(2, 2, 2)) -> np.ndarray:
    """(3, 3): the torso from (10, 10) to (13, 14) is 5 px long (3-4-5); v flags per joint."""
    return np.array([[*shoulder, flags[0]], [*hip, flags[1]], [*wrist, flags[2]]], dtype=np.float64)


# --- a torso joint unlabeled at its own coordinates ------------------------------------------------------------

@pytest.mark.parametrize("unlabeled", [0, 1])
def test_an_unlabeled_torso_joint_at_distinct_coordinates_excludes_the_sample(unlabeled):
    flags = [2, 2, 2]
    flags[unlabeled] = 0
    truth = np.stack([person(), person(flags=flags)])  # sample 0 complete; sample 1 has one torso joint unlabeled
    assert np.linalg.norm(truth[1, 0, :2] - truth[1, 1, :2]) == 5.0  # distinct: only the flag can exclude it
    size = torso_size(truth, TORSO)
    assert size[0] == 5.0 and math.isnan(size[1])
    assert np.array_equal(normaliser_size("torso", truth, torso=TORSO), size, equal_nan=True)
    predictions = truth[..., :2].copy()  # every prediction exact: an excluded sample would add only hits
    predictions[0, 2] += [100.0, 0.0]  # sample 0: the wrist is a miss
    result = pck_torso(predictions, truth, TORSO, 0.2)
    assert (result.excluded, result.counted, result.mean) == (1, 3, pytest.approx(2 / 3))
    table = pck_table(predictions, truth, size, 0.2, NAMES)
    assert (table.excluded, table.counted, table.mean) == (1, 3, pytest.approx(2 / 3))
    assert table.joint_counts.tolist() == [1, 1, 1]
    curve = pdj_curve(predictions, truth, TORSO, thresholds=[0.1, 0.2])
    assert (curve.excluded, curve.counted) == (1, 3) and curve.mean.tolist() == pytest.approx([2 / 3, 2 / 3])


def test_a_sample_whose_only_torso_joints_are_both_unlabeled_is_excluded_and_labeled_ones_count():
    truth = np.stack([person(flags=(0, 0, 2)), person(flags=(1, 1, 0))])  # occluded (v = 1) torso joints count
    size = torso_size(truth, TORSO)
    assert math.isnan(size[0]) and size[1] == 5.0
    result = pck_torso(truth[..., :2], truth, TORSO, 0.2)
    assert (result.excluded, result.counted, result.mean) == (1, 2, 1.0)


# --- a joint at exactly a x torso ---------------------------------------------------------------------------

def boundary_case(offset_y: float = 4.0):
    """One sample, torso 5 px; the wrist predicted (3, offset_y) px away: exactly 5 px, i.e. 1.0 x torso, when
    offset_y = 4. At a = 0.2 the threshold is 0.2 x 5 = 1 px, so the shoulder is moved exactly 1 px too."""
    truth = person()[None]
    predictions = truth[..., :2].copy()
    predictions[0, 0] += [0.0, 1.0]  # shoulder: exactly 0.2 x torso
    predictions[0, 2] += [3.0, offset_y]  # wrist: exactly 1.0 x torso when offset_y = 4
    return predictions, truth


def test_exactness_of_the_boundary_case():
    predictions, truth = boundary_case()
    distance = np.linalg.norm(predictions[0, :, :2] - truth[0, :, :2], axis=-1)
    assert torso_size(truth, TORSO).tolist() == [5.0] and distance.tolist() == [1.0, 0.0, 5.0]
    assert 0.2 * 5.0 == 1.0 and 1.0 * 5.0 == 5.0 and PDJ_THRESHOLDS[20] == 0.2  # thresholds in float64


def test_a_joint_at_exactly_a_times_torso_is_a_hit_in_pck():
    predictions, truth = boundary_case()
    normaliser = torso_size(truth, TORSO)
    assert pck(predictions, truth, normaliser, 0.2).per_joint.tolist() == [1.0, 1.0, 0.0]
    assert pck(predictions, truth, normaliser, 1.0).per_joint.tolist() == [1.0, 1.0, 1.0]
    assert pck_torso(predictions, truth, TORSO, 1.0).mean == 1.0
    beyond, _ = boundary_case(offset_y=4.000001)  # just past a x torso: a miss
    assert pck(beyond, truth, normaliser, 1.0).per_joint.tolist() == [1.0, 1.0, 0.0]


def test_a_joint_at_exactly_a_times_torso_is_a_hit_in_pck_table():
    predictions, truth = boundary_case()
    normaliser = torso_size(truth, TORSO)
    table = pck_table(predictions, truth, normaliser, 0.2, NAMES)
    assert table.per_joint.tolist() == [1.0, 1.0, 0.0]
    assert table.per_group == {"shoulders": 1.0, "wrists": 0.0, "hips": 1.0}
    assert pck_table(predictions, truth, normaliser, 1.0, NAMES).mean == 1.0
    beyond, _ = boundary_case(offset_y=4.000001)
    assert pck_table(beyond, truth, normaliser, 1.0, NAMES).per_joint.tolist() == [1.0, 1.0, 0.0]


def test_a_joint_at_exactly_a_times_torso_is_a_hit_in_pck_curve_and_pdj():
    predictions, truth = boundary_case()
    curve = pck_curve(predictions, truth, torso_size(truth, TORSO), [0.1, 0.2, 0.9, 1.0])
    assert curve.per_joint.tolist() == [[0.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
    pdj = pdj_curve(predictions, truth, TORSO)  # a = 0, 0.01, ..., 0.5: the shoulder is a hit from a = 0.2 on
    assert pdj.per_joint[:, 0].tolist() == [0.0] * 20 + [1.0] * 31
    assert pdj.per_joint[:, 1].tolist() == [1.0] * 51  # an exact prediction is a hit even at a = 0
    assert pdj_curve(predictions, truth, TORSO, thresholds=[1.0]).mean.tolist() == [1.0]


# --- PCKh: a joint at exactly a x head size -------------------------------------------------------------------

def test_a_joint_at_exactly_a_times_the_head_size_is_a_hit():
    boxes = np.array([[4.0, 2.0, 10.0, 10.0]])  # 6 x 8 head box: diagonal 10, head size 0.6 x 10 = 6 px
    size = head_size(boxes)
    assert size.tolist() == [6.0] and HEAD_BOX_FACTOR * 10.0 == 6.0 and 0.5 * 6.0 == 3.0
    truth = person()[None]
    predictions = truth[..., :2].copy()
    predictions[0, 0] += [0.0, 3.0]  # exactly 0.5 x head size
    predictions[0, 1] += [0.0, 3.000001]  # just past it: a miss
    predictions[0, 2] += [-3.0, 0.0]  # exactly 0.5 x head size, along x
    normaliser = normaliser_size("head", truth, head_boxes=boxes)
    assert pck(predictions, truth, normaliser, 0.5).per_joint.tolist() == [1.0, 0.0, 1.0]
    assert pck_table(predictions, truth, normaliser, 0.5, NAMES).per_joint.tolist() == [1.0, 0.0, 1.0]
    assert pck_curve(predictions, truth, normaliser, [0.25, 0.5]).per_joint.tolist() == [[0.0, 0.0, 0.0],
                                                                                         [1.0, 0.0, 1.0]]
