"""The paper's test-time decoding (eval.decoder = "paper": x stride bicubic upsampling, argmax) and multi-scale
averaging (eval.scales), against NumPy / SciPy references and on maps whose true peak is known."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from scipy.ndimage import map_coordinates

from cpm.config import load_config
from cpm.errors import ConfigError
from cpm.targets import decoders
from cpm.targets.codecs import EVAL_DECODERS, HeatmapCodec
from cpm.targets.multiscale import average_scales, decode_scales, relative_affines

# --- MATLAB's imresize(A, s) for an integer s > 1, written from its documented algorithm (1-based) -------------


def matlab_cubic(x: np.ndarray) -> np.ndarray:
    ax = np.abs(x)
    return ((1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
            + (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


def imresize_axis(a: np.ndarray, scale: int, axis: int) -> np.ndarray:
    """contributions() of imresize.m: u = x/scale + 0.5(1 - 1/scale), 4-tap Keys kernel, symmetric border."""
    n = a.shape[axis]
    out = []
    for x in range(1, n * scale + 1):
        u = x / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - 2)
        taps = np.arange(left, left + 6)  # ceil(kernel width 4) + 2 taps
        weights = matlab_cubic(u - taps)
        weights /= weights.sum()
        aux = np.concatenate([np.arange(1, n + 1), np.arange(n, 0, -1)])
        index = aux[np.mod(taps - 1, 2 * n)] - 1
        out.append(np.tensordot(weights, np.take(a, index, axis=axis), axes=([0], [axis])))
    return np.moveaxis(np.stack(out), 0, axis)


def reference_paper(maps: np.ndarray, stride: int) -> np.ndarray:
    """maps (K, h, w) -> (K, 2) input pixels: imresize(map, stride), [~, i] = max(map(:)) (first in row-major)."""
    points = []
    for single in maps:
        up = imresize_axis(imresize_axis(single, stride, 0), stride, 1)
        row, col = np.unravel_index(np.argmax(up), up.shape)
        points.append((col, row))
    return np.array(points, dtype=np.float64)


def gaussian_maps(cells: np.ndarray, size: int, sigma: float, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    v, u = np.mgrid[:size, :size]
    maps = np.exp(-((u - cells[:, 0, None, None]) ** 2 + (v - cells[:, 1, None, None]) ** 2) / (2 * sigma**2))
    return maps + noise * np.random.default_rng(seed).random(maps.shape)


def test_paper_is_an_eval_decoder_and_a_config_choice():
    from cpm.targets.codecs import DECODERS

    assert EVAL_DECODERS == (*DECODERS, "paper")
    assert load_config(None, ["eval.decoder=paper"]).eval.decoder == "paper"
    with pytest.raises(ConfigError, match="eval.scales: expected a non-empty list of crop scales > 0"):
        load_config(None, ["eval.scales=[1.0, 0]"])
    with pytest.raises(ConfigError, match="eval.scales: the regression head ignores it"):  # on the command line
        load_config(None, ["eval.scales=[0.8, 1.2]", "model.head=regression"], reject_ignored=True)
    # read from a saved config (a library call), a coordinate head keeps the default: one config per model
    assert load_config(None, ["eval.scales=[0.8, 1.2]", "model.head=regression"]).eval.scales == [1.0]


def test_paper_decoder_matches_matlab_imresize_and_argmax():
    rng = np.random.default_rng(0)
    cells = rng.uniform(3, 9, size=(12, 2))
    maps = gaussian_maps(cells, 12, sigma=1.2, noise=0.05)  # (K, 12, 12), float64
    cells_out, confidence = decoders.paper(torch.from_numpy(maps)[None], stride=8)
    pixels = cells_out[0].numpy() * 8 + 3.5  # cells -> input pixels
    np.testing.assert_array_equal(pixels, reference_paper(maps, 8))
    np.testing.assert_array_equal(confidence[0].numpy(), maps.reshape(12, -1).max(axis=1))


def test_paper_at_one_scale_gives_the_bicubic_keypoints():
    torch.manual_seed(0)
    codec = HeatmapCodec(input_size=(96, 96), stride=8, sigma=1.0, background=True)
    keypoints = torch.cat([torch.rand(4, 6, 2) * 60 + 18, torch.full((4, 6, 1), 2.0)], dim=-1)
    maps, _ = codec.encode(keypoints)
    paper, paper_confidence = codec.decode(maps, method="paper")
    bicubic, bicubic_confidence = codec.decode(maps, method="bicubic")
    assert torch.equal(paper, bicubic) and torch.equal(paper_confidence, bicubic_confidence)
    assert (paper - keypoints[..., :2]).norm(dim=-1).max() < 2.0  # pixel quantisation + the cubic's bias at sigma 1


def scale_matrix(scale: float, size: int, center: tuple[float, float]) -> np.ndarray:
    """source -> crop pixels for a crop of side size / scale around ``center`` (crop_matrix without rotation)."""
    from cpm.data.transforms import crop_matrix

    return crop_matrix(np.array(center), size / scale, size)


def test_average_scales_is_bilinear_sampling_on_the_base_grid():
    """Each scale's maps sampled (SciPy, order 1) at the base cells mapped into its crop; outside a crop a joint
    reads 0 and the background 1; then the mean over scales."""
    stride, h, size, scales = 4, 10, 40, (0.75, 1.0, 1.6)
    center = (52.3, 47.9)
    base = scale_matrix(1.0, size, center)
    matrices = np.stack([scale_matrix(s, size, center) for s in scales])
    rng = np.random.default_rng(3)
    outputs = [[torch.from_numpy(rng.random((1, 3, h, h))).float()] for _ in scales]  # 2 joints + background
    relative = relative_affines(torch.from_numpy(base)[None], torch.from_numpy(matrices)[None])
    averaged = average_scales(outputs, relative, stride=stride, background=True)[0][0].double().numpy()
    cells = np.arange(h) * stride + (stride - 1) / 2  # base cell centres in base crop pixels
    xx, yy = np.meshgrid(cells, cells)
    expected = np.zeros((3, h, h))
    inverse = np.linalg.inv(np.vstack([base, [0, 0, 1]]))
    for s, matrix in enumerate(matrices):
        to_scale = np.vstack([matrix, [0, 0, 1]]) @ inverse
        px = to_scale[0, 0] * xx + to_scale[0, 1] * yy + to_scale[0, 2]
        py = to_scale[1, 0] * xx + to_scale[1, 1] * yy + to_scale[1, 2]
        u, v = (px - (stride - 1) / 2) / stride, (py - (stride - 1) / 2) / stride
        maps = outputs[s][0][0].double().numpy()
        for c in range(3):
            values = maps[c] if c < 2 else 1 - maps[c]
            padded = np.pad(values, 1)  # zeros one cell beyond the border: grid_sample's bilinear "zeros" padding
            sampled = map_coordinates(padded, [v + 1, u + 1], order=1, mode="constant", cval=0.0)
            expected[c] += sampled if c < 2 else 1 - sampled
    np.testing.assert_allclose(averaged, expected / len(scales), atol=2e-5)


def test_paper_multiscale_averages_upsampled_maps_then_takes_the_argmax():
    stride, h, size, scales = 4, 12, 48, (0.8, 1.25)
    center = (60.0, 41.5)
    base = scale_matrix(1.0, size, center)
    matrices = np.stack([scale_matrix(s, size, center) for s in scales])
    rng = np.random.default_rng(5)
    outputs = [[torch.from_numpy(gaussian_maps(rng.uniform(3, 8, size=(2, 2)), h, 1.5, 0.02, seed=i)[None]).float()]
               for i, _ in enumerate(scales)]
    codec = HeatmapCodec(input_size=(size, size), stride=stride, sigma=1.5, background=False)
    relative = relative_affines(torch.from_numpy(base)[None], torch.from_numpy(matrices)[None])
    points, confidence, averaged = decode_scales(codec, outputs, relative, "paper")
    total = np.zeros((2, size, size))
    inverse = np.linalg.inv(np.vstack([base, [0, 0, 1]]))
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    for s, matrix in enumerate(matrices):
        to_scale = np.vstack([matrix, [0, 0, 1]]) @ inverse
        px = to_scale[0, 0] * xx + to_scale[0, 1] * yy + to_scale[0, 2]
        py = to_scale[1, 0] * xx + to_scale[1, 1] * yy + to_scale[1, 2]
        for k in range(2):
            up = imresize_axis(imresize_axis(outputs[s][0][0, k].double().numpy(), stride, 0), stride, 1)
            total[k] += map_coordinates(np.pad(up, 1), [py + 1, px + 1], order=1, mode="constant", cval=0.0)
    expected = [np.unravel_index(np.argmax(m), m.shape)[::-1] for m in total]
    np.testing.assert_array_equal(points[0, 0].numpy(), np.array(expected, dtype=np.float32))
    assert torch.equal(confidence[0, 0], averaged[0][0].flatten(-2).amax(-1))


class BlobModel(torch.nn.Module):
    """A stand-in network whose belief map of every joint is the crop average-pooled to the map grid: its peak is
    where the bright blob of the image is, in whichever crop it is given."""

    def __init__(self, joints: int, stride: int) -> None:
        super().__init__()
        self.joints, self.stride, self.num_stages, self.in_channels = joints, stride, 1, 1

    def forward(self, image, center_map=None):
        pooled = F.avg_pool2d(image[:, :1] + 1, self.stride)  # unit scale: dark = 0
        return [torch.cat([pooled.expand(-1, self.joints, -1, -1), 1 - pooled], dim=1)]


def blob_image(x: float, y: float, shape=(90, 110), sigma: float = 3.0) -> np.ndarray:
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return np.round(255 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))).astype(np.uint8)


@pytest.mark.parametrize("decoder", ["parabola", "paper"])
def test_multiscale_prediction_finds_an_off_centre_point_at_every_scale(decoder):
    """Scales 0.7 and 1.4 only (not the base crop): both crops' maps must land on the base grid where the blob is."""
    from cpm.inference.predictor import Predictor, predict_images
    from cpm.skeleton import get_skeleton

    codec = HeatmapCodec(input_size=(64, 64), stride=4, sigma=1.0, background=True)
    skeleton = get_skeleton("itop15")
    blob = (66.0, 33.0)  # 11 and 12 px from the crop centre (55, 44.5)
    for scales in [(1.0,), (0.7, 1.4)]:
        predictor = Predictor(model=BlobModel(15, 4), codec=codec, skeleton=skeleton, input_size=64, in_channels=1,
                              crop_padding=1.0, decoder=decoder, device=torch.device("cpu"), checkpoint=Path("blob"),
                              scales=scales)
        result = predict_images(predictor, [blob_image(*blob)], center=(55.0, 44.5))
        assert np.abs(result["keypoints"][0, 0] - blob).max() < 2.5, (scales, result["keypoints"][0, 0, 0])
        assert result["beliefs"].shape == (1, 1, 16, 16, 16)


def test_evaluate_averages_scales_from_a_multiscale_dataset():
    from cpm.data.dataset import PoseDataset
    from cpm.data.loader import make_loader
    from cpm.data.multiscale import MultiScaleDataset
    from cpm.evaluation.evaluate import evaluate

    points = [(40.0, 50.0), (70.0, 30.0), (55.0, 60.0)]
    source = []
    for x, y in points:
        keypoints = np.zeros((15, 3))
        keypoints[:, :2], keypoints[:, 2] = (x, y), 2
        keypoints[3, :2], keypoints[9, :2] = (x - 10, y - 10), (x + 10, y + 10)  # a torso to normalise by
        source.append({"image": blob_image(x, y), "keypoints": keypoints, "center": np.array([55.0, 44.5]),
                       "scale": 60.0})
    dataset = MultiScaleDataset(PoseDataset(source, input_size=64, flip_permutation=tuple(range(15))), [0.7, 1.4])
    item = dataset[1]
    assert item["scale_images"].shape == (2, 1, 64, 64) and item["scale_matrices"].shape == (2, 2, 3)
    loader = make_loader(dataset, batch_size=2, shuffle=False, workers=0, device=torch.device("cpu"), seed=0)
    codec = HeatmapCodec(input_size=(64, 64), stride=4, sigma=1.0, background=True)
    for decoder in ("parabola", "paper"):
        results = evaluate(BlobModel(15, 4), loader, codec, torso=(3, 9), decoder=decoder,
                           device=torch.device("cpu"), progress=False)
        error = np.abs(results["predictions"][:, -1, 0] - np.array(points)).max()
        assert error < 2.5, (decoder, results["predictions"][:, -1, 0])
