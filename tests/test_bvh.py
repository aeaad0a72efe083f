"""BVH reader and forward kinematics (cpm.data.synthetic.bvh), and the opt-in bvh / bank pose sources."""

from __future__ import annotations

import numpy as np
import pytest

from cpm.data.synthetic.bank import BankPoses
from cpm.data.synthetic.bvh import BVHPoses, read_bvh, to_body_frame
from cpm.data.synthetic.camera import Camera, project_points
from cpm.data.synthetic.frames import render_sample
from cpm.data.synthetic.scene import sample_scene
from cpm.errors import CPMError

TINY = """HIERARCHY
ROOT Hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Yrotation Xrotation
  JOINT Spine
  {
    OFFSET 0 1 0
    CHANNELS 3 Zrotation Yrotation Xrotation
    End Site
    {
      OFFSET 0 1 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.5
0 0 0 0 0 0 0 0 0
1 2 3 90 0 0 0 0 90
"""


def test_forward_kinematics_of_a_hand_computed_chain(tmp_path):
    (tmp_path / "tiny.bvh").write_text(TINY)
    motion = read_bvh(tmp_path / "tiny.bvh")
    assert motion.names == ["Hips", "Spine", "Spine_end"] and motion.parents == [-1, 0, 1]
    assert motion.frames.shape == (2, 9) and motion.frame_time == 0.5
    positions = motion.positions()
    np.testing.assert_allclose(positions[0], [[0, 0, 0], [0, 1, 0], [0, 2, 0]], atol=1e-12)
    # Frame 2: root at (1, 2, 3) turned 90 degrees about z: the spine offset (0, 1, 0) points along -x.
    # Spine turned 90 degrees about x: Rz(90) Rx(90) (0, 1, 0) = Rz(90) (0, 0, 1) = (0, 0, 1).
    np.testing.assert_allclose(positions[1], [[1, 2, 3], [0, 2, 3], [0, 2, 4]], atol=1e-12)


def test_euler_channels_apply_in_the_listed_order(tmp_path):
    text = TINY.replace("Zrotation Yrotation Xrotation\n  JOINT", "Xrotation Yrotation Zrotation\n  JOINT")
    text = text.replace("1 2 3 90 0 0 0 0 90", "0 0 0 90 0 90 0 0 0")  # root: Rx(90) Ry(0) Rz(90)
    (tmp_path / "order.bvh").write_text(text)
    # Rx(90) Rz(90) (0, 1, 0) = Rx(90) (-1, 0, 0) = (-1, 0, 0).
    np.testing.assert_allclose(read_bvh(tmp_path / "order.bvh").positions()[1, 1], [-1, 0, 0], atol=1e-12)


def test_truncated_and_inconsistent_files_raise_naming_the_file(tmp_path):
    (tmp_path / "cut.bvh").write_text(TINY.split("MOTION")[0])
    with pytest.raises(CPMError, match="cut.bvh: truncated"):
        read_bvh(tmp_path / "cut.bvh")
    (tmp_path / "short.bvh").write_text(TINY.replace("1 2 3 90 0 0 0 0 90", "1 2 3"))
    with pytest.raises(CPMError, match="short.bvh: expected 2 frames of 9"):
        read_bvh(tmp_path / "short.bvh")
    (tmp_path / "one.bvh").write_text(TINY.replace("Frames: 2", "Frames: 3"))  # a frame missing
    with pytest.raises(CPMError, match="one.bvh: expected 3 frames of 9"):
        read_bvh(tmp_path / "one.bvh")
    (tmp_path / "word.bvh").write_text(TINY.replace("1 2 3 90", "1 2 x 90"))
    with pytest.raises(CPMError, match=r"word.bvh: line 20: not a number"):  # the file's own line number
        read_bvh(tmp_path / "word.bvh")


def test_frames_are_read_as_float_reads_them_blank_lines_and_extra_frames_aside(tmp_path):
    values = ["0.1", "-2.5e-3", "1e308", "7", "0.30000000000000004", "-0", "123456.789012345678", "3.14159", "1"]
    text = TINY.replace("1 2 3 90 0 0 0 0 90", "\n" + " ".join(values) + "\n\n" + "9 " * 9)
    (tmp_path / "values.bvh").write_text(text)
    motion = read_bvh(tmp_path / "values.bvh")
    assert motion.frames.shape == (2, 9) and motion.frames.dtype == np.float64  # the third row is past Frames: 2
    assert motion.frames[1].tolist() == [float(v) for v in values]


def test_body_frame_puts_the_pelvis_at_the_origin_facing_plus_z_at_the_renderers_size():
    joints = np.zeros((15, 3))
    joints[[9, 10]] = [[0, 1, 0.1], [0, 1, -0.1]]  # hips along z: the person faces -x
    joints[[11, 12, 13, 14]] = [[0, 0.5, 0.1], [0, 0.5, -0.1], [0, 0, 0.1], [0, 0, -0.1]]
    joints[1], joints[0] = [0, 1.6, 0], [0, 1.8, 0]
    body = to_body_frame(joints, height=1.79)
    np.testing.assert_allclose((body[9] + body[10]) / 2, 0, atol=1e-12)
    assert body[10, 0] > 0 and abs(body[10, 2]) < 1e-12  # left hip on +x
    # chain head-neck (0.2) + neck-pelvis (0.6) + leg (1.0) = 1.8 -> 0.895 * 1.79
    np.testing.assert_allclose(body[0, 1], 0.8 * 0.895 * 1.79 / 1.8)


def test_cmu_clips_map_to_an_upright_person_with_left_on_plus_x(shared_data):
    motion = read_bvh(shared_data / "mocap" / "cmu" / "02_01.bvh")
    joints = motion.joints(frames=slice(0, 1))[0]
    assert joints[0, 1] > joints[1, 1] > joints[8, 1] > joints[11, 1] > joints[13, 1]  # head above ... ankle
    body = to_body_frame(joints, height=1.75)
    assert body[3, 0] > 0 > body[2, 0] and body[10, 0] > 0 > body[9, 0]


def test_bvh_pose_source_renders_its_frames_and_leaves_the_default_stream_alone(shared_data):
    poses = BVHPoses(shared_data / "mocap" / "cmu" / "02_01.bvh")
    first = render_sample(0, 5, poses)
    np.testing.assert_array_equal(first["image"], render_sample(0, 5, poses)["image"])  # a pure function
    scene = sample_scene(np.random.default_rng([0, 5]), poses)
    joints, _, _ = scene.geometry
    offset = np.array([scene.position[0], 0.0, scene.position[1]])
    np.testing.assert_allclose(first["keypoints"][:, :2], project_points(scene.camera.to_camera(joints + offset)),
                               atol=1e-4)
    default = render_sample(0, 5)
    assert not np.array_equal(default["image"], first["image"])
    np.testing.assert_array_equal(default["image"], render_sample(0, 5, None)["image"])


def test_bank_source_reads_a_keypoint_array(tmp_path):
    keypoints = np.zeros((2, 15, 2))
    keypoints[:, :, 1] = np.linspace(0, 100, 15)
    np.save(tmp_path / "bank.npy", keypoints)
    bank = BankPoses(tmp_path / "bank.npy")
    assert bank.keypoints.shape == (2, 15, 2) and not bank.needs_yaw
    assert render_sample(0, 0, bank)["keypoints"].shape == (15, 3)
    np.save(tmp_path / "bad.npy", np.zeros((2, 14, 2)))
    with pytest.raises(CPMError, match="bad.npy"):
        BankPoses(tmp_path / "bad.npy")
    assert Camera().height == 1.2  # the default camera is untouched by the pose sources
