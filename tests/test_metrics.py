import numpy as np
import pytest

from cpm.evaluation.metrics import pck, pck_torso, torso_size
from cpm.skeleton import ITOP_15


def test_pck_by_hand():
    truth = np.zeros((2, 3, 3))
    truth[..., 2] = 2
    truth[0, 1] = [10, 0, 2]
    truth[1, 1] = [0, 20, 2]
    predictions = truth[..., :2].copy()
    predictions[0, 0] += [1.9, 0]  # sample 0: normaliser 10 -> threshold 2: hit
    predictions[0, 2] += [2.1, 0]  # miss
    predictions[1, 0] += [0, 3.9]  # sample 1: normaliser 20 -> threshold 4: hit
    predictions[1, 2] += [3, 3]  # distance 4.24: miss
    result = pck(predictions, truth, np.array([10.0, 20.0]), 0.2)
    assert result.mean == pytest.approx(4 / 6)
    assert result.per_joint.tolist() == pytest.approx([1.0, 1.0, 0.0])
    assert (result.counted, result.excluded) == (6, 0)


def test_unlabeled_joints_never_count_and_zero_torsos_are_excluded():
    truth = np.zeros((3, 2, 3))
    truth[..., 2] = 2
    truth[0, 1, 2] = 0  # unlabeled, prediction far away: must not count
    predictions = truth[..., :2].copy()
    predictions[0, 1] += 100
    predictions[2] += 100  # sample 2 has a zero normaliser: excluded, not a miss
    result = pck(predictions, truth, np.array([5.0, 5.0, 0.0]), 0.1)
    assert result.mean == 1.0
    assert (result.counted, result.excluded) == (3, 1)


def test_non_finite_predictions_are_misses():
    truth = np.zeros((1, 2, 3))
    truth[..., 2] = 2
    predictions = np.array([[[0.0, 0.0], [np.nan, 0.0]]])
    assert pck(predictions, truth, np.array([1.0]), 0.5).mean == 0.5


def test_torso_is_left_shoulder_to_right_hip():
    truth = np.zeros((1, 15, 3))
    truth[..., 2] = 2
    truth[0, ITOP_15.index("left_shoulder"), :2] = [3, 0]
    truth[0, ITOP_15.index("right_hip"), :2] = [0, 4]
    assert torso_size(truth, ITOP_15.torso).tolist() == [5.0]
    predictions = truth[..., :2] + [0.0, 0.9]
    assert pck_torso(predictions, truth, ITOP_15.torso, 0.2).mean == 1.0
    assert pck_torso(predictions, truth, ITOP_15.torso, 0.1).mean == 0.0
