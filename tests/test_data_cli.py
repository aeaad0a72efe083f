"""``cpm data``: contact sheets, the realism table and the label check, through `add_data_parser`."""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest

from cpm.cli.data import add_data_parser, run_data
from cpm.data.quality.realism import distances, format_table, js_distance, normalise, realism_report
from cpm.skeleton import ITOP_15
from cpm.viz import SIDE_COLOURS, contact_sheet


def run(*argv):
    parser = argparse.ArgumentParser()
    add_data_parser(parser.add_subparsers(dest="command"))
    return run_data(parser.parse_args(["data", *argv]))


def test_render_writes_a_contact_sheet_of_the_asked_size(tmp_path, capsys):
    assert run("render", "--n", "3", "--columns", "2", "--out", str(tmp_path / "sheet.png")) == 0
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    # 160-px tiles of the 256 x 212 frames (132 px high), 2 px gaps: 2 rows x 2 columns.
    assert sheet.shape == (2 * 134, 2 * 162, 3)
    assert "3 procedural samples" in capsys.readouterr().out


def test_contact_sheet_draws_each_joint_in_the_colour_of_its_side():
    image = np.zeros((212, 256), np.uint8)
    keypoints = np.array([[128 + 5 * (j % 3), 20 + 12 * j, 2] for j in range(15)], dtype=np.float32)
    keypoints[4, 2] = 0  # right elbow unlabeled: not drawn
    sheet = contact_sheet([{"image": image, "keypoints": keypoints}], columns=1)
    assert sheet.shape == (134, 162, 3)
    factor = 160 / 256  # tile width / frame width; pixel centres map as (x + 0.5) * factor - 0.5
    for j, name in enumerate(ITOP_15.joint_names):
        x, y = ((keypoints[j, :2] + 0.5) * factor - 0.5).round().astype(int)  # dots are 2 px in radius
        side = "left" if name.startswith("left_") else "right" if name.startswith("right_") else "centre"
        if j == 4:  # no dot (a limb of the left arm passes there, so not black either)
            assert tuple(sheet[y, x]) != SIDE_COLOURS["right"]
        else:  # the person's own left in blue, right in red, the midline in green
            assert tuple(sheet[y, x]) == SIDE_COLOURS[side], (name, x, y)
    assert SIDE_COLOURS["left"] != SIDE_COLOURS["right"]


def test_js_distance_is_zero_for_equal_and_one_for_disjoint_histograms():
    assert js_distance(np.array([1.0, 3.0]), np.array([2.0, 6.0])) == pytest.approx(0.0, abs=1e-9)
    assert js_distance(np.array([1.0, 0.0]), np.array([0.0, 1.0])) == pytest.approx(1.0)


def test_normalise_centres_on_shoulders_and_hips_and_divides_by_the_torso():
    pose = np.zeros((1, 15, 2))
    pose[0, [2, 3, 9, 10]] = [[0, 0], [6, 0], [0, 8], [6, 8]]  # left shoulder (6, 0) to right hip (0, 8): 10
    pose[0, 0] = [3, -6]
    out = normalise(pose)
    np.testing.assert_allclose(out[0, 0], [0, -1.0])
    np.testing.assert_allclose(out[0, 3], [0.3, -0.4])
    assert distances(out.repeat(5, 0), out.repeat(5, 0))["overall"] == pytest.approx(0.0, abs=1e-6)


def test_realism_table_compares_sources_with_the_real_k2hpd_poses(shared_data):
    k2hpd = shared_data / "k2hpd"
    rows = realism_report(real=str(k2hpd / "k2hpd_keypoints_test.mat"),
                          reference=str(k2hpd / "k2hpd_keypoints_train.mat"), n=300)
    assert [r["source"] for r in rows] == ["K2HPD train (floor)", "procedural"]
    floor, procedural = rows[0]["overall"], rows[1]["overall"]
    assert 0 < floor < procedural < 1
    assert format_table(rows).splitlines()[0].startswith("| source | poses |")


def test_check_on_synthetic_data_prints_the_measurement(capsys):
    assert run("check", "--synthetic", "400") == 0
    out = capsys.readouterr().out
    assert "| all | 40 |" in out and "| swap |" in out


def test_check_on_lspet_writes_flagged_samples(tmp_path, shared_data, capsys):
    assert run("check", "--source", "lsp", "--root", str(shared_data / "lspet400"),
               "--out", str(tmp_path / "flags.csv")) == 0
    lines = (tmp_path / "flags.csv").read_text().splitlines()
    assert lines[0] == "index,image,reasons,details" and len(lines) > 1
    assert "of 400 samples flagged" in capsys.readouterr().out
