"""Depth encodings (data.depth): 8-bit nearness, 16-bit millimetres and float metres are the same picture to the
model. The same frame fed as 8-bit nearness and as 16-bit millimetres gives the same keypoints; a raw millimetre
PNG no longer arrives as a photographic negative (far = bright)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cpm.cli import main
from cpm.config import load_config
from cpm.data.datasets.json_readers import read_list
from cpm.data.datasets.readers import split_dataset
from cpm.data.datasets.samples import load_image
from cpm.data.depth import DepthSpec, metres_to_nearness, nearness_to_metres, to_nearness
from cpm.data.synthetic.camera import depth_to_gray
from cpm.data.synthetic.frames import render_sample
from cpm.errors import ConfigError, CPMError
from cpm.inference.export import export_notes
from cpm.inference.predictor import load_predictor
from tests.test_predict import make_checkpoint


def test_nearness_by_hand():
    metres = np.array([[0.5, 7.5, 4.0, 9.0], [0.0, np.nan, 0.2, 1.2]])
    # 255 (7.5 - z) / 7: 0.5 m -> 255; 7.5 m -> 0 -> 1 (a reading is never 0); 4 m -> 127.5 -> 128 (half up);
    # beyond far -> 1; no reading (0, NaN) -> 0; nearer than near -> 255; 1.2 m -> 229.5 -> 230
    expected = [[255, 1, 128, 1], [0, 0, 255, 230]]
    np.testing.assert_array_equal(metres_to_nearness(metres, near=0.5, far=7.5), expected)
    np.testing.assert_array_equal(metres_to_nearness(metres * 2, near=1.0, far=15.0), expected)  # the range scales


def test_nearness_is_the_synthetic_renderers_level_for_level():
    metres = np.random.default_rng(0).uniform(0.3, 9.0, size=(64, 64))
    renderer = (depth_to_gray(metres) + 0.5).astype(np.uint8)  # how the renderer and the ITOP reader round
    np.testing.assert_array_equal(metres_to_nearness(metres, near=0.5, far=7.5), renderer)


def test_millimetres_round_trip_to_the_same_gray_levels():
    gray = np.arange(256, dtype=np.uint8).reshape(16, 16)
    millimetres = np.round(nearness_to_metres(gray, near=0.5, far=7.5) * 1000).astype(np.uint16)
    assert millimetres[0, 0] == 0 and millimetres[15, 15] == 500  # no reading; 255 = near
    np.testing.assert_array_equal(to_nearness(millimetres, near=0.5, far=7.5), gray)
    metres = millimetres.astype(np.float32) / 1000
    np.testing.assert_array_equal(to_nearness(metres, near=0.5, far=7.5), gray)


def test_an_encoding_that_is_not_the_files_is_one_line_naming_it():
    with pytest.raises(CPMError, match="x.png: a 16-bit image, but data.depth.encoding = 'nearness8' expects 8-bit"):
        to_nearness(np.zeros((4, 4), np.uint16), near=0.5, far=7.5, encoding="nearness8", where="x.png")
    with pytest.raises(CPMError, match="y.npy: a floating-point image, but --depth = 'millimetres16'"):
        to_nearness(np.zeros((4, 4), np.float32), near=0.5, far=7.5, encoding="millimetres16", where="y.npy",
                    key="--depth")


@pytest.fixture
def frame(tmp_path):
    """One synthetic frame stored three ways: 8-bit nearness PNG, 16-bit millimetre PNG, float metre .npy."""
    gray = render_sample(7, 0)["image"]
    metres = nearness_to_metres(gray, near=0.5, far=7.5)
    millimetres = np.round(metres * 1000).astype(np.uint16)
    paths = {"nearness8": tmp_path / "near.png", "millimetres16": tmp_path / "mm.png", "metres32": tmp_path / "m.npy"}
    assert cv2.imwrite(str(paths["nearness8"]), gray)
    assert cv2.imwrite(str(paths["millimetres16"]), millimetres)
    np.save(paths["metres32"], millimetres.astype(np.float32) / 1000)
    return gray, paths


def test_readers_read_every_encoding_as_the_same_nearness(frame):
    gray, paths = frame
    for encoding, path in paths.items():
        np.testing.assert_array_equal(load_image(path), gray)  # the dtype tells the encoding
        np.testing.assert_array_equal(load_image(path, DepthSpec(encoding)), gray)
    old = (cv2.imread(str(paths["millimetres16"]), cv2.IMREAD_UNCHANGED) >> 8).astype(np.uint8)
    assert np.abs(old.astype(int) - gray).mean() > 50  # what 16-bit files used to become: not the model's picture
    with pytest.raises(CPMError, match="mm.png: a 16-bit image, but data.depth.encoding = 'nearness8'"):
        load_image(paths["millimetres16"], DepthSpec("nearness8"))


def test_a_millimetre_dataset_trains_on_the_nearness_picture(tmp_path, frame):
    gray, paths = frame
    keypoints = render_sample(7, 0)["keypoints"]
    entries = [{"image": paths["millimetres16"].name, "keypoints": keypoints.tolist()}] * 3
    (tmp_path / "list.json").write_text(json.dumps(entries))
    config = load_config(None, ['data.source="list"', f'data.root="{tmp_path}"', 'data.annotations="list.json"',
                                'data.depth.encoding="millimetres16"', "data.val_samples=1"])
    assert config.data.depth.encoding == "millimetres16" and config.data.depth.far == 7.5
    train, val = split_dataset(source="list", root=tmp_path, annotations="list.json", val_samples=1,
                               skeleton="itop15", depth=config.data.depth)
    np.testing.assert_array_equal(train[0]["image"], gray)
    default, _ = split_dataset(source="list", root=tmp_path, annotations="list.json", val_samples=1,
                               skeleton="itop15", depth=load_config().data.depth)
    with pytest.raises(CPMError, match="mm.png: a 16-bit image, but data.depth.encoding = 'nearness8'"):
        default[0]
    assert len(read_list(tmp_path / "list.json")) == 3


def test_the_same_frame_as_8_bit_nearness_and_16_bit_millimetres_gives_the_same_keypoints(tmp_path, frame):
    gray, paths = frame
    checkpoint = make_checkpoint(tmp_path / "tiny.pt", tmp_path)
    outputs = {}
    for encoding in ("nearness8", "millimetres16"):
        out = tmp_path / encoding
        assert main(["predict", str(checkpoint), str(paths[encoding]), "--out", str(out), "--bbox", "80,30,90,160",
                     "--no-progress", "--device", "cpu", "--depth", encoding]) == 0
        outputs[encoding] = json.loads(next(out.glob("*.json")).read_text())["joints"]
    assert outputs["nearness8"] == outputs["millimetres16"]
    predictor = load_predictor(checkpoint, "cpu")
    box = [(80, 30, 90, 160)]
    near = predictor.predict(gray, boxes=box).keypoints
    np.testing.assert_array_equal(predictor.predict_files(paths["metres32"], boxes=box).keypoints, near)
    np.testing.assert_array_equal(predictor.predict(np.load(paths["metres32"]), boxes=box).keypoints, near)
    np.testing.assert_allclose(near[0], [[j["x"], j["y"]] for j in outputs["nearness8"]], atol=1e-4)
    # the negative a 16-bit file used to become is another picture, and another pose
    negative = (cv2.imread(str(paths["millimetres16"]), cv2.IMREAD_UNCHANGED) >> 8).astype(np.uint8)
    assert not np.array_equal(predictor.predict(negative, boxes=box).keypoints, near)


def test_depth_config_keys_are_checked_and_round_trip(tmp_path):
    config = load_config(None, ['data.source="list"', 'data.root="r"', 'data.annotations="a.json"',
                                'data.depth={encoding = "metres32", near = 0.3, far = 5.0}'])
    assert (config.data.depth.encoding, config.data.depth.near, config.data.depth.far) == ("metres32", 0.3, 5.0)
    path = tmp_path / "c.toml"
    path.write_text(config.to_toml())
    assert load_config(path) == config
    for override, message in [('data.depth.encoding="feet"', "data.depth.encoding: 'feet' is not one of"),
                              ("data.depth.far=0.1", r"data.depth: near = 0.5, far = 0.1"),
                              ("data.depth.colour=1", "unknown config key data.depth.colour"),
                              ("data.depth=3", "data.depth: expected a table"),
                              ("data.depth.near=0.3", "data.depth: the synthetic renderer makes nearness8 frames")]:
        with pytest.raises(ConfigError, match=message):
            load_config(None, [override])


def test_the_onnx_notes_name_the_depth_encoding_and_the_joints():
    notes = export_notes(load_config(), 1)
    assert notes["cpm.input"].startswith("depth as nearness gray: 255 at 0.5 m, 1 at 7.5 m and beyond, 0 = no reading")
    assert notes["cpm.joint_names"].split(",")[:2] == ["head", "neck"] and notes["cpm.skeleton"] == "itop15"
    assert export_notes(load_config(), 3)["cpm.input"].startswith("RGB")
