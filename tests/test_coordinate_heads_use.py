"""``cpm predict`` and ``cpm export`` with the coordinate heads of compare-heads: direct regression (one stage of
(K, 2) outputs) and the integral (soft-argmax) head (T stages, belief maps behind them)."""

import json

import cv2
import numpy as np
import pytest
import torch

from cpm.cli import main
from cpm.runtime.build import build_codec
from cpm.runtime.checkpoint import load_model
from cpm.skeleton import ITOP_15
from tests.test_predict import decode_by_hand, frames, make_checkpoint, xy  # noqa: F401 - frames is a fixture

HEADS = {"regression": 1, "integral": 3}  # head -> stages


@pytest.mark.parametrize("head", HEADS)
def test_predict_with_a_coordinate_head_matches_decoding_by_hand(tmp_path, frames, head):  # noqa: F811
    checkpoint = make_checkpoint(tmp_path / f"{head}.pt", tmp_path, **{"model.head": head})
    out = tmp_path / "out"
    stages = ["--stages"] if head == "integral" else []
    assert main(["predict", str(checkpoint), str(frames), "--out", str(out), "--no-progress", *stages]) == 0
    for i in range(3):
        image = cv2.imread(str(frames / f"frame{i}.png"), cv2.IMREAD_GRAYSCALE)
        record = json.loads((out / f"frame{i}.json").read_text())
        assert [j["name"] for j in record["joints"]] == list(ITOP_15.joint_names)
        assert record["num_stages"] == HEADS[head]
        assert record["decoder"] == {"regression": "direct regression", "integral": "soft-argmax (integral head)"}[head]
        expected = decode_by_hand(checkpoint, image, (127.5, 105.5), 256.0)  # (T, K, 2)
        assert expected.shape == (HEADS[head], 15, 2)
        np.testing.assert_allclose(xy(record["joints"]), expected[-1], atol=1e-3)
        assert all(joint["confidence"] == 1.0 for joint in record["joints"])
    if head == "integral":
        panel = cv2.imread(str(out / "frame0.stages.png"))
        assert panel is not None and panel.shape[0] > 100  # three rows of belief maps


def test_integral_belief_maps_are_the_distributions_its_soft_argmax_averages(tmp_path, frames):  # noqa: F811
    from cpm.inference.predictor import load_predictor, predict_images

    checkpoint = make_checkpoint(tmp_path / "integral.pt", tmp_path, **{"model.head": "integral"})
    predictor = load_predictor(checkpoint, device_name="cpu")
    image = cv2.imread(str(frames / "frame0.png"), cv2.IMREAD_GRAYSCALE)
    result = predict_images(predictor, [image])
    beliefs = result["beliefs"][0]  # (T, K, h, w), each map scaled to peak 1
    assert beliefs.shape == (3, 15, 8, 8) and np.allclose(beliefs.max(axis=(-2, -1)), 1.0)
    probability = beliefs / beliefs.sum(axis=(-2, -1), keepdims=True)
    h, w = beliefs.shape[-2:]
    cells = np.stack([(probability.sum(-2) * np.arange(w)).sum(-1), (probability.sum(-1) * np.arange(h)).sum(-1)], -1)
    crop_pixels = 8 * cells + 3.5  # cell u of stride 8 is centred on pixel 8u + 3.5
    inverse = np.linalg.inv(np.vstack([result["matrices"][0], [0, 0, 1]]))[:2]
    image_pixels = crop_pixels @ inverse[:, :2].T + inverse[:, 2]
    np.testing.assert_allclose(image_pixels, result["keypoints"][0], atol=1e-3)


def test_regression_has_no_maps_to_draw_nor_to_decode(tmp_path, frames, capfd):  # noqa: F811
    checkpoint = make_checkpoint(tmp_path / "regression.pt", tmp_path, **{"model.head": "regression"})
    for extra, message in ((["--stages"], "--stages: "), (["--decoder", "dark"], "--decoder: ")):
        out = tmp_path / f"out{len(extra)}"
        assert main(["predict", str(checkpoint), str(frames), "--out", str(out), *extra]) == 2
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"cpm predict: error: {message}") and str(checkpoint) in err[0]
        assert not out.exists()


onnxruntime = pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("head", HEADS)
def test_a_coordinate_head_exports_and_agrees_in_onnx_runtime(tmp_path, head):
    checkpoint = make_checkpoint(tmp_path / f"{head}.pt", tmp_path, **{"model.head": head})
    onnx_path = tmp_path / f"{head}.onnx"
    assert main(["export", str(checkpoint), "--onnx", str(onnx_path)]) == 0
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    assert inputs == (["image"] if head == "regression" else ["image", "center_map"])
    model, config = load_model(checkpoint)
    codec = build_codec(config)
    image = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    feed = {"image": image.numpy()}
    center_map = None
    if "center_map" in inputs:
        center_map = codec.center_map(torch.full((4, 2), 31.5))
        feed["center_map"] = center_map.numpy()
    outputs = session.run(None, feed)
    with torch.no_grad():
        expected = model(image, center_map)
    assert len(outputs) == len(expected) == HEADS[head]
    for got, want in zip(outputs, expected, strict=True):
        assert got.shape == (4, 15, 2)
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)
