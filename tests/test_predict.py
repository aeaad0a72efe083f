"""``cpm predict``: keypoints in original-image pixels equal decoding the same crop by hand, as ``cpm eval`` does;
overlays, belief panels and videos are written; bad input ends in one line and leaves nothing behind."""

import json
import os
import shutil

import cv2
import numpy as np
import pytest
import torch

from cpm.cli import main
from cpm.config import load_config
from cpm.data.dataset import PIXEL_MEAN, PIXEL_STD
from cpm.data.synthetic.frames import render_sample
from cpm.data.transforms import apply_affine, crop_matrix, invert_affine, warp_image
from cpm.inference.predictor import person_crop
from cpm.runtime.build import build_codec, build_network
from cpm.runtime.checkpoint import load_model, save_checkpoint
from cpm.skeleton import ITOP_15
from cpm.viz import SIDE_COLOURS, belief_mosaic, belief_panel, draw_skeleton
from tests.helpers import tiny_overrides

LSPET_IMAGES = ("im00001.jpg", "im00002.jpg")


def make_checkpoint(path, tmp_path, **extra):
    """A tiny model, just constructed, saved with the keys a training run writes. Every convolution is redrawn
    with He's initialisation (the heads too, which the model starts near zero), so belief maps are of order 1
    with clear, well-separated peaks, like a trained model's (no near-ties for a decoder to flip on)."""
    config = load_config(None, tiny_overrides(tmp_path, **{"model.stages": 3, **extra}))
    torch.manual_seed(0)
    model = build_network(config)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            torch.nn.init.normal_(module.bias, std=0.1)
    save_checkpoint({"model": model.state_dict(), "config": config.to_dict()}, path)
    return path


def cli(*argv: str) -> int:
    """``cpm predict ARGV...`` through the real command line (bad input: one line on stderr, exit 2)."""
    return main(["predict", *argv])


def decode_by_hand(checkpoint, image, center, side, decoder=None):
    """The crop, forward pass and decoding written out step by step: every stage's (K, 2) in image pixels."""
    model, config = load_model(checkpoint)
    codec, size = build_codec(config), config.data.input_size
    matrix = crop_matrix(np.asarray(center, dtype=np.float64), side, size)
    crop = warp_image(image, matrix, size).reshape(size, size, -1)
    if crop.shape[2] != model.in_channels:
        crop = np.repeat(crop, model.in_channels, axis=2)
    tensor = (torch.from_numpy(crop.transpose(2, 0, 1).copy()).float()[None] / 255 - PIXEL_MEAN) / PIXEL_STD
    with torch.no_grad():
        beliefs = model(tensor, codec.center_map(torch.tensor([[(size - 1) / 2] * 2])))
    stages = []
    for stage_beliefs in beliefs:
        points, _ = codec.decode(stage_beliefs, method=decoder or config.eval.decoder)  # (1, K, 2) crop pixels
        stages.append(apply_affine(points[0].double().numpy(), invert_affine(matrix)))
    return np.stack(stages)  # (T, K, 2)


def xy(joints):
    return np.array([[joint["x"], joint["y"]] for joint in joints])


@pytest.fixture
def frames(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        assert cv2.imwrite(str(folder / f"frame{i}.png"), render_sample(7, i)["image"])
    (folder / "README.txt").write_text("not an image; a folder's other files are skipped")
    return folder


def test_person_crop_from_a_box_a_centre_or_the_whole_image():
    center, side = person_crop((100, 200), crop_padding=1.5, bbox=(10, 20, 40, 60))
    assert center.tolist() == [30.0, 50.0] and side == 90.0
    center, side = person_crop((100, 200), crop_padding=1.5)
    assert center.tolist() == [99.5, 49.5] and side == 200.0
    center, side = person_crop((100, 200), crop_padding=1.5, center=(12, 34))
    assert center.tolist() == [12.0, 34.0] and side == 200.0


def test_predict_on_a_folder_matches_decoding_the_crop_by_hand(tmp_path, frames):
    checkpoint = make_checkpoint(tmp_path / "tiny.pt", tmp_path)
    out = tmp_path / "out"
    assert cli(str(checkpoint), str(frames), "--out", str(out), "--stages", "--no-progress") == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"frame{i}.{kind}" for i in range(3) for kind in ("json", "overlay.png", "stages.png"))
    for i in range(3):
        image = cv2.imread(str(frames / f"frame{i}.png"), cv2.IMREAD_GRAYSCALE)
        record = json.loads((out / f"frame{i}.json").read_text())
        assert [j["name"] for j in record["joints"]] == list(ITOP_15.joint_names)
        assert (record["width"], record["height"]) == (256, 212) and record["num_stages"] == 3
        expected = decode_by_hand(checkpoint, image, (127.5, 105.5), 256.0)  # whole frame, centred
        np.testing.assert_allclose([xy(stage) for stage in record["stages"]], expected, atol=1e-3)
        np.testing.assert_allclose(xy(record["joints"]), expected[-1], atol=1e-3)
        overlay = cv2.cvtColor(cv2.imread(str(out / f"frame{i}.overlay.png")), cv2.COLOR_BGR2RGB)
        assert overlay.shape == (212, 256, 3)
        for x, y in np.round(expected[-1]).astype(int):  # a joint dot sits on every decoded joint
            if 0 <= x < 256 and 0 <= y < 212:
                assert tuple(overlay[y, x]) in SIDE_COLOURS.values()


def test_predict_on_a_video_writes_per_frame_json_and_an_overlay_video(tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (256, 212))
    for i in range(10):  # more frames than one forward batch (8)
        writer.write(cv2.cvtColor(render_sample(3, i)["image"], cv2.COLOR_GRAY2BGR))
    writer.release()
    checkpoint = make_checkpoint(tmp_path / "tiny.pt", tmp_path)
    out = tmp_path / "out"
    assert cli(str(checkpoint), str(video), "--out", str(out), "--bbox", "60,30,120,160", "--stages",
               "--no-progress") == 0
    assert sorted(p.name for p in out.iterdir()) == ["clip.json", "clip.overlay.mp4", "clip.stages.png"]
    record = json.loads((out / "clip.json").read_text())
    assert record["frames"] == 10 and [f["frame"] for f in record["per_frame"]] == list(range(10))
    assert record["crop"] == {"center": [120.0, 110.0], "side": 1.3 * 160}  # box centre, crop_padding x longest side
    capture = cv2.VideoCapture(str(video))
    decoded = [cv2.cvtColor(capture.read()[1], cv2.COLOR_BGR2GRAY) for _ in range(10)]
    for i in (0, 9):
        expected = decode_by_hand(checkpoint, decoded[i], (120.0, 110.0), 1.3 * 160)
        np.testing.assert_allclose([xy(stage) for stage in record["per_frame"][i]["stages"]], expected, atol=1e-3)
    overlay = cv2.VideoCapture(str(out / "clip.overlay.mp4"))
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    assert overlay.read()[1].shape == (212, 256, 3)


def test_predict_reads_rgb_photos_for_a_three_channel_model(tmp_path, shared_data):
    images = [shared_data / "lspet400" / "images" / name for name in LSPET_IMAGES]
    checkpoint = make_checkpoint(tmp_path / "rgb.pt", tmp_path, **{"model.in_channels": 3})
    out = tmp_path / "out"
    assert cli(str(checkpoint), *map(str, images), "--out", str(out), "--center", "60,50", "--decoder", "dark",
               "--stages", "--no-progress") == 0
    for path in images:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        record = json.loads((out / f"{path.stem}.json").read_text())
        assert record["decoder"] == "dark"
        expected = decode_by_hand(checkpoint, image, (60, 50), max(image.shape[:2]), decoder="dark")
        np.testing.assert_allclose(xy(record["joints"]), expected[-1], atol=1e-3)
        overlay = cv2.imread(str(out / f"{path.stem}.overlay.png"))
        assert overlay.shape == image.shape and np.abs(np.diff(overlay.astype(int), axis=2)).max() > 0  # in colour
        panel = cv2.imread(str(out / f"{path.stem}.stages.png"))
        # belief_panel: 0.9 in per tile, 3 stages x 15 joints, plus margins (1.2 in, 1.3 in), saved at 80 dpi
        assert panel.shape == (round((0.9 * 3 + 1.3) * 80), round((0.9 * 15 + 1.2) * 80), 3)
        colourful = np.ptp(panel.astype(int), axis=2) > 40  # magma over the photo, not the white figure or text
        assert colourful.mean() > 0.1  # measured 0.20: the 45 maps fill a fifth of the figure
        assert len(np.unique(panel[colourful], axis=0)) > 5000  # shaded maps over a photo (measured 17k-36k)


def assert_one_line_naming(capfd, *fragments):
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert all(fragment in lines[0] for fragment in fragments), lines[0]


@pytest.mark.parametrize("bad", ["notes.txt", "broken.png", "truncated.png", "clip.mp4"])
def test_a_bad_input_exits_2_naming_it_and_writes_nothing(tmp_path, frames, capfd, bad):
    checkpoint = make_checkpoint(tmp_path / "tiny.pt", tmp_path)
    path = frames / bad
    if bad == "truncated.png":  # a valid header, so it fails only when decoded, after the good frames
        data = (frames / "frame0.png").read_bytes()
        path = frames / "zz_truncated.png"
        path.write_bytes(data[: len(data) // 2])
    elif bad == "clip.mp4":
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42 but nothing else")
    else:
        path.write_text("plain text, not pixels")
    out = tmp_path / "out"
    inputs = [str(frames)] if bad != "notes.txt" else [str(frames / "frame0.png"), str(path)]
    assert cli(str(checkpoint), *inputs, "--out", str(out), "--no-progress") == 2
    assert_one_line_naming(capfd, path.name)
    assert not out.exists()
    out.mkdir()
    (out / "earlier.json").write_text("{}")  # an existing folder keeps what it had, and gains nothing
    assert cli(str(checkpoint), *inputs, "--out", str(out), "--no-progress") == 2
    assert [p.name for p in out.iterdir()] == ["earlier.json"]


def test_a_checkpoint_of_another_architecture_exits_2_naming_it(tmp_path, frames, capfd):
    checkpoint = torch.load(make_checkpoint(tmp_path / "tiny.pt", tmp_path), weights_only=True)
    checkpoint["config"]["model"]["stages"] = 2  # the weights are those of 3 stages
    save_checkpoint(checkpoint, tmp_path / "other.pt")
    assert cli(str(tmp_path / "other.pt"), str(frames), "--out", str(tmp_path / "out")) == 2
    assert_one_line_naming(capfd, "other.pt", "does not fit this architecture")
    assert not (tmp_path / "out").exists()


def test_two_inputs_with_one_name_are_refused_before_writing(tmp_path, frames, capfd):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(frames / "frame1.png", other / "frame1.jpg")
    checkpoint = make_checkpoint(tmp_path / "tiny.pt", tmp_path)
    assert cli(str(checkpoint), str(frames), str(other / "frame1.jpg"), "--out", str(tmp_path / "out")) == 2
    assert_one_line_naming(capfd, "frame1.jpg", "frame1.png")


def test_draw_skeleton_colours_the_right_side_red_and_the_left_side_blue():
    keypoints = np.array([[50, 10], [50, 25], [35, 25], [65, 25], [30, 45], [70, 45], [30, 65], [70, 65],
                          [50, 50], [42, 70], [58, 70], [42, 90], [58, 90], [42, 110], [58, 110]], float)
    canvas = draw_skeleton(np.zeros((120, 100), np.uint8), keypoints, ITOP_15, thickness=3, radius=2)
    assert tuple(canvas[55, 30]) == SIDE_COLOURS["right"]  # right forearm, (30, 45) - (30, 65)
    assert tuple(canvas[55, 70]) == SIDE_COLOURS["left"]  # left forearm
    assert tuple(canvas[38, 50]) == SIDE_COLOURS["centre"]  # spine, neck - torso
    hidden = draw_skeleton(np.zeros((120, 100), np.uint8), keypoints, ITOP_15, thickness=3,
                           confidence=np.where(np.arange(15) == 6, 0.0, 1.0), min_confidence=0.5)
    assert tuple(hidden[55, 30]) == (0, 0, 0)  # the right hand is below the threshold: no forearm


def test_belief_mosaic_puts_stages_in_rows_and_joints_in_columns():
    from matplotlib import colormaps

    beliefs = np.zeros((3, 16, 8, 8), np.float32)  # T = 3, K = 15 + background
    beliefs[1, 4] = 1.0  # stage 2, joint 4
    tile, gap = 16, 2
    mosaic = belief_mosaic(beliefs, 15, tile=tile, gap=gap)
    assert mosaic.shape == (3 * tile + 2 * gap, 15 * tile + 14 * gap, 3)
    full = np.round(np.array(colormaps["magma"](1.0)[:3]) * 255)
    empty = np.round(np.array(colormaps["magma"](0.0)[:3]) * 255)
    assert (mosaic[tile + gap + 5, 4 * (tile + gap) + 5] == full).all()
    assert (mosaic[5, 4 * (tile + gap) + 5] == empty).all()
    figure = belief_panel(beliefs, ITOP_15.joint_names)
    assert len(figure.axes) == 2  # the mosaic and its colour bar


def test_an_unknown_decoder_exits_2_listing_the_known_ones(tmp_path, frames, capfd):
    checkpoint = make_checkpoint(tmp_path / "tiny.pt", tmp_path)
    assert cli(str(checkpoint), str(frames), "--out", str(tmp_path / "out"), "--decoder", "guess") == 2
    assert_one_line_naming(capfd, "unknown decoder 'guess'", "parabola", "dark")
    assert not (tmp_path / "out").exists()


def test_a_full_disk_exits_2_naming_the_file_and_keeps_the_folder_as_it_was(tmp_path, frames, capfd, monkeypatch):
    import errno

    import cpm.cli.predict as predict_cli

    checkpoint = make_checkpoint(tmp_path / "tiny.pt", tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.json").write_text("{}")
    written = []

    def full_after_two(path, image):  # the third overlay finds the disk full
        if len(written) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        written.append(path)
        return real(path, image)

    real = predict_cli._write_rgb
    monkeypatch.setattr(predict_cli, "_write_rgb", full_after_two)
    assert cli(str(checkpoint), str(frames), "--out", str(out), "--no-progress") == 2
    assert_one_line_naming(capfd, "frame2.overlay.png", "No space left on device")
    assert [p.name for p in out.iterdir()] == ["earlier.json"]
