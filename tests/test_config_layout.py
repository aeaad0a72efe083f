"""One place per concept in the config: keys that moved (`cpm.config.MOVED_KEYS`) are read under their new names from
config files, ``--set``, saved configs and experiment overrides, and every committed cell summary still resolves to
the hash in its name and is found by the report of its grid."""

import json
from pathlib import Path

import pytest

from cpm.config import MOVED_KEYS, Config, config_from_dict, load_config, migrate
from cpm.errors import ConfigError
from cpm.experiments.grids import grid_cells, request_from_note
from cpm.experiments.runs import MACHINE_KEYS, config_hash, is_cell_summary, make_config, read_summary

RESULTS = Path(__file__).resolve().parents[1] / "experiments" / "results"
SUMMARIES = sorted(path for path in (RESULTS / "runs").rglob("*.json") if is_cell_summary(path))


def test_every_committed_cell_summary_resolves_to_the_hash_in_its_name():
    """A summary's stored config (written in the layout of its day) migrated and resolved by today's code hashes to
    the hash its file name and its "hash" field hold."""
    assert len(SUMMARIES) > 100
    moved = {old for path in SUMMARIES for old in MOVED_KEYS
             if old.split(".")[1] in read_summary(path)["config"].get(old.split(".")[0], {})}
    assert {"model.sigma", "model.center_sigma"} <= moved  # old-layout keys with other values than the defaults
    wrong = []
    for path in SUMMARIES:
        summary = read_summary(path)
        digest = config_hash(config_from_dict(summary["config"]))
        if digest != summary["hash"] or not path.stem.endswith(f"-{digest}"):
            wrong.append(f"{path.relative_to(RESULTS)}: resolves to {digest}")
    assert not wrong


def _what(config: Config) -> dict:
    return {f"{section}.{key}": value for section, values in config.to_dict().items() for key, value in values.items()
            if f"{section}.{key}" not in MACHINE_KEYS}


def test_the_report_of_every_committed_grid_finds_its_current_cells(tmp_path):
    """Each committed grid request (its grid.json) resolved through today's config files, budgets and grids: every
    summary whose stored config is the config the request gives its cell today is that cell's summary file, the one
    `python -m cpm.experiments report` reads."""
    found = 0
    for note in sorted(RESULTS.glob("runs/*/*/grid.json")):
        request = request_from_note(json.loads(note.read_text(encoding="utf-8")))
        for cell in grid_cells(request, runs_root=tmp_path, results_root=RESULTS):
            for path in sorted(note.parent.glob(f"{cell.name}-*.json")):
                if _what(config_from_dict(read_summary(path)["config"])) == _what(cell.config):
                    assert path == cell.summary_path, f"{path.relative_to(RESULTS)}: today's hash is {cell.hash}"
                    found += 1
    assert found >= 150  # 157 when the targets' keys moved


def test_a_moved_key_is_read_under_its_new_name_from_a_file_and_a_set(tmp_path, capsys):
    old = tmp_path / "old.toml"
    old.write_text('[model]\nstages = 2\nsigma = 2.0\ncenter_pool = true\n'
                   '[train]\nmissing_joints = "zero"\ntarget_cutoff = 0.01\n')
    new = tmp_path / "new.toml"
    new.write_text('[model]\nstages = 2\n[targets]\nsigma = 2.0\ncenter_pool = true\nmissing_joints = "zero"\n'
                   'cutoff = 0.01\n')
    assert load_config(old) == load_config(new)
    notices = capsys.readouterr().err
    assert f"{old}: model.sigma is targets.sigma now (read as targets.sigma = 2.0)" in notices
    assert f"{old}: train.target_cutoff is targets.cutoff now" in notices
    assert f"{new}:" not in notices
    assert load_config(None, ["model.background=false"]).targets.background is False
    assert "--set: model.background is targets.background now" in capsys.readouterr().err
    assert make_config({"model.sigma": 3.0}).targets.sigma == 3.0  # an experiment's override
    saved = Config().to_dict()
    saved["model"]["sigma"] = saved["targets"].pop("sigma") + 1  # a checkpoint of the old layout
    assert config_from_dict(saved).targets.sigma == 2.0
    assert capsys.readouterr().err == ""  # saved configs move silently


def test_a_key_given_under_both_names_with_two_values_is_an_error(tmp_path):
    path = tmp_path / "both.toml"
    path.write_text("[model]\nsigma = 2.0\n[targets]\nsigma = 1.5\n")
    with pytest.raises(ConfigError, match="model.sigma = 2.0 and targets.sigma = 1.5: model.sigma is targets.sigma"):
        load_config(path)
    assert migrate({"model": {"sigma": 2.0}, "targets": {"sigma": 2.0}}) == {"model": {}, "targets": {"sigma": 2.0}}


def test_the_hash_takes_a_moved_key_under_its_old_name():
    """`config_hash` of a config that changes targets.sigma is the hash of {"model.sigma": value}, as when the key
    was in [model]; the setting name of a request that --sets it is the same under either name."""
    import hashlib

    from cpm.experiments.grids import setting_name

    config = make_config({"targets.sigma": 2.0, "targets.cutoff": 0.01})
    expected = hashlib.sha256(json.dumps({"model.sigma": 2.0, "train.target_cutoff": 0.01},
                                         sort_keys=True).encode()).hexdigest()[:8]
    assert config_hash(config) == expected
    assert setting_name("none", "x.toml", {"targets.sigma": 2.0}) == setting_name("none", "x.toml",
                                                                                 {"model.sigma": 2.0})
    assert setting_name("none", "x.toml", {"targets.sigma": 2.0}) != setting_name("none", "x.toml",
                                                                                 {"targets.sigma": 3.0})


def test_validate_changes_nothing_reads_no_file_and_registers_no_skeleton():
    """`validate` is a check: its input comes back as it was, the skeleton a config declares stays unknown to
    `cpm.skeleton.get_skeleton` until `resolve` (what load_config and config_from_dict end with) registers it, a
    skeleton file is not read, and a key the head ignores is refused, not set back."""
    import copy

    from cpm import skeleton
    from cpm.config import apply, resolve, validate

    table = {"name": "pure_check_skeleton", "joints": ["top", "left", "right"], "flip_pairs": [["left", "right"]],
             "torso": ["top", "left"]}
    config = apply(Config(), {"skeleton": table, "data": {"skeleton": "pure_check_skeleton"}})
    before, registry = copy.deepcopy(config), dict(skeleton._CUSTOM)
    assert validate(config) is config and config == before
    assert skeleton._CUSTOM == registry
    with pytest.raises(ValueError, match="unknown skeleton 'pure_check_skeleton'"):
        skeleton.get_skeleton("pure_check_skeleton")
    assert resolve(config) is config and skeleton.get_skeleton("pure_check_skeleton").num_joints == 3

    unnamed = apply(Config(), {"skeleton": table | {"name": "pure_check_unnamed"}})  # data.skeleton left unset
    with pytest.raises(ConfigError, match="'itop15', but \\[skeleton\\] declares 'pure_check_unnamed'"):
        validate(unnamed)
    assert resolve(unnamed).data.skeleton == "pure_check_unnamed"

    with pytest.raises(ConfigError, match="data.skeleton: 'nowhere.toml' is a skeleton file"):
        validate(apply(Config(), {"data": {"skeleton": "nowhere.toml"}}))  # named, never opened

    regression = apply(Config(), {"model": {"head": "regression", "stages": 6}})
    before = copy.deepcopy(regression)
    with pytest.raises(ConfigError, match="model.stages: the regression head ignores it"):
        validate(regression)
    assert regression == before
    assert resolve(regression).model.stages == Config().model.stages


def test_one_pose_source_is_a_mixture_of_one_and_the_retired_keys_read_as_one(tmp_path, capsys):
    """data.pose_mix alone chooses the poses: the retired data.pose_source / data.pose_files read as a mixture of
    weight 1 (a bank held out on itself, as the one source was), each training frame as the one source drew it; the
    default draws the procedural stream itself, and its hash is that of the defaults."""
    import hashlib

    import numpy as np

    from cpm.data.synthetic.frames import render_sample
    from cpm.data.synthetic.sources import PoseMix, config_pose_source, pose_sampler

    assert config_pose_source(Config().data) is None and Config().data.pose_mix.procedural == 0.0
    assert config_hash(Config()) == hashlib.sha256(b"{}").hexdigest()[:8]
    poses = np.zeros((3, 15, 2)) + np.linspace(10, 150, 15)[None, :, None]
    poses[:, [2, 4, 6, 9, 11, 13], 0] -= 30
    poses[:, [3, 5, 7, 10, 12, 14], 0] += 30
    bank = tmp_path / "poses.npy"
    np.save(bank, poses)
    old = tmp_path / "old.toml"
    old.write_text(f'[data]\npose_source = "bank"\npose_files = "{bank}"\n')
    new = tmp_path / "new.toml"
    new.write_text(f'[data]\nbank_files = "{bank}"\nval_bank_files = "{bank}"\n[data.pose_mix]\nbank = 1.0\n')
    assert load_config(old) == load_config(new)
    assert (f'{old}: data.pose_source = "bank" is retired (read as data.pose_mix = {{bank = 1.0}}, '
            f'data.bank_files = "{bank}", and data.val_bank_files = "{bank}")') in capsys.readouterr().err
    mix = config_pose_source(load_config(new).data)
    assert isinstance(mix, PoseMix) and mix.names == ("bank",)
    alone = pose_sampler("bank", str(bank))
    for index in range(3):
        np.testing.assert_array_equal(render_sample(7, index, mix)["image"], render_sample(7, index, alone)["image"])
    saved = Config().to_dict()
    saved["data"] |= {"pose_source": "procedural", "pose_files": ""}  # a checkpoint's config of the old layout
    assert config_from_dict(saved) == Config()
    with pytest.raises(ConfigError, match="data.pose_source: 'walk' is not one of procedural, bvh, bank"):
        load_config(None, ["data.pose_source=walk"])
