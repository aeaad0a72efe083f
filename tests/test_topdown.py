"""Top-down on person boxes (`cpm.evaluation.topdown`): boxes (ground truth, detector-like, a detections file), the
crop of each box, rescoring and OKS-NMS, COCO AP of the instances, and ``cpm eval --coco``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cpm.cli import main
from cpm.config import load_config
from cpm.data.datasets.coco_files import read_coco_file
from cpm.errors import CPMError
from cpm.evaluation.coco import keypoint_ap
from cpm.evaluation.topdown import (
    VISIBLE_CONFIDENCE,
    detector_like_boxes,
    evaluate_topdown,
    ground_truth_boxes,
    instances_to_results,
    read_detections,
)
from cpm.inference.predictor import load_predictor
from cpm.runtime.build import build_network
from cpm.runtime.checkpoint import save_checkpoint
from cpm.skeleton import ITOP_15, oks_sigmas
from tests.helpers import tiny_overrides

SIGMAS = oks_sigmas(ITOP_15)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes") / "val"
    assert main(["data", "render-scenes", str(folder), "--scenes", "4", "--seed", "3", "--no-progress"]) == 0
    return folder / "annotations.json"


def tiny_checkpoint(path, tmp_path, **extra):
    """A tiny 2-stage model, just constructed (convolutions redrawn so that its maps have clear peaks)."""
    config = load_config(None, tiny_overrides(tmp_path, **{"model.stages": 2, **extra}))
    torch.manual_seed(0)
    model = build_network(config)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            torch.nn.init.normal_(module.bias, std=0.1)
    save_checkpoint({"model": model.state_dict(), "config": config.to_dict()}, path)
    return path


def test_ground_truth_boxes_are_the_labeled_people_with_score_one(scenes):
    coco = read_coco_file(scenes)
    boxes = ground_truth_boxes(coco)
    for image in coco.images:
        labeled = (image.keypoints[:, :, 2] > 0).any(axis=1)
        assert len(boxes[image.id]) == int(labeled.sum()) > 0
        np.testing.assert_array_equal(np.stack([b for b, _ in boxes[image.id]]), image.boxes[labeled])
        assert {s for _, s in boxes[image.id]} == {1.0}


def test_detector_like_boxes_without_noise_are_the_ground_truth_and_are_a_function_of_the_seed(scenes):
    coco = read_coco_file(scenes)
    exact = detector_like_boxes(coco, 0, jitter=0.0, miss=0.0, duplicate=0.0, false_alarms=0.0)
    truth = ground_truth_boxes(coco)
    assert len(exact) == sum(len(v) for v in truth.values())
    for entry in exact:
        assert any(np.allclose(entry["bbox"], box, atol=0.01) for box, _ in truth[entry["image_id"]])
    noisy = detector_like_boxes(coco, 0)
    assert noisy == detector_like_boxes(coco, 0) and noisy != detector_like_boxes(coco, 1)
    for entry in noisy:  # clipped to the image, positive size
        x, y, w, h = entry["bbox"]
        assert x >= 0 and y >= 0 and w >= 4 and h >= 4 and x + w <= 256.01 and y + h <= 212.01
    many = detector_like_boxes(coco, 0, miss=0.0, duplicate=1.0, false_alarms=0.0)
    assert len(many) == 2 * len(exact)  # every person twice: the second box scored lower


def test_rescoring_multiplies_the_box_score_by_the_mean_confidence_of_the_confident_joints():
    keypoints = np.zeros((1, 15, 2)) + np.arange(15)[None, :, None] * 5.0
    confidence = np.full((1, 15), 0.1)
    confidence[0, :5] = [0.9, 0.8, 0.7, 0.6, 0.3]  # the others are below VISIBLE_CONFIDENCE
    meta = [(7, np.array([0.0, 0.0, 50.0, 100.0]), 0.5)]
    (result,) = instances_to_results(keypoints, confidence, meta, SIGMAS)
    assert VISIBLE_CONFIDENCE == 0.2
    assert result["score"] == pytest.approx(0.5 * (0.9 + 0.8 + 0.7 + 0.6 + 0.3) / 5)
    assert result["image_id"] == 7 and result["category_id"] == 1
    np.testing.assert_allclose(np.reshape(result["keypoints"], (15, 3))[:, :2], keypoints[0])
    np.testing.assert_allclose(np.reshape(result["keypoints"], (15, 3))[:, 2], confidence[0])


def test_oks_nms_keeps_the_better_of_two_boxes_on_one_person_and_both_of_two_people():
    rng = np.random.default_rng(0)
    person = rng.uniform(20, 120, (15, 2))
    other = person + 200.0
    keypoints = np.stack([person, person + 0.5, other])  # two instances of one person, one of another
    confidence = np.full((3, 15), 0.9)
    box = np.array([0.0, 0.0, 100.0, 150.0])
    meta = [(1, box, 0.6), (1, box, 0.9), (1, box, 0.7)]
    results = instances_to_results(keypoints, confidence, meta, SIGMAS, nms_threshold=0.9)
    assert sorted(r["score"] for r in results) == pytest.approx([0.7 * 0.9, 0.9 * 0.9])
    kept = [r for r in results if r["score"] == pytest.approx(0.81)][0]
    np.testing.assert_allclose(np.reshape(kept["keypoints"], (15, 3))[:, :2], person + 0.5, atol=1e-3)
    assert len(instances_to_results(keypoints, confidence, meta, SIGMAS, nms_threshold=1.0)) == 3  # off


def test_the_ground_truth_as_instances_scores_ap_one(scenes):
    coco = read_coco_file(scenes)
    keypoints, confidence, meta = [], [], []
    for image in coco.images:
        for person, box in zip(image.keypoints, image.boxes, strict=True):
            if (person[:, 2] > 0).any():
                keypoints.append(person[:, :2])
                confidence.append(np.ones(15))
                meta.append((image.id, box, 1.0))
    results = instances_to_results(np.stack(keypoints), np.stack(confidence), meta, SIGMAS)
    stats = keypoint_ap(coco.to_dict(), results, SIGMAS)
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)
    shifted = instances_to_results(np.stack(keypoints) + 6.0, np.stack(confidence), meta, SIGMAS)
    assert keypoint_ap(coco.to_dict(), shifted, SIGMAS)["AP"] < 0.9


def test_each_box_is_cropped_as_the_predictor_crops_a_box(scenes, tmp_path):
    """The top-down evaluation's keypoints of every ground-truth box are the Python API's for that image and box
    (crop centred on the box, side data.crop_padding x its longer side, as training crops with crop_around = box)."""
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt", tmp_path)
    result = evaluate_topdown(checkpoint, scenes, boxes="gt", device_name="cpu", progress=False,
                              overrides={"eval": {"oks_nms": 1.0},  # NMS off: one instance per box
                                         "train": {"amp": "off"}})  # fp32 as the predictor, on a bf16 CPU too
    coco = read_coco_file(scenes)
    predictor = load_predictor(checkpoint, "cpu")
    count = 0
    for image in coco.images:
        pixels = predictor.read_image(image.path)
        boxes = [box for box, _ in ground_truth_boxes(coco)[image.id]]
        expected = predictor.predict([pixels] * len(boxes), boxes=boxes).keypoints  # (people, K, 2), box order
        got = np.stack([np.reshape(r["keypoints"], (15, 3))[:, :2] for r in result["results"]
                        if r["image_id"] == image.id])  # in score order
        order = lambda rows: np.lexsort(rows[:, :, 0].T[::-1])  # noqa: E731 - by their x coordinates
        assert len(got) == len(expected)
        np.testing.assert_allclose(got[order(got)], expected[order(expected)], atol=2e-3)  # results: 3 decimals
        count += len(got)
    assert result["boxes"] == count
    assert set(result["stats"]) == {"AP", "AP50", "AP75", "APM", "APL", "AR", "AR50", "AR75", "ARM", "ARL"}


def test_a_detections_file_is_read_and_bad_entries_fail_in_one_line(scenes, tmp_path):
    coco = read_coco_file(scenes)
    path = tmp_path / "dets.json"
    path.write_text(json.dumps([{"image_id": 0, "category_id": 1, "bbox": [10, 20, 30, 60], "score": 0.7},
                                {"image_id": 1, "category_id": 2, "bbox": [1, 2, 3, 4], "score": 0.9}]))
    boxes = read_detections(path, coco)
    assert [(b.tolist(), s) for b, s in boxes[0]] == [([10, 20, 30, 60], 0.7)] and boxes[1] == []
    for entry, message in (({"image_id": 99, "bbox": [1, 2, 3, 4]}, "image_id 99"),
                           ({"image_id": 0, "bbox": [1, 2, 0, 4]}, "positive width"),
                           ({"image_id": 0}, "expected {image_id, bbox, score}")):
        path.write_text(json.dumps([entry]))
        with pytest.raises(CPMError, match=message) as error:
            read_detections(path, coco)
        assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_cpm_eval_coco_prints_a_row_per_setting_and_writes_the_results(scenes, tmp_path, capsys):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt", tmp_path)
    out = tmp_path / "ap"
    assert main(["eval", str(checkpoint), "--coco", str(scenes), "--boxes", "gt", "--boxes", "detector-like",
                 "--flip-test", "off", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "| ground-truth boxes |" in text and "| detector-like boxes |" in text
    written = json.loads((out / "coco-ap.json").read_text())["settings"]
    assert set(written) == {"ground-truth boxes", "detector-like boxes"}
    assert sorted(p.name for p in out.iterdir()) == ["coco-ap.json", "coco-ap.md", "detections.json",
                                                     "results-detector-like.json", "results-gt.json"]
    assert main(["eval", str(checkpoint), "--coco", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: no such file" in capsys.readouterr().err


def test_cpm_predict_people_predicts_every_box_and_merges_a_doubled_one(scenes, tmp_path):
    checkpoint = tiny_checkpoint(tmp_path / "tiny.pt", tmp_path)
    coco = read_coco_file(scenes)
    image = coco.images[0]
    boxes = [box for box, _ in ground_truth_boxes(coco)[image.id]]
    rows = [f"{image.file_name},{','.join(str(v) for v in box)},0.9" for box in boxes]
    rows.append(f"{image.file_name},{','.join(str(v) for v in boxes[0])},0.5")  # the first person twice
    table = tmp_path / "people.csv"
    table.write_text("image,x,y,w,h,score\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(image.path), "--people", str(table), "--out", str(out),
                 "--no-progress", "--device", "cpu"]) == 0
    record = json.loads((out / f"{image.path.stem}.json").read_text())
    assert len(record["people"]) == len(boxes)  # the doubled box's lower-scored instance merged away
    assert sorted(p["box_score"] for p in record["people"]) == [0.9] * len(boxes)
    predictor = load_predictor(checkpoint, "cpu")
    expected = predictor.predict([predictor.read_image(image.path)] * len(boxes), boxes=boxes).keypoints
    for person in record["people"]:
        n = next(i for i, box in enumerate(boxes) if np.allclose(box, person["box"], atol=0.01))
        got = np.array([[joint["x"], joint["y"]] for joint in person["joints"]])
        np.testing.assert_allclose(got, expected[n], atol=1e-3)
    assert (out / f"{image.path.stem}.overlay.png").is_file()


def test_people_boxes_files_fail_in_one_line(tmp_path, capsys):
    from cpm.inference.boxes import read_people_boxes

    path = tmp_path / "people.json"
    path.write_text(json.dumps([{"image": "a.png", "bbox": [1, 2, 3, 4]}, {"image": "a.png", "bbox": [5, 6, 7, 8],
                                                                          "score": 0.5}]))
    assert read_people_boxes(path) == {"a.png": [((1.0, 2.0, 3.0, 4.0), 1.0), ((5.0, 6.0, 7.0, 8.0), 0.5)]}
    for content, message in (([{"image": "a.png"}], "entry 0: expected image and bbox"),
                             ([{"image": "a.png", "bbox": [1, 2, 3, 4], "score": "high"}], "score must be a number"),
                             ({"images": [], "annotations": [{"image_id": 3, "bbox": [1, 2, 3, 4]}]},
                              "image_id 3 is not in images")):
        path.write_text(json.dumps(content))
        with pytest.raises(CPMError, match=message) as error:
            read_people_boxes(path)
        assert str(error.value).startswith(f"--people {path}") and "\n" not in str(error.value)


def test_the_mean_pose_baseline_is_exact_when_every_person_has_the_same_pose_in_its_box(tmp_path):
    from cpm.data.datasets.coco_files import write_coco
    from cpm.evaluation.topdown import mean_pose_ap

    rng = np.random.default_rng(0)
    relative = rng.uniform(0.1, 0.9, (15, 2))  # one pose, in box coordinates

    def person(x, y, w, h):
        keypoints = np.concatenate([relative * [w, h] + [x, y], np.full((15, 1), 2.0)], axis=1)
        return {"keypoints": keypoints, "bbox": [x, y, w, h], "area": w * h * 0.5}

    images = [{"file_name": f"{i}.png", "width": 256, "height": 212} for i in range(2)]
    for name, boxes in (("train", [[(10, 20, 40, 80)], [(100, 30, 60, 120)]]),
                        ("val", [[(5, 5, 50, 100), (120, 40, 30, 60)], [(60, 10, 70, 150)]])):
        write_coco(tmp_path / f"{name}.json", images, [[person(*b) for b in per] for per in boxes], ITOP_15)
    stats = mean_pose_ap(tmp_path / "train.json", tmp_path / "val.json")
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)
