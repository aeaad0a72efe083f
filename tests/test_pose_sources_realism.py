"""``cpm data realism`` scores the pose source of a config: a mixture (data.pose_mix) picks each scene's source from
(seed, index) as the renderer does, instead of being ignored."""

from __future__ import annotations

import argparse

import numpy as np

from cpm.cli.data import add_data_parser, run_data
from cpm.config import load_config
from cpm.data.quality.realism import distances, normalise, realism_report, synthetic_keypoints
from cpm.data.synthetic.sources import PoseMix, config_pose_source, describe_pose_source, pose_sampler


def run(*argv):
    parser = argparse.ArgumentParser()
    add_data_parser(parser.add_subparsers(dest="command"))
    return run_data(parser.parse_args(["data", *argv]))


def arms_out_bank(path) -> str:
    """A .npy bank of 4 poses with both arms held out sideways (nothing like the procedural prior's hanging arms)."""
    poses = np.zeros((4, 15, 2))
    poses[:, :, 0] = 128.0
    poses[:, [0, 1, 8, 9, 10, 11, 12, 13, 14], 1] = [30, 55, 85, 115, 115, 150, 150, 185, 185]
    poses[:, [9, 11, 13], 0], poses[:, [10, 12, 14], 0] = 118.0, 138.0
    poses[:, [2, 3], 1] = 60.0
    poses[:, [2, 4, 6], 0] = [[110, 85, 60]]
    poses[:, [3, 5, 7], 0] = [[146, 171, 196]]
    poses[:, [4, 5, 6, 7], 1] = 60.0 + np.arange(4)[:, None] * 5.0
    np.save(path, poses)
    return str(path)


def test_a_mixture_picks_each_scene_source_from_seed_and_index(tmp_path):
    bank = arms_out_bank(tmp_path / "poses.npy")
    config = load_config(None, ["data.pose_mix={procedural = 1, bank = 1}", f'data.bank_files="{bank}"'])
    mix = config_pose_source(config.data)
    assert isinstance(mix, PoseMix)
    mixed = synthetic_keypoints(12, seed=5, pose_source=mix)
    procedural = synthetic_keypoints(12, seed=5)
    banked = synthetic_keypoints(12, seed=5, pose_source=pose_sampler("bank", bank))
    picks = [mix.pick(5, i) for i in range(12)]
    assert set(picks) == {"procedural", "bank"}
    for index, name in enumerate(picks):
        np.testing.assert_array_equal(mixed[index], (procedural if name == "procedural" else banked)[index])
    assert describe_pose_source(config.data) == "mixture: procedural 0.50, bank 0.50"


def test_realism_scores_a_config_row_of_its_mixture(tmp_path, shared_data, capsys):
    bank = arms_out_bank(tmp_path / "poses.npy")
    real = str(shared_data / "k2hpd" / "k2hpd_keypoints_test.mat")
    sets = ["data.pose_mix={procedural = 3, bank = 1}", f'data.bank_files="{bank}"']
    assert run("realism", "--real", real, "--n", "120", *sum((["--set", s] for s in sets), [])) == 0
    lines = capsys.readouterr().out.splitlines()
    name = f"defaults --set {sets[0]} --set {sets[1]}: mixture: procedural 0.75, bank 0.25"
    assert [line.split(" | ")[0][2:] for line in lines[2:]] == ["procedural", name]
    from cpm.data.datasets.mat_readers import read_k2hpd

    real_poses = normalise(read_k2hpd(real).keypoints)
    mix = config_pose_source(load_config(None, sets).data)
    expected = distances(normalise(synthetic_keypoints(120, seed=0, pose_source=mix)), real_poses)
    assert lines[3] == (f"| {name} | 120 | {expected['position']:.3f} | {expected['angle']:.3f} | "
                        f"{expected['overall']:.3f} |")
    procedural = distances(normalise(synthetic_keypoints(120, seed=0)), real_poses)
    assert abs(expected["overall"] - procedural["overall"]) > 0.01  # the mixture is not the procedural prior


def test_realism_config_rows_by_file(tmp_path, shared_data):
    bank = arms_out_bank(tmp_path / "poses.npy")
    path = tmp_path / "bank.toml"
    path.write_text(f'[data]\npose_mix = {{bank = 1.0}}\nbank_files = "{bank}"\n')
    rows = realism_report(real=str(shared_data / "k2hpd" / "k2hpd_keypoints_test.mat"), n=40,
                          configs={str(path): load_config(path)})
    assert [row["source"] for row in rows] == ["procedural", f"{path}: bank ({bank})"]
    assert rows[1]["overall"] != rows[0]["overall"]
