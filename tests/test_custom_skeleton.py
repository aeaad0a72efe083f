"""Your own skeleton as data: a 17-joint COCO-style skeleton declared in a TOML file trains, evaluates and predicts with
its own joint names and flip pairs; a dataset whose joint count differs from the skeleton's stops at load time with
one line naming the file and both counts."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from cpm.cli import main
from cpm.config import config_from_dict, load_config
from cpm.data.datasets.json_readers import read_coco
from cpm.data.datasets.readers import split_dataset
from cpm.data.transforms import crop_matrix, transform_keypoints
from cpm.errors import ConfigError
from cpm.runtime.build import build_datasets
from cpm.skeleton import COCO_17, get_skeleton, map_to_default, skeleton_from_table
from tests.helpers import tiny_overrides

# Joint names of our own (not COCO's spelling), in COCO's order: "l_"/"r_" sides, so nothing is borrowed by name.
JOINTS = ["nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow", "l_wrist",
          "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle"]
FLIPS = [["l_eye", "r_eye"], ["l_ear", "r_ear"], ["l_shoulder", "r_shoulder"], ["l_elbow", "r_elbow"],
         ["l_wrist", "r_wrist"], ["l_hip", "r_hip"], ["l_knee", "r_knee"], ["l_ankle", "r_ankle"]]
LIMBS = [["l_shoulder", "l_elbow"], ["l_elbow", "l_wrist"], ["r_shoulder", "r_elbow"], ["r_elbow", "r_wrist"],
         ["l_hip", "l_knee"], ["l_knee", "l_ankle"], ["r_hip", "r_knee"], ["r_knee", "r_ankle"], ["nose", "l_eye"]]
# The permutation a flip applies, written out by hand: 0 stays, then each (odd, even) pair swaps.
FLIP_PERMUTATION = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)


def toml_list(values) -> str:
    return json.dumps(values)  # a JSON list of strings (or of lists of strings) is a TOML array


def write_skeleton(path, *, name="mycoco", torso=("l_shoulder", "r_hip"), extra=""):
    path.write_text(f'name = "{name}"\njoints = {toml_list(JOINTS)}\nflip_pairs = {toml_list(FLIPS)}\n'
                    f'limbs = {toml_list(LIMBS)}\ntorso = {toml_list(list(torso))}\n{extra}')
    return path


def person(rng, width=96, height=96) -> np.ndarray:
    """17 labeled joints of a rough upright person inside the frame (x, y, v = 2)."""
    base = np.array([[48, 14], [45, 12], [51, 12], [42, 13], [54, 13], [38, 26], [58, 26], [34, 40], [62, 40],
                     [32, 52], [64, 52], [42, 54], [54, 54], [42, 70], [54, 70], [42, 86], [54, 86]], float)
    points = base + rng.uniform(-3, 3, size=base.shape)
    return np.concatenate([points, np.full((17, 1), 2.0)], axis=1)


def write_dataset(root, n=24, joints=17, seed=0):
    """``root/list.json`` with ``n`` gray 96 x 96 frames, each with dots at its joints."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    entries = []
    for i in range(n):
        keypoints = person(rng)[:joints]
        image = np.full((96, 96), 40, np.uint8)
        for x, y, _ in keypoints:
            cv2.circle(image, (int(round(x)), int(round(y))), 2, 220, -1)
        cv2.imwrite(str(root / "images" / f"f{i:02d}.png"), image)
        entries.append({"image": f"f{i:02d}.png", "keypoints": keypoints.round(2).tolist()})
    (root / "list.json").write_text(json.dumps(entries))
    return root


def experiment(tmp_path, skeleton_file="mycoco.toml"):
    """A config file that names the skeleton file (relative to the config's folder) and the list dataset."""
    write_skeleton(tmp_path / "mycoco.toml")
    write_dataset(tmp_path / "data")
    path = tmp_path / "exp.toml"
    path.write_text(f'[data]\nsource = "list"\nroot = "{tmp_path / "data"}"\nannotations = "list.json"\n'
                    f'skeleton = "{skeleton_file}"\nval_samples = 8\n')
    return path


def test_a_skeleton_file_resolves_into_the_config_with_its_flip_permutation(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # the file is found beside the config, not in the working folder
    config = load_config(experiment(tmp_path))
    assert config.data.skeleton == "mycoco" and config.skeleton.joints == JOINTS
    skeleton = get_skeleton("mycoco")
    assert skeleton.num_joints == 17 and skeleton.flip_permutation == FLIP_PERMUTATION
    assert skeleton.torso == (5, 12) and skeleton.joint_names[5] == "l_shoulder"
    # the resolved config carries the skeleton itself: a checkpoint needs no file to rebuild it
    again = tmp_path / "resolved.toml"
    again.write_text(config.to_toml())
    assert load_config(again) == config
    assert config_from_dict(config.to_dict()) == config
    assert "[skeleton]" in config.to_toml() and "[skeleton]" not in load_config().to_toml()


def test_the_dataset_flips_with_the_declared_pairs(tmp_path):
    config = load_config(experiment(tmp_path), ["data.workers=0"])
    train_set, _ = build_datasets(config)
    assert train_set.flip_permutation == FLIP_PERMUTATION
    keypoints = person(np.random.default_rng(1))
    matrix = crop_matrix(np.array([47.5, 47.5]), 96.0, 96, flip=True)  # the frame itself, mirrored
    flipped = transform_keypoints(keypoints, matrix, train_set.flip_permutation, True)
    # After the mirror, slot "l_eye" (1) holds the image's old right eye, at x' = 95 - x.
    assert flipped[1, 0] == pytest.approx(95 - keypoints[2, 0], abs=1e-4)
    assert flipped[1, 1] == pytest.approx(keypoints[2, 1], abs=1e-4)
    assert flipped[0, 0] == pytest.approx(95 - keypoints[0, 0], abs=1e-4)  # the nose stays the nose
    sample = train_set[0]
    assert sample["keypoints"].shape == (17, 3)


def test_a_17_joint_skeleton_trains_two_steps_evaluates_and_predicts_with_its_names(tmp_path, capsys):
    path = experiment(tmp_path)
    overrides = tiny_overrides(tmp_path, **{"data.train_samples": 16, "data.val_samples": 8, "model.stages": 2,
                                            "train.amp": "off"})
    assert main(["train", str(path), "--no-progress", *sum((["--set", o] for o in overrides), [])]) == 0
    run = tmp_path / "runs" / "tiny"
    steps = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1]["step"] == 2  # 16 samples at batch 8
    checkpoint = torch.load(run / "best.pt", weights_only=True)
    assert checkpoint["config"]["skeleton"]["joints"] == JOINTS
    assert checkpoint["model"]["stage1.3.weight"].shape[0] == 17 + 1  # the last 1x1 conv: K + background maps
    capsys.readouterr()
    assert main(["eval", str(run / "best.pt"), "--json", "--no-progress", "--device", "cpu"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results["samples"] == 8 and len(results["per_joint"]["0.2"]) == 17
    out = tmp_path / "predictions"
    image = tmp_path / "data" / "images" / "f00.png"
    assert main(["predict", str(run / "best.pt"), str(image), "--out", str(out), "--bbox", "30,10,36,80",
                 "--no-progress", "--device", "cpu"]) == 0
    record = json.loads((out / "f00.json").read_text())
    assert record["skeleton"] == "mycoco"
    assert [joint["name"] for joint in record["joints"]] == JOINTS
    assert (out / "f00.overlay.png").is_file()


def test_a_joint_count_that_is_not_the_skeletons_fails_at_load_in_one_line(tmp_path, capfd):
    write_dataset(tmp_path / "data")  # 17 joints per sample, data.skeleton left at itop15
    experiment = tmp_path / "experiment.toml"  # a config of one's own, as README's example (make train's is synthetic)
    experiment.write_text('[data]\nsource = "list"\nannotations = "list.json"\n')
    overrides = [*tiny_overrides(tmp_path), f'data.root="{tmp_path / "data"}"', "data.val_samples=8"]
    assert main(["train", str(experiment), "--no-progress", *sum((["--set", o] for o in overrides), [])]) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cpm train: error: "), lines
    assert "list.json" in lines[0] and "17 joints" in lines[0] and "'itop15' has 15" in lines[0], lines[0]
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_a_declared_subset_reads_coco_files_by_joint_name(tmp_path):
    """COCO's own file, a skeleton of 5 of its joints declared by COCO's names: the reader's keypoints are picked by
    name (the coco reader gives COCO 17; no built-in mapping exists)."""
    names = ["left_shoulder", "right_shoulder", "nose", "left_hip", "right_hip"]
    skeleton = {"name": "upper5", "joints": names, "flip_pairs": [["left_shoulder", "right_shoulder"],
                                                                   ["left_hip", "right_hip"]],
                "torso": ["left_shoulder", "right_hip"]}
    load_config(None, [f"skeleton.{k}={json.dumps(v)}" for k, v in skeleton.items()])  # declares "upper5"
    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / "images" / name), np.zeros((40, 40), np.uint8))
    values = np.arange(17 * 3, dtype=float).reshape(17, 3)
    values[:, 2] = 2
    coco = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
            "annotations": [{"image_id": 1, "keypoints": values.ravel().tolist()},
                            {"image_id": 2, "keypoints": (values + [1, 1, 0]).ravel().tolist()}],
            "categories": [{"keypoints": list(COCO_17.joint_names)}]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    assert read_coco(tmp_path / "coco.json").skeleton == "coco17"
    train, _ = split_dataset(source="coco", root=tmp_path, annotations="coco.json", val_samples=1, skeleton="upper5")
    # left_shoulder is COCO joint 5: (15, 16); right_shoulder 6: (18, 19); nose 0: (0, 1); left_hip 11; right_hip 12
    np.testing.assert_array_equal(train.keypoints[0], [[15, 16, 2], [18, 19, 2], [0, 1, 2], [33, 34, 2], [36, 37, 2]])
    assert train.skeleton == "upper5" and get_skeleton("upper5").flip_permutation == (1, 0, 2, 4, 3)


def test_a_declared_mapping_to_itop15_maps_keypoints(tmp_path):
    mapping = [["right_shoulder", "r_shoulder"], ["left_shoulder", "l_shoulder"], ["right_foot", "r_ankle"]]
    path = write_skeleton(tmp_path / "s.toml", extra=f"to_itop15 = {toml_list(mapping)}")
    config = load_config(None, [f'data.skeleton="{path}"'])
    assert get_skeleton(config.data.skeleton).to_itop15[2:4] == (6, 5)
    keypoints = np.zeros((17, 3))
    keypoints[:, 0] = np.arange(17)
    keypoints[:, 2] = 2
    mapped = map_to_default(keypoints, "mycoco")
    assert mapped.shape == (15, 3)
    np.testing.assert_array_equal(mapped[2], [6, 0, 2])  # ITOP right_shoulder <- r_shoulder (6)
    np.testing.assert_array_equal(mapped[3], [5, 0, 2])  # ITOP left_shoulder <- l_shoulder (5)
    np.testing.assert_array_equal(mapped[13], [16, 0, 2])  # ITOP right_foot <- r_ankle (16)
    np.testing.assert_array_equal(mapped[0], [0, 0, 0])  # head: no such joint here, unlabeled


@pytest.mark.parametrize(("table", "message"), [
    ({"name": "coco17"}, "skeleton.name: 'coco17' is a built-in skeleton"),
    ({"joints": ["a", "b"], "torso": ["a", "b"]}, "skeleton.name: give the skeleton a name"),
    ({"name": "s", "joints": ["a", "b", "a"], "torso": ["a", "b"]}, "skeleton.joints: 'a' is named twice"),
    ({"name": "s", "joints": ["a", "b"], "torso": ["a", "b"], "flip_pairs": [["a", "c"]]},
     "skeleton.flip_pairs: 'c' is not one of skeleton.joints"),
    ({"name": "s", "joints": ["a", "b"]}, "skeleton.torso: give the two joints"),
    ({"name": "s", "joints": ["a", "b"], "torso": ["a", "a"]}, "skeleton.torso: .* pairs a joint with itself"),
    ({"name": "s", "joints": ["a", "b"], "torso": ["a", "b"], "limbs": [[["a"], "b"]]}, "skeleton.limbs: .* is not a"),
    ({"name": "s", "joints": ["a", "b"], "torso": ["a", "b"], "limbs": [["a"]]}, r"skeleton.limbs: \['a'\] is not"),
    ({"name": "s", "joints": ["a", "b"], "torso": ["a", "b"], "to_itop15": [["elbow", "a"]]},
     "skeleton.to_itop15: 'elbow' is not an ITOP-15 joint"),
])
def test_bad_skeleton_tables_name_the_key(table, message):
    with pytest.raises(ConfigError, match=message):
        skeleton_from_table(table)


def test_config_errors_of_a_skeleton_name_the_key_or_the_file(tmp_path):
    with pytest.raises(ConfigError, match="data.skeleton: 'mine' is not one of itop15"):
        load_config(None, ['data.skeleton="mine"'])
    with pytest.raises(ConfigError, match="data.skeleton: nope.toml: no such skeleton file"):
        load_config(None, ['data.skeleton="nope.toml"'])
    path = write_skeleton(tmp_path / "bad.toml", torso=("l_shoulder", "hip"))
    with pytest.raises(ConfigError, match=r"bad.toml: skeleton.torso: 'hip' is not one of"):
        load_config(None, [f'data.skeleton="{path}"'])
    declared = ['skeleton.name="mycoco"', f"skeleton.joints={toml_list(JOINTS)}", 'skeleton.torso=["nose", "l_eye"]']
    with pytest.raises(ConfigError, match="data.skeleton: 'coco17', but \\[skeleton\\] declares 'mycoco'"):
        load_config(None, [*declared, 'data.skeleton="coco17"'])
    assert load_config(None, declared).data.skeleton == "mycoco"  # left unnamed, the declared skeleton is used
