"""Label checks (cpm.data.quality.cleaning): each reason on hand-made poses; precision / recall on injected errors."""

from __future__ import annotations

import numpy as np
import pytest

from cpm.data.datasets.exclude import read_exclude_list
from cpm.data.quality.cleaning import (
    KINDS,
    check_labels,
    inject_errors,
    measure,
    synthetic_clean_keypoints,
    write_flags,
)
from cpm.errors import CPMError


@pytest.fixture(scope="module")
def clean():
    return synthetic_clean_keypoints(600, seed=3)


def test_nan_outside_and_duplicate_points_are_flagged_with_the_joint(clean):
    keypoints, sizes = clean
    keypoints = keypoints.copy()
    visible = np.flatnonzero((keypoints[:, :, 2] > 0).all(axis=1))[:3]
    keypoints[visible[0], 6, 0] = np.nan
    keypoints[visible[1], 7, :2] = [-10, 50]
    keypoints[visible[2], 12, :2] = keypoints[visible[2], 0, :2]
    flags = check_labels(keypoints, sizes=sizes)
    assert flags[visible[0]]["nan"] == "right_hand"
    assert flags[visible[1]]["outside"] == "left_hand"
    assert flags[visible[2]]["duplicate"] == "head=left_knee"


def test_a_left_right_swap_of_the_knees_is_flagged_as_a_swap(clean):
    keypoints, sizes = clean
    keypoints = keypoints.copy()
    # A person facing the camera with knees apart (by half a torso): swapping them crosses the thighs.
    torso = np.linalg.norm(keypoints[:, 3, :2] - keypoints[:, 9, :2], axis=1)
    i = int(np.flatnonzero((keypoints[:, 12, 0] - keypoints[:, 11, 0]) > 0.5 * torso)[0])
    keypoints[i, [11, 12]] = keypoints[i, [12, 11]]
    assert check_labels(keypoints, sizes=sizes)[i].get("swap") == "right_knee<->left_knee"


def test_injected_errors_are_found_with_precision_and_recall_of_at_least_point_nine(clean):
    keypoints, sizes = clean
    corrupted, kinds = inject_errors(keypoints, sizes=sizes, fraction=0.1, rng=np.random.default_rng(0))
    assert sorted({k for k in kinds if k}) == sorted(KINDS) and sum(map(bool, kinds)) == 60
    result = measure(check_labels(corrupted, sizes=sizes), kinds)
    assert result["overall"]["precision"] >= 0.9 and result["overall"]["recall"] >= 0.9
    assert result["nan"]["recall"] == 1.0 and result["outside"]["recall"] == 1.0


def test_measure_counts_hits_by_hand():
    flags = [{"nan": "x"}, {}, {"swap": "y"}, {}]
    kinds = ["nan", "swap", "", ""]
    result = measure(flags, kinds)
    assert result["overall"]["precision"] == 0.5 and result["overall"]["recall"] == 0.5
    assert result["swap"]["recall"] == 0.0 and result["swap"]["precision"] == 0.0


def test_flag_csv_round_trips_to_an_exclude_list(tmp_path):
    count = write_flags(tmp_path / "flags.csv", [{}, {"nan": "head"}, {}, {"bone": "x", "swap": "y"}], list("abcd"))
    entries = read_exclude_list(tmp_path / "flags.csv")
    assert count == 2 and [(e.index, e.image) for e in entries] == [(1, "b"), (3, "d")]
    (tmp_path / "bad.csv").write_text("index,image\nx,a\n")
    with pytest.raises(CPMError, match="bad.csv: line 2: index 'x' is not a sample index"):
        read_exclude_list(tmp_path / "bad.csv")
