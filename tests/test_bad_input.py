"""Bad input across the command line: every case ends with exit status 2, ONE line on stderr that names the file
or key and what is wrong, no traceback, and nothing half-written."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import savemat

from cpm.cli import main
from cpm.config import load_config
from cpm.runtime.build import build_network
from cpm.runtime.checkpoint import save_checkpoint
from tests.helpers import tiny_overrides


def fail(capfd, argv: list[str], *fragments: str) -> str:
    """Run ``cpm argv`` in this process; assert exit 2 and one stderr line holding every fragment."""
    assert main([str(a) for a in argv]) == 2
    err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith(f"cpm {argv[0]}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def sets(overrides: list[str]) -> list[str]:
    return sum((["--set", o] for o in overrides), [])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained tiny model saved as a real checkpoint (no training needed to test bad input)."""
    folder = tmp_path_factory.mktemp("checkpoint")
    config = load_config(None, tiny_overrides(folder))
    path = folder / "tiny.pt"
    save_checkpoint({"model": build_network(config).state_dict(), "config": config.to_dict(), "epoch": 1, "step": 8},
                    path)
    return path


def lsp_joints(n: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    joints = np.zeros((3, 14, n))
    joints[:2] = rng.uniform(10, 100, (2, 14, n))
    return joints  # (3, 14, N), flag 0 = visible


def write_mat(path: Path, **variables) -> Path:
    savemat(path, variables)
    return path


# ---- cpm predict: images and output folders ------------------------------------------------------------


def test_predict_a_corrupt_png_names_it_and_writes_nothing(tmp_path, capfd, checkpoint):
    image = tmp_path / "broken.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    fail(capfd, ["predict", checkpoint, image, "--out", tmp_path / "out", "--no-progress"], "broken.png", "image")
    assert not (tmp_path / "out").exists()


def test_predict_an_empty_image_file_names_it(tmp_path, capfd, checkpoint):
    image = tmp_path / "empty.png"
    image.write_bytes(b"")
    fail(capfd, ["predict", checkpoint, image, "--out", tmp_path / "out"], "empty.png", "not an image")
    assert not (tmp_path / "out").exists()


def test_predict_a_text_file_is_not_an_image(tmp_path, capfd, checkpoint):
    notes = tmp_path / "notes.txt"
    notes.write_text("not pixels")
    fail(capfd, ["predict", checkpoint, notes, "--out", tmp_path / "out"], "notes.txt", "not an image")


def test_predict_a_missing_input_names_it(tmp_path, capfd, checkpoint):
    fail(capfd, ["predict", checkpoint, tmp_path / "nowhere.png", "--out", tmp_path / "out"], "nowhere.png",
         "no such file")


def test_predict_a_folder_without_images_names_it(tmp_path, capfd, checkpoint):
    (tmp_path / "empty").mkdir()
    fail(capfd, ["predict", checkpoint, tmp_path / "empty", "--out", tmp_path / "out"], "empty", "no images")


def test_predict_into_a_file_instead_of_a_folder(tmp_path, capfd, checkpoint):
    import cv2

    cv2.imwrite(str(tmp_path / "frame.png"), np.full((64, 48), 128, np.uint8))
    (tmp_path / "taken").write_text("a file")
    fail(capfd, ["predict", checkpoint, tmp_path / "frame.png", "--out", tmp_path / "taken"], "taken",
         "not a folder")
    assert (tmp_path / "taken").read_text() == "a file"


def test_predict_into_an_unwritable_output_folder(tmp_path, capfd, checkpoint):
    import cv2

    cv2.imwrite(str(tmp_path / "frame.png"), np.full((64, 48), 128, np.uint8))
    (tmp_path / "file").write_text("a file")  # a folder cannot be made inside a file, not even by root
    fail(capfd, ["predict", checkpoint, tmp_path / "frame.png", "--out", tmp_path / "file" / "out"], "out",
         "cannot")


# ---- cpm score: MATLAB files ---------------------------------------------------------------------------


def score(gt: Path, pred: Path) -> list:
    return ["score", "--gt", gt, "--pred", pred, "--protocol", "lsp"]


def test_score_a_truncated_mat_file_names_it(tmp_path, capfd):
    gt = write_mat(tmp_path / "gt.mat", joints=lsp_joints(50))
    truncated = tmp_path / "truncated.mat"
    truncated.write_bytes(gt.read_bytes()[: len(gt.read_bytes()) // 2])
    pred = write_mat(tmp_path / "pred.mat", prediction_all=np.ones((14, 2, 50)))
    fail(capfd, score(truncated, pred), "truncated.mat")


def test_score_an_empty_mat_file_names_it(tmp_path, capfd):
    empty = tmp_path / "empty.mat"
    empty.write_bytes(b"")
    pred = write_mat(tmp_path / "pred.mat", prediction_all=np.ones((14, 2, 3)))
    fail(capfd, score(empty, pred), "empty.mat")


def test_score_a_wrong_shaped_ground_truth_names_the_layouts(tmp_path, capfd):
    gt = write_mat(tmp_path / "gt.mat", joints=np.ones((3, 13, 4)))
    pred = write_mat(tmp_path / "pred.mat", prediction_all=np.ones((14, 2, 4)))
    fail(capfd, score(gt, pred), "gt.mat", "not a known ground-truth layout")


def test_score_nan_ground_truth_coordinates(tmp_path, capfd):
    joints = lsp_joints()
    joints[0, 2, 1] = np.nan
    gt = write_mat(tmp_path / "gt.mat", joints=joints)
    pred = write_mat(tmp_path / "pred.mat", prediction_all=np.ones((14, 2, 3)))
    fail(capfd, score(gt, pred), "gt.mat", "NaN or infinite")


def test_score_infinite_predicted_coordinates(tmp_path, capfd):
    gt = write_mat(tmp_path / "gt.mat", joints=lsp_joints())
    predictions = np.ones((14, 2, 3))
    predictions[3, 0, 0] = np.inf
    pred = write_mat(tmp_path / "pred.mat", prediction_all=predictions)
    fail(capfd, score(gt, pred), "pred.mat", "NaN or infinite")


def test_score_a_prediction_with_the_wrong_joint_count(tmp_path, capfd):
    gt = write_mat(tmp_path / "gt.mat", joints=lsp_joints())
    pred = write_mat(tmp_path / "pred.mat", prediction_all=np.ones((13, 2, 3)))
    fail(capfd, score(gt, pred), "pred.mat", "13")


def test_score_a_prediction_file_without_predictions(tmp_path, capfd):
    gt = write_mat(tmp_path / "gt.mat", joints=lsp_joints())
    pred = write_mat(tmp_path / "pred.mat", something_else=np.ones(3))
    fail(capfd, score(gt, pred), "pred.mat", "no predictions")


def test_score_a_missing_ground_truth_file(tmp_path, capfd):
    pred = write_mat(tmp_path / "pred.mat", prediction_all=np.ones((14, 2, 3)))
    fail(capfd, score(tmp_path / "absent.mat", pred), "absent.mat", "no such file")


# ---- configs -------------------------------------------------------------------------------------------


def test_an_unknown_config_key_in_a_file(tmp_path, capfd):
    config = tmp_path / "typo.toml"
    config.write_text("[model]\nstagse = 3\n")
    fail(capfd, ["train", config, "--set", f"train.runs_dir={tmp_path / 'runs'}"], "typo.toml", "model.stagse")
    assert not (tmp_path / "runs").exists()


def test_a_config_file_that_is_not_valid_toml(tmp_path, capfd):
    config = tmp_path / "broken.toml"
    config.write_text("[train\nepochs = = 3\n")
    fail(capfd, ["config", config], "broken.toml", "invalid TOML")


def test_a_config_file_that_is_binary(tmp_path, capfd):
    config = tmp_path / "binary.toml"
    config.write_bytes(b"\xff\xfe\x00\x01")
    fail(capfd, ["config", config], "binary.toml")


def test_a_missing_config_file(tmp_path, capfd):
    fail(capfd, ["config", tmp_path / "absent.toml"], "absent.toml", "not found")


def test_an_unknown_config_section(tmp_path, capfd):
    config = tmp_path / "section.toml"
    config.write_text("[optimiser]\nlr = 1.0\n")
    fail(capfd, ["config", config], "section.toml", "[optimiser]")


@pytest.mark.parametrize(("override", "fragments"), [
    ('train.epochs="three"', ("train.epochs", "expected an integer")),
    ("train.amp=true", ("train.amp", "expected str")),
    ("targets.sigma=-1.0", ("targets.sigma", "must be")),
    ("targets.sigma=nan", ("targets.sigma", "not a finite number")),
    ("data.scale_range=[0.5, inf]", ("data.scale_range", "not a finite number")),
    ("model.stages=0", ("model.stages", "must be in [1, 6]")),
    ("data.scale_range=[1.2, 0.8]", ("data.scale_range",)),
    ("train.schedule=exponential", ("train.schedule", "not one of")),
    ("train.lr", ("--set", "expected section.key=value")),
    ("train.stage_weights=[1.0, 2.0]", ("train.stage_weights", "2 weights given for 4 stages")),
])
def test_bad_set_overrides_name_the_key(capfd, override, fragments):
    fail(capfd, ["config", "--set", override], *fragments)


def test_train_with_an_unknown_device_names_the_key(tmp_path, capfd):
    fail(capfd, ["train", *sets(tiny_overrides(tmp_path, **{"train.device": "tpu"}))], "train.device", "tpu")
    assert not (tmp_path / "runs").exists()


def test_train_with_fewer_samples_than_one_batch(tmp_path, capfd):
    overrides = tiny_overrides(tmp_path, **{"data.train_samples": 4, "train.device": "cpu"})
    fail(capfd, ["train", "--no-progress", *sets(overrides)], "data.train_samples", "fewer than one batch")
    assert not (tmp_path / "runs").exists()


def test_train_into_an_unwritable_runs_folder(tmp_path, capfd):
    (tmp_path / "file").write_text("a file")
    overrides = tiny_overrides(tmp_path, **{"train.runs_dir": str(tmp_path / "file" / "runs"), "train.device": "cpu"})
    fail(capfd, ["train", "--no-progress", *sets(overrides)], "train.runs_dir", "cannot")


# ---- checkpoints ---------------------------------------------------------------------------------------


def test_eval_a_checkpoint_of_another_architecture(tmp_path, capfd, checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    three = load_config(None, tiny_overrides(tmp_path, **{"model.stages": 3}))
    state["model"] = build_network(three).state_dict()  # 3 stages, the config says 4
    other = tmp_path / "other.pt"
    save_checkpoint(state, other)
    fail(capfd, ["eval", other, "--device", "cpu"], "other.pt", "does not fit this architecture")


def test_eval_a_file_that_is_not_a_checkpoint(tmp_path, capfd):
    bogus = tmp_path / "weights.pt"
    bogus.write_bytes(os.urandom(256))
    fail(capfd, ["eval", bogus], "weights.pt", "not a readable checkpoint")


def test_eval_a_plain_state_dict_is_not_a_cpm_checkpoint(tmp_path, capfd):
    plain = tmp_path / "plain.pt"
    torch.save({"weight": torch.zeros(3)}, plain)
    fail(capfd, ["eval", plain], "plain.pt", "not a cpm checkpoint")


def test_eval_a_checkpoint_whose_config_is_corrupt_names_the_file(tmp_path, capfd, checkpoint):
    state = torch.load(checkpoint, weights_only=True)
    state["config"]["model"]["stages"] = 9
    broken = tmp_path / "broken.pt"
    save_checkpoint(state, broken)
    fail(capfd, ["eval", broken, "--device", "cpu"], "broken.pt", "model.stages")


class MarkerPayload:
    """Unpickling this would create the marker file: the proof that pickled code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("command", ["eval", "predict", "train"])
def test_a_checkpoint_with_pickled_code_is_refused_and_never_run(tmp_path, capfd, command):
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.pt"
    torch.save({"model": MarkerPayload(marker), "config": {}}, evil)
    assert pickle.loads(pickle.dumps(MarkerPayload(tmp_path / "probe"))) is None and (tmp_path / "probe").exists()
    argv = {"eval": ["eval", evil], "predict": ["predict", evil, evil, "--out", tmp_path / "out"],
            "train": ["train", "--resume", evil]}[command]
    fail(capfd, argv, "evil.pt", "refused to load")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_resume_from_a_missing_checkpoint(tmp_path, capfd):
    fail(capfd, ["train", "--resume", tmp_path / "runs" / "gone" / "last.pt"], "last.pt", "checkpoint not found")
    assert not (tmp_path / "runs").exists()


def test_resume_from_a_run_folder_without_a_checkpoint(tmp_path, capfd):
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    fail(capfd, ["train", "--resume", tmp_path / "runs" / "empty"], "empty", "checkpoint not found")
    assert list((tmp_path / "runs" / "empty").iterdir()) == []


def test_resume_from_a_text_file(tmp_path, capfd):
    notes = tmp_path / "last.pt"
    notes.write_text("not a checkpoint")
    fail(capfd, ["train", "--resume", notes], "last.pt", "not a readable checkpoint")


def test_eval_predictions_into_a_missing_folder_writes_nothing(tmp_path, capfd, checkpoint):
    target = tmp_path / "absent" / "predictions.mat"
    fail(capfd, ["eval", checkpoint, "--predictions", target, "--device", "cpu"], "predictions.mat", "does not exist")
    assert not target.parent.exists()
