import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cpm.bench.decoders import dark_reference, dark_speed, decoder_accuracy_table
from cpm.targets import decoders
from cpm.targets.codecs import DECODERS, HeatmapCodec, RegressionCodec, soft_argmax


def gaussian_maps(cells: torch.Tensor, sigma: float, size: tuple[int, int] = (46, 46),
                  covariance: torch.Tensor | None = None) -> torch.Tensor:
    """cells (N, 2) as (x, y) -> (N, 1, h, w) unit-peak Gaussians centred there (float64)."""
    h, w = size
    v, u = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    d = torch.stack([u, v], dim=-1)[None] - cells.double()[:, None, None, :]  # (N, h, w, 2)
    inverse = torch.linalg.inv(covariance if covariance is not None else sigma**2 * torch.eye(2, dtype=torch.float64))
    return torch.exp(-0.5 * torch.einsum("nhwi,ij,nhwj->nhw", d, inverse, d))[:, None]


SUB_CELL = torch.tensor([[20.0, 20.0], [20.3, 17.8], [12.5, 30.25], [25.9, 14.1], [33.37, 8.61]])


# --- every decoder ---------------------------------------------------------------------------------------------

def test_decoders_lists_the_six_methods():
    assert DECODERS == ("argmax", "quarter", "parabola", "bicubic", "dark", "soft_argmax")


# Worst distance in pixels from a noise-free Gaussian's centre on these small 12 x 10 maps at stride 4, sigma 1.5,
# with keypoints as close as 1.6 cells to the border: measured over 50 seeds, then rounded up. argmax and quarter
# are bounded by their construction (half a cell, a quarter cell per axis, times sqrt 2); DARK's 5 x 5 stencil and
# zero-padded blur are clipped near the border (measured 0.58 px there, 0.001 px in the open).
NEAR_BORDER_PX = {"argmax": 4 * 0.5 * math.sqrt(2) + 1e-4, "quarter": 4 * 0.25 * math.sqrt(2) + 1e-4,
                  "parabola": 1e-3, "bicubic": 1.0, "dark": 0.75, "soft_argmax": 0.3}


@pytest.mark.parametrize("method", DECODERS)
def test_every_decoder_is_batched_and_drops_the_background_channel(method):
    torch.manual_seed(0)
    codec = HeatmapCodec(input_size=(48, 40), stride=4, sigma=1.5, background=True)
    keypoints = torch.rand(3, 4, 3) * torch.tensor([24.0, 32.0, 0.0]) + torch.tensor([8.0, 8.0, 2.0])
    heatmaps, _ = codec.encode(keypoints)  # (3, 5, 12, 10)
    points, confidence = codec.decode(heatmaps, method=method)
    assert points.shape == (3, 4, 2) and confidence.shape == (3, 4)
    assert torch.equal(confidence, heatmaps[:, :4].flatten(-2).amax(-1))  # the peak value, for every decoder
    assert (points - keypoints[..., :2]).norm(dim=-1).max().item() <= NEAR_BORDER_PX[method]


# --- each decoder's own accuracy on noise-free Gaussians ------------------------------------------------------
#
# Keypoints encoded by the codec at random sub-pixel positions 10..36 cells into 46 x 46 maps (away from the
# border), decoded, compared in cells. Measured worst cases over 1000 positions per (stride, sigma), strides 3, 4,
# 8 and sigma 1, 1.5, 2, 3: argmax 0.5 and quarter 0.25 (both exactly the formulas below), parabola 4e-6 (float32
# maps), DARK 2.3e-4, bicubic 0.81 / 0.90 / 1.32 px at sigma 1 (strides 3 / 4 / 8) and 0.60 / 0.64 / 0.78 px at
# sigma 2, soft-argmax (default beta) 0.31 cells at sigma 1, 0.095 at 1.5 and 0.028 at 2 (means 0.13, 0.044,
# 0.010). The bounds below sit a little above those: any shift by half a pixel, a wrong sign, or a stencil read
# one cell off breaks them.

BICUBIC_PX = {(4, 1.0): 1.0, (4, 2.0): 0.7, (8, 1.0): 1.4, (8, 2.0): 0.85}  # quantisation (0.5 px) + cubic bias
SOFT_ARGMAX_CELLS = {1.0: (0.33, 0.15), 2.0: (0.035, 0.013)}  # (worst, mean): the peak snaps toward its argmax
ACCURACY_CASES = [(stride, sigma) for stride in (4, 8) for sigma in (1.0, 2.0)]


def encoded_keypoints(stride: int, sigma: float, count: int = 300, seed: int = 0):
    """-> codec, true cells (N, 2) float64, heatmaps (N, 1, 46, 46) from the codec's own encoder."""
    generator = torch.Generator().manual_seed(seed)
    cells = torch.rand(count, 2, dtype=torch.float64, generator=generator) * 26 + 10
    fraction = cells - cells.round()
    cells = cells[((fraction.abs() > 1e-3) & (fraction.abs() < 0.499)).all(dim=-1)]  # no near-ties between cells
    codec = HeatmapCodec(input_size=(46 * stride, 46 * stride), stride=stride, sigma=sigma, background=False)
    keypoints = torch.cat([codec.cell_to_pixel(cells), torch.full((len(cells), 1), 2.0, dtype=torch.float64)], -1)
    heatmaps, _ = codec.encode(keypoints[:, None].float())
    return codec, cells, heatmaps


def decoded_cells(codec, heatmaps, method):
    points, _ = codec.decode(heatmaps, method=method)
    return codec.pixel_to_cell(points[:, 0].double())


@pytest.mark.parametrize(("stride", "sigma"), ACCURACY_CASES)
def test_argmax_is_the_nearest_cell_exactly(stride, sigma):
    codec, cells, heatmaps = encoded_keypoints(stride, sigma)
    found = decoded_cells(codec, heatmaps, "argmax")
    assert torch.equal(found, cells.round())
    assert (found - cells).abs().max().item() <= 0.5


@pytest.mark.parametrize(("stride", "sigma"), ACCURACY_CASES)
def test_quarter_moves_a_quarter_cell_toward_the_true_centre_exactly(stride, sigma):
    codec, cells, heatmaps = encoded_keypoints(stride, sigma)
    found = decoded_cells(codec, heatmaps, "quarter")
    assert torch.equal(found, cells.round() + 0.25 * torch.sign(cells - cells.round()))
    assert (found - cells).abs().max().item() <= 0.25 + 1e-9


@pytest.mark.parametrize(("stride", "sigma"), ACCURACY_CASES)
def test_parabola_recovers_a_gaussian_to_float32_precision(stride, sigma):
    codec, cells, heatmaps = encoded_keypoints(stride, sigma)
    assert (decoded_cells(codec, heatmaps, "parabola") - cells).abs().max().item() <= 1e-4


@pytest.mark.parametrize(("stride", "sigma"), ACCURACY_CASES)
def test_dark_recovers_a_gaussian_to_a_thousandth_of_a_cell(stride, sigma):
    codec, cells, heatmaps = encoded_keypoints(stride, sigma)
    assert (decoded_cells(codec, heatmaps, "dark") - cells).abs().max().item() <= 1e-3


@pytest.mark.parametrize(("stride", "sigma"), ACCURACY_CASES)
def test_bicubic_lands_on_a_whole_pixel_next_to_the_nearest_one(stride, sigma):
    codec, cells, heatmaps = encoded_keypoints(stride, sigma)
    points, _ = codec.decode(heatmaps, method="bicubic")
    points, truth = points[:, 0].double(), codec.cell_to_pixel(cells)
    assert torch.equal(points, points.round())
    assert (points - truth.round()).abs().max().item() <= 1.0  # at most one pixel from the nearest whole pixel
    assert (points - truth).abs().max().item() <= BICUBIC_PX[stride, sigma]


@pytest.mark.parametrize(("stride", "sigma"), ACCURACY_CASES)
def test_soft_argmax_with_its_default_beta_is_within_its_measured_bias(stride, sigma):
    codec, cells, heatmaps = encoded_keypoints(stride, sigma)
    error = (decoded_cells(codec, heatmaps, "soft_argmax") - cells).abs()
    worst, mean = SOFT_ARGMAX_CELLS[sigma]
    assert error.max().item() <= worst and error.mean().item() <= mean


def test_unknown_decoder_names_the_known_ones():
    codec = HeatmapCodec(input_size=(64, 64), stride=8, sigma=1.0)
    with pytest.raises(ValueError, match="dark"):
        codec.decode(torch.zeros(1, 2, 8, 8), method="darkk")


def test_peaks_take_the_first_maximum_in_row_major_order_on_either_path():
    beliefs = torch.zeros(1, 1, 4, 5)
    beliefs[0, 0, 2, 1] = beliefs[0, 0, 1, 3] = beliefs[0, 0, 3, 0] = 1.0
    for maps in (beliefs, beliefs.clone().requires_grad_()):  # NumPy's argmax, then torch's
        confidence, row, col = decoders.peaks(maps)
        assert (confidence.item(), row.item(), col.item()) == (1.0, 1, 3)


def test_argmax_decodes_the_cell_centre():
    codec = HeatmapCodec(input_size=(64, 64), stride=8, sigma=1.0, background=False)
    beliefs = torch.zeros(1, 1, 8, 8)
    beliefs[0, 0, 2, 5] = 0.7
    points, confidence = codec.decode(beliefs, method="argmax")
    assert points[0, 0].tolist() == [8 * 5 + 3.5, 8 * 2 + 3.5] and confidence.item() == pytest.approx(0.7)


# --- bicubic (the original CPM's) -----------------------------------------------------------------------------

def matlab_imresize_matrix(in_length: int, scale: int) -> np.ndarray:
    """MATLAB's imresize contributions() for upsampling with 'bicubic', 1-based as in imresize.m, as a matrix."""
    def cubic(x):
        ax = np.abs(x)
        return ((1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1)
                + (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))
    x = np.arange(1, in_length * scale + 1)[:, None]
    u = x / scale + 0.5 * (1 - 1 / scale)
    indices = np.floor(u - 2) + np.arange(6)  # kernel width 4, P = ceil(4) + 2
    weights = cubic(u - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    aux = np.concatenate([np.arange(1, in_length + 1), np.arange(in_length, 0, -1)])
    indices = aux[np.mod(indices - 1, 2 * in_length).astype(int)]
    matrix = np.zeros((in_length * scale, in_length))
    for row in range(matrix.shape[0]):
        np.add.at(matrix[row], indices[row] - 1, weights[row])
    return matrix


def test_cubic_matrix_first_row_by_hand():
    # s = 2: output pixel 0 reads input t = 0.5/2 - 0.5 = -0.25, i.e. taps -2, -1, 0, 1 at distances 1.75, 0.75,
    # 0.25, 1.25 with weights -0.0234375, 0.2265625, 0.8671875, -0.0703125 (a = -0.5); the mirror folds tap -1
    # onto 0 and tap -2 onto 1.
    matrix = decoders.cubic_upsampling_matrix(4, 2)
    assert matrix[0].tolist() == pytest.approx([1.09375, -0.09375, 0.0, 0.0])
    assert matrix.sum(dim=1).tolist() == pytest.approx([1.0] * 8)


@pytest.mark.parametrize(("size", "stride"), [(5, 8), (46, 8), (7, 3), (2, 4)])
def test_cubic_matrix_is_matlab_imresize(size, stride):
    expected = matlab_imresize_matrix(size, stride)
    assert np.allclose(decoders.cubic_upsampling_matrix(size, stride).double().numpy(), expected, atol=1e-6)


def test_cubic_matrix_with_torch_settings_is_f_interpolate_bicubic():
    # Same half-pixel alignment as F.interpolate(align_corners=False); torch's kernel is a = -0.75, clamped border.
    maps = torch.rand(2, 3, 6, 9)
    rows = decoders.cubic_upsampling_matrix(6, 4, cubic_a=-0.75, border="replicate")
    cols = decoders.cubic_upsampling_matrix(9, 4, cubic_a=-0.75, border="replicate")
    expected = F.interpolate(maps, scale_factor=4, mode="bicubic", align_corners=False)
    assert torch.allclose(rows @ maps @ cols.T, expected, atol=1e-5)


def test_bicubic_is_the_argmax_of_the_whole_upsampled_map():
    torch.manual_seed(0)
    stride, h, w = 4, 6, 7
    maps = torch.rand(3, 5, h, w)
    codec = HeatmapCodec(input_size=(h * stride, w * stride), stride=stride, sigma=1.0, background=False)
    points, _ = codec.decode(maps, method="bicubic")
    upsampled = (torch.from_numpy(matlab_imresize_matrix(h, stride)) @ maps.double()
                 @ torch.from_numpy(matlab_imresize_matrix(w, stride)).T)  # (3, 5, 24, 28)
    index = upsampled.flatten(-2).argmax(-1)
    assert torch.equal(points, torch.stack([index % (w * stride), index // (w * stride)], dim=-1).float())


def test_bicubic_puts_a_single_cell_peak_on_its_centre_pixel():
    # Odd stride: the cell centre s*u + (s-1)/2 is a whole pixel, where the upsampled map equals the cell.
    codec = HeatmapCodec(input_size=(30, 30), stride=3, sigma=1.0, background=False)
    beliefs = torch.zeros(1, 1, 10, 10)
    beliefs[0, 0, 6, 2] = 1.0
    points, _ = codec.decode(beliefs, method="bicubic")
    assert points[0, 0].tolist() == [3 * 2 + 1, 3 * 6 + 1]


def test_bicubic_lands_on_a_whole_pixel_next_to_a_sub_pixel_gaussian():
    codec = HeatmapCodec(input_size=(368, 368), stride=8, sigma=2.0, background=False)
    points, _ = codec.decode(gaussian_maps(SUB_CELL, 2.0).float(), method="bicubic")
    assert torch.equal(points, points.round())
    assert (points - codec.cell_to_pixel(SUB_CELL[:, None])).abs().max().item() <= 1.5


# --- DARK ---------------------------------------------------------------------------------------------------

def test_dark_kernel_size_follows_sigma():
    assert [decoders.dark_kernel_size(s) for s in (1.0, 1.5, 2.0, 3.0)] == [7, 9, 13, 19]


@pytest.mark.parametrize("sigma", [1.0, 1.5, 2.0])
def test_dark_recovers_noise_free_gaussians_to_a_hundredth_of_a_cell(sigma):
    cells, _ = decoders.dark(gaussian_maps(SUB_CELL, sigma).float(), sigma)
    assert (cells[:, 0] - SUB_CELL).abs().max().item() <= 0.01


def test_dark_uses_the_cross_derivative_on_a_rotated_gaussian():
    # A tilted anisotropic Gaussian: the per-axis parabola misses its centre, the 2x2 Newton step does not.
    covariance = torch.tensor([[4.0, 2.4], [2.4, 2.25]], dtype=torch.float64)
    centre = torch.tensor([[22.4, 19.7]])
    maps = gaussian_maps(centre, 0.0, covariance=covariance).float()
    cells, _ = decoders.dark(maps, 1.5)
    assert (cells[0, 0] - centre[0]).abs().max().item() <= 0.01
    parabola_cells, _ = decoders.parabola(maps)
    assert (parabola_cells[0, 0] - centre[0]).abs().max().item() > 0.05


def test_dark_matches_the_per_keypoint_reference_loop():
    torch.manual_seed(1)
    cells = torch.rand(12, 2) * 30 + 8
    maps = (gaussian_maps(cells, 2.0) + 0.05 * torch.randn(12, 1, 46, 46, dtype=torch.float64)).clamp(min=0)
    maps = maps.float().reshape(3, 4, 46, 46)
    batched, _ = decoders.dark(maps, 2.0)
    looped = dark_reference(maps.numpy(), 2.0)
    assert np.abs(batched.double().numpy() - looped).max() <= 1e-3 / 8  # 1e-3 pixels at stride 8


def test_dark_near_the_border_moves_only_along_the_border():
    # The peak on the outermost row, 1 cell from the left edge: x is refined (step-1 second difference),
    # y cannot be (no cell above), where the reference would not move at all.
    centre = torch.tensor([[1.3, 0.0]])
    maps = gaussian_maps(centre, 1.0, size=(12, 12)).float()
    cells, confidence = decoders.dark(maps, 1.0)
    assert cells[0, 0, 1].item() == 0.0
    assert abs(cells[0, 0, 0].item() - 1.3) < 0.15  # the zero-padded blur pulls toward the map
    assert confidence.item() == pytest.approx(math.exp(-0.09 / 2))


def test_dark_does_not_move_on_flat_or_empty_maps():
    maps = torch.stack([torch.zeros(9, 9), torch.full((9, 9), 0.5), -torch.ones(9, 9)])[None]  # (1, 3, 9, 9)
    cells, confidence = decoders.dark(maps, 1.0)
    assert cells.tolist() == [[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]]
    assert confidence.tolist() == [[0.0, 0.5, -1.0]]


def test_dark_makes_no_newton_step_at_a_saddle():
    # A one-cell spike between two broad bumps (the right one higher) on a ridge: the raw argmax is the
    # spike, but after the blur it sits in a dip along x (d2/dx2 > 0) and on a crest along y. H is
    # indefinite: no Newton step, x stays, y takes its own 1-D step toward the ridge's crest at y = 10.3.
    # The reference steps anyway and sends x toward the dip's bottom, away from both bumps' higher one.
    v, u = torch.meshgrid(torch.arange(21.0), torch.arange(21.0), indexing="ij")
    bumps = 0.8 * torch.exp(-((u - 6) ** 2) / 4.5) + torch.exp(-((u - 14) ** 2) / 4.5)
    maps = (0.9 * torch.exp(-((v - 10.3) ** 2) / 2) * bumps)[None, None]
    maps[0, 0, 10, 10] = 1.0
    cells, _ = decoders.dark(maps, 1.0)
    assert cells[0, 0, 0].item() == 10.0
    assert 10.0 < cells[0, 0, 1].item() < 10.35
    assert dark_reference(maps.numpy(), 1.0)[0, 0, 0] < 9.5


# --- soft-argmax ------------------------------------------------------------------------------------------------

def test_soft_argmax_is_the_softmax_expectation_by_hand():
    heatmaps = torch.tensor([[0.0, math.log(3.0)], [-math.inf, -math.inf]])  # p = [[1/4, 3/4], [0, 0]]
    assert soft_argmax(heatmaps, beta=1.0).tolist() == pytest.approx([0.75, 0.0])
    uniform = soft_argmax(torch.zeros(2, 3, 5, 7), beta=4.0)
    assert uniform.shape == (2, 3, 2) and torch.allclose(uniform, torch.tensor([3.0, 2.0]))


def test_soft_argmax_gradient_by_hand():
    # One row [a, b]: x = sigmoid(beta (b - a)); at a = b: dx/db = beta/4 = -dx/da. Two rows [[a], [b]]: y likewise.
    beta = 2.0
    row = torch.zeros(1, 2, dtype=torch.float64, requires_grad=True)
    soft_argmax(row, beta)[0].backward()
    assert row.grad[0].tolist() == pytest.approx([-0.5, 0.5])
    column = torch.zeros(2, 1, dtype=torch.float64, requires_grad=True)
    soft_argmax(column, beta)[1].backward()
    assert column.grad[:, 0].tolist() == pytest.approx([-0.5, 0.5])
    maps = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: soft_argmax(m, 1.5), (maps,))


def test_soft_argmax_decoder_with_its_default_beta_finds_a_broad_gaussian():
    codec = HeatmapCodec(input_size=(368, 368), stride=8, sigma=2.0, background=False)
    points, _ = codec.decode(gaussian_maps(SUB_CELL, 2.0).float(), method="soft_argmax")
    assert (codec.pixel_to_cell(points)[:, 0] - SUB_CELL).abs().max().item() < 0.05


# --- regression targets ----------------------------------------------------------------------------------------

def test_regression_targets_span_the_crop_edges_by_hand():
    codec = RegressionCodec(input_size=(4, 8))  # H = 4, W = 8
    keypoints = torch.tensor([[[-0.5, -0.5, 2.0], [0.0, 1.5, 1.0], [3.5, 3.0, 2.0]]])
    targets, weights = codec.encode(keypoints)
    assert targets.tolist() == [[[-1.0, -1.0], [-0.875, 0.0], [0.0, 0.75]]]
    assert weights.tolist() == [[1.0, 1.0, 1.0]]


def test_regression_weights_are_zero_for_unlabeled_non_finite_and_outside_joints():
    codec = RegressionCodec(input_size=(64, 48))
    keypoints = torch.tensor([[[10.0, 10.0, 0.0], [math.nan, 5.0, 2.0], [47.5, 10.0, 2.0], [10.0, -0.6, 2.0],
                               [math.inf, 3.0, 1.0], [20.0, 30.0, 1.0]]])
    targets, weights = codec.encode(keypoints)
    assert weights.tolist() == [[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]]
    assert torch.isfinite(targets).all() and targets[0, :5].abs().max().item() == 0.0


def test_regression_round_trip_is_exact():
    torch.manual_seed(0)
    codec = RegressionCodec(input_size=(128, 96))
    keypoints = torch.cat([torch.rand(4, 15, 2) * torch.tensor([96.0, 128.0]) - 0.5, torch.full((4, 15, 1), 2.0)], -1)
    targets, weights = codec.encode(keypoints)
    decoded, confidence = codec.decode(targets, method="parabola")  # the method is ignored
    assert weights.min().item() == 1.0 and targets.abs().max().item() <= 1.0
    assert (decoded - keypoints[..., :2]).abs().max().item() <= 1e-5
    assert confidence.shape == (4, 15) and confidence.min().item() == 1.0
    wide = RegressionCodec(input_size=(368, 368))
    keypoints = torch.cat([torch.rand(4, 15, 2, dtype=torch.float64) * 368 - 0.5, torch.ones(4, 15, 1)], -1)
    targets, weights = wide.encode(keypoints)
    assert targets.dtype == torch.float64 and weights.min().item() == 1.0
    assert (wide.decode(targets)[0] - keypoints[..., :2]).abs().max().item() <= 1e-9


# --- the benchmark's tables (tiny sizes) -----------------------------------------------------------------------

def test_bench_tables_have_a_row_per_decoder_and_a_speed_ratio():
    table = decoder_accuracy_table(count=20, sigmas=(2.0,))
    assert all(f"| {method} |" in table for method in DECODERS)
    speed = dark_speed(batch=4, joints=3, repeats=1)
    assert "Speed ratio" in speed and "over 12 keypoints" in speed


# --- devices ----------------------------------------------------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_decoders_agree_on_cuda_and_cpu():
    codec = HeatmapCodec(input_size=(368, 368), stride=8, sigma=2.0, background=False)
    maps = (gaussian_maps(SUB_CELL, 2.0).float() + 0.05 * torch.rand(5, 1, 46, 46)).clamp(min=0)
    for method in DECODERS:
        cpu_points, cpu_confidence = codec.decode(maps, method=method)
        gpu_points, gpu_confidence = codec.decode(maps.cuda(), method=method)
        assert torch.allclose(gpu_points.cpu(), cpu_points, atol=1e-3), method
        assert torch.allclose(gpu_confidence.cpu(), cpu_confidence), method
