"""The fitted pose prior (data.pose_prior = "fitted", cpm.data.synthetic.prior): joint angles read off 3D poses and
back, the weighted quantiles and Gaussian copula fitted to real poses, the table fitted by ``cpm data fit-prior``,
the config key, and its realism against real K2HPD poses."""

from __future__ import annotations

import argparse
import math
import runpy

import numpy as np
import pytest

from cpm.config import load_config
from cpm.data.synthetic.bank import K2HPD_LENGTHS
from cpm.data.synthetic.body import Body, Pose, pose_body, rotation_y
from cpm.data.synthetic.prior import (
    ANGLES,
    ARM,
    LEG,
    LEVELS,
    FittedPrior,
    fit_prior,
    fit_table,
    forward,
    inverse,
    normal_scores,
)
from cpm.data.synthetic.sources import PoseMix, config_pose_source, held_out_pose_source
from cpm.errors import ConfigError
from tests.helpers import POSE_SOURCES

L = dict(zip(["spine", "head", "r_sho", "l_sho", "r_upper", "l_upper", "r_fore", "l_fore", "r_hip", "l_hip",
              "r_thigh", "l_thigh", "r_shin", "l_shin"], K2HPD_LENGTHS, strict=True))


def angles(**values: float) -> np.ndarray:
    """21 angles, 0 but the ones named (``right_arm_elbow=90``)."""
    result = np.zeros(len(ANGLES))
    for name, value in values.items():
        result[ANGLES.index(name)] = value
    return result


def test_the_rest_pose_stands_on_the_k2hpd_bones_with_limbs_hanging():
    joints = forward(angles(), shoulder_drop=30.0, torso_along=0.5)
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    neck = np.array([0.0, L["spine"], 0.0])
    expected = {
        0: neck + (0, L["head"], 0), 1: neck, 8: 0.5 * neck, 9: (-L["r_hip"], 0, 0), 10: (L["l_hip"], 0, 0),
        2: neck + (-c * L["r_sho"], -s * L["r_sho"], 0), 3: neck + (c * L["l_sho"], -s * L["l_sho"], 0),
    }
    expected[4] = expected[2] - np.array([0, L["r_upper"], 0])
    expected[6] = expected[4] - np.array([0, L["r_fore"], 0])
    expected[11] = np.array(expected[9]) - (0, L["r_thigh"], 0)
    expected[13] = expected[11] - (0, L["r_shin"], 0)
    for joint, place in expected.items():
        np.testing.assert_allclose(joints[joint], place, atol=1e-12, err_msg=str(joint))


def test_angle_signs_follow_the_renderer():
    """Flexion forwards (+z), the elbow bends the hand forwards, the knee the foot backwards, abduction away from
    the midline (the right side is -x), and each limb bone points where `pose_body` points it for the same angles."""
    elbow = forward(angles(right_arm_elbow=90.0))
    np.testing.assert_allclose(elbow[6] - elbow[4], (0, 0, L["r_fore"]), atol=1e-12)
    knee = forward(angles(left_leg_knee=90.0))
    np.testing.assert_allclose(knee[14] - knee[12], (0, 0, -L["l_shin"]), atol=1e-12)
    raised = forward(angles(right_arm_flexion=90.0, left_arm_abduction=90.0))
    np.testing.assert_allclose(raised[4] - raised[2], (0, 0, L["r_upper"]), atol=1e-12)
    np.testing.assert_allclose(raised[5] - raised[3], (L["l_upper"], 0, 0), atol=1e-12)
    rng = np.random.default_rng(3)
    for _ in range(20):
        a = np.concatenate([rng.uniform(-30, 30, 3), [0.0, 0.0], rng.uniform(-40, 120, 16)])
        ours = forward(a)
        pose = Pose(0.0, tuple(a[:3]), (0.0, 0.0, 0.0), a[ARM:ARM + 8].reshape(2, 4), a[LEG:LEG + 8].reshape(2, 4))
        theirs = pose_body(Body(), pose)[0] @ rotation_y(math.pi)  # undo the turn to face the camera
        for parent, child in ((2, 4), (4, 6), (3, 5), (5, 7), (9, 11), (11, 13), (10, 12), (12, 14), (2, 3)):
            np.testing.assert_allclose(_unit(ours[child] - ours[parent]), _unit(theirs[child] - theirs[parent]),
                                       atol=1e-9)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_inverse_reads_the_angles_back():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = np.concatenate([rng.uniform(-30, 30, 5), *[[rng.uniform(-20, 80), rng.uniform(0, 70),
                                                       rng.uniform(-60, 60), rng.uniform(15, 130)] for _ in range(2)],
                            *[[rng.uniform(-10, 80), rng.uniform(0, 30), rng.uniform(-40, 40), rng.uniform(15, 120)]
                              for _ in range(2)]])
        yaw = rng.uniform(-80, 80)
        back, yaw_back = inverse(forward(a, yaw, shoulder_drop=20.0))
        np.testing.assert_allclose(back, a, atol=1e-7)
        assert yaw_back == pytest.approx(yaw, abs=1e-9)
    for _ in range(200):  # any angles: the other solution of a limb, or a straight hinge, points the bones alike
        a = rng.uniform(-180, 180, len(ANGLES))
        joints = forward(a, rng.uniform(-180, 180))
        np.testing.assert_allclose(forward(*inverse(joints)), joints, atol=1e-9)


def test_fit_table_weights_the_sources_and_ties_the_angles_together():
    rng = np.random.default_rng(1)
    k2hpd = rng.normal(0.0, 10.0, (4000, len(ANGLES)))
    k2hpd[:, 0] = np.linspace(0.0, 100.0, 4000)
    k2hpd[:, 1] = k2hpd[:, 0] * 2  # as the first
    k2hpd[:, 2] = -k2hpd[:, 0]  # against it
    mocap = rng.normal(0.0, 10.0, (1000, len(ANGLES)))
    mocap[:, 0] = 200.0
    mocap[:, 1], mocap[:, 2] = 400.0, -200.0
    yaws = np.linspace(-30.0, 30.0, 4000)
    table = fit_table(k2hpd, yaws, mocap, mocap_share=0.5, shoulder_drop=12.345, torso_along=0.5)
    quantiles = dict(zip(LEVELS, np.array(table["quantiles"])[0], strict=True))
    assert quantiles[0.25] == pytest.approx(50.0, abs=0.1)  # half the weight, then the K2HPD poses' median
    assert quantiles[0.75] == pytest.approx(200.0)  # the other half: the mocap frames
    unweighted = fit_table(k2hpd, yaws, mocap, mocap_share=0.2, shoulder_drop=0.0, torso_along=0.5)
    assert dict(zip(LEVELS, unweighted["quantiles"][0], strict=True))[0.5] == pytest.approx(62.5, abs=0.1)
    correlation = np.array(table["correlation"])
    assert correlation[0, 1] == pytest.approx(1.0, abs=1e-3) and correlation[0, 2] == pytest.approx(-1.0, abs=1e-3)
    assert abs(correlation[0, 5]) < 0.1 and np.allclose(np.diag(correlation), 1.0)
    assert table["yaw"][LEVELS.index(0.5)] == pytest.approx(0.0, abs=0.01) and table["shoulder_drop"] == 12.35
    assert table["poses"] == {"k2hpd": 4000, "mocap": 1000}


def test_the_prior_draws_the_fitted_quantiles_and_correlations():
    prior = FittedPrior()
    assert prior.table["angles"] == list(ANGLES) and len(prior.quantiles) == len(ANGLES)
    drawn = [prior.sample_angles(np.random.default_rng([7, i])) for i in range(3000)]
    values = np.array([a for a, _ in drawn])
    yaws = np.array([y for _, y in drawn])
    for table, drawn_values, name in [*zip(prior.quantiles, values.T, ANGLES, strict=True), (prior.yaw, yaws, "yaw")]:
        for level in (0.1, 0.5, 0.9):  # a quantile of the draws lies between the fitted ones 0.05 either side
            below, above = table[LEVELS.index(round(level - 0.05, 2))], table[LEVELS.index(round(level + 0.05, 2))]
            assert below - 0.5 <= np.quantile(drawn_values, level) <= above + 0.5, (name, level)
    scores = np.stack([normal_scores(values[:, k], np.ones(len(values))) for k in range(len(ANGLES))], axis=1)
    fitted = np.array(prior.table["correlation"])
    strong = np.argwhere(np.triu(np.abs(fitted) > 0.3, 1))
    assert len(strong) >= 3  # the copula has pairs to keep: the draws keep them
    for i, j in strong:
        assert np.corrcoef(scores[:, i], scores[:, j])[0, 1] == pytest.approx(fitted[i, j], abs=0.06), (i, j)
    first = prior(np.random.default_rng([7, 0]), 1.7)
    np.testing.assert_array_equal(first, prior(np.random.default_rng([7, 0]), 1.7))  # a function of the rng
    np.testing.assert_allclose(first, forward(*drawn[0], **prior.shape) * 1.7)


def test_pose_prior_selects_the_fitted_prior_and_the_default_stays():
    assert load_config().data.pose_prior == "procedural" and config_pose_source(load_config().data) is None
    fitted = load_config(None, ['data.pose_prior="fitted"'])
    assert isinstance(config_pose_source(fitted.data), FittedPrior)
    mix = load_config(None, ['data.pose_prior="fitted"', "data.pose_mix={procedural = 1}"])
    source = config_pose_source(mix.data)
    assert isinstance(source, PoseMix) and isinstance(source.sources["procedural"], FittedPrior)
    held_out = held_out_pose_source(mix.data, source)
    assert held_out.sources["procedural"] is source.sources["procedural"]


@pytest.mark.parametrize(("overrides", "message"), [
    (['data.pose_prior="learned"'], "data.pose_prior: 'learned' is not one of procedural, fitted"),
    (['data.pose_prior="fitted"', "data.pose_mix={bvh = 1}", 'data.bvh_files="x"'],
     "data.pose_prior: 'fitted' draws the procedural poses, and data.pose_mix.procedural = 0 has none"),
    (['data.pose_prior="fitted"', "data.pose_mix={bank = 1}", 'data.bank_files="x"'],
     "data.pose_prior: 'fitted' draws the procedural poses, and data.pose_mix.procedural = 0 has none"),
    (['data.pose_prior="fitted"', 'data.source="lsp"', 'data.root="somewhere"'],
     "data.pose_prior: poses the synthetic frames; data.source = 'lsp' has its own"),
])
def test_pose_prior_errors_are_one_line_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(").replace(")", r"\)") + "$"):
        load_config(None, overrides)


def run_data(*argv: str) -> int:
    from cpm.cli.data import add_data_parser
    from cpm.cli.data import run_data as run

    parser = argparse.ArgumentParser()
    add_data_parser(parser.add_subparsers(dest="command"))
    return run(parser.parse_args(["data", *argv]))


def test_fit_prior_writes_the_table_module_with_its_command(tmp_path, capsys):
    rng = np.random.default_rng(2)
    poses = np.zeros((40, 15, 2))
    poses[:, :, 0], poses[:, [0, 1, 8, 9, 10], 1] = 128.0, [30, 55, 85, 115, 115]
    poses[:, [2, 4, 6, 9, 11, 13], 0] -= [20, 25, 28, 12, 13, 14]
    poses[:, [3, 5, 7, 10, 12, 14], 0] += [20, 25, 28, 12, 13, 14]
    poses[:, [2, 3], 1], poses[:, [4, 5], 1], poses[:, [6, 7], 1] = 62.0, 88.0, 110.0
    poses[:, [11, 12], 1], poses[:, [13, 14], 1] = 150.0, 185.0
    np.save(tmp_path / "bank.npy", poses + rng.normal(0, 2, poses.shape))
    out = tmp_path / "table.py"
    assert run_data("fit-prior", "--k2hpd", str(tmp_path / "bank.npy"), "--out", str(out)) == 0
    assert f"wrote {out}: 21 joint angles and the yaw fitted to 40 K2HPD poses" in capsys.readouterr().out
    module = runpy.run_path(str(out))
    table = module["TABLE"]
    assert f"cpm data fit-prior --k2hpd {tmp_path / 'bank.npy'} --mocap-share 0 --out {out}" in " ".join(
        module["__doc__"].split())
    assert table == fit_prior(tmp_path / "bank.npy", None)  # the function and the command agree
    assert table["mocap_share"] == 0.0 and table["poses"] == {"k2hpd": 40, "mocap": 0}
    prior = FittedPrior(table)
    assert prior(np.random.default_rng(0), 1.7).shape == (15, 3)
    from cpm.cli import main

    assert main(["data", "fit-prior", "--k2hpd", str(tmp_path / "bank.npy"), "--mocap-share", "0.5",
                 "--out", str(out)]) == 2
    assert "--mocap-share: 0.5 must be in [0, 1), and 0 without --bvh" in capsys.readouterr().err


def test_the_committed_table_comes_from_the_real_poses(shared_data):
    """A fit on every 20th K2HPD train pose and the training mocap subjects: each angle's quantiles close to the
    committed table's (the full fit, `test_the_committed_table_is_the_full_fit`)."""
    committed = FittedPrior().table
    table = fit_prior(shared_data / "k2hpd" / "k2hpd_keypoints_train.mat", shared_data / "mocap" / "cmu", step=20)
    assert table["poses"]["mocap"] == committed["poses"]["mocap"] == 12112
    for k, name in enumerate(ANGLES):
        for level in (0.1, 0.5, 0.9):
            here, there = table["quantiles"][k][LEVELS.index(level)], committed["quantiles"][k][LEVELS.index(level)]
            assert here == pytest.approx(there, abs=4.0), (name, level)
    assert table["shoulder_drop"] == pytest.approx(committed["shoulder_drop"], abs=1.0)


@pytest.mark.slow
def test_the_committed_table_is_the_full_fit(shared_data):
    table = fit_prior(shared_data / "k2hpd" / "k2hpd_keypoints_train.mat", shared_data / "mocap" / "cmu")
    assert table == FittedPrior().table


def test_the_fitted_prior_is_within_one_and_a_half_floors_of_real_poses(shared_data):
    """Realism (JS distance to the K2HPD test poses) of 1000 poses: the fitted prior within 1.5x the real-vs-real
    floor (K2HPD train against test), the hand-set prior beyond it."""
    from cpm.data.quality.realism import realism_report

    k2hpd = shared_data / "k2hpd"
    rows = realism_report(real=str(k2hpd / "k2hpd_keypoints_test.mat"),
                          reference=str(k2hpd / "k2hpd_keypoints_train.mat"), n=1000,
                          configs={"fitted": load_config(None, ['data.pose_prior="fitted"'])})
    overall = {row["source"]: row["overall"] for row in rows}
    assert list(overall) == ["K2HPD train (floor)", "procedural", "fitted: procedural (fitted prior)"]
    floor = overall["K2HPD train (floor)"]
    assert overall["fitted: procedural (fitted prior)"] <= 1.5 * floor < overall["procedural"]


def test_eval_pose_sources_of_a_fitted_prior_checkpoint_measure_the_hand_set_prior(tmp_path, shared_data):
    """``cpm eval --pose-sources`` of a checkpoint trained on the fitted prior: its procedural source is the
    hand-set prior, and the mocap and K2HPD sources run (the fitted prior needs procedural poses)."""
    from cpm.cli.eval import evaluate_pose_sources
    from cpm.evaluation.evaluate import evaluate_checkpoint
    from cpm.runtime.build import build_network
    from cpm.runtime.checkpoint import save_checkpoint
    from tests.helpers import tiny_overrides

    config = load_config(None, [*tiny_overrides(tmp_path), "data.val_samples=4", 'data.pose_prior="fitted"'])
    path = tmp_path / "fitted.pt"
    save_checkpoint({"model": build_network(config).state_dict(), "config": config.to_dict(), "epoch": 1, "step": 1},
                    path)
    results, notes = evaluate_pose_sources(path, shared_data, progress=False, device_name="cpu")
    assert list(results) == POSE_SOURCES and not notes
    hand_set = evaluate_checkpoint(path, overrides={"data": {"pose_prior": "procedural"}}, progress=False,
                                   device_name="cpu")
    fitted = evaluate_checkpoint(path, progress=False, device_name="cpu")
    assert results["procedural"]["loss"] == hand_set["loss"] != fitted["loss"]  # other frames, another loss
