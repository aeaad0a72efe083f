"""Heatmap decoders: belief maps (B, K, h, w) -> sub-cell peak positions (B, K, 2) as (x, y) in heatmap cells.

Every decoder is batched over B and K (one call, no Python loop over samples or joints), runs on the
device of its input, and works in *cells*: cell (row v, column u) is the value at ``maps[..., v, u]``.
`cpm.targets.codecs.HeatmapCodec.decode` maps cells to input-crop pixels with ``x = s*u + (s - 1)/2``.

    argmax       the cell of the maximum
    quarter      argmax moved a quarter cell toward the higher neighbour on each axis (Newell et al. 2016)
    parabola     a parabola through the log of the maximum and its two neighbours on each axis
    bicubic      the original CPM's: upsample by the stride with MATLAB's imresize (bicubic), argmax there
    paper        the same from the whole upsampled map: what the paper's multi-scale averaging works on
    dark         DARK (Zhang et al., CVPR 2020): blur, log, one Newton step with the full 2x2 Hessian
    soft_argmax  integral regression (Sun et al., ECCV 2018): the expectation under softmax(beta * map)

Glossary: B batch, K joints, h x w heatmap cells, s stride, H x W = s*h x s*w input pixels.
"""

from __future__ import annotations

import math

import torch


def peaks(beliefs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """beliefs (B, K, h, w) -> peak value, row, column, each (B, K); the first maximum in row-major order."""
    flat = beliefs.flatten(-2)  # (B, K, h*w)
    if flat.device.type == "cpu" and flat.dtype in (torch.float32, torch.float64) and not flat.requires_grad:
        # NumPy's argmax is vectorised; torch's max(dim) with indices is several times slower on CPU.
        index = torch.from_numpy(flat.numpy().argmax(axis=-1))
    else:
        index = flat.argmax(dim=-1)
    width = beliefs.shape[-1]
    return flat.gather(-1, index[..., None])[..., 0], index // width, index % width


def _value_at(maps: torch.Tensor, row: torch.Tensor, col: torch.Tensor, d_row: int, d_col: int) -> torch.Tensor:
    """maps (B, K, h, w) -> values (B, K) at (row + d_row, col + d_col), clamped into the map (replicate border)."""
    h, w = maps.shape[-2:]
    flat = (row + d_row).clamp(0, h - 1) * w + (col + d_col).clamp(0, w - 1)
    return maps.flatten(-2).gather(-1, flat[..., None])[..., 0]


def _cells(col: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
    return torch.stack([col, row], dim=-1).float()  # (B, K, 2)


def argmax(beliefs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    confidence, row, col = peaks(beliefs)
    return _cells(col, row), confidence


def quarter(beliefs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Argmax plus a quarter cell toward the higher neighbour per axis; no shift on the border."""
    confidence, row, col = peaks(beliefs)
    h, w = beliefs.shape[-2:]
    shift_x = 0.25 * torch.sign(_value_at(beliefs, row, col, 0, 1) - _value_at(beliefs, row, col, 0, -1))
    shift_y = 0.25 * torch.sign(_value_at(beliefs, row, col, 1, 0) - _value_at(beliefs, row, col, -1, 0))
    shift_x = torch.where((col > 0) & (col < w - 1), shift_x, 0.0)
    shift_y = torch.where((row > 0) & (row < h - 1), shift_y, 0.0)
    return _cells(col, row) + torch.stack([shift_x, shift_y], dim=-1), confidence


def parabola(beliefs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per axis, the vertex of the parabola through log(before), log(peak), log(after): exact for a Gaussian.

    Falls back to the argmax on the border or where the log is not concave; the shift is at most half a cell.
    """
    confidence, row, col = peaks(beliefs)
    h, w = beliefs.shape[-2:]
    shifts = []
    for (d_row, d_col), inner in [((0, 1), (col > 0) & (col < w - 1)), ((1, 0), (row > 0) & (row < h - 1))]:
        before, after = _value_at(beliefs, row, col, -d_row, -d_col), _value_at(beliefs, row, col, d_row, d_col)
        log_before, log_centre, log_after = (v.clamp(min=1e-10).log() for v in (before, confidence, after))
        curvature = log_before - 2 * log_centre + log_after
        usable = inner & (curvature < -1e-6)
        shift = 0.5 * (log_before - log_after) / torch.where(usable, curvature, -1.0)
        shifts.append(torch.where(usable, shift.clamp(-0.5, 0.5), 0.0))
    return _cells(col, row) + torch.stack(shifts, dim=-1), confidence


# --- bicubic: the original CPM's decoding -------------------------------------------------------------------

def cubic_upsampling_matrix(size: int, stride: int, *, cubic_a: float = -0.5, border: str = "symmetric",
                            device: torch.device | str | None = None) -> torch.Tensor:
    """The (size*stride, size) matrix of a 1-D bicubic upsampling by an integer factor (rows sum to 1).

    Output sample x (0-based) reads the input at ``t = (x + 0.5)/stride - 0.5``, which is MATLAB imresize's
    ``u = x/scale + 0.5*(1 - 1/scale)`` made 0-based, and also ``F.interpolate(..., align_corners=False)``'s
    mapping. Under this project's grid, input sample t is the centre of heatmap cell t, i.e. input pixel
    ``s*t + (s - 1)/2 = x``: *output sample x is input pixel x*, exactly, so no shift is needed afterwards.

    Defaults are MATLAB's ``imresize(A, s)`` (what the released CPM code runs): Keys' cubic with a = -0.5
    and symmetric (edge-repeating) mirroring at the border, weights normalised to sum 1. PyTorch's and
    OpenCV's bicubic use a = -0.75 and clamp at the border (``cubic_a=-0.75, border="replicate"``).
    """
    x = torch.arange(size * stride, dtype=torch.float64)
    t = (x + 0.5) / stride - 0.5  # (S,) input coordinate of each output sample
    taps = torch.floor(t)[:, None] + torch.arange(-1, 3, dtype=torch.float64)  # (S, 4) the four inputs it reads
    d = (t[:, None] - taps).abs()
    a = cubic_a
    weights = torch.where(d <= 1, (a + 2) * d**3 - (a + 3) * d**2 + 1,
                          torch.where(d < 2, a * d**3 - 5 * a * d**2 + 8 * a * d - 4 * a, 0.0))
    weights = weights / weights.sum(dim=1, keepdim=True)
    taps = taps.long()
    if border == "symmetric":  # MATLAB: aux = [1:n, n:-1:1]; index = aux(mod(index - 1, 2n) + 1)
        mirror = torch.cat([torch.arange(size), torch.arange(size - 1, -1, -1)])
        taps = mirror[taps % (2 * size)]
    elif border == "replicate":
        taps = taps.clamp(0, size - 1)
    else:
        raise ValueError(f"unknown border {border!r}; known: symmetric, replicate")
    matrix = torch.zeros(size * stride, size, dtype=torch.float64).scatter_add_(1, taps, weights)
    return matrix.to(device=device, dtype=torch.float32)


def bicubic(beliefs: torch.Tensor, stride: int, *, cubic_a: float = -0.5,
            border: str = "symmetric") -> tuple[torch.Tensor, torch.Tensor]:
    """The original CPM decoding: bicubic upsampling by the stride (MATLAB imresize), then the argmax there.

    The released CPM test code (testing/src/applyModel.m) runs ``imresize(score, 8)`` and takes the first
    maximum of the upsampled map; its maps are stored transposed (x first), so MATLAB's column-major "first"
    is the first in row-major (y, x) order, which is what this returns. The result lies on whole input
    pixels (at most half a pixel of quantisation); the confidence is the peak of the map before upsampling.
    The upsampled map is made one row of every s at a time, so memory stays at B*K*h*W values: upsample
    the columns once, then the rows phase by phase.
    """
    batch, joints, h, w = beliefs.shape
    s = stride
    row_matrix = cubic_upsampling_matrix(h, s, cubic_a=cubic_a, border=border, device=beliefs.device)  # (H, h)
    col_matrix = cubic_upsampling_matrix(w, s, cubic_a=cubic_a, border=border, device=beliefs.device)  # (W, w)
    row_matrix, col_matrix = row_matrix.to(beliefs.dtype), col_matrix.to(beliefs.dtype)
    wide = beliefs @ col_matrix.T  # (B, K, h, W)
    best_value = torch.full((batch, joints), -math.inf, device=beliefs.device)
    best_row = torch.zeros(batch, joints, dtype=torch.long, device=beliefs.device)
    best_col = torch.zeros_like(best_row)
    for phase in range(s):  # output rows s*v + phase, v = 0..h-1
        upsampled = row_matrix[phase::s] @ wide  # (B, K, h, W)
        value, index = upsampled.flatten(-2).max(dim=-1)
        out_row, out_col = (index // (w * s)) * s + phase, index % (w * s)
        earlier = (out_row < best_row) | ((out_row == best_row) & (out_col < best_col))
        better = (value > best_value) | ((value == best_value) & earlier)
        best_value = torch.where(better, value, best_value)
        best_row, best_col = torch.where(better, out_row, best_row), torch.where(better, out_col, best_col)
    cells = (_cells(best_col, best_row) - (s - 1) / 2) / s  # input pixels -> cells
    return cells, beliefs.flatten(-2).amax(dim=-1)


def upsample_bicubic(beliefs: torch.Tensor, stride: int, *, cubic_a: float = -0.5,
                     border: str = "symmetric") -> torch.Tensor:
    """(..., h, w) -> (..., h*s, w*s): MATLAB's ``imresize(map, s)`` (`cubic_upsampling_matrix`); output sample x is
    input pixel x of this project's grid."""
    h, w = beliefs.shape[-2:]
    rows = cubic_upsampling_matrix(h, stride, cubic_a=cubic_a, border=border, device=beliefs.device)  # (H, h)
    cols = cubic_upsampling_matrix(w, stride, cubic_a=cubic_a, border=border, device=beliefs.device)  # (W, w)
    return rows.to(beliefs.dtype) @ beliefs @ cols.to(beliefs.dtype).T


PAPER_CHUNK = 1 << 24  # upsampled values held at once by `paper` (64 MiB in float32)


def pixel_argmax(maps: torch.Tensor) -> torch.Tensor:
    """maps (B, K, H, W) -> (B, K, 2) (x, y) of the first maximum in row-major order, in the maps' own samples
    (input pixels for an upsampled map; MATLAB's ``max(map(:))`` on the transposed maps of the released code)."""
    _, row, col = peaks(maps)
    return _cells(col, row)


def paper(beliefs: torch.Tensor, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The released CPM's test-time decoding (testing/src/applyModel.m) at one scale: every map upsampled x stride
    with MATLAB's bicubic ``imresize``, then the first maximum of the upsampled map, in input pixels.

    It computes what `bicubic` does from the whole upsampled map (`upsample_bicubic`), a few joints at a time, so
    that `cpm.targets.multiscale` can average upsampled maps over scales before the argmax, as the paper's code does.
    Returns cells (B, K, 2) and the peak value of each map before upsampling (B, K).
    """
    batch, joints, h, w = beliefs.shape
    flat = beliefs.flatten(0, 1)  # (B*K, h, w)
    per_chunk = max(1, PAPER_CHUNK // (h * w * stride * stride))
    pixels = torch.cat([pixel_argmax(upsample_bicubic(flat[i:i + per_chunk], stride)[:, None])[:, 0]
                        for i in range(0, len(flat), per_chunk)]) if len(flat) else flat.new_zeros(0, 2)
    cells = (pixels.view(batch, joints, 2) - (stride - 1) / 2) / stride  # input pixels -> cells
    return cells, beliefs.flatten(-2).amax(dim=-1)


# --- DARK ----------------------------------------------------------------------------------------------------

def dark_kernel_size(sigma: float) -> int:
    """2*int(3*sigma) + 1 cells. The reference runs OpenCV's ksize 11 with sigma 0 (-> 0.3*(0.5*(11-1) - 1)
    + 0.8 = 2.0 cells, its training sigma); the paper asks for the training sigma, so both follow from sigma.
    """
    return 2 * int(3 * sigma) + 1


def _windows(maps: torch.Tensor, top: torch.Tensor, left: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """maps (B, K, h, w), top/left (B, K) -> the windows maps[b, k, top:top+size[0], left:left+size[1]], copied.

    Each window must lie inside its map. One index_select over an overlapping strided view of the storage
    (every storage element as a window's first one) copies only the windows, not the maps.
    """
    if maps.stride(-1) != 1 or maps.stride(-2) != maps.shape[-1]:
        maps = maps.contiguous()
    batch, joints, h, w = maps.shape
    first = (maps.storage_offset() + top * w + left
             + torch.arange(batch, device=maps.device)[:, None] * maps.stride(0)
             + torch.arange(joints, device=maps.device) * maps.stride(1))  # (B, K)
    count = maps.untyped_storage().nbytes() // maps.element_size() - (size[0] - 1) * w - (size[1] - 1)
    windows = maps.as_strided((count, *size), (1, w, 1), storage_offset=0)
    return windows.index_select(0, first.flatten()).view(batch, joints, *size)


def _blur_weights(taps: torch.Tensor, window: int, count: int) -> torch.Tensor:
    """(count, 5, window): entry [c] maps window cells 0..window-1 to the blurred cells c-2..c+2 (zero padding)."""
    radius = taps.numel() // 2
    near = torch.arange(-2, 3, device=taps.device)[:, None]
    blurred_cell = torch.arange(count, device=taps.device)[:, None, None] + near  # (count, 5, 1)
    distance = torch.arange(window, device=taps.device) - blurred_cell  # (count, 5, window)
    return torch.where(distance.abs() <= radius, taps[(distance + radius).clamp(0, 2 * radius)], 0.0)


def dark(beliefs: torch.Tensor, sigma: float, *, kernel_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """DARK: a Taylor (Newton) step on the log of the Gaussian-blurred map, from the raw argmax.

    As the reference (ilovepose/DarkPose, lib/core/inference.py: ``gaussian_blur`` and ``taylor``): the
    argmax of the raw map; a Gaussian blur with the training sigma (zero padding); each blurred map scaled
    so its maximum equals the raw maximum; a floor at 1e-10; the log; then ``-H^-1 grad`` with the gradient
    by central differences, d2/dx2 and d2/dy2 by differences of step 2 and d2/dxdy by the 4-point cross
    difference. Those read the blurred map only at the 5 x 5 cells around the argmax, so only they are
    blurred, from the (5 + 2r)^2 window of the map that reaches them (r the kernel radius). The rescale is
    a constant per map, which the log turns into an offset that every difference cancels: it acts only
    through the floor; its maximum is taken over those 5 x 5 cells (the global one for a single peak).

    Graceful where the reference is not (it makes no step within 2 cells of the border, and steps whenever
    det H != 0, saddles included): where the 5-point stencil does not fit, d2/dx2 uses step 1; where H is
    not negative definite, each axis takes its own 1-D step where its curvature is negative; an axis on the
    outermost row/column, or a map whose peak is not positive, is not moved; steps are limited to 2 cells.
    Returns cells (B, K, 2) and the raw peak values (B, K).
    """
    confidence, row, col = peaks(beliefs)
    h, w = beliefs.shape[-2:]
    size = kernel_size or dark_kernel_size(sigma)
    radius = size // 2
    taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float64) ** 2 / (2 * sigma**2))
    taps = (taps / taps.sum()).to(device=beliefs.device, dtype=beliefs.dtype)  # cv2.getGaussianKernel(size, sigma)
    window = (min(5 + 2 * radius, h), min(5 + 2 * radius, w))
    top = (row - 2 - radius).clamp(0, h - window[0])  # the window holds every in-map cell that reaches the stencil
    left = (col - 2 - radius).clamp(0, w - window[1])
    patch = _windows(beliefs, top, left, window)  # (B, K, 5 + 2r, 5 + 2r)
    rows = _blur_weights(taps, window[0], h)[row - top]  # (B, K, 5, 5 + 2r)
    cols = _blur_weights(taps, window[1], w)[col - left]
    blurred = rows @ patch @ cols.transpose(-1, -2)  # (B, K, 5, 5), cell (2, 2) is the argmax
    blurred_max = blurred.flatten(-2).amax(dim=-1)
    positive = (blurred_max > 0) & (confidence > 0)
    scale = torch.where(positive, confidence / torch.where(positive, blurred_max, 1.0), 1.0)
    log_map = (blurred * scale[..., None, None]).clamp(min=1e-10).log()  # (B, K, 5, 5)

    def at(d_row: int, d_col: int) -> torch.Tensor:  # log_map at (row + d_row, col + d_col), (B, K)
        return log_map[..., 2 + d_row, 2 + d_col]

    dx, dy = 0.5 * (at(0, 1) - at(0, -1)), 0.5 * (at(1, 0) - at(-1, 0))
    dxx = torch.where((col >= 2) & (col <= w - 3), 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2)),
                      at(0, 1) - 2 * at(0, 0) + at(0, -1))
    dyy = torch.where((row >= 2) & (row <= h - 3), 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0)),
                      at(1, 0) - 2 * at(0, 0) + at(-1, 0))
    dxy = 0.25 * (at(1, 1) - at(-1, 1) - at(1, -1) + at(-1, -1))
    has_x = positive & (col >= 1) & (col <= w - 2)
    has_y = positive & (row >= 1) & (row <= h - 2)

    det = dxx * dyy - dxy**2
    newton = has_x & has_y & (dxx < 0) & (det > 1e-12)
    safe_det = torch.where(newton, det, 1.0)
    newton_x, newton_y = -(dyy * dx - dxy * dy) / safe_det, -(dxx * dy - dxy * dx) / safe_det
    step_x = torch.where(has_x & (dxx < 0), -dx / torch.where(dxx < 0, dxx, -1.0), 0.0)
    step_y = torch.where(has_y & (dyy < 0), -dy / torch.where(dyy < 0, dyy, -1.0), 0.0)
    offset = torch.stack([torch.where(newton, newton_x, step_x), torch.where(newton, newton_y, step_y)], dim=-1)
    return _cells(col, row) + offset.clamp(-2.0, 2.0), confidence


# --- soft-argmax (integral regression) -------------------------------------------------------------------

def soft_argmax(heatmaps: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """heatmaps (..., h, w) -> (..., 2) expected (x, y) in cells under p = softmax(beta * heatmaps).

    Differentiable: an integral-regression head (Sun et al. 2018, Sec. 3) trains through it, with the
    network's outputs as logits and beta = 1. beta is an inverse temperature: large beta approaches the
    argmax (and its quantisation), small beta lets the whole map's mass pull the mean toward the centre.
    To decode maps trained with MSE toward unit-peak Gaussians, beta must be large enough that the peak
    outweighs the flat background (see `cpm.targets.codecs.default_soft_argmax_beta`).
    """
    h, w = heatmaps.shape[-2:]
    p = torch.softmax(beta * heatmaps.flatten(-2), dim=-1).unflatten(-1, (h, w))  # (..., h, w)
    x = (p.sum(dim=-2) * torch.arange(w, device=p.device, dtype=p.dtype)).sum(dim=-1)
    y = (p.sum(dim=-1) * torch.arange(h, device=p.device, dtype=p.dtype)).sum(dim=-1)
    return torch.stack([x, y], dim=-1)
