"""cpm.evaluation.protocols and the .mat readers on ../shared/data: the CPM paper's figures, MPII PCKh on
Tompson's validation split, reader conversions, the prediction_all round trip, and one-line errors."""

import argparse
import functools
import json

import cv2
import numpy as np
import pytest
from matplotlib.colors import to_rgb
from scipy.io import loadmat, savemat

from cpm.cli.score import add_score_parser, run_score
from cpm.data.datasets.matfiles import (
    read_flic_joints,
    read_lsp_joints,
    read_lspet_joints,
    read_mpii_tompson,
    read_prediction_all,
    write_prediction_all,
)
from cpm.errors import CPMError
from cpm.evaluation.metrics import head_size
from cpm.evaluation.protocols import score

PREDICTIONS = "cpm-official-predictions"


@functools.lru_cache(maxsize=1)
def tompson(path):
    """The MPII file takes a while to parse: once per test session."""
    return read_mpii_tompson(path)


def test_cpm_lsp_only_model_scores_84_32_on_person_centric_lsp(shared_data):
    result = score(shared_data / "lsp/lsp-joints-PC.mat", shared_data / PREDICTIONS / "LSP_prediction_model_LSP_6s.mat",
                   "lsp")
    assert result["mean"] == pytest.approx(84.32, abs=0.005)
    assert (result["samples"], result["counted"], result["excluded"]) == (1000, 14000, 0)


def test_cpm_mpii_lsp_model_reproduces_the_papers_lsp_table(shared_data):
    result = score(shared_data / "lsp/lsp-joints-PC.mat",
                   shared_data / PREDICTIONS / "LSP_prediction_model_MPII_LSP_6s.mat", "lsp")
    assert result["mean"] == pytest.approx(90.50, abs=0.005)
    # CPM paper, LSP (PC) table, MPII+LSP row; head = neck and head top pooled, as eval_pose pairs them.
    paper = {"head": 97.8, "shoulders": 92.5, "elbows": 87.0, "wrists": 83.9, "hips": 91.5, "knees": 90.8,
             "ankles": 89.9}
    assert result["groups"] == pytest.approx(paper, abs=0.051)


def test_cpm_flic_model_reproduces_elbows_97_59_and_wrists_95_03(shared_data):
    result = score(shared_data / "flic/flic-joints-test-oc.mat",
                   shared_data / PREDICTIONS / "FLIC_prediction_model_FLIC_4s.mat", "flic")
    assert result["groups"]["elbows"] == pytest.approx(97.59, abs=0.005)
    assert result["groups"]["wrists"] == pytest.approx(95.03, abs=0.005)
    assert list(result["joints"])[-1] == "nose" and result["counted"] == 9 * 1016


def test_pdj_at_0_2_equals_pck_and_writes_the_plot(shared_data, tmp_path):
    gt, pred = shared_data / "lsp/lsp-joints-PC.mat", shared_data / PREDICTIONS / "LSP_prediction_model_LSP_6s.mat"
    result = score(gt, pred, "pdj", plot=tmp_path / "pdj.png")
    assert result["curve"]["mean"][20] == pytest.approx(score(gt, pred, "lsp")["mean"])
    assert result["curve"]["mean"][0] < 5 and np.all(np.diff(result["curve"]["mean"]) >= 0)
    assert 0 < result["auc"] < 100
    plot = cv2.imread(str(tmp_path / "pdj.png"))[..., ::-1]  # RGB
    assert plot.shape == (450, 600, 3)  # plot_curves: figsize (6, 4.5) at 100 dpi
    rows, columns = np.nonzero(np.abs(plot.astype(int) - [round(255 * v) for v in to_rgb("C0")]).max(axis=-1) <= 2)
    # The one curve, in C0, rises from 0 % at a = 0 to 95 % at a = 0.5 on a 0..100 % axis (rows ~400..60): it
    # spans the axes' width, reaches their top, and its solid part (the steep start is anti-aliased) spans rows
    # 57..286 (measured). Percent plotted as fractions would lie flat along the bottom.
    assert columns.max() - columns.min() > 400 and rows.min() < 100 and rows.max() - rows.min() > 200


def test_mpii_ground_truth_scored_against_itself_is_100_percent(shared_data, tmp_path):
    gt = shared_data / "mpii/tompson_valid_detections.mat"
    mpii = tompson(gt)
    write_prediction_all(tmp_path / "self.mat", mpii.keypoints[..., :2])
    result = score(gt, tmp_path / "self.mat", "mpii")
    assert (result["mean"], result["excluded"]) == (100.0, 0)
    assert result["not_in_mean"] == ["pelvis", "thorax"]
    assert result["pcp"]["mean"] == 100.0 and set(result["pcp"]["parts"].values()) == {100.0}


@pytest.mark.parametrize("fraction, expected", [(0.3, 100.0), (0.7, 0.0)])
def test_mpii_joints_moved_by_a_fixed_fraction_of_the_head_size(shared_data, tmp_path, fraction, expected):
    gt = shared_data / "mpii/tompson_valid_detections.mat"
    mpii = tompson(gt)
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, mpii.keypoints.shape[:2])  # (N, 16)
    step = fraction * head_size(mpii.head_boxes)[:, None]  # (N, 1)
    moved = mpii.keypoints[..., :2] + step[..., None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    write_prediction_all(tmp_path / "moved.mat", moved)
    assert score(gt, tmp_path / "moved.mat", "mpii")["mean"] == expected


def test_mpii_half_the_joints_moved_too_far_gives_the_expected_fraction(shared_data, tmp_path):
    gt = shared_data / "mpii/tompson_valid_detections.mat"
    mpii = tompson(gt)
    rng = np.random.default_rng(1)
    far = rng.random(mpii.keypoints.shape[:2]) < 0.5  # (N, 16)
    step = np.where(far, 0.7, 0.3) * head_size(mpii.head_boxes)[:, None]  # (N, 16)
    moved = mpii.keypoints[..., :2] + step[..., None] * np.array([0.6, -0.8])
    write_prediction_all(tmp_path / "moved.mat", moved)
    counted = mpii.keypoints[..., 2] > 0
    counted[:, [6, 7]] = False  # pelvis and thorax are not in the MPII mean
    expected = 100 * (counted & ~far).sum() / counted.sum()
    result = score(gt, tmp_path / "moved.mat", "mpii")
    assert result["mean"] == pytest.approx(expected, abs=1e-9)
    assert result["counted"] == counted.sum()


def test_tompson_detections_read_from_the_same_file_score_82_32_pckh(shared_data):
    gt = shared_data / "mpii/tompson_valid_detections.mat"
    result = score(gt, gt, "mpii")  # keypointsAll: Tompson et al. 2015 report 82.0 on the MPII test set
    # Derivation of 82.32: PCKh@0.5 = 100 * hits / counted over the 14 joints MPII scores (every labeled joint but
    # pelvis and thorax), a hit when ||detection - truth|| <= 0.5 * 0.6 * head-box diagonal (SC_BIAS = 0.6).
    # Counted below with a plain loop that shares nothing with cpm.evaluation: 31,635 / 38,430 = 82.3185 %.
    mpii = tompson(gt)
    hits = counted = 0
    for truth, found, (x1, y1, x2, y2) in zip(mpii.keypoints, mpii.detections, mpii.head_boxes, strict=True):
        reach = 0.5 * 0.6 * float(np.hypot(x2 - x1, y2 - y1))
        for j in range(16):
            if j not in (6, 7) and truth[j, 2] > 0:
                counted += 1
                hits += bool(np.hypot(*(found[j] - truth[j, :2])) <= reach)
    assert (hits, counted) == (31_635, 38_430) and result["counted"] == counted
    assert result["mean"] == pytest.approx(100 * 31_635 / 38_430, abs=1e-9) == pytest.approx(82.32, abs=0.01)
    assert result["joints"]["pelvis"] == 0.0  # not detected: NaN predictions are misses, and outside the mean


def test_readers_convert_flags_and_one_based_pixels(shared_data):
    raw = loadmat(shared_data / "lsp/lsp-joints-PC.mat")["joints"]  # (3, 14, 2000)
    lsp = read_lsp_joints(shared_data / "lsp/lsp-joints-PC.mat")
    assert lsp.shape == (2000, 14, 3)
    np.testing.assert_array_equal(lsp[..., :2], raw[:2].transpose(2, 1, 0) - 1)
    assert ((lsp[..., 2] == 1) == (raw[2].T == 1)).all() and set(np.unique(lsp[..., 2])) == {1.0, 2.0}
    lspet = read_lspet_joints(shared_data / "lspet400/joints.mat")
    assert lspet.shape == (400, 14, 3) and set(np.unique(lspet[..., 2])) == {0.0, 2.0}
    assert (lspet[lspet[..., 2] == 0][:, :2].min(axis=1) <= -1).all()  # unannotated: placeholders off the image
    flic = read_flic_joints(shared_data / "flic/flic-joints-test-oc.mat")
    assert flic.shape == (1016, 10, 3) and (flic[..., 2] == 2).all()
    assert (flic[:, 6, 0] > flic[:, 2, 0]).all()  # observer-centric: "left" shoulder on the image's right
    mpii = tompson(shared_data / "mpii/tompson_valid_detections.mat")
    assert mpii.keypoints.shape == (2958, 16, 3) and mpii.head_boxes.shape == (2958, 4)
    assert mpii.keypoints[0, 0].tolist() == [803.0, 710.0, 2.0] and mpii.head_boxes[0].tolist() == [913, 78, 1030, 236]
    assert np.isnan(mpii.detections[:, [6, 7]]).all() and np.isfinite(mpii.detections[:, :6]).all()


def test_prediction_all_round_trip_keeps_cpm_layout_and_score(shared_data, tmp_path):
    official = shared_data / PREDICTIONS / "LSP_prediction_model_LSP_6s.mat"
    predictions = read_prediction_all(official)  # (1000, 14, 2), 0-based
    write_prediction_all(tmp_path / "copy.mat", predictions)
    np.testing.assert_array_equal(loadmat(tmp_path / "copy.mat")["prediction_all"], loadmat(official)["prediction_all"])
    np.testing.assert_array_equal(read_prediction_all(tmp_path / "copy.mat"), predictions)
    gt = shared_data / "lsp/lsp-joints-PC.mat"
    assert score(gt, tmp_path / "copy.mat", "lsp")["mean"] == score(gt, official, "lsp")["mean"]


def test_write_prediction_all_refuses_nan_and_leaves_nothing_behind(tmp_path):
    with pytest.raises(CPMError, match="NaN"):
        write_prediction_all(tmp_path / "bad.mat", np.full((2, 14, 2), np.nan))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content, message", [
    (None, "no such file"),
    (b"not a matlab file at all", "not a readable MATLAB file"),
    ({"something": np.zeros((3, 14, 5))}, "no variable 'prediction_all'"),
    ({"prediction_all": np.zeros((14, 3, 5))}, "shape 14x3x5"),
    ({"prediction_all": np.full((14, 2, 5), np.nan)}, "NaN"),
])
def test_bad_prediction_files_raise_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "predictions.mat"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        savemat(path, content)
    with pytest.raises(CPMError, match=message) as error:
        read_prediction_all(path)
    assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_bad_ground_truth_raises_one_line(tmp_path):
    savemat(tmp_path / "lsp.mat", {"joints": np.full((3, 14, 4), 2.0)})  # flag 2 is not an LSP flag
    with pytest.raises(CPMError, match="flags must be 0 or 1"):
        read_lsp_joints(tmp_path / "lsp.mat")
    savemat(tmp_path / "other.mat", {"joints": np.zeros((5, 5, 5))})
    with pytest.raises(CPMError, match="not a known ground-truth layout"):
        score(tmp_path / "other.mat", tmp_path / "other.mat", "lsp")


def test_wrong_protocol_or_sample_count_is_a_cpm_error(shared_data):
    lsp_gt = shared_data / "lsp/lsp-joints-PC.mat"
    flic_pred = shared_data / PREDICTIONS / "FLIC_prediction_model_FLIC_4s.mat"
    with pytest.raises(CPMError, match="does not fit protocol 'flic'"):
        score(lsp_gt, flic_pred, "flic")
    with pytest.raises(CPMError, match="1016 predictions for 2000"):
        score(lsp_gt, flic_pred, "lsp")


def test_cpm_score_command_prints_markdown_or_json(shared_data, capsys):
    parser = argparse.ArgumentParser(prog="cpm")
    add_score_parser(parser.add_subparsers(dest="command"))
    argv = ["score", "--gt", str(shared_data / "flic/flic-joints-test-oc.mat"),
            "--pred", str(shared_data / PREDICTIONS / "FLIC_prediction_model_FLIC_4s.mat"), "--protocol", "flic"]
    assert run_score(parser.parse_args(argv)) == 0
    table = capsys.readouterr().out
    assert "| 97.59 | 95.03 |" in table and "| nose | 99.41 |" in table
    assert "strict PCP" in table and "| lower arms | upper arms | mean |" in table  # the 9 joints have no neck
    assert run_score(parser.parse_args(argv + ["--json"])) == 0
    assert json.loads(capsys.readouterr().out)["groups"]["wrists"] == pytest.approx(95.03, abs=0.005)


def test_plot_needs_an_existing_folder(shared_data, tmp_path):
    gt, pred = shared_data / "lsp/lsp-joints-PC.mat", shared_data / PREDICTIONS / "LSP_prediction_model_LSP_6s.mat"
    with pytest.raises(CPMError, match="folder for the plot"):
        score(gt, pred, "lsp", plot=tmp_path / "missing" / "curve.png")
    assert score(gt, pred, "lsp", plot=tmp_path / "curve.png")["plot"] == str(tmp_path / "curve.png")
