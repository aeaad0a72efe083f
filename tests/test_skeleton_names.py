"""The skeleton tables checked against the joint names, never against themselves.

Every expectation here is derived from ``joint_names`` and a few documented conventions written out below; no test
takes ``flip_pairs``, ``torso`` or ``TO_ITOP_15`` as its own expected answer.

Side conventions (cpm/skeleton.py and ../shared/data/README.md):

- every skeleton but K2HPD names sides by the person: ``left_*`` / ``right_*`` is the person's own left / right;
- K2HPD names sides by the image: ``image_left_*`` is the person's right (most frames face the camera), so its
  person-side is found through `K2HPD_PERSON_SIDE`. A horizontal mirror still swaps ``image_left_X`` with
  ``image_right_X``, whichever convention names them.
"""

from __future__ import annotations

import numpy as np
import pytest

from cpm.skeleton import DEFAULT_SKELETON, SKELETONS, TO_ITOP_15, map_to_default

SIDE_PREFIXES = ("image_left_", "image_right_", "left_", "right_")  # longest first: "image_left_" before "left_"
K2HPD_PERSON_SIDE = {"image_left": "right", "image_right": "left"}  # documented in cpm/skeleton.py (K2HPD_19)
MIRROR = {"left": "right", "right": "left", "image_left": "image_right", "image_right": "image_left"}

# The torso pair of the CPM/LSP PCK protocol (Wei et al. 2016, Sec. 4): the person's left shoulder and right hip.
TORSO = (("left", "shoulder"), ("right", "hip"))

# ITOP-15 part -> the parts of other skeletons that mark the same place. Anything not listed is not a synonym.
SYNONYMS = {
    "head": {"head"},  # the head centre; LSP's/MPII's head_top and COCO's/FLIC's nose are not it
    "neck": {"neck", "upper_neck"},
    "shoulder": {"shoulder"},
    "elbow": {"elbow"},
    "hand": {"hand", "wrist"},
    "torso": {"torso", "belly"},  # J-HMDB's belly is its mid-torso joint; MPII's pelvis and thorax are not it
    "hip": {"hip"},
    "knee": {"knee"},
    "foot": {"foot", "ankle"},
}


def side_and_part(name: str) -> tuple[str | None, str]:
    """``"left_elbow"`` -> ("left", "elbow"); ``"image_right_hip"`` -> ("image_right", "hip"); ``"neck"`` -> (None,
    "neck")."""
    for prefix in SIDE_PREFIXES:
        if name.startswith(prefix):
            return prefix[:-1], name[len(prefix):]
    assert "left" not in name and "right" not in name, f"{name!r}: a side word in an unexpected place"
    return None, name


def person_side(skeleton_name: str, side: str | None) -> str | None:
    if skeleton_name == "k2hpd19" and side is not None:
        return K2HPD_PERSON_SIDE[side]
    assert side in (None, "left", "right"), f"{skeleton_name}: side {side!r} without a documented meaning"
    return side


def mirror_name(name: str) -> str:
    """The name of the joint a horizontal mirror puts in this joint's place: the other side's joint of the same part,
    or the joint itself on the midline."""
    side, part = side_and_part(name)
    return name if side is None else f"{MIRROR[side]}_{part}"


def named(skeleton_name: str) -> dict[tuple[str | None, str], int]:
    """{(person's side, part): index} for one skeleton."""
    table = {}
    for index, name in enumerate(SKELETONS[skeleton_name].joint_names):
        side, part = side_and_part(name)
        table[person_side(skeleton_name, side), part] = index
    return table


def test_every_skeleton_is_covered_and_its_names_are_unique_and_parse():
    assert {"itop15", "lsp14", "mpii16", "jhmdb15", "coco17", "flic10", "k2hpd19"} <= set(SKELETONS)
    for name, skeleton in SKELETONS.items():
        assert len(set(skeleton.joint_names)) == skeleton.num_joints, name
        assert len(named(name)) == skeleton.num_joints, name  # no two joints on the same person-side and part


@pytest.mark.parametrize("name", sorted(SKELETONS))
def test_flip_pairs_swap_each_sided_joint_with_the_other_side_of_the_same_part(name):
    skeleton = SKELETONS[name]
    names = skeleton.joint_names
    expected = {frozenset((names.index(n), names.index(mirror_name(n)))) for n in names if mirror_name(n) != n}
    assert {frozenset(pair) for pair in skeleton.flip_pairs} == expected
    assert len(skeleton.flip_pairs) == len(expected)  # each pair once
    for a, b in skeleton.flip_pairs:
        (side_a, part_a), (side_b, part_b) = side_and_part(names[a]), side_and_part(names[b])
        assert part_a == part_b and MIRROR[side_a] == side_b, (names[a], names[b])


@pytest.mark.parametrize("name", sorted(SKELETONS))
def test_flip_permutation_renames_every_joint_to_its_mirror_name(name):
    skeleton = SKELETONS[name]
    names = skeleton.joint_names
    assert [names[i] for i in skeleton.flip_permutation] == [mirror_name(n) for n in names]


@pytest.mark.parametrize("name", sorted(SKELETONS))
def test_torso_pair_is_the_persons_left_shoulder_and_right_hip(name):
    table = named(name)
    assert SKELETONS[name].torso == (table[TORSO[0]], table[TORSO[1]])


def test_k2hpd_torso_is_named_by_the_image_as_documented():
    # The person's left shoulder is on the image's right in a frontal frame, the right hip on the image's left.
    skeleton = SKELETONS["k2hpd19"]
    assert [skeleton.joint_names[i] for i in skeleton.torso] == ["image_right_shoulder", "image_left_hip"]


@pytest.mark.parametrize("name", sorted(SKELETONS))
def test_no_limb_crosses_from_one_side_to_the_other_but_between_like_parts(name):
    # A limb joining the left elbow to the right wrist would draw a bone across the body; only the shoulder
    # line and the hip line (and pairs like COCO's eyes) join the two sides, and then the same part.
    skeleton = SKELETONS[name]
    for a, b in skeleton.limbs:
        (side_a, part_a), (side_b, part_b) = (side_and_part(skeleton.joint_names[j]) for j in (a, b))
        if side_a and side_b and side_a != side_b:
            assert part_a == part_b, (skeleton.joint_names[a], skeleton.joint_names[b])


@pytest.mark.parametrize("source", sorted(TO_ITOP_15))
def test_mapping_to_itop15_takes_the_same_joint_or_a_declared_synonym(source):
    mapping = TO_ITOP_15[source]
    target = DEFAULT_SKELETON.joint_names
    assert len(mapping) == len(target)
    source_names = SKELETONS[source].joint_names
    mapped = [index for index in mapping if index >= 0]
    assert len(set(mapped)) == len(mapped), "two ITOP joints read the same source joint"
    available = named(source)
    for k, index in enumerate(mapping):
        side, part = side_and_part(target[k])
        candidates = {available[side, p] for p in SYNONYMS[part] if (side, p) in available}
        if index < 0:
            assert not candidates, f"{source}: ITOP {target[k]} left unmapped, but {source} has " + ", ".join(
                source_names[c] for c in sorted(candidates))
        else:
            assert index in candidates, f"{source}: ITOP {target[k]} <- {source_names[index]}"


def test_every_skeleton_but_itop_has_a_mapping():
    assert set(TO_ITOP_15) == set(SKELETONS) - {DEFAULT_SKELETON.name}


@pytest.mark.parametrize("source", sorted(TO_ITOP_15))
def test_map_to_default_moves_rows_and_blanks_the_joints_a_source_lacks(source):
    count = SKELETONS[source].num_joints
    keypoints = np.stack([np.arange(count) + 1.0, np.arange(count) + 101.0, np.full(count, 2.0)], axis=-1)
    mapped = map_to_default(np.stack([keypoints, keypoints]), source)  # (2, 15, 3): batched over samples
    assert mapped.shape == (2, DEFAULT_SKELETON.num_joints, 3)
    for k, index in enumerate(TO_ITOP_15[source]):
        expected = keypoints[index] if index >= 0 else [0.0, 0.0, 0.0]  # unlabeled: x = y = 0, v = 0
        assert mapped[:, k].tolist() == [list(expected)] * 2, DEFAULT_SKELETON.joint_names[k]
