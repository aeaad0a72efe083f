"""A mixture of pose sources for the synthetic frames (data.pose_mix, cpm.data.synthetic.sources): the pick per
(seed, index), the proportions, the procedural stream left as it was, the config keys, the split discipline (no
held-out pose in training) and ``cpm eval --pose-sources``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cpm.config import DataConfig, load_config
from cpm.data.synthetic.bvh import clip_subject, held_out_subject, select_clips
from cpm.data.synthetic.frames import SyntheticPoses, render_sample
from cpm.data.synthetic.scene import sample_scene
from cpm.data.synthetic.sources import PoseMix, config_pose_source
from cpm.errors import ConfigError, CPMError
from tests.helpers import POSE_SOURCES


class Recording:
    """A pose source that draws like ``source`` and records the index of each pose it gives."""

    def __init__(self, source) -> None:
        self.source, self.needs_yaw, self.drawn = source, source.needs_yaw, []

    def __call__(self, rng: np.random.Generator, height: float) -> np.ndarray:
        index = self.source.draw(rng)
        self.drawn.append(index)
        return self.source.pose(index, height)


class Standing:
    """A stub pose source: one fixed pose, counted."""

    needs_yaw = True

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, rng: np.random.Generator, height: float) -> np.ndarray:
        self.calls += 1
        joints = np.zeros((15, 3))
        joints[:, 1] = np.linspace(0.8, -0.9, 15) * height / 1.7
        joints[[2, 4, 6, 9, 11, 13], 0], joints[[3, 5, 7, 10, 12, 14], 0] = -0.15, 0.15
        return joints


def test_the_pick_is_a_pure_function_of_seed_and_index():
    mix = PoseMix({"procedural": 0.5, "bvh": 0.25, "bank": 0.25}, {"bvh": Standing(), "bank": Standing()})
    forwards = [mix.pick(3, i) for i in range(200)]
    other = PoseMix({"procedural": 2, "bvh": 1, "bank": 1}, {"bvh": Standing(), "bank": Standing()})
    assert [other.pick(3, i) for i in reversed(range(200))][::-1] == forwards  # any order, any instance
    assert [mix.pick(4, i) for i in range(200)] != forwards  # another seed, another sequence
    assert set(forwards) == {"procedural", "bvh", "bank"}


@pytest.mark.parametrize("weights", [{"procedural": 0.5, "bvh": 0.25, "bank": 0.25}, {"procedural": 1, "bank": 4},
                                     {"bvh": 0.1, "bank": 0.3, "procedural": 0.6}])
def test_every_run_of_consecutive_indices_holds_each_source_in_its_share(weights):
    sources = {name: Standing() for name in ("bvh", "bank") if name in weights}
    mix = PoseMix(weights, sources)
    total = sum(weights.values())
    for seed in (0, 7, 1000):
        for start, count in ((0, 1000), (20000, 500), (123457, 20000)):
            picks = [mix.pick(seed, i) for i in range(start, start + count)]
            for name, weight in weights.items():
                assert abs(picks.count(name) - count * weight / total) <= 2, (seed, start, name)


def test_mixture_errors_name_what_is_wrong():
    with pytest.raises(CPMError, match="unknown source 'walk'"):
        PoseMix({"walk": 1.0}, {})
    with pytest.raises(CPMError, match="not all 0"):
        PoseMix({"procedural": 0.0, "bank": 0.0}, {})
    with pytest.raises(CPMError, match="no pose source given for 'bank'"):
        PoseMix({"procedural": 0.5, "bank": 0.5}, {})


def test_procedural_samples_of_a_mixture_are_those_of_the_default_stream():
    bank = Standing()
    mix = PoseMix({"procedural": 0.5, "bank": 0.5}, {"bank": bank})
    picks = {i: mix.pick(11, i) for i in range(6)}
    assert set(picks.values()) == {"procedural", "bank"}
    for index, name in picks.items():
        sample = render_sample(11, index, mix)
        expected = render_sample(11, index) if name == "procedural" else render_sample(11, index, Standing())
        np.testing.assert_array_equal(sample["image"], expected["image"])
        np.testing.assert_array_equal(sample["keypoints"], expected["keypoints"])
    assert bank.calls == list(picks.values()).count("bank")
    only_procedural = PoseMix({"procedural": 1.0}, {})
    np.testing.assert_array_equal(render_sample(2, 9, only_procedural)["image"], render_sample(2, 9)["image"])


def test_the_default_config_draws_from_the_procedural_prior_unchanged():
    assert config_pose_source(DataConfig()) is None
    assert config_pose_source(load_config().data) is None


def test_a_mixture_is_a_toml_table_of_weights_with_files_per_source(tmp_path):
    np.save(tmp_path / "bank.npy", np.zeros((2, 15, 2)) + np.linspace(0, 90, 15)[None, :, None])
    path = tmp_path / "mix.toml"
    path.write_text(f'[data]\nbank_files = "{tmp_path / "bank.npy"}"\n[data.pose_mix]\nprocedural = 3\nbank = 1\n')
    config = load_config(path)
    assert (config.data.pose_mix.procedural, config.data.pose_mix.bank, config.data.pose_mix.bvh) == (3.0, 1.0, 0.0)
    mix = config_pose_source(config.data)
    assert isinstance(mix, PoseMix) and mix.weights == {"procedural": 0.75, "bank": 0.25}
    resolved = tmp_path / "resolved.toml"
    resolved.write_text(config.to_toml())
    assert load_config(resolved) == config


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.pose_mix.bvh=0.5"], "data.bvh_files: data.pose_mix.bvh = 0.5 needs its file or folder"),
    (["data.pose_mix.bank=-1"], "data.pose_mix.bank: -1.0 must be a finite weight >= 0"),
    (["data.pose_mix.walk=1"], "unknown config key data.pose_mix.walk"),
    (['data.bank_files="k.mat"'], "data.bank_files: only read with data.pose_mix.bank > 0 (one source alone: "
                                  "data.pose_mix = {bank = 1.0})"),
    (["data.pose_mix.procedural=1", 'data.pose_source="bank"', 'data.pose_files="k.mat"'],
     '--set: data.pose_source = "bank" is retired: one source alone is data.pose_mix = {bank = 1.0} with its files '
     "in data.bank_files"),
    (['data.pose_files="k.mat"'], "--set: data.pose_files is retired: name the files in data.bvh_files or "
                                  "data.bank_files"),
    (['data.bvh_subjects="test"'], "data.bvh_subjects: 'test' is not one of train, held_out, all"),
])
def test_pose_config_errors_are_one_line_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        load_config(None, overrides)
    assert "\n" not in str(error.value)


def test_missing_mixture_files_name_their_key(tmp_path):
    config = load_config(None, ["data.pose_mix.bank=1", f'data.bank_files="{tmp_path / "nope.mat"}"'])
    with pytest.raises(ConfigError, match="data.bank_files: .*nope.mat: no such file or folder"):
        config_pose_source(config.data)


def test_cmu_subjects_split_into_train_and_held_out_by_their_number(tmp_path):
    assert [s for s in range(1, 30) if held_out_subject(s)] == [1, 6, 11, 16, 21, 26]
    names = ["02_01.bvh", "06_01.bvh", "16_15.bvh", "35_02.bvh", "141_19.bvh", "144_33.bvh"]
    paths = [tmp_path / name for name in names]
    assert [clip_subject(p) for p in paths] == [2, 6, 16, 35, 141, 144]
    train, held_out = select_clips(paths, "train"), select_clips(paths, "held_out")
    assert [p.name for p in train] == ["02_01.bvh", "35_02.bvh", "144_33.bvh"]
    assert [p.name for p in held_out] == ["06_01.bvh", "16_15.bvh", "141_19.bvh"]
    assert select_clips(paths, "all") == paths
    with pytest.raises(CPMError, match="walk.bvh: not named SUBJECT_CLIP.bvh"):
        select_clips([tmp_path / "walk.bvh"], "train")


def test_a_training_config_never_reads_a_held_out_pose(shared_data):
    """The training samples of a mixture of all three sources: every mocap pose is a frame of a training subject's
    clip, every bank pose a pose of the K2HPD train split and none of its test split."""
    from cpm.data.datasets.mat_readers import read_k2hpd
    from cpm.runtime.build import build_datasets

    k2hpd = shared_data / "k2hpd"
    config = load_config(None, [
        "data.pose_mix={procedural = 0.2, bvh = 0.4, bank = 0.4}", f'data.bvh_files="{shared_data / "mocap" / "cmu"}"',
        f'data.bank_files="{k2hpd / "k2hpd_keypoints_train.mat"}"', "data.train_samples=150", "data.val_samples=2"])
    train_set, _ = build_datasets(config)
    frames: SyntheticPoses = train_set.source
    mix = frames.pose_source
    bvh, bank = mix.sources["bvh"], mix.sources["bank"]
    assert bvh.clips and not any(held_out_subject(clip_subject(p)) for p in bvh.clips)
    np.testing.assert_array_equal(bank.keypoints, read_k2hpd(k2hpd / "k2hpd_keypoints_train.mat").keypoints[..., :2])
    mix.sources["bvh"], mix.sources["bank"] = recording_bvh, recording_bank = Recording(bvh), Recording(bank)
    for index in range(150):  # the poses of the training samples, as rendering draws them (the scene, not the image)
        source = mix.source(frames.seed, index)
        if source is not None:
            sample_scene(np.random.default_rng([frames.seed, index]), source)
    assert len(recording_bvh.drawn) > 40 and len(recording_bank.drawn) > 40
    subjects = {clip_subject(bvh.clips[bvh.clip_of_frame[i]]) for i in recording_bvh.drawn}
    assert not any(held_out_subject(s) for s in subjects)
    test_poses = {row.tobytes() for row in read_k2hpd(k2hpd / "k2hpd_keypoints_test.mat").keypoints[..., :2]}
    assert not any(bank.keypoints[i].tobytes() in test_poses for i in recording_bank.drawn)
    # and the frames themselves take their poses from the recorded sources
    assert frames[0]["keypoints"].shape == (15, 3)


def test_eval_pose_sources_measure_held_out_subjects_and_the_k2hpd_test_split(shared_data):
    from cpm.cli.eval import pose_source_overrides

    sources, notes = pose_source_overrides(shared_data)
    assert list(sources) == POSE_SOURCES and not notes
    config = load_config(None, [f"data.{key}={json.dumps(value) if isinstance(value, str) else _inline(value)}"
                                for key, value in sources["mocap held-out subjects"].items()])
    mocap = config_pose_source(config.data).sources["bvh"]  # the one source of a mixture of one
    assert mocap.clips and all(held_out_subject(clip_subject(p)) for p in mocap.clips)
    assert sources["K2HPD test"]["bank_files"].endswith("k2hpd_keypoints_test.mat")
    assert sources["K2HPD test"]["val_bank_files"] == sources["K2HPD test"]["bank_files"]


def _inline(table: dict) -> str:
    return "{" + ", ".join(f"{k} = {v}" for k, v in table.items()) + "}"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """An untrained tiny synthetic-data model saved as a checkpoint, with 8 held-out frames."""
    from cpm.runtime.build import build_network
    from cpm.runtime.checkpoint import save_checkpoint
    from tests.helpers import tiny_overrides

    folder = tmp_path_factory.mktemp("checkpoint")
    config = load_config(None, [*tiny_overrides(folder), "data.val_samples=8"])
    path = folder / "tiny.pt"
    save_checkpoint({"model": build_network(config).state_dict(), "config": config.to_dict(), "epoch": 1, "step": 8},
                    path)
    return str(path)


def test_cpm_eval_prints_a_per_stage_table_per_pose_source(checkpoint, tmp_path, capsys):
    from cpm.cli import main

    assert main(["eval", checkpoint, "--json", "--no-progress", "--device", "cpu"]) == 0
    plain = json.loads(capsys.readouterr().out)
    empty = tmp_path / "data"
    empty.mkdir()
    assert main(["eval", checkpoint, "--json", "--no-progress", "--device", "cpu", "--pose-sources", str(empty)]) == 0
    captured = capsys.readouterr()
    sources = json.loads(captured.out)["sources"]
    assert list(sources) == ["procedural"]  # no mocap and no K2HPD here: skipped, with a note each
    assert sources["procedural"]["pck"] == plain["pck"]  # the checkpoint's own held-out frames, as plain eval
    assert "mocap held-out subjects: skipped" in captured.err and "K2HPD test: skipped" in captured.err
    assert main(["eval", checkpoint, "--no-progress", "--device", "cpu", "--pose-sources", str(empty)]) == 0
    printed = capsys.readouterr().out
    assert "procedural:\n\n| stage | PCK@0.1 | PCK@0.2 |\n|---:|---:|---:|\n| 1 |" in printed
    final = f"| procedural | {100 * plain['pck']['0.1'][-1]:.2f} | {100 * plain['pck']['0.2'][-1]:.2f} |"
    assert final in printed.splitlines()
    assert main(["eval", checkpoint, "--pose-sources", str(tmp_path / "nowhere")]) == 2
    assert "--pose-sources" in capsys.readouterr().err
    assert main(["eval", checkpoint, "--pose-sources", "--predictions", str(tmp_path / "p.mat")]) == 2


def test_cpm_eval_flip_test_reaches_the_held_out_split_and_the_pose_sources(checkpoint, tmp_path, capsys):
    from cpm.cli import main

    empty = tmp_path / "data"
    empty.mkdir()
    runs = {}
    for flip in ("off", "on"):
        assert main(["eval", checkpoint, "--json", "--no-progress", "--device", "cpu", "--flip-test", flip]) == 0
        plain = json.loads(capsys.readouterr().out)
        assert main(["eval", checkpoint, "--json", "--no-progress", "--device", "cpu", "--flip-test", flip,
                     "--pose-sources", str(empty)]) == 0
        sources = json.loads(capsys.readouterr().out)["sources"]
        assert sources["procedural"]["pck"] == plain["pck"]
        runs[flip] = plain
    assert main(["eval", checkpoint, "--json", "--no-progress", "--device", "cpu", "--set", "eval.flip_test=true"]) == 0
    assert json.loads(capsys.readouterr().out)["pck"] == runs["on"]["pck"]  # --flip-test on is eval.flip_test
    assert runs["on"]["loss"] != runs["off"]["loss"]  # the mirrored crop's maps were averaged in
    assert main(["eval", checkpoint, "--flip-test", "both"]) == 2  # a row each: --coco only
    assert "--coco" in capsys.readouterr().err


def test_cpm_eval_pose_sources_on_the_shared_data(checkpoint, shared_data, capsys):
    from cpm.cli import main

    assert main(["eval", checkpoint, "--json", "--no-progress", "--device", "cpu", "--pose-sources",
                 str(shared_data), "--set", "data.val_samples=4"]) == 0
    sources = json.loads(capsys.readouterr().out)["sources"]
    assert list(sources) == POSE_SOURCES
    for result in sources.values():
        assert result["samples"] == 4 and len(result["pck"]["0.2"]) == 4
    assert sources["K2HPD test"]["files"].endswith("k2hpd_keypoints_test.mat")
