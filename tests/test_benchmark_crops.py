"""The released CPM's test crops: pixels outside the image filled with data.pad_value (128 in every Caffe-exact
preset: 0 after (pixel - 128) / 256) in training, evaluation and prediction crops, and the benchmark's crops of
testing/src/run_benchmark.m (eval.crop: the LSP test's image-centred box, the MPII test's annotated objpos and
scale)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cpm.config import load_config
from cpm.data.benchmark import BenchmarkCrops
from cpm.data.dataset import PoseDataset
from cpm.data.datasets.json_readers import read_mpii_json
from cpm.data.multiscale import MultiScaleDataset
from cpm.data.transforms import apply_affine, invert_affine
from cpm.errors import ConfigError, CPMError
from cpm.inference.predictor import load_predictor, predict_images
from tests.test_predict import make_checkpoint

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
CAFFE_PRESETS = ("caffe_lsp.toml", "caffe_mpii.toml", "caffe_flic.toml", "paper_lsp.toml", "paper_mpii.toml")


def edge_sample(height: int = 40, width: int = 30) -> dict:
    """An RGB image of 200s whose person box reaches past its left and top edges."""
    keypoints = np.array([[0.0, 0.0, 2], [12.0, 16.0, 2], [6.0, 8.0, 2]], dtype=np.float32)
    return {"image": np.full((height, width, 3), 200, np.uint8), "keypoints": keypoints,
            "center": np.array([2.0, 3.0], np.float32), "scale": 16.0, "index": 0}


def outside(matrix: np.ndarray, size: int, shape: tuple[int, int]) -> np.ndarray:
    """(N, N) bool: crop pixels whose source point lies more than a pixel outside the image (bilinear reads no
    image pixel there)."""
    ys, xs = np.mgrid[:size, :size]
    points = apply_affine(np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float64), invert_affine(matrix))
    height, width = shape
    off = (points[:, 0] < -1) | (points[:, 1] < -1) | (points[:, 0] > width) | (points[:, 1] > height)
    return off.reshape(size, size)


@pytest.mark.parametrize("augment", [False, True], ids=["held-out", "training"])
def test_crops_past_the_image_edge_read_the_pad_value(augment):
    """Every channel outside the image is 128, 0 after Caffe's normalisation (not -0.5, the old fill of 0); inside it
    is the image."""
    dataset = PoseDataset([edge_sample()], input_size=32, flip_permutation=(0, 1, 2), crop_padding=2.0,
                          augment=augment, rotation=20.0, scale_range=(0.9, 1.1), input_scale="caffe",
                          pad_value=128.0)
    item = dataset[0]
    image, matrix = item["image"].numpy(), item["matrix"].numpy().astype(np.float64)
    off = outside(matrix, 32, (40, 30))
    assert off.sum() > 50 and (~off).sum() > 50
    assert np.all(image[:, off] == 0.0)
    center = apply_affine(np.array([[15.0, 20.0]]), matrix)[0].round().astype(int)
    if 0 <= center.min() and center.max() < 32:
        assert np.allclose(image[:, center[1], center[0]], (200 - 128) / 256)
    default = PoseDataset([edge_sample()], input_size=32, flip_permutation=(0, 1, 2), crop_padding=2.0,
                          augment=augment, rotation=20.0, scale_range=(0.9, 1.1), input_scale="caffe")[0]
    assert np.all(default["image"].numpy()[:, off] == -0.5)  # data.pad_value's default: 0, as before


def test_every_caffe_preset_fills_with_128_and_the_datasets_get_it():
    for name in CAFFE_PRESETS:
        assert load_config(EXPERIMENTS / name, ["data.root=/nowhere"]).data.pad_value == 128.0, name
    from cpm.runtime.build import build_datasets

    train_set, val_set = build_datasets(load_config(None, ["data.pad_value=128", "data.val_samples=2",
                                                           "data.train_samples=2"]))
    assert train_set.pad_value == val_set.pad_value == 128.0
    with pytest.raises(ConfigError, match="data.pad_value"):
        load_config(None, ["data.pad_value=256"])


def test_prediction_crops_read_the_pad_value(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "tiny.pt", tmp_path, **{"model.in_channels": 3, "data.pad_value": 128.0})
    predictor = load_predictor(checkpoint, "cpu")
    assert predictor.pad_value == 128.0
    image = np.full((40, 30, 3), 200, np.uint8)
    result = predict_images(predictor, [image], boxes=[(-4, -6, 14, 18)])
    crop, matrix = result["crops"][0], result["matrices"][0]
    off = outside(matrix, crop.shape[0], (40, 30))
    assert off.any() and np.all(crop[off] == 128) and np.all(crop[~off & (crop[..., 0] != 128)] >= 128)


# --- the benchmark's crops ------------------------------------------------------------------------------------

def test_lsp_benchmark_crops_the_image_around_its_centre():
    """run_benchmark.m (LSP): scale0 = 0.8 x 368 / image height, the 368 px box centred on the image centre, each
    multiplier m of scale_search cropping 368 px of the image resized by scale0 x m. Here: the base crop (m = 1) spans
    image height / 0.8 source pixels around ((W - 1) / 2, (H - 1) / 2), crop m spans 1 / m of that."""
    height, width, size = 150, 90, 368
    sample = edge_sample(height, width)
    crops = BenchmarkCrops([sample], crop="image", crop_padding=1.57, image_fraction=0.8)
    dataset = PoseDataset(crops, input_size=size, flip_permutation=(0, 1, 2), crop_padding=1.57)
    scales = [0.7, 1.0, 1.3]
    item = MultiScaleDataset(dataset, scales)[0]
    center = np.array([(width - 1) / 2, (height - 1) / 2])
    for matrix, multiplier in [(item["matrix"], 1.0), *zip(item["scale_matrices"], scales, strict=True)]:
        matrix = matrix.numpy().astype(np.float64)
        scale0 = 0.8 * size / height * multiplier  # the resize factor of run_benchmark.m
        assert np.allclose(matrix[:, :2], scale0 * np.eye(2), rtol=1e-5)
        assert np.allclose(apply_affine(center[None], matrix)[0], (size - 1) / 2, atol=1e-3)
    top, bottom = apply_affine(np.array([[0.0, -0.5], [0.0, height - 0.5]]), item["matrix"].numpy())[:, 1]
    assert bottom - top == pytest.approx(0.8 * size, rel=1e-5)  # the image height: 0.8 of the box


def write_mpii_list(tmp_path: Path) -> Path:
    cv2.imwrite(str(tmp_path / "a.jpg"), np.zeros((300, 400, 3), np.uint8))
    joints = (np.arange(32).reshape(16, 2) * 5 + 100).tolist()
    entries = [{"image": "a.jpg", "center": [201.0, 151.0], "scale": 0.5, "joints": joints, "joints_vis": [1] * 16},
               {"image": "a.jpg", "joints": joints, "joints_vis": [1] * 16}]
    (tmp_path / "mpii.json").write_text(json.dumps(entries))
    return tmp_path / "mpii.json"


def test_mpii_benchmark_crops_around_the_annotated_objpos_and_scale(tmp_path):
    """run_benchmark.m (MPII): scale0 = (41/35) / annotated scale, centred on objpos: with data.crop_padding 1.57 the
    base crop spans 1.57 x 200 x scale source pixels around objpos - 1 (0-based); a person without them stops."""
    samples = read_mpii_json(write_mpii_list(tmp_path), image_root=tmp_path)
    assert np.allclose(samples[0]["objpos"], [200, 150]) and samples[0]["annotated_scale"] == 0.5
    assert "objpos" not in samples[1]
    crops = BenchmarkCrops(samples, crop="annotated", crop_padding=1.57)
    item = PoseDataset(crops, input_size=368, flip_permutation=tuple(range(16)), crop_padding=1.57)[0]
    matrix = item["matrix"].numpy().astype(np.float64)
    assert matrix[0, 0] == pytest.approx(368 / (1.57 * 200 * 0.5), rel=1e-5)
    assert matrix[0, 0] == pytest.approx((41 / 35) / 0.5 * 368 / (1.57 * 234.2857), rel=1e-3)
    assert np.allclose(apply_affine(np.array([[200.0, 150.0]]), matrix), 367 / 2, atol=1e-3)
    with pytest.raises(CPMError, match="needs the annotated objpos and scale"):
        crops[1]
    assert load_config(None, ["data.source=mpii", "data.root=/x", "data.annotations=a.json",
                              "eval.crop=annotated"]).eval.crop == "annotated"
    with pytest.raises(ConfigError, match="eval.crop: 'annotated'"):
        load_config(None, ["data.source=lsp", "data.root=/x", "eval.crop=annotated"])


def test_caffe_presets_run_the_lsp_benchmark():
    """The LSP benchmark's procedure as the presets' eval settings: 7 scales 0.7:0.1:1.3 of the image-height box,
    the heatmaps averaged and decoded as the released code (decoder "paper")."""
    for name in ("caffe_lsp.toml", "caffe_mpii.toml"):
        evaluation = load_config(EXPERIMENTS / name, ["data.root=/nowhere"]).eval
        assert (evaluation.crop, evaluation.image_fraction, evaluation.decoder) == ("image", 0.8, "paper"), name
        assert np.allclose(evaluation.scales, np.arange(0.7, 1.31, 0.1)), name


def test_cpm_eval_crops_the_benchmark_box(tmp_path, monkeypatch):
    """`cpm eval` with eval.crop = "image" scores the held-out samples in the image-centred crops."""
    from cpm.evaluation import evaluate as module

    checkpoint = make_checkpoint(tmp_path / "tiny.pt", tmp_path, **{"model.in_channels": 3})
    seen = []
    real = module.evaluate

    def spy(model, loader, *args, **kwargs):
        batch = next(iter(loader))
        seen.append((batch["matrix"].numpy(), batch["scale_images"].shape[1] if "scale_images" in batch else 1))
        return real(model, loader, *args, **kwargs)

    monkeypatch.setattr(module, "evaluate", spy)
    module.evaluate_checkpoint(checkpoint, overrides={"eval": {"crop": "image", "scales": [0.9, 1.1]},
                                                      "data": {"val_samples": 2}}, progress=False, device_name="cpu")
    matrices, scales = seen[0]
    assert scales == 2
    from cpm.runtime.build import build_datasets
    from cpm.runtime.checkpoint import load_model

    _, config = load_model(checkpoint)
    config.data.val_samples = 2
    height = build_datasets(config)[1].source[0]["image"].shape[0]
    assert np.allclose(matrices[:, 0, 0], 0.8 * config.data.input_size / height, rtol=1e-5)  # the box: height / 0.8
