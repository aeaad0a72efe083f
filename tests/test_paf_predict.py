"""A part-affinity-field checkpoint in the Python API (`Predictor.predict_people`), ``cpm predict`` and ``cpm export``:
the whole image in, every person found, keypoints back in image pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cpm.cli import main
from cpm.data.transforms import apply_affine
from cpm.errors import CPMError
from cpm.inference import predictor as predictor_module
from cpm.inference.predictor import load_predictor, whole_image_matrix
from cpm.runtime.build import build_codec
from tests.test_bottomup_eval import paf_checkpoint
from tests.test_paf_model import render


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """One rendered depth scene of several people (256 x 212): its image file and annotated keypoints (P, K, 3)."""
    root = tmp_path_factory.mktemp("scene")
    annotations = json.loads(render(root / "val", 1, 1000).read_text())
    path = root / "val" / "images" / annotations["images"][0]["file_name"]
    people = np.array([a["keypoints"] for a in annotations["annotations"]], dtype=np.float64).reshape(-1, 15, 3)
    (root / "train").mkdir()
    return root, path, people


class Oracle(torch.nn.Module):
    """Outputs the encoded targets of the scene's people, warped as the predictor warps the whole image."""

    in_channels, num_stages = 1, 2

    def __init__(self, target):
        super().__init__()
        self.target = target

    def forward(self, image, center_map=None):
        assert center_map is None  # a bottom-up model reads the image alone
        target = self.target.expand(len(image), -1, -1, -1)
        return [target, target]


def oracle_for(config, image_shape, people):
    matrix = whole_image_matrix(image_shape, config.data.input_size)
    warped = people.copy()
    warped[..., :2] = apply_affine(people[..., :2], matrix)
    target, _ = build_codec(config).encode(torch.from_numpy(warped).float()[None])
    return Oracle(target)


@pytest.fixture()
def oracle_checkpoint(scene, tmp_path, monkeypatch):
    root, path, people = scene
    config = paf_checkpoint(root, tmp_path / "paf.pt")
    oracle = oracle_for(config, (212, 256), people)
    monkeypatch.setattr(predictor_module, "load_model", lambda checkpoint, device: (oracle, config))
    return tmp_path / "paf.pt"


def test_predict_people_gives_the_rendered_people_back_in_image_pixels(scene, oracle_checkpoint):
    _, path, people = scene
    predictor = load_predictor(oracle_checkpoint, "cpu")
    assert predictor.bottom_up
    found = predictor.predict_people_files([path, path])
    assert len(found) == 2 and len(found[0]) == len(people) >= 2
    for person in people:
        labeled = person[:, 2] > 0
        errors = [np.nanmax(np.linalg.norm(p["keypoints"][labeled, :2] - person[labeled, :2], axis=1))
                  for p in found[0]]
        assert min(errors) < 4.0  # one of the found people is this one (a missed inverse warp is 22 px off)
    for p in found[0]:
        assert p["keypoints"].shape == (15, 3) and isinstance(p["score"], float)


def test_a_paf_predictor_refuses_the_top_down_calls_in_one_line(scene, oracle_checkpoint):
    _, path, _ = scene
    predictor = load_predictor(oracle_checkpoint, "cpu")
    for call in (lambda: predictor.predict(np.zeros((212, 256), np.uint8)), lambda: predictor.predict_files([path])):
        with pytest.raises(CPMError, match="use predict_people") as error:
            call()
        assert "\n" not in str(error.value)
    for keyword in ({"decoder": "dark"}, {"flip_test": True}, {"scales": [1.0, 1.5]}):
        with pytest.raises(CPMError, match="bottom-up part-affinity-field model"):
            load_predictor(oracle_checkpoint, "cpu", **keyword)


def test_predict_people_of_a_top_down_model_is_refused(tmp_path):
    from tests.test_predict import make_checkpoint

    predictor = load_predictor(make_checkpoint(tmp_path / "tiny.pt", tmp_path), "cpu")
    with pytest.raises(CPMError, match="top-down heatmap model"):
        predictor.predict_people(np.zeros((64, 64), np.uint8))


def test_cpm_predict_writes_every_person_and_one_overlay(scene, oracle_checkpoint, tmp_path):
    _, path, people = scene
    out = tmp_path / "out"
    assert main(["predict", str(oracle_checkpoint), str(path), "--out", str(out), "--device", "cpu",
                 "--no-progress"]) == 0
    record = json.loads((out / f"{path.stem}.json").read_text())
    assert record["width"] == 256 and record["height"] == 212 and len(record["people"]) == len(people)
    first = record["people"][0]
    assert set(first) == {"box", "score", "joints"} and len(first["joints"]) == 15
    assert {"name", "x", "y", "confidence"} == set(first["joints"][0])
    assert (out / f"{path.stem}.overlay.png").is_file()


@pytest.mark.parametrize("flags", [["--bbox", "1,2,30,40"], ["--center", "10,20"], ["--stages"],
                                   ["--people", "people.json"], ["--boxes", "boxes.json"], ["--flip-test"],
                                   ["--decoder", "dark"]])
def test_cpm_predict_refuses_top_down_flags_for_a_paf_model(scene, oracle_checkpoint, tmp_path, capsys, flags):
    _, path, _ = scene
    out = tmp_path / "refused"
    assert main(["predict", str(oracle_checkpoint), str(path), "--out", str(out), "--device", "cpu",
                 "--no-progress", *flags]) == 2
    error = capsys.readouterr().err.strip()
    assert "part-affinity-field model" in error and len(error.splitlines()) == 1
    assert not out.exists()


def test_a_tiny_paf_model_exports_to_onnx_with_its_limbs(scene, tmp_path):
    pytest.importorskip("onnxruntime")
    from cpm.inference.export import export_onnx

    root, _, _ = scene
    config = paf_checkpoint(root, tmp_path / "paf.pt")
    result = export_onnx(tmp_path / "paf.pt", tmp_path / "paf.onnx")
    assert list(result["inputs"]) == ["image"] and list(result["outputs"]) == ["stage1", "stage2"]
    assert result["outputs"]["stage2"][1:] == [16 + 28, 64, 64]
    assert result["max_abs_difference"] <= 1e-4
    assert result["notes"]["cpm.head"] == "paf" and result["notes"]["cpm.limbs"].count("-") == 14
    assert config.model.head == "paf"
    with pytest.raises(CPMError, match="no flip test"):
        export_onnx(tmp_path / "paf.pt", tmp_path / "flip.onnx", flip_test=True)
