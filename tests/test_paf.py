"""Part affinity field targets (`cpm.targets.paf`) and the bottom-up grouping (`cpm.inference.grouping`)."""

from __future__ import annotations

import pytest
import torch

from cpm.skeleton import ITOP_15
from cpm.targets.paf import PafCodec

STRIDE = 8


def pixel(cell: float) -> float:
    """Cell coordinate -> input pixel on the project's grid."""
    return STRIDE * cell + (STRIDE - 1) / 2


def person(*cells: tuple[float, float], visible: float = 2.0) -> list[list[float]]:
    """Joints given in cells -> rows [x, y, v] in input pixels."""
    return [[pixel(x), pixel(y), visible] for x, y in cells]


def codec(limbs=((0, 1),), num_joints: int = 2, size: int = 8, **options) -> PafCodec:
    return PafCodec(input_size=(size * STRIDE, size * STRIDE), stride=STRIDE, sigma=1.0, limbs=limbs,
                    num_joints=num_joints, **options)


def encode(paf: PafCodec, people: list[list[list[float]]], **options) -> tuple[torch.Tensor, torch.Tensor]:
    return paf.encode(torch.tensor([people], dtype=torch.float32), **options)


# --- targets ------------------------------------------------------------------------------------------------------

def test_horizontal_limb_fills_its_rectangle_with_the_unit_vector_exactly():
    paf = codec()
    targets, weights = encode(paf, [person((1, 3), (5, 3))])
    assert targets.shape == weights.shape == (1, 2 + 1 + 2, 8, 8) and paf.channels == 5
    expected_x = torch.zeros(8, 8)
    expected_x[2:5, 1:6] = 1.0  # columns 1..5 (the segment), rows 3 +- 1 (limb_width 1 cell, edges included)
    assert torch.equal(targets[0, 3], expected_x)
    assert torch.equal(targets[0, 4], torch.zeros(8, 8))  # y component
    assert torch.equal(weights, torch.ones_like(weights))


def test_limb_width_is_in_cells_on_either_side_of_the_segment():
    wide, _ = encode(codec(limb_width=2.0), [person((1, 3), (5, 3))])
    assert torch.equal(wide[0, 3].nonzero()[:, 0].unique(), torch.arange(1, 6))  # rows 3 +- 2
    narrow, _ = encode(codec(limb_width=0.5), [person((1, 3), (5, 3))])
    assert torch.equal(narrow[0, 3].nonzero()[:, 0].unique(), torch.tensor([3]))
    between, _ = encode(codec(), [person((1, 3.5), (5, 3.5))])  # half a cell off the rows: rows 3 and 4 only
    assert torch.equal(between[0, 3].nonzero()[:, 0].unique(), torch.tensor([3, 4]))


def test_diagonal_limb_has_the_vector_0_6_0_8_inside_its_rectangle_only():
    targets, _ = encode(codec(), [person((1, 1), (4, 5))])  # (3, 4) cells long: 5
    fx, fy = targets[0, 3], targets[0, 4]
    for row in range(8):
        for col in range(8):
            along = 0.6 * (col - 1) + 0.8 * (row - 1)
            across = abs(0.6 * (row - 1) - 0.8 * (col - 1))
            inside = 0 <= along <= 5 and across <= 1
            assert (fx[row, col].item(), fy[row, col].item()) == pytest.approx((0.6, 0.8) if inside else (0, 0))
    assert (fx[1, 1].item(), fy[1, 1].item()) == pytest.approx((0.6, 0.8))  # p1
    assert (fx[5, 4].item(), fy[5, 4].item()) == pytest.approx((0.6, 0.8))  # p2
    assert fx[0, 0] == 0 and fx[6, 5] == 0  # before p1, past p2
    assert fx[4, 1] == 0  # beside the segment: 1.8 cells from it


def test_overlapping_limbs_of_two_people_average_their_unit_vectors():
    # person A's limb runs right along row 3, person B's down column 3: they cross on rows 2..4 x columns 2..4.
    targets, _ = encode(codec(), [person((1, 3), (6, 3)), person((3, 0), (3, 6))])
    fx, fy = targets[0, 3], targets[0, 4]
    assert (fx[3, 3].item(), fy[3, 3].item()) == (0.5, 0.5)  # not (0, 1), the last written; not (1, 1), the sum
    assert torch.equal(fx[2:5, 2:5], torch.full((3, 3), 0.5)) and torch.equal(fy[2:5, 2:5], torch.full((3, 3), 0.5))
    assert (fx[3, 6].item(), fy[3, 6].item()) == (1.0, 0.0)  # A's alone
    assert (fx[6, 3].item(), fy[6, 3].item()) == (0.0, 1.0)  # B's alone
    opposite, _ = encode(codec(), [person((1, 3), (6, 3)), person((6, 3), (1, 3))])  # the same cells, both ways
    assert torch.equal(opposite[0, 3:], torch.zeros(2, 8, 8))


def test_confidence_maps_are_the_max_over_people_not_the_sum():
    targets, _ = encode(codec(), [person((3, 3), (6, 6)), person((4.5, 3), (0, 6))])
    columns = torch.arange(8.0)
    near = torch.exp(-((columns - 3) ** 2) / 2)  # row 3: person 1's Gaussian, sigma 1 cell
    far = torch.exp(-((columns - 4.5) ** 2) / 2)
    assert torch.allclose(targets[0, 0, 3], torch.maximum(near, far))
    assert targets[0, 0, 3, 4] == pytest.approx(float(torch.exp(torch.tensor(-0.125))))  # 0.8825, not 1.49
    assert targets[0, 0].max() == 1.0
    assert torch.allclose(targets[0, 2], 1 - targets[0, :2].amax(dim=0))  # background


def test_unlabeled_joints_and_padding_rows_draw_nothing():
    paf = codec(limbs=((0, 1), (1, 2)), num_joints=3)
    one = [[pixel(1), pixel(3), 2], [pixel(5), pixel(3), 1], [0, 0, 0]]  # joint 2 unlabeled; v = 1 is labeled
    padded, _ = encode(paf, [one, [[0, 0, 0]] * 3, [[0, 0, 0]] * 3])
    alone, _ = encode(paf, [one])
    assert torch.equal(padded, alone)
    assert alone[0, 2].max() == 0  # joint 2's map
    assert alone[0, 4 + 2:].abs().max() == 0  # limb (1, 2)
    assert alone[0, 4].max() == 1  # limb (0, 1), drawn with an occluded (v = 1) joint
    flat, _ = paf.encode(torch.tensor([one], dtype=torch.float32))  # (B, K, 3): one person each
    assert torch.equal(flat, alone)


def test_a_degenerate_limb_draws_nothing():
    targets, _ = encode(codec(), [person((3, 3), (3, 3))])
    assert torch.equal(targets[0, 3:], torch.zeros(2, 8, 8))
    assert torch.isfinite(targets).all()
    beside, _ = encode(codec(), [person((1, 3), (5, 3)), person((3, 3), (3, 3))])  # nor counts in the average
    assert torch.equal(beside[0, 3:], encode(codec(), [person((1, 3), (5, 3))])[0][0, 3:])


def test_mask_zeroes_every_channel_of_its_cells_in_the_weights():
    paf = codec()
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[0, 2:4, 5:7] = True
    targets, weights = encode(paf, [person((1, 3), (5, 3))], mask=mask)
    assert torch.equal(weights[0], (~mask).float().expand(5, 8, 8))
    assert torch.equal(targets, encode(paf, [person((1, 3), (5, 3))])[0])
    with pytest.raises(ValueError, match="mask"):
        encode(paf, [person((1, 3), (5, 3))], mask=torch.zeros(1, 4, 4))


def test_channels_split_and_center_map():
    paf = PafCodec(input_size=(64, 48), stride=8, sigma=1.0, limbs=ITOP_15.limbs, num_joints=15)
    assert paf.channels == 15 + 1 + 2 * 14 and paf.heatmap_size == (8, 6)
    keypoints = torch.zeros(2, 3, 15, 3)
    keypoints[..., 2] = 2
    keypoints[..., 0] = torch.rand(2, 3, 15) * 48
    keypoints[..., 1] = torch.rand(2, 3, 15) * 64
    targets, _ = paf.encode(keypoints)
    assert targets.dtype == torch.float32
    maps, fields = paf.split(targets)
    assert maps.shape == (2, 16, 8, 6) and fields.shape == (2, 28, 8, 6)
    assert torch.equal(torch.cat([maps, fields], dim=1), targets)
    assert paf.center_map(torch.zeros(2, 2)) is None
    no_background = PafCodec(input_size=(64, 48), stride=8, sigma=1.0, limbs=ITOP_15.limbs, num_joints=15,
                             background=False)
    assert no_background.channels == 15 + 28
    assert torch.equal(no_background.encode(keypoints)[0], torch.cat([targets[:, :15], targets[:, 16:]], dim=1))


@pytest.mark.parametrize(("limbs", "message"), [
    ([(0, 15)], "limb 0 .* names joint 15, not one of 0..14"),
    ([(0, 1), (-1, 2)], "limb 1 .* names joint -1"),
    ([], "no limbs"),
    ([(3, 3)], "pairs joint 3 with itself"),
    ([(0, 1, 2)], "not a pair"),
])
def test_bad_limbs_are_one_line_errors_naming_them(limbs, message):
    with pytest.raises(ValueError, match=message) as error:
        PafCodec(input_size=(64, 64), stride=8, sigma=1.0, limbs=limbs, num_joints=15)
    assert "\n" not in str(error.value)
