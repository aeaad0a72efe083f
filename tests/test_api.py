"""The Python API (`from cpm import load_predictor, Predictor`), README's example run as written, a box per image
(`predict(boxes=...)` and ``cpm predict --boxes FILE``), and the warning when an image is not a person crop."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

import cpm
from cpm.cli import main
from cpm.data.depth import nearness_to_metres
from cpm.data.synthetic.frames import render_sample
from cpm.skeleton import ITOP_15
from tests.test_predict import decode_by_hand, make_checkpoint

README = Path(__file__).resolve().parents[1] / "README.md"
BOXES = [(80.0, 30.0, 90.0, 160.0), (70.0, 20.0, 110.0, 170.0), (60.0, 40.0, 100.0, 150.0)]


def crop_of(box, padding=1.3):
    """The crop `person_crop` cuts for a box: its centre and padding x its longer side."""
    x, y, w, h = box
    return (x + w / 2, y + h / 2), padding * max(w, h)


@pytest.fixture
def checkpoint(tmp_path):
    return make_checkpoint(tmp_path / "tiny.pt", tmp_path)


@pytest.fixture
def frames(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        assert cv2.imwrite(str(folder / f"frame{i}.png"), render_sample(7, i)["image"])
    return folder


def test_import_cpm_exports_the_api_without_importing_torch():
    code = ("import sys, cpm; assert 'torch' not in sys.modules; print(cpm.__version__, sorted(cpm.__all__)); "
            "from cpm import load_predictor, Predictor, Prediction; print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, second = result.stdout.splitlines()
    assert first.startswith(cpm.__version__) and "load_predictor" in first and second == "True"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cpm.nope  # noqa: B018


def test_a_box_per_image_matches_decoding_each_crop_by_hand(checkpoint, frames):
    predictor = cpm.load_predictor(checkpoint, "cpu")
    assert isinstance(predictor, cpm.Predictor) and predictor.joint_names == ITOP_15.joint_names
    images = [cv2.imread(str(frames / f"frame{i}.png"), cv2.IMREAD_GRAYSCALE) for i in range(3)]
    result = predictor.predict(images, boxes=BOXES)
    assert isinstance(result, cpm.Prediction) and len(result) == 3
    assert result.stage_keypoints.shape == (3, 3, 15, 2) and result.keypoints.shape == (3, 15, 2)
    for i, (image, box) in enumerate(zip(images, BOXES, strict=True)):
        center, side = crop_of(box)
        expected = decode_by_hand(checkpoint, image, center, side)
        np.testing.assert_allclose(result.stage_keypoints[i], expected, atol=5e-3)  # a batch of 3 against 1
        np.testing.assert_allclose(result.centers[i], center) and np.testing.assert_allclose(result.crop_sides[i], side)
    joints = result.joints(1)
    assert [j["name"] for j in joints] == list(ITOP_15.joint_names)
    assert (joints[4]["x"], joints[4]["y"]) == pytest.approx(tuple(result.keypoints[1, 4]))
    # None: that image has no box, its crop is the whole frame (the image centre, its longer side)
    mixed = predictor.predict(images[:2], boxes=[BOXES[0], None])
    np.testing.assert_allclose(mixed.stage_keypoints[1], decode_by_hand(checkpoint, images[1], (127.5, 105.5), 256.0),
                               atol=5e-3)
    dark = predictor.predict(images[0], boxes=[BOXES[0]], decoder="argmax")
    np.testing.assert_allclose(dark.stage_keypoints[0], decode_by_hand(checkpoint, images[0], *crop_of(BOXES[0]),
                                                                       decoder="argmax"), atol=1e-4)
    with pytest.raises(cpm.inference.predictor.CPMError, match="boxes: 1 given for 2 images"):
        predictor.predict(images[:2], boxes=[BOXES[0]])
    with pytest.raises(cpm.inference.predictor.CPMError, match="box of image 0: expected"):
        predictor.predict(images[:1], boxes=[(1, 2, 0, 0)])


def readme_example() -> str:
    section = README.read_text(encoding="utf-8").split("## Using a trained model", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "README's 'Using a trained model' has no python example"
    return blocks[0]


def test_the_readme_example_runs_as_written(tmp_path, checkpoint, monkeypatch):
    code = readme_example()
    assert 6 <= len(code.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "default").mkdir(parents=True)
    checkpoint.rename(tmp_path / "runs" / "default" / "best.pt")
    gray = render_sample(7, 0)["image"]
    cv2.imwrite("frame.png", gray)
    millimetres = np.round(nearness_to_metres(gray, near=0.5, far=7.5) * 1000).astype(np.uint16)
    cv2.imwrite("kinect_mm.png", millimetres)  # the same frame as a raw Kinect PNG
    printed = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the documented example itself
    lines = printed.getvalue().splitlines()
    assert lines[0] == "(2, 15, 2) (2, 3, 15, 2)"
    assert [line.split()[0] for line in lines[1:16]] == list(ITOP_15.joint_names)
    result = namespace["result"]
    assert lines[1].split()[1:3] == [f"{result.keypoints[0, 0, 0]:.1f}", f"{result.keypoints[0, 0, 1]:.1f}"]
    # the raw millimetre PNG in the nearness frame's box gives the nearness frame's keypoints (batch of 1 against 2)
    same = namespace["predictor"].predict_files(["kinect_mm.png"], boxes=[(80, 30, 90, 160)])
    np.testing.assert_allclose(same.keypoints[0], result.keypoints[0], atol=5e-3)
    assert lines[16].startswith("('head', 'neck', 'right_shoulder')")


def test_predict_boxes_file_in_every_format_equals_bbox_per_image(tmp_path, checkpoint, frames, capfd):
    names = [f"frame{i}.png" for i in range(3)]
    formats = {
        "boxes.json": {name: list(box) for name, box in zip(names, BOXES, strict=True)},
        "list.json": [{"image": f"frames/{name}", "bbox": list(box)} for name, box in zip(names, BOXES, strict=True)],
        "coco.json": {"images": [{"id": i, "file_name": name} for i, name in enumerate(names)],
                      "annotations": [{"image_id": i, "bbox": list(box), "score": 0.9} for i, box in enumerate(BOXES)]
                      + [{"image_id": 0, "bbox": [0, 0, 5, 5], "score": 0.1}]},  # a weaker detection is not taken
    }
    for name, data in formats.items():
        (tmp_path / name).write_text(json.dumps(data))
    (tmp_path / "boxes.csv").write_text("image,x,y,w,h\n" + "".join(
        f"{name},{','.join(map(str, box))}\n" for name, box in zip(names, BOXES, strict=True)))
    expected = []
    for i, box in enumerate(BOXES):  # one --bbox run per frame
        out = tmp_path / f"single{i}"
        assert main(["predict", str(checkpoint), str(frames / names[i]), "--out", str(out), "--bbox",
                     ",".join(map(str, box)), "--no-progress", "--device", "cpu"]) == 0
        expected.append(json.loads((out / f"frame{i}.json").read_text())["joints"])
    for name in (*formats, "boxes.csv"):
        out = tmp_path / f"out-{name}"
        assert main(["predict", str(checkpoint), str(frames), "--out", str(out), "--boxes", str(tmp_path / name),
                     "--no-progress", "--device", "cpu"]) == 0, name
        for i in range(3):
            record = json.loads((out / f"frame{i}.json").read_text())
            assert record["joints"] == expected[i], (name, i)
            assert record["crop"]["side"] == pytest.approx(crop_of(BOXES[i])[1])
    assert "warning" not in capfd.readouterr().err  # every frame had its box


def test_a_missing_box_is_one_line_and_nothing_is_written(tmp_path, checkpoint, frames, capfd):
    (tmp_path / "boxes.json").write_text(json.dumps({"frame0.png": list(BOXES[0]), "frame1.png": list(BOXES[1])}))
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(frames), "--out", str(out), "--boxes", str(tmp_path / "boxes.json"),
                 "--no-progress"]) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert lines == [f"cpm predict: error: --boxes {tmp_path / 'boxes.json'}: no box for frame2.png"]
    assert not out.exists()
    (tmp_path / "bad.json").write_text(json.dumps({"frame0.png": [1, 2, "w", 4]}))
    assert main(["predict", str(checkpoint), str(frames), "--out", str(out), "--boxes",
                 str(tmp_path / "bad.json")]) == 2
    assert "bad.json: frame0.png: expected [x, y, width, height]" in capfd.readouterr().err
    assert not out.exists()


def test_predict_warns_once_when_images_are_not_person_crops(tmp_path, checkpoint, frames, capfd):
    assert main(["predict", str(checkpoint), str(frames), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    warnings = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1, warnings
    assert "3 of 3 inputs (first frame0.png, 256 x 212) are not a person crop" in warnings[0]
    assert "crops of 1.3x the person" in warnings[0] and "--boxes FILE" in warnings[0]
    square = tmp_path / "square.png"
    cv2.imwrite(str(square), render_sample(7, 0)["image"][:, 22:234])  # 212 x 212: already a crop
    assert main(["predict", str(checkpoint), str(square), "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    assert main(["predict", str(checkpoint), str(frames / "frame0.png"), "--out", str(tmp_path / "c"),
                 "--bbox", "80,30,90,160", "--no-progress"]) == 0
    assert "warning" not in capfd.readouterr().err
