"""COCO keypoint evaluation: OKS by hand, OKS AP on a tiny in-memory file worked out on COCO's 101-point recall grid,
OKS-NMS, the results file, and the per-joint OKS sigmas of every skeleton."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest

from cpm.config import config_from_dict
from cpm.errors import ConfigError, CPMError
from cpm.evaluation.coco import format_ap_table, keypoint_ap, oks, oks_matrix, oks_nms, write_results
from cpm.skeleton import COCO_17, SKELETONS, get_skeleton, oks_sigmas, skeleton_from_table

# COCO's published sigmas (pycocotools), in COCO's joint order: nose, eyes, ears, shoulders, elbows, wrists, hips,
# knees, ankles.
PUBLISHED = [.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089]


# --- OKS ---------------------------------------------------------------------------------------------------------

def test_oks_matches_the_hand_computed_value_with_per_joint_sigmas():
    truth = np.array([[0.0, 0.0, 2], [10.0, 0.0, 1], [50.0, 50.0, 0]])
    predicted = np.array([[1.0, 0.0], [12.0, 2.0], [500.0, -300.0]])  # d^2 = 1, 8; the third joint is unlabeled
    sigmas, area = [0.05, 0.1, 0.01], 400.0
    # variances (2 sigma)^2 = 0.01, 0.04; e = d^2 / var / area / 2:
    # 1 / 0.01 / 400 / 2 = 0.125 and 8 / 0.04 / 400 / 2 = 0.25; OKS = (e^-0.125 + e^-0.25) / 2
    # = (0.882497 + 0.778801) / 2 = 0.830649
    expected = (math.exp(-0.125) + math.exp(-0.25)) / 2
    assert oks(predicted, truth, area, sigmas) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.830649, abs=1e-6)


def test_oks_is_one_for_a_perfect_prediction_and_ignores_unlabeled_joints():
    truth = np.array([[3.0, 4.0, 2], [7.0, 1.0, 1], [0.0, 0.0, 0]])
    predicted = truth.copy()
    predicted[2, :2] = [1e4, 1e4]  # far off, but not labeled in the ground truth
    assert oks(predicted, truth, 100.0, [0.1, 0.2, 0.3]) == pytest.approx(1.0, abs=1e-15)


def test_oks_matrix_holds_each_pair():
    truth = np.array([[[0.0, 0.0, 2], [10.0, 0.0, 2]], [[100.0, 0.0, 2], [110.0, 0.0, 2]]])
    predicted = np.array([[[1.0, 0.0, 0.9], [10.0, 0.0, 0.8]], [[100.0, 3.0, 0.5], [110.0, 0.0, 0.1]]])
    areas, sigmas = [400.0, 900.0], [0.05, 0.1]
    matrix = oks_matrix(predicted, truth, areas, sigmas)
    assert matrix.shape == (2, 2)
    for p in range(2):
        for g in range(2):
            assert matrix[p, g] == pytest.approx(oks(predicted[p], truth[g], areas[g], sigmas), rel=1e-12)
    # 9 / 0.01 / 900 / 2 = 0.5 on joint 0 of the second pair
    assert matrix[1, 1] == pytest.approx((math.exp(-0.5) + 1) / 2, rel=1e-12)


def test_oks_of_a_person_with_no_labeled_joint_is_an_error():
    with pytest.raises(CPMError, match="no labeled joint"):
        oks(np.zeros((2, 2)), np.zeros((2, 3)), 100.0, [0.1, 0.1])


# --- OKS AP on a tiny file ---------------------------------------------------------------------------------------

AREA = 200.0 * 300.0  # > 96^2: both people are "large"
LAYOUT = np.stack([np.linspace(0, 150, 17), 250 - np.abs(np.linspace(-250, 250, 17))], axis=1)  # spans 150 x 250 px
# Every joint of the second detection is moved along x by d_k = 2 sigma_k sqrt(2 area t), so that each
# e_k = d_k^2 / (2 sigma_k)^2 / area / 2 = t, and OKS = exp(-t) = 1 / 1.6 = 0.625 (between the thresholds .60, .65).
T = math.log(1.6)


def _person(offset_x: float) -> np.ndarray:
    keypoints = np.zeros((17, 3))
    keypoints[:, 0], keypoints[:, 1], keypoints[:, 2] = LAYOUT[:, 0] + offset_x, LAYOUT[:, 1] + 100, 2
    return keypoints


def _tiny_file():
    people = [_person(100.0), _person(1000.0)]
    annotations = [{"id": i + 1, "image_id": 7, "category_id": 1, "keypoints": p.ravel().tolist(), "area": AREA,
                    "bbox": [p[:, 0].min(), p[:, 1].min(), 150.0, 250.0], "iscrowd": 0, "num_keypoints": 17}
                   for i, p in enumerate(people)]
    ground_truth = {"images": [{"id": 7, "width": 1400, "height": 500}], "annotations": annotations,
                    "categories": [{"id": 1, "name": "person", "keypoints": list(COCO_17.joint_names)}]}
    displaced = people[1].copy()
    displaced[:, 0] += 2 * np.array(PUBLISHED) * math.sqrt(2 * AREA * T)
    results = [{"image_id": 7, "category_id": 1, "keypoints": people[0].ravel().tolist(), "score": 0.9},
               {"image_id": 7, "category_id": 1, "keypoints": displaced.ravel().tolist(), "score": 0.8}]
    return ground_truth, results, people, displaced


def test_the_displaced_detection_has_oks_0_625():
    _, _, people, displaced = _tiny_file()
    assert oks(displaced, people[1], AREA, PUBLISHED) == pytest.approx(0.625, rel=1e-12)
    assert oks(displaced, people[0], AREA, PUBLISHED) < 1e-6  # far from the other person


@pytest.mark.parametrize(("scale", "matched_thresholds"), [
    (1.0, 3),  # OKS 0.625: matched at .50 .55 .60
    (2.0, 8),  # sigmas doubled: e = t / 4, OKS = 1.6^(-1/4) = 0.889, matched at .50 ... .85
])
def test_keypoint_ap_of_one_perfect_and_one_displaced_detection(scale, matched_thresholds):
    ground_truth, results, _, _ = _tiny_file()
    before = copy.deepcopy((ground_truth, results))
    ap = keypoint_ap(ground_truth, results, np.array(PUBLISHED) * scale)
    # At a matched threshold both detections are true positives: precision 1 at every recall, AP 1, recall 1. Above,
    # the perfect one (score 0.9) is the only hit: precision 1 up to recall 0.5 then nothing, which is 51 of the 101
    # recall points 0, 0.01, ..., 1 (0 ... 0.50), so AP 51/101 and recall 0.5. The 10 thresholds are .50:.05:.95.
    missed = 10 - matched_thresholds
    assert ap["AP"] == pytest.approx((matched_thresholds + missed * 51 / 101) / 10, abs=1e-12)
    assert ap["AP50"] == pytest.approx(1.0)
    assert ap["AP75"] == pytest.approx(1.0 if matched_thresholds > 5 else 51 / 101, abs=1e-12)
    assert ap["APM"] == -1  # no medium people
    assert ap["APL"] == pytest.approx(ap["AP"], abs=1e-12)
    assert ap["AR"] == pytest.approx((matched_thresholds + missed * 0.5) / 10, abs=1e-12)
    assert ap["AR50"] == pytest.approx(1.0)
    assert ap["AR75"] == pytest.approx(1.0 if matched_thresholds > 5 else 0.5)
    assert ap["ARM"] == -1
    assert ap["ARL"] == pytest.approx(ap["AR"], abs=1e-12)
    assert (ground_truth, results) == before  # pycocotools writes into what it gets: copies


def test_keypoint_ap_prints_nothing(capsys):
    ground_truth, results, _, _ = _tiny_file()
    keypoint_ap(ground_truth, results, PUBLISHED)
    assert capsys.readouterr().out == ""


def test_keypoint_ap_of_no_results_is_zero():
    ground_truth, _, _, _ = _tiny_file()
    ap = keypoint_ap(ground_truth, [], PUBLISHED)
    assert ap["AP"] == ap["AP50"] == ap["APL"] == ap["AR"] == ap["ARL"] == 0.0
    assert ap["APM"] == ap["ARM"] == -1


def test_results_whose_keypoint_count_differs_from_the_category_fail_with_one_line():
    ground_truth, results, _, _ = _tiny_file()
    results[1]["keypoints"] = results[1]["keypoints"][:-3]
    with pytest.raises(CPMError, match=r"results\[1\]: 48 keypoint values, but category 1 has 17 keypoints") as error:
        keypoint_ap(ground_truth, results, PUBLISHED)
    assert "\n" not in str(error.value)


def test_results_of_an_unknown_image_and_sigmas_of_another_length_fail():
    ground_truth, results, _, _ = _tiny_file()
    results[0]["image_id"] = 8
    with pytest.raises(CPMError, match=r"results\[0\]: image 8 is not in the ground truth"):
        keypoint_ap(ground_truth, results, PUBLISHED)
    with pytest.raises(CPMError, match="category 1 has 17 keypoints, but there are 16 sigmas"):
        keypoint_ap(ground_truth, [], PUBLISHED[:16])


def test_format_ap_table_gives_percent_with_one_decimal():
    scores = {"AP": 0.7234, "AP50": 1.0, "AP75": 0.50495, "APM": -1.0, "APL": 0.7234, "AR": 0.65}
    table = format_ap_table({"ground-truth boxes": scores, "ground-truth boxes, flip test": {**scores, "AP": 0.75}})
    assert table.splitlines() == [
        "| setting | AP | AP50 | AP75 | APM | APL | AR |",
        "|---|---:|---:|---:|---:|---:|---:|",
        "| ground-truth boxes | 72.3 | 100.0 | 50.5 | n/a | 72.3 | 65.0 |",
        "| ground-truth boxes, flip test | 75.0 | 100.0 | 50.5 | n/a | 72.3 | 65.0 |",
    ]


def test_write_results_writes_coco_json_with_numpy_numbers(tmp_path):
    results = [{"image_id": np.int64(7), "category_id": 1, "keypoints": np.array([1.5, 2.0, 1.0]),
                "score": np.float32(0.5)}]
    path = write_results(tmp_path / "out" / "results.json", results)
    assert json.loads(path.read_text()) == [{"image_id": 7, "category_id": 1, "keypoints": [1.5, 2.0, 1.0],
                                             "score": 0.5}]
    assert [p.name for p in path.parent.iterdir()] == ["results.json"]  # no temporary file left


# --- OKS-NMS -----------------------------------------------------------------------------------------------------

# Two near-duplicates (each joint 1 px apart) of areas 300 and 100, and one person far away. Their OKS uses the mean
# area, 200: e = 1 / 0.01 / 200 / 2 = 0.25 and 1 / 0.04 / 200 / 2 = 0.0625, OKS = (e^-0.25 + e^-0.0625) / 2 = 0.859
# (with the kept one's area 300 alone it would be 0.903).
NMS_KEYPOINTS = np.array([[[1.0, 0.0], [11.0, 0.0]], [[0.0, 0.0], [10.0, 0.0]], [[500.0, 500.0], [510.0, 500.0]]])
NMS_SCORES, NMS_AREAS, NMS_SIGMAS = [0.8, 0.9, 0.7], [100.0, 300.0, 200.0], [0.05, 0.1]
DUPLICATE_OKS = (math.exp(-0.25) + math.exp(-0.0625)) / 2


def test_oks_nms_drops_the_lower_scored_duplicate():
    assert DUPLICATE_OKS == pytest.approx(0.8591, abs=1e-4)
    assert oks_nms(NMS_KEYPOINTS, NMS_SCORES, NMS_AREAS, NMS_SIGMAS, threshold=0.8) == [1, 2]


def test_oks_nms_keeps_what_is_not_above_the_threshold_in_score_order():
    assert oks_nms(NMS_KEYPOINTS, NMS_SCORES, NMS_AREAS, NMS_SIGMAS, threshold=DUPLICATE_OKS + 1e-9) == [1, 0, 2]
    assert oks_nms(NMS_KEYPOINTS, NMS_SCORES, NMS_AREAS, NMS_SIGMAS, threshold=DUPLICATE_OKS - 1e-9) == [1, 2]
    assert oks_nms(NMS_KEYPOINTS, NMS_SCORES, NMS_AREAS, NMS_SIGMAS, threshold=0.88) == [1, 0, 2]  # mean area
    assert oks_nms(np.zeros((0, 2, 3)), [], [], NMS_SIGMAS) == []


# --- sigmas of the skeletons -------------------------------------------------------------------------------------

def test_coco17_has_cocos_published_sigmas():
    assert oks_sigmas(COCO_17).tolist() == PUBLISHED


def test_every_built_in_skeleton_gets_a_sigma_per_joint_by_the_rule():
    for skeleton in SKELETONS.values():
        sigmas = oks_sigmas(skeleton)
        assert sigmas.shape == (skeleton.num_joints,) and (sigmas > 0).all(), skeleton.name
        for joint, sigma in zip(skeleton.joint_names, sigmas, strict=True):
            for part, expected in (("shoulder", .079), ("elbow", .072), ("wrist", .062), ("hand", .062),
                                   ("hip", .107), ("knee", .087), ("ankle", .089), ("foot", .089)):
                if joint.endswith("_" + part) and joint != "spine_shoulder":
                    assert sigma == expected, (skeleton.name, joint)
    by_name = {name: dict(zip(s.joint_names, oks_sigmas(s), strict=True)) for name, s in SKELETONS.items()}
    assert by_name["itop15"]["head"] == by_name["itop15"]["neck"] == .079 and by_name["itop15"]["torso"] == .107
    assert by_name["lsp14"]["head_top"] == by_name["mpii16"]["upper_neck"] == by_name["mpii16"]["thorax"] == .079
    assert by_name["mpii16"]["pelvis"] == by_name["jhmdb15"]["belly"] == by_name["k2hpd19"]["spine_base"] == .107
    assert by_name["k2hpd19"]["spine_shoulder"] == .079 and by_name["flic10"]["nose"] == .026


def test_the_rule_gives_cocos_values_to_cocos_joints_under_other_spellings():
    table = COCO_17.to_table()
    short = [name.replace("left_", "l_").replace("right_", "r_") for name in COCO_17.joint_names]
    index = dict(zip(COCO_17.joint_names, short, strict=True))
    table.update(name="coco_short", joints=short, torso=[index[j] for j in table["torso"]],
                 flip_pairs=[[index[a], index[b]] for a, b in table["flip_pairs"]],
                 limbs=[[index[a], index[b]] for a, b in table["limbs"]])
    assert oks_sigmas(skeleton_from_table(table)).tolist() == PUBLISHED


def test_a_joint_the_rule_does_not_know_is_an_error_naming_it():
    table = {"name": "paw", "joints": ["left_paw", "tail"], "torso": ["left_paw", "tail"]}
    with pytest.raises(ConfigError, match=r"joint 'left_paw' of skeleton 'paw'.*give \[skeleton\] oks_sigmas"):
        oks_sigmas(skeleton_from_table(table))
    assert oks_sigmas(skeleton_from_table({**table, "oks_sigmas": [0.05, 0.2]})).tolist() == [0.05, 0.2]


@pytest.mark.parametrize(("sigmas", "message"), [
    ([0.05], "1 sigmas for 2 joints"), ([0.05, 0.0], "0.0 is not a positive finite number"),
    ([0.05, -1.0], "-1.0 is not a positive"), ([0.05, math.nan], "nan is not a positive"), (["a", 1.0], "numbers"),
])
def test_declared_oks_sigmas_of_the_wrong_length_or_value_fail_with_one_line(sigmas, message):
    table = {"name": "two", "joints": ["left_hip", "right_hip"], "torso": ["left_hip", "right_hip"],
             "oks_sigmas": sigmas}
    with pytest.raises(ConfigError, match=r"^skeleton\.oks_sigmas: .*" + message) as error:
        skeleton_from_table(table)
    assert "\n" not in str(error.value)


def test_declared_sigmas_round_trip_and_tables_without_them_are_unchanged():
    table = {"name": "two", "joints": ["left_hip", "right_hip"], "torso": ["left_hip", "right_hip"]}
    by_rule = skeleton_from_table({**table, "oks_sigmas": []})
    assert by_rule.declared_oks_sigmas is None and "oks_sigmas" not in by_rule.to_table()
    assert oks_sigmas(by_rule).tolist() == [.107, .107]
    assert "oks_sigmas" not in COCO_17.to_table()
    declared = skeleton_from_table({**table, "oks_sigmas": [0.1, 0.2]})
    assert declared.to_table()["oks_sigmas"] == [0.1, 0.2]
    assert skeleton_from_table(declared.to_table()) == declared


def test_a_config_declares_oks_sigmas_in_its_skeleton_table():
    table = {**COCO_17.to_table(), "name": "coco_sigmas", "oks_sigmas": [0.1] * 17}
    config_from_dict({"skeleton": table})
    assert oks_sigmas(get_skeleton("coco_sigmas")).tolist() == [0.1] * 17
    with pytest.raises(ConfigError, match=r"skeleton\.oks_sigmas: 3 sigmas for 17 joints"):
        config_from_dict({"skeleton": {**table, "oks_sigmas": [0.1] * 3}})
