import math

import pytest
import torch

from cpm.targets.codecs import HeatmapCodec


def make_codec(**kwargs) -> HeatmapCodec:
    options = {"input_size": (64, 64), "stride": 8, "sigma": 1.0, "background": True} | kwargs
    return HeatmapCodec(**options)


def test_cell_centres_follow_the_caffe_grid():
    codec = make_codec(stride=8)
    cells = torch.tensor([0.0, 1.0, 7.0])
    assert codec.cell_to_pixel(cells).tolist() == [3.5, 11.5, 59.5]
    assert codec.pixel_to_cell(torch.tensor([3.5, 11.5])).tolist() == [0.0, 1.0]


def test_encode_puts_a_unit_peak_on_the_keypoint_cell():
    codec = make_codec()
    heatmaps, weights = codec.encode(torch.tensor([[[19.5, 27.5, 2.0]]]))  # cell (u=2, v=3)
    assert heatmaps.shape == (1, 2, 8, 8)
    assert heatmaps[0, 0, 3, 2].item() == pytest.approx(1.0)
    assert heatmaps[0, 0, 3, 3].item() == pytest.approx(math.exp(-0.5))  # one cell away, sigma 1
    assert heatmaps[0, 0, 4, 3].item() == pytest.approx(math.exp(-1.0))
    assert weights.tolist() == [[1.0]]


def test_background_is_one_minus_the_max_over_joints():
    codec = make_codec()
    heatmaps, _ = codec.encode(torch.tensor([[[19.5, 27.5, 2.0], [40.0, 10.0, 1.0]]]))
    expected = (1 - heatmaps[:, :2].amax(dim=1)).clamp(min=0)
    assert torch.allclose(heatmaps[:, 2], expected)
    assert heatmaps[0, 2, 3, 2].item() == pytest.approx(0.0, abs=1e-6)


def test_unlabeled_nan_and_outside_joints_get_zero_weight_and_empty_maps():
    codec = make_codec()
    keypoints = torch.tensor([[[10.0, 10.0, 0.0], [float("nan"), 5.0, 2.0], [70.0, 10.0, 2.0],
                               [-3.0, 10.0, 2.0], [30.0, 30.0, 1.0]]])
    heatmaps, weights = codec.encode(keypoints)
    assert weights.tolist() == [[0.0, 0.0, 0.0, 0.0, 1.0]]
    assert heatmaps[0, :4].abs().max().item() == 0.0
    assert torch.isfinite(heatmaps).all()


@pytest.mark.parametrize("stride", [4, 8])
@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
def test_encode_decode_round_trip_is_within_a_tenth_of_a_pixel(stride, sigma):
    codec = make_codec(stride=stride, sigma=sigma, input_size=(96, 128))
    offsets = torch.tensor([0.0, 0.1, 0.25, 0.37, 0.5, 0.73, 0.9])
    xs = 40.0 + offsets * stride
    ys = 50.0 + offsets.flip(0) * stride
    keypoints = torch.stack([xs, ys, torch.full_like(xs, 2.0)], dim=-1)[None]  # (1, 7, 3)
    heatmaps, _ = codec.encode(keypoints)
    decoded, confidence = codec.decode(heatmaps, method="parabola")
    error = (decoded - keypoints[..., :2]).norm(dim=-1)
    assert error.max().item() <= 0.1
    assert confidence.min().item() > 0.6


def test_quarter_decoder_moves_a_quarter_cell_toward_the_higher_neighbour():
    codec = make_codec(background=False)
    beliefs = torch.zeros(1, 1, 8, 8)
    beliefs[0, 0, 4, 3] = 1.0
    beliefs[0, 0, 4, 4] = 0.5  # right neighbour higher than the left one (0)
    beliefs[0, 0, 3, 3] = 0.2  # upper neighbour higher than the lower one (0)
    points, confidence = codec.decode(beliefs, method="quarter")
    # cell (u=3.25, v=3.75) -> pixel 8u + 3.5
    assert points[0, 0].tolist() == pytest.approx([8 * 3.25 + 3.5, 8 * 3.75 + 3.5])
    assert confidence.item() == 1.0
    argmax_points, _ = codec.decode(beliefs, method="argmax")
    assert argmax_points[0, 0].tolist() == [27.5, 35.5]


def test_decoders_do_not_shift_off_the_border():
    codec = make_codec(background=False)
    beliefs = torch.zeros(1, 1, 8, 8)
    beliefs[0, 0, 0, 6] = 1.0
    beliefs[0, 0, 0, 7] = 0.8
    beliefs[0, 0, 1, 6] = 0.5
    for method in ("quarter", "parabola"):
        points, _ = codec.decode(beliefs, method=method)
        assert points[0, 0, 1].item() == 3.5  # row 0: no neighbour above, no shift
        assert points[0, 0, 0].item() > 51.5  # moved toward column 7


def test_center_map_peaks_at_the_centre():
    codec = make_codec(center_sigma=2.0)
    center_map = codec.center_map(torch.tensor([[27.5, 35.5]]))
    assert center_map.shape == (1, 1, 8, 8)
    assert center_map[0, 0, 4, 3].item() == pytest.approx(1.0)
    assert center_map[0, 0].argmax().item() == 4 * 8 + 3


def test_decode_is_batched_over_samples_and_joints():
    codec = make_codec()
    keypoints = torch.rand(5, 15, 3) * 36 + 14  # away from the border cells, where no shift is made
    keypoints[..., 2] = 2
    heatmaps, _ = codec.encode(keypoints)
    decoded, _ = codec.decode(heatmaps)
    assert decoded.shape == (5, 15, 2)
    assert (decoded - keypoints[..., :2]).abs().max().item() < 0.1


def test_inside_the_crop_means_within_its_outer_pixel_edges():
    # Pixel centres are integers, so the 64 x 48 crop spans x in [-0.5, 63.5) and y in [-0.5, 47.5).
    codec = make_codec(input_size=(48, 64))
    x = torch.tensor([-0.5, -0.501, 63.499, 63.5, 20.0, 20.0, 20.0, 20.0])
    y = torch.tensor([10.0, 10.0, 10.0, 10.0, -0.5, -0.501, 47.499, 47.5])
    _, weights = codec.encode(torch.stack([x, y, torch.full_like(x, 2.0)], dim=-1)[None])
    assert weights.tolist() == [[1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0]]
