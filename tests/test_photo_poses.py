"""The 2D pose sets of the shared data as named banks (cpm.data.synthetic.photo_poses): their joint tables, their
splits (no test pose ever drawn for training), the errors of a bad name, and the lifting of photographs' poses
(cpm.data.synthetic.bank.lift_photo) that keeps lying and upside-down bodies whole and in the frame."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cpm.config import load_config
from cpm.data.synthetic.bank import BONES, PHOTO_LENGTHS, BankPoses, lift, lift_photo, prior_cost
from cpm.data.synthetic.body import rotation_z
from cpm.data.synthetic.photo_poses import KNOWN, bank_entries, held_out_files, to_itop
from cpm.data.synthetic.sources import drop_missing_pose_files, held_out_bank, pose_sampler
from cpm.errors import ConfigError
from tests.test_lifting import standing
from tests.test_pose_mix import Recording


def lsp_person() -> np.ndarray:
    """A hand-made LSP pose (14, 3): neck (100, 50), head top (100, 30), hips (90, 120) and (110, 120)."""
    joints = np.zeros((14, 3))
    joints[:, 2] = 2.0
    joints[:, 0] = 100.0 + 10.0 * np.arange(14)  # every joint somewhere else, to tell them apart
    joints[:, 1] = 200.0 + np.arange(14)
    joints[12, :2], joints[13, :2] = (100.0, 50.0), (100.0, 30.0)
    joints[2, :2], joints[3, :2] = (90.0, 120.0), (110.0, 120.0)
    return joints


def test_lsp_table_puts_the_head_on_the_way_to_the_head_top_and_the_torso_midway():
    joints = lsp_person()
    itop = to_itop(joints[None], "lsp")[0]
    np.testing.assert_allclose(itop[0], (100.0, 38.0))  # head: 0.6 of the way from the neck (50) to the top (30)
    np.testing.assert_allclose(itop[1], (100.0, 50.0))  # neck
    np.testing.assert_allclose(itop[8], (100.0, 85.0))  # torso: midway between the neck and the hips' midpoint
    # ITOP r/l shoulder, elbow, hand, hip, knee, foot <- LSP 8/9, 7/10, 6/11, 2/3, 1/4, 0/5
    for itop_joint, lsp_joint in zip((2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14), (8, 9, 7, 10, 6, 11, 2, 3, 1, 4, 0, 5),
                                     strict=True):
        np.testing.assert_array_equal(itop[itop_joint], joints[lsp_joint, :2])


def test_mpii_table_uses_the_upper_neck_and_the_hips_not_thorax_or_pelvis():
    joints = np.zeros((16, 3))
    joints[:, :2] = np.arange(32).reshape(16, 2) * 3.0
    joints[8, :2], joints[9, :2] = (50.0, 40.0), (50.0, 20.0)  # upper neck, head top
    joints[2, :2], joints[3, :2] = (40.0, 100.0), (60.0, 100.0)  # hips
    joints[6, :2], joints[7, :2] = (999.0, 999.0), (-999.0, -999.0)  # pelvis and thorax: not read
    itop = to_itop(joints[None], "mpii")[0]
    np.testing.assert_allclose(itop[0], (50.0, 31.0))  # 0.45 of the way from the upper neck to the head top
    np.testing.assert_allclose(itop[1], (50.0, 40.0))
    np.testing.assert_allclose(itop[8], (50.0, 70.0))
    np.testing.assert_array_equal(itop[[2, 3, 6, 7]], joints[[12, 13, 10, 15], :2])


def test_lsp_poses_of_the_file_map_by_the_table(shared_data):
    from cpm.data.datasets.matfiles import read_ground_truth

    raw = read_ground_truth(shared_data / "lsp" / "lsp-joints-PC.mat").keypoints  # (2000, 14, 3)
    test = BankPoses(f"{shared_data}/lsp:test")
    neck, top = raw[1000, 12, :2], raw[1000, 13, :2]
    np.testing.assert_allclose(test.keypoints[0, 0], neck + 0.6 * (top - neck))  # image 1001's head
    np.testing.assert_allclose(test.keypoints[0, 8], (neck + (raw[1000, 2, :2] + raw[1000, 3, :2]) / 2) / 2)
    np.testing.assert_array_equal(test.keypoints[:, 13], raw[1000:, 0, :2])  # right foot <- right ankle


def test_lsp_train_and_test_rows_are_disjoint_and_cover_their_images(shared_data):
    train, test = BankPoses("lsp:train"), BankPoses("lsp:test")
    np.testing.assert_array_equal(train.rows, np.arange(0, 1000))  # images 1-1000
    np.testing.assert_array_equal(test.rows, np.arange(1000, 2000))  # images 1001-2000
    assert not set(train.rows) & set(test.rows)


def test_poses_with_an_unlabeled_joint_are_left_out(shared_data):
    from cpm.data.datasets.matfiles import read_ground_truth

    raw = read_ground_truth(shared_data / "lspet400" / "joints.mat").keypoints
    lspet = BankPoses("lspet:train")
    complete = np.flatnonzero((raw[..., 2] > 0).all(axis=1))
    assert len(lspet) == len(complete) == 141
    np.testing.assert_array_equal(lspet.rows, complete)
    mpii = BankPoses("mpii:test")
    assert len(mpii) == 2017 and np.isfinite(mpii.keypoints).all()


def test_k2hpd_by_name_is_its_file(shared_data):
    path = shared_data / "k2hpd" / "k2hpd_keypoints_test.mat"
    named, plain = BankPoses(f"{shared_data}/k2hpd:test"), BankPoses(path)
    np.testing.assert_array_equal(named.keypoints, plain.keypoints)
    for index in (0, 17, 39000):  # lifted as before: the frames of a K2HPD bank do not change
        np.testing.assert_array_equal(named.pose(index, 1.7), plain.pose(index, 1.7))


def test_no_pose_of_a_test_split_is_drawn_for_training(shared_data):
    from cpm.data.synthetic.scene import sample_scene
    from cpm.runtime.build import build_datasets

    config = load_config(None, ["data.pose_mix={procedural = 0.2, bank = 0.8}", "data.train_samples=600",
                                "data.val_samples=2", 'data.bank_files="k2hpd:train,lsp:train,lspet:train"'])
    assert held_out_bank(config.data) == "k2hpd:test,lsp:test"
    train_set, val_set = build_datasets(config)
    frames = train_set.source
    mix = frames.pose_source
    bank = mix.sources["bank"]
    assert bank.entries == ("k2hpd:train", "lsp:train", "lspet:train")
    assert val_set.source.pose_source.sources["bank"].entries == ("k2hpd:test", "lsp:test")
    mix.sources["bank"] = recording = Recording(bank)
    for index in range(600):  # the poses of the training samples, as rendering draws them
        source = mix.source(frames.seed, index)
        if source is not None:
            sample_scene(np.random.default_rng([frames.seed, index]), source)
    drawn = np.array(recording.drawn)
    shares = np.bincount(bank.entry_of[drawn], minlength=3) / len(drawn)
    assert len(drawn) > 400 and np.all(np.abs(shares - 1 / 3) < 0.08)  # the three sets share the draws
    test = BankPoses("lsp:test").keypoints
    test_poses = {pose.tobytes() for pose in test}
    assert not any(bank.keypoints[i].tobytes() in test_poses for i in drawn)
    assert set(bank.rows[drawn[bank.entry_of[drawn] == 1]]) <= set(range(1000))  # LSP images 1-1000 only


@pytest.mark.parametrize("files", ["lsp:val", "foo:train", "mpii:train", "k2hpd:train,lsp:val"])
def test_a_bad_set_name_fails_in_one_line_naming_the_key_and_the_known_names(files):
    with pytest.raises(ConfigError) as error:
        pose_sampler("bank", files)
    message = str(error.value)
    assert "\n" not in message and message.startswith("data.bank_files: ")
    assert files.split(",")[-1] in message and KNOWN in message
    assert "lsp:test" in KNOWN and "mpii:test" in KNOWN and "lspet:train" in KNOWN


def test_a_bad_set_name_is_not_taken_for_missing_data(tmp_path):
    """data.missing_pose_files = "procedural" gives a missing file's weight to the procedural prior, never a typo's."""
    config = load_config(None, ["data.pose_mix={procedural = 1, bank = 1}", 'data.bank_files="lsp:val"',
                                'data.missing_pose_files="procedural"'])
    with pytest.raises(ConfigError, match="data.bank_files: 'lsp:val' is neither a file nor a known pose set"):
        drop_missing_pose_files(config)
    lines = []
    absent = load_config(None, ["data.pose_mix={procedural = 1, bank = 1}", f'data.bank_files="{tmp_path}/lsp:train"',
                                'data.missing_pose_files="procedural"'])
    dropped = drop_missing_pose_files(absent, lines.append)
    assert dropped.data.pose_mix.bank == 0 and dropped.data.bank_files == ""
    assert len(lines) == 1 and f"{tmp_path}/lsp/lsp-joints-PC.mat is not there" in lines[0]


def test_named_sets_resolve_in_their_folder_and_hold_out_their_test_splits(tmp_path):
    entry, = bank_entries(f"{tmp_path}/mpii:test")
    assert entry.path == tmp_path / "mpii" / "tompson_valid_detections.mat" and entry.rows is None
    entry, = bank_entries("lsp:test")
    assert entry.path.parts[-2:] == ("lsp", "lsp-joints-PC.mat") and entry.rows == (1000, 2000)
    assert held_out_files(f"k2hpd:train, {tmp_path}/lsp:train,lspet:train") == f"k2hpd:test,{tmp_path}/lsp:test"
    with pytest.raises(ConfigError, match="data.val_bank_files: no test split of data.bank_files"):
        held_out_files("lspet:train")


def test_eval_pose_sources_have_lsp_and_mpii_rows(tmp_path):
    from cpm.cli.eval import pose_source_overrides

    (tmp_path / "lsp").mkdir()
    (tmp_path / "lsp" / "lsp-joints-PC.mat").write_bytes(b"")
    sources, notes = pose_source_overrides(tmp_path)
    lsp = sources["LSP test poses"]
    assert lsp["bank_files"] == lsp["val_bank_files"] == f"{tmp_path}/lsp:test"
    assert lsp["pose_mix"] == {"procedural": 0.0, "bvh": 0.0, "bank": 1.0}
    assert "MPII validation poses" not in sources
    assert any(note.startswith("MPII validation poses: skipped") for note in notes)


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    pelvis = (joints[9] + joints[10]) / 2
    return np.array([np.linalg.norm(joints[c] - (pelvis if p < 0 else joints[p])) for p, c in BONES])


def turned(points: np.ndarray, degrees: float) -> np.ndarray:
    """Image points turned anticlockwise on the screen by ``degrees`` about the hips' midpoint."""
    a = math.radians(degrees)
    centre = (points[9] + points[10]) / 2
    return (points - centre) @ np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]]).T + centre


def upright_cost(joints: np.ndarray) -> float:
    """The prior's cost of a body-frame pose turned about the camera axis until its spine points up."""
    spine = joints[1] - (joints[9] + joints[10]) / 2
    return prior_cost(joints @ rotation_z(-math.atan2(-spine[0], spine[1])).T)


@pytest.mark.parametrize("degrees", [90.0, 180.0, -120.0])
def test_a_lying_or_upside_down_pose_lifts_as_the_standing_pose_turned(degrees):
    points = standing(r_thigh=0.7, l_fore=0.5, r_upper=0.8, spine=0.9)  # foreshortened bones: signs to choose
    upright = lift_photo(points, height=1.7)
    np.testing.assert_allclose(lift_photo(turned(points, degrees), height=1.7),
                               upright @ rotation_z(math.radians(degrees)).T, atol=1e-9)
    np.testing.assert_allclose(bone_lengths(upright), np.array(PHOTO_LENGTHS) * 1.7, rtol=1e-9)
    assert upright_cost(upright) < 0.01
    if degrees == -120.0:  # the plain lift scores it against a standing trunk, and bends it beyond the limits
        assert upright_cost(lift(turned(points, degrees), height=1.7)) > 1.0


def test_photo_poses_lift_within_the_prior_and_keep_their_arms_out_of_the_trunk(shared_data):
    poses = BankPoses("lsp:test").keypoints
    pelvis = (poses[:, 9] + poses[:, 10]) / 2
    spine = poses[:, 1] - pelvis
    away = np.degrees(np.abs(np.arctan2(spine[:, 0], -spine[:, 1])))  # 0 upright, 180 upside down
    hard = np.flatnonzero(away > 60)
    assert len(hard) >= 80
    photo = [lift_photo(poses[i], height=1.0) for i in hard]
    plain = [lift(poses[i], height=1.0) for i in hard]
    assert np.median([upright_cost(j) for j in photo]) < 0.05 < 0.5 < np.median([upright_cost(j) for j in plain])

    def arm_in_trunk(joints: np.ndarray) -> bool:  # an elbow or a hand within 8 % of the height of the spine
        start, spine = (joints[9] + joints[10]) / 2, joints[1] - (joints[9] + joints[10]) / 2
        along = np.clip((joints[4:8] - start) @ spine / (spine @ spine), 0.0, 1.0)
        return bool((np.linalg.norm(joints[4:8] - start - along[:, None] * spine, axis=1) < 0.08).any())

    sample = range(0, 1000, 4)
    assert np.mean([arm_in_trunk(lift_photo(poses[i], height=1.0)) for i in sample]) < 0.1
    assert np.mean([arm_in_trunk(lift(poses[i], height=1.0)) for i in sample]) > 0.15


class OnePose:
    """A pose source that always gives pose ``index`` of ``bank``."""

    needs_yaw = False

    def __init__(self, bank: BankPoses, index: int) -> None:
        self.bank, self.index = bank, index

    def __call__(self, rng: np.random.Generator, height: float) -> np.ndarray:
        return self.bank.pose(self.index, height)


def test_lying_and_upside_down_lsp_test_poses_render_whole_and_in_the_frame(shared_data):
    from cpm.data.synthetic.frames import render_sample

    bank = BankPoses("lsp:test")
    pelvis = (bank.keypoints[:, 9] + bank.keypoints[:, 10]) / 2
    spine = bank.keypoints[:, 1] - pelvis
    away = np.degrees(np.abs(np.arctan2(spine[:, 0], -spine[:, 1])))
    hard = np.flatnonzero(away > 60)
    inside, extent = [], []
    for index in hard:
        keypoints = render_sample(0, int(index), OnePose(bank, int(index)))["keypoints"]  # (15, 3)
        inside.append(bool((keypoints[:, 2] > 0).all()))  # v = 0: projected outside the frame
        extent.append(float(np.ptp(keypoints[:, :2], axis=0).max()))
        if away[index] > 150:  # upside down in the photograph, upside down in the frame: the head below the hips
            assert keypoints[0, 1] > (keypoints[9, 1] + keypoints[10, 1]) / 2
    assert np.mean(inside) >= 0.95  # the scenes' own tight framings (~5 % of frames cut a joint) aside
    assert 20.0 < min(extent) and max(extent) < 212.0
