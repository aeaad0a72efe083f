"""Part affinity field targets (`cpm.targets.paf`) and the bottom-up grouping (`cpm.targets.grouping`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cpm.bench.grouping import grouping_table
from cpm.data.synthetic.crowd import render_crowd
from cpm.skeleton import ITOP_15
from cpm.targets.grouping import MATCHINGS, Person, group_people, match_pairs, score_limbs
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


# --- grouping -----------------------------------------------------------------------------------------------------

def chain_maps(cells: list[tuple[float, float]], limbs, size: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    """One person whose joints sit at ``cells`` -> the confidence maps and fields PafCodec encodes for it."""
    paf = codec(limbs=limbs, num_joints=len(cells), size=size)
    targets, _ = encode(paf, [person(*cells)])
    return paf.split(targets[0])


def test_grouping_returns_a_clean_person_exactly_with_the_released_score():
    limbs = ((0, 1), (1, 2), (2, 3))
    cells = [(2, 2), (6, 2), (6, 6), (9, 6)]  # on cell centres, limbs along rows and columns
    maps, fields = chain_maps(cells, limbs)
    for matching in MATCHINGS:
        people = group_people(maps, fields, limbs, stride=STRIDE, matching=matching)
        assert len(people) == 1
        assert people[0].keypoints.tolist() == [[pixel(x), pixel(y), 1.0] for x, y in cells]
        # (4 peaks of 1 + 3 line integrals of 1, no distance penalty) / 4 joints
        assert people[0].score == pytest.approx(7 / 4)
    from_numpy = group_people(maps.numpy(), fields.numpy(), limbs, stride=STRIDE)
    assert from_numpy[0].keypoints.tolist() == people[0].keypoints.tolist()


def test_peaks_are_refined_below_the_cell():
    maps, fields = chain_maps([(2.3, 2.6), (6.8, 2.1), (6.4, 6.7)], ((0, 1), (1, 2)))
    (found,) = group_people(maps, fields, ((0, 1), (1, 2)), stride=STRIDE)
    expected = [[pixel(2.3), pixel(2.6)], [pixel(6.8), pixel(2.1)], [pixel(6.4), pixel(6.7)]]
    assert found.keypoints[:, :2] == pytest.approx(torch.tensor(expected).numpy(), abs=1e-3)


def test_people_built_from_fragments_are_merged():
    # limbs in this order grow {2, 3} and {0, 1} apart before (1, 2) joins them: one person of 4 joints, not two
    # people of 2 (which min_parts = 3 would drop).
    limbs = ((2, 3), (0, 1), (1, 2))
    maps, fields = chain_maps([(2, 2), (6, 2), (6, 6), (9, 6)], limbs)
    people = group_people(maps, fields, limbs, stride=STRIDE)
    assert [int((p.keypoints[:, 2] > 0).sum()) for p in people] == [4]
    assert people[0].score == pytest.approx(7 / 4)


def test_people_with_fewer_than_min_parts_joints_are_dropped():
    limbs = ((0, 1), (1, 2), (2, 3))
    paf = codec(limbs=limbs, num_joints=4, size=12)
    pair = [[pixel(2), pixel(9), 2], [pixel(6), pixel(9), 2], [0, 0, 0], [0, 0, 0]]  # two joints labeled
    targets, _ = encode(paf, [person((2, 2), (6, 2), (6, 6), (9, 6)), pair])
    maps, fields = paf.split(targets[0])
    assert [int((p.keypoints[:, 2] > 0).sum()) for p in group_people(maps, fields, limbs, stride=STRIDE)] == [4]
    assert sorted(int((p.keypoints[:, 2] > 0).sum())
                  for p in group_people(maps, fields, limbs, stride=STRIDE, min_parts=2)) == [2, 4]


def test_a_connection_does_not_replace_a_joint_its_person_has():
    # Limbs (0, 1), (1, 2) build {A, B, C}; then limb (0, 2) connects A to D (4 cells, score 1) rather than to C
    # (8 cells, over half the 96-pixel image: score about 0.75). The person keeps C; the released demo overwrites it.
    limbs = ((0, 1), (1, 2), (0, 2))
    paf = codec(limbs=limbs, num_joints=3, size=12)
    a, b, c, d = (2, 2), (6, 6), (10, 2), (2, 6)
    other = [[pixel(a[0]), pixel(a[1]), 2], [0, 0, 0], [pixel(d[0]), pixel(d[1]), 2]]
    targets, _ = encode(paf, [person(a, b, c), other])
    maps, fields = paf.split(targets[0])
    (found,) = group_people(maps, fields, limbs, stride=STRIDE)
    assert found.keypoints[:, :2].tolist() == [[pixel(x), pixel(y)] for x, y in (a, b, c)]


def test_a_field_against_the_limb_connects_nothing():
    limbs = ((0, 1), (1, 2))
    maps, fields = chain_maps([(2, 2), (6, 2), (6, 6)], limbs)
    assert len(group_people(maps, fields, limbs, stride=STRIDE)) == 1
    assert group_people(maps, -fields, limbs, stride=STRIDE) == []  # the line integral is signed
    swapped = fields.view(2, 2, 12, 12).flip(1).flatten(0, 1)  # x and y exchanged: neither limb holds
    assert group_people(maps, swapped, limbs, stride=STRIDE) == []


def test_score_of_a_pair_is_the_mean_of_the_sampled_field_plus_the_distance_prior():
    field = torch.zeros(1, 2, 8, 32)
    field[0, 0, 3, 2:30] = 1.0  # unit x along row 3, columns 2..29
    first, second = torch.tensor([[[2.0, 3.0]]]), torch.tensor([[[29.0, 3.0], [16.0, 3.0], [9.0, 3.0]]])
    options = {"stride": STRIDE, "samples": 10, "score_threshold": 0.05, "min_fraction": 0.8}
    score, allowed = score_limbs(field, first, second, image_height=64.0, **options)
    # 0.5 * 64 / (27 * 8) - 1 = -0.852: a limb longer than half the image pays for it; 14 cells: -0.714; 7: -0.429
    assert score[0, 0].tolist() == pytest.approx([1 + 0.5 * 64 / (27 * 8) - 1, 1 + 0.5 * 64 / (14 * 8) - 1,
                                                  1 + 0.5 * 64 / (7 * 8) - 1], abs=1e-5)
    assert allowed.all()
    tall, _ = score_limbs(field, first, second, image_height=1000.0, **options)
    assert tall[0, 0].tolist() == pytest.approx([1, 1, 1])
    half = field.clone()
    half[0, 0, 3, 16:] = 0.0  # the field stops halfway: the mean halves and too few samples are above threshold
    score, allowed = score_limbs(half, first, second[:, :1], image_height=1000.0, **options)
    assert score.item() == pytest.approx(0.5, abs=0.06) and not allowed.item()


def test_optimal_matching_beats_greedy_where_the_best_pair_blocks_two():
    score = np.array([[0.9, 0.8], [0.7, 0.0]])
    allowed = np.array([[True, True], [True, False]])
    assert match_pairs(score, allowed, "greedy") == [(0, 0, 0.9)]  # takes 0.9, then (1, 0) has its column used
    assert sorted(match_pairs(score, allowed, "optimal")) == [(0, 1, 0.8), (1, 0, 0.7)]  # 1.5 in all
    assert match_pairs(score, ~allowed, "optimal") == [(1, 1, 0.0)]
    assert match_pairs(np.zeros((0, 3)), np.zeros((0, 3), bool), "greedy") == []


def crowd_poses(count: int) -> list[np.ndarray]:
    """The fully labeled people of `render_crowd` frames (seed 0), (15, 3) in the frame's pixels."""
    poses, index = [], 0
    while len(poses) < count:
        poses += [p for p in render_crowd(0, index)["keypoints"] if (p[:, 2] > 0).all()]
        index += 1
    return poses[:count]


def crowd_scene(rng: np.random.Generator, poses: list[np.ndarray], people: int, *, size: int = 46) -> np.ndarray:
    """``people`` crowd poses, each scaled to 10-20 cells tall and placed at random in a size x size-cell input so
    that every limb is at least 1.5 cells long (a shorter one has almost no cell centre inside its rectangle) and
    no joint lies within 3 cells of the same joint of someone else (closer, two peaks merge into one) -> (P, 15, 3)
    in input pixels. Limbs of different people may cross."""
    placed: list[np.ndarray] = []
    limbs = np.array(ITOP_15.limbs)
    while len(placed) < people:
        pose = poses[rng.integers(len(poses))]
        xy = pose[:, :2] - pose[:, :2].min(axis=0)
        xy = xy * rng.uniform(10, 20) * STRIDE / xy[:, 1].max()
        room = size * STRIDE - 1 - 2 * STRIDE - xy.max(axis=0)
        if (room < 0).any():
            continue
        xy = xy + STRIDE + rng.uniform(0, 1, 2) * room
        if np.linalg.norm(xy[limbs[:, 0]] - xy[limbs[:, 1]], axis=1).min() < 1.5 * STRIDE:
            continue
        if all(np.linalg.norm(xy - other[:, :2], axis=1).min() >= 3 * STRIDE for other in placed):
            placed.append(np.concatenate([xy, pose[:, 2:]], axis=1))
    return np.stack(placed).astype(np.float32)


def recovered(truth: np.ndarray, found: list[Person], tolerance: float) -> int:
    """How many people of ``truth`` (P, K, 3) have a found person, each used once, with every labeled joint found
    within ``tolerance`` pixels."""
    free, count = set(range(len(found))), 0
    for person_truth in truth:
        labeled = person_truth[:, 2] > 0
        for index in sorted(free):
            keypoints = found[index].keypoints[labeled]
            if ((np.linalg.norm(keypoints[:, :2] - person_truth[labeled, :2], axis=1) <= tolerance)
                    & (keypoints[:, 2] > 0)).all():
                free.remove(index)
                count += 1
                break
    return count


def grouping_recovery(matching: str, *, noise: float, blur: float, frames: int = 20) -> tuple[float, int, float]:
    """-> the fraction of people recovered over ``frames`` scenes of 1..5 people, how many extra people were found,
    and the largest error of a recovered joint in cells (clean maps only: nan otherwise)."""
    rng, generator = np.random.default_rng(7), torch.Generator().manual_seed(7)
    poses = crowd_poses(40)
    paf = PafCodec(input_size=(46 * STRIDE, 46 * STRIDE), stride=STRIDE, sigma=1.0, limbs=ITOP_15.limbs,
                   num_joints=15)
    total = hits = extra = 0
    worst = 0.0
    for frame in range(frames):
        truth = crowd_scene(rng, poses, 1 + frame % 5)
        targets, _ = paf.encode(torch.from_numpy(truth)[None])
        targets = targets[0] + noise * torch.randn(targets.shape[1:], generator=generator)
        maps, fields = paf.split(targets)
        found = group_people(maps, fields, ITOP_15.limbs, stride=STRIDE, matching=matching, blur=blur)
        count = recovered(truth, found, tolerance=STRIDE)
        total, hits, extra = total + len(truth), hits + count, extra + len(found) - count
        for candidate in found if noise == 0 else ():
            errors = np.linalg.norm(truth[:, :, :2] - candidate.keypoints[None, :, :2], axis=-1).min(axis=0)  # (K,)
            worst = max(worst, float(errors[candidate.keypoints[:, 2] > 0].max()))
    return hits / total, extra, worst / STRIDE if noise == 0 else float("nan")


@pytest.mark.parametrize("matching", MATCHINGS)
def test_grouping_recovers_every_person_of_clean_crowd_maps(matching):
    fraction, extra, worst = grouping_recovery(matching, noise=0.0, blur=0.0)
    assert fraction == 1.0 and extra == 0
    assert worst < 0.1  # cells: the log-parabola refinement is exact for a lone Gaussian


@pytest.mark.parametrize("matching", MATCHINGS)
def test_grouping_recovers_most_people_of_noisy_crowd_maps(matching):
    # N(0, 0.1^2) on every channel; a 1-cell blur of S before the peak search (as the released demo blurs) keeps the
    # noise's local maxima from flooding the candidates. Measured on these 60 people: greedy and optimal 100 %, no
    # extra person; on the 300 people of 100 scenes 99.7 % each. Without the blur (5 scenes): greedy 87 %, optimal
    # 40 %, with some 400 extra people, from about 180 peaks per joint.
    fraction, extra, _ = grouping_recovery(matching, noise=0.1, blur=1.0)
    assert fraction >= 0.95 and extra <= 3


@pytest.mark.parametrize(("limbs", "fields_channels", "options", "message"), [
    ([(0, 3)], 2, {}, "names joint 3, not one of 0..2"),
    ([], 0, {}, "no limbs"),
    ([(0, 1)], 4, {}, r"L must be \(2 x 1 limbs"),
    ([(0, 1)], 2, {"matching": "hungarian"}, "matching must be one of greedy, optimal"),
])
def test_grouping_rejects_bad_input_in_one_line(limbs, fields_channels, options, message):
    with pytest.raises(ValueError, match=message) as error:
        group_people(torch.zeros(4, 6, 6), torch.zeros(fields_channels, 6, 6), limbs, stride=STRIDE, **options)
    assert "\n" not in str(error.value)


def test_grouping_benchmark_prints_one_row_per_number_of_people():
    table = grouping_table(people=(1, 3), frames=2, seconds=0.0)
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "3"]
    assert all(len(row.split("|")) == 11 for row in rows)  # 9 columns
    assert rows[0].split("|")[6].strip().endswith("/ 2")  # people annotated in 2 one-person frames
