"""The held-out split of a pose mixture (cpm.data.synthetic.sources.held_out_pose_source): what best.pt is chosen on
is posed by held-out mocap subjects and the bank's test split, never by a training pose; the default stream and
one-source configs keep their held-out split as it was."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cpm.config import load_config
from cpm.data.synthetic.bvh import clip_subject, held_out_subject
from cpm.data.synthetic.frames import render_sample
from cpm.data.synthetic.scene import sample_scene
from cpm.data.synthetic.sources import PoseMix, held_out_bank
from cpm.errors import ConfigError
from cpm.runtime.build import build_datasets


def bank(path, reach: float) -> str:
    """A .npy bank of 3 standing-ish 2D poses whose left wrist reaches ``reach`` pixels out (two banks differ)."""
    poses = np.zeros((3, 15, 2)) + np.linspace(10, 150, 15)[None, :, None]
    poses[:, [2, 4, 6, 9, 11, 13], 0] -= 30  # right side on the image left
    poses[:, [3, 5, 7, 10, 12, 14], 0] += 30
    poses[:, 7, 0] += reach + 4 * np.arange(3)
    np.save(path, poses)
    return str(path)


def mixture(*sets: str) -> list[str]:
    return ["data.train_samples=8", "data.val_samples=40", *sets]


def test_a_mixture_validates_on_the_test_bank_beside_its_train_bank(tmp_path):
    train_bank, test_bank = bank(tmp_path / "poses_train.npy", 0.0), bank(tmp_path / "poses_test.npy", 40.0)
    config = load_config(None, mixture("data.pose_mix={procedural = 1, bank = 1}", f'data.bank_files="{train_bank}"'))
    assert held_out_bank(config.data) == test_bank
    train_set, val_set = build_datasets(config)
    train_mix, val_mix = train_set.source.pose_source, val_set.source.pose_source
    assert isinstance(val_mix, PoseMix) and val_mix.weights == train_mix.weights == {"procedural": 0.5, "bank": 0.5}
    np.testing.assert_array_equal(train_mix.sources["bank"].keypoints, np.load(train_bank))
    np.testing.assert_array_equal(val_mix.sources["bank"].keypoints, np.load(test_bank))
    # the procedural frames of the held-out split are those of the default held-out stream (data.val_seed)
    seed = val_set.source.seed
    assert seed == config.data.val_seed
    picks = [val_mix.pick(seed, i) for i in range(6)]
    assert set(picks) == {"procedural", "bank"}
    for index, name in enumerate(picks):
        frame = val_set.source[index]
        if name == "procedural":
            np.testing.assert_array_equal(frame["image"], render_sample(seed, index)["image"])
        else:
            np.testing.assert_array_equal(frame["image"], render_sample(seed, index, val_mix.sources["bank"])["image"])
            assert not np.array_equal(frame["image"], render_sample(seed, index, train_mix.sources["bank"])["image"])


def test_val_bank_files_names_the_held_out_bank(tmp_path):
    train_bank, other = bank(tmp_path / "poses_train.npy", 0.0), bank(tmp_path / "mine.npy", 20.0)
    config = load_config(None, mixture("data.pose_mix={bank = 1}", f'data.bank_files="{train_bank}"',
                                       f'data.val_bank_files="{other}"'))
    _, val_set = build_datasets(config)
    np.testing.assert_array_equal(val_set.source.pose_source.sources["bank"].keypoints, np.load(other))
    same = load_config(None, mixture("data.pose_mix={bank = 1}", f'data.bank_files="{train_bank}"',
                                     f'data.val_bank_files="{train_bank}"'))  # named on purpose: allowed
    assert held_out_bank(same.data) == train_bank


def test_the_held_out_bank_errors_are_one_line_naming_the_key(tmp_path):
    alone = bank(tmp_path / "poses.npy", 0.0)  # no "train" in the name: no test split to find
    config = load_config(None, mixture("data.pose_mix={bank = 1}", f'data.bank_files="{alone}"'))
    with pytest.raises(ConfigError, match="^data.val_bank_files: no test split beside data.bank_files") as error:
        build_datasets(config)
    assert "\n" not in str(error.value)
    lonely = bank(tmp_path / "lonely_train.npy", 0.0)  # a train split whose test split is not there
    config = load_config(None, mixture("data.pose_mix={bank = 1}", f'data.bank_files="{lonely}"'))
    with pytest.raises(ConfigError, match="^data.val_bank_files: no test split"):
        build_datasets(config)
    missing = load_config(None, mixture("data.pose_mix={bank = 1}", f'data.bank_files="{lonely}"',
                                        f'data.val_bank_files="{tmp_path / "nope.npy"}"'))
    with pytest.raises(ConfigError, match="^data.val_bank_files: .*nope.npy: no such file or folder"):
        build_datasets(missing)
    with pytest.raises(ConfigError, match="^data.val_bank_files: the held-out split's bank, only read by a mixture "
                                          "with data.pose_mix.bank > 0$"):
        load_config(None, [f'data.val_bank_files="{lonely}"'])


def test_the_cli_refuses_a_mixture_without_a_held_out_bank_with_exit_2(tmp_path, capsys):
    from cpm.cli import main
    from tests.helpers import tiny_overrides

    alone = bank(tmp_path / "poses.npy", 0.0)
    sets = [*tiny_overrides(tmp_path), "data.pose_mix.bank=1", f'data.bank_files="{alone}"']
    procedural = Path(__file__).resolve().parents[1] / "experiments" / "procedural.toml"  # missing_pose_files "error"
    assert main(["train", str(procedural), "--no-progress", *sum((["--set", s] for s in sets), [])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("cpm train: error: data.val_bank_files: no test split") and "\n" not in err


def test_the_default_and_one_source_held_out_splits_are_unchanged(tmp_path):
    _, val_set = build_datasets(load_config(None, ["data.val_samples=3"]))
    assert val_set.source.pose_source is None
    for index in range(3):
        np.testing.assert_array_equal(val_set.source[index]["image"], render_sample(1000, index)["image"])
    one = bank(tmp_path / "poses_train.npy", 0.0)
    bank(tmp_path / "poses_test.npy", 40.0)
    old = tmp_path / "one_source.toml"  # the retired one-source keys: a bank of weight 1 held out on itself
    old.write_text(f'[data]\ntrain_samples = 8\nval_samples = 40\npose_source = "bank"\npose_files = "{one}"\n')
    config = load_config(old)
    assert (config.data.pose_mix.bank, config.data.bank_files, config.data.val_bank_files) == (1.0, one, one)
    train_set, val_set = build_datasets(config)
    poses = train_set.source.pose_source.sources["bank"]
    for index in range(3):  # the frames of the one source as it drew them: the training bank, val_seed's stream
        np.testing.assert_array_equal(val_set.source[index]["image"], render_sample(1000, index, poses)["image"])


def test_a_mixture_validates_on_held_out_subjects_and_the_k2hpd_test_split(shared_data):
    """The held-out frames of a three-source mixture: every mocap pose from a held-out subject's clip, every bank
    pose a K2HPD test pose and none a train pose."""
    from cpm.data.datasets.mat_readers import read_k2hpd
    from tests.test_pose_mix import Recording

    k2hpd = shared_data / "k2hpd"
    config = load_config(None, mixture(
        "data.pose_mix={procedural = 0.2, bvh = 0.4, bank = 0.4}", f'data.bvh_files="{shared_data / "mocap" / "cmu"}"',
        f'data.bank_files="{k2hpd / "k2hpd_keypoints_train.mat"}"', "data.val_samples=120"))
    train_set, val_set = build_datasets(config)
    mix = val_set.source.pose_source
    bvh, bank_poses = mix.sources["bvh"], mix.sources["bank"]
    assert bvh.subjects == "held_out" and bvh.clips and all(held_out_subject(clip_subject(p)) for p in bvh.clips)
    assert train_set.source.pose_source.sources["bvh"].subjects == "train"
    test = read_k2hpd(k2hpd / "k2hpd_keypoints_test.mat").keypoints[..., :2]
    np.testing.assert_array_equal(bank_poses.keypoints, test)
    mix.sources["bvh"], mix.sources["bank"] = recording_bvh, recording_bank = Recording(bvh), Recording(bank_poses)
    for index in range(120):  # the poses of the held-out frames, as rendering draws them
        source = mix.source(val_set.source.seed, index)
        if source is not None:
            sample_scene(np.random.default_rng([val_set.source.seed, index]), source)
    assert len(recording_bvh.drawn) > 30 and len(recording_bank.drawn) > 30
    assert all(held_out_subject(clip_subject(bvh.clips[bvh.clip_of_frame[i]])) for i in recording_bvh.drawn)
    train_poses = {row.tobytes() for row in read_k2hpd(k2hpd / "k2hpd_keypoints_train.mat").keypoints[..., :2]}
    assert not any(bank_poses.keypoints[i].tobytes() in train_poses for i in recording_bank.drawn)


def test_clips_of_training_subjects_alone_leave_no_held_out_split(shared_data, tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(sorted((shared_data / "mocap" / "cmu").glob("*.bvh"))[0], clips / "02_01.bvh")
    config = load_config(None, mixture("data.pose_mix={procedural = 1, bvh = 1}", f'data.bvh_files="{clips}"'))
    with pytest.raises(ConfigError, match="^data.bvh_files: .*clips has no clip of a held-out subject"):
        build_datasets(config)
    every = load_config(None, mixture("data.pose_mix={procedural = 1, bvh = 1}", f'data.bvh_files="{clips}"',
                                      'data.bvh_subjects="all"'))
    _, val_set = build_datasets(every)
    assert val_set.source.pose_source.sources["bvh"].subjects == "all"
