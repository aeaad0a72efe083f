from cpm.skeleton import DEFAULT_SKELETON, ITOP_15, LSP_14


def test_default_skeleton_is_the_15_joint_itop_order():
    assert DEFAULT_SKELETON is ITOP_15
    assert ITOP_15.joint_names[:3] == ("head", "neck", "right_shoulder")
    assert ITOP_15.joint_names[8] == "torso"
    assert ITOP_15.num_joints == 15
    assert [ITOP_15.joint_names[i] for i in ITOP_15.torso] == ["left_shoulder", "right_hip"]


def test_flip_permutation_swaps_left_and_right_names_and_is_an_involution():
    for skeleton in (ITOP_15, LSP_14):
        permutation = skeleton.flip_permutation
        names = [skeleton.joint_names[i] for i in permutation]
        for original, flipped in zip(skeleton.joint_names, names, strict=True):
            if original.startswith("left_"):
                assert flipped == "right_" + original[5:]
            elif original.startswith("right_"):
                assert flipped == "left_" + original[6:]
            else:
                assert flipped == original
        assert [permutation[i] for i in permutation] == list(range(skeleton.num_joints))


def test_limbs_connect_every_joint():
    for skeleton in (ITOP_15, LSP_14):
        touched = {i for limb in skeleton.limbs for i in limb}
        assert touched == set(range(skeleton.num_joints))
