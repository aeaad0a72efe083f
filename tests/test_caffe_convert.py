"""cpm convert-caffe: small released-style .caffemodel files written through the same minimal schema from known
weights, converted, and run; the outputs are checked against a NumPy reference of the Caffe nets (their layer names,
BGR input, concatenation order, ceil-mode pools), never against the module's own output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

pytest.importorskip("google.protobuf")

from cpm.cli import main  # noqa: E402
from cpm.config import load_config  # noqa: E402
from cpm.errors import CPMError  # noqa: E402
from cpm.inference.caffe import convert_caffemodel, read_caffemodel, write_caffemodel  # noqa: E402
from cpm.runtime.checkpoint import load_model  # noqa: E402

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
# The released nets' part order (testing/config.m: head, neck, Rsho, Relb, Rwri, Lsho, Lelb, Lwri, Rhip, Rkne, Rank,
# Lhip, Lkne, Lank, bkg) as positions in the LSP order of data.skeleton = "lsp14" (R ankle, R knee, R hip, L hip,
# L knee, L ankle, R wrist, R elbow, R shoulder, L shoulder, L elbow, L wrist, neck, head top), background last.
LSP_POSITION_OF_CAFFE_PART = [13, 12, 8, 7, 6, 9, 10, 11, 2, 1, 0, 3, 4, 5, 14]
OUT = 15  # 14 parts + background

# A small LSP/FLIC-style net (training/genProto.py's layout): 3 stages, 3x3 trunk convs of 4, 64 px input.
LSP_SETTINGS = ["data.root=/nowhere", "data.input_size=64", "model.trunk_widths=[4,4,4]", "model.trunk_kernel=3",
                "model.feature_channels=4", "model.stage1_width=8", "model.stage1_kernel=3", "model.stage_width=6",
                "model.stage_kernel=3", "model.stages=3"]
# A small VGG MPII-style net (pose_deploy_resize.prototxt's layout): VGG-19 to conv4_2, two CPM convs, 3 stages.
MPII_SETTINGS = ["data.root=/nowhere", "data.input_size=32", "model.vgg_cpm_widths=[8,6]", "model.stage1_width=8",
                 "model.stage_width=6", "model.stage_kernel=3", "model.stage_layers=2", "model.stages=3"]


def lsp_layers(stages: int = 3) -> list[tuple[str, int, int, int]]:
    """(name, out, in, kernel) of every convolution, as genProto.py names them."""
    layers = [("conv1_stage1", 4, 3, 3), ("conv2_stage1", 4, 4, 3), ("conv3_stage1", 4, 4, 3),
              ("conv4_stage1", 4, 4, 5), ("conv5_stage1", 8, 4, 3), ("conv6_stage1", 8, 8, 1),
              ("conv7_stage1", OUT, 8, 1), ("conv1_stage2", 4, 3, 3), ("conv2_stage2", 4, 4, 3),
              ("conv3_stage2", 4, 4, 3)]
    for t in range(2, stages + 1):
        layers.append(("conv4_stage2" if t == 2 else f"conv1_stage{t}", 4, 4, 5))
        layers += [(f"Mconv1_stage{t}", 6, 4 + OUT + 1, 3), (f"Mconv2_stage{t}", 6, 6, 3),
                   (f"Mconv3_stage{t}", 6, 6, 3), (f"Mconv4_stage{t}", 6, 6, 1), (f"Mconv5_stage{t}", OUT, 6, 1)]
    return layers


def mpii_layers(stages: int = 3) -> list[tuple[str, int, int, int]]:
    vgg = [("conv1_1", 64, 3), ("conv1_2", 64, 64), ("conv2_1", 128, 64), ("conv2_2", 128, 128),
           ("conv3_1", 256, 128), ("conv3_2", 256, 256), ("conv3_3", 256, 256), ("conv3_4", 256, 256),
           ("conv4_1", 512, 256), ("conv4_2", 512, 512), ("conv4_3_CPM", 8, 512), ("conv4_4_CPM", 6, 8)]
    layers = [(name, out, inp, 3) for name, out, inp in vgg]
    layers += [("conv5_1_CPM", 8, 6, 1), ("conv5_2_CPM", OUT, 8, 1)]
    for t in range(2, stages + 1):
        layers += [(f"Mconv1_stage{t}", 6, OUT + 6 + 1, 3), (f"Mconv2_stage{t}", 6, 6, 3),
                   (f"Mconv3_stage{t}", 6, 6, 1), (f"Mconv4_stage{t}", OUT, 6, 1)]
    return layers


def known_weights(layers, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """He-scaled Gaussian weights (so signals survive a dozen layers) and non-zero biases."""
    rng = np.random.default_rng(seed)
    return {name: [(rng.normal(size=(out, inp, k, k)) * np.sqrt(2 / (inp * k * k))).astype(np.float32),
                   rng.normal(scale=0.1, size=out).astype(np.float32)]
            for name, out, inp, k in layers}


# --- the Caffe nets in NumPy ----------------------------------------------------------------------------------

def conv(x: np.ndarray, blobs, relu: bool = True) -> np.ndarray:
    """Caffe Convolution (pad = k // 2, stride 1) of x (C, H, W), then ReLU."""
    weight, bias = (np.asarray(b, dtype=np.float64) for b in blobs)
    k = weight.shape[-1]
    padded = np.pad(x, ((0, 0), (k // 2, k // 2), (k // 2, k // 2)))
    windows = sliding_window_view(padded, (k, k), axis=(1, 2))  # (C, H, W, k, k)
    out = np.tensordot(windows, weight, axes=([0, 3, 4], [1, 2, 3])).transpose(2, 0, 1) + bias[:, None, None]
    return np.maximum(out, 0) if relu else out


def pool(x: np.ndarray, kernel: int, stride: int, kind: str) -> np.ndarray:
    """Caffe Pooling without padding: ceil((H - k) / s) + 1 outputs, windows cut at the border (AVE divides by the
    cells inside)."""
    channels, height, width = x.shape
    rows, cols = -(-(height - kernel) // stride) + 1, -(-(width - kernel) // stride) + 1
    out = np.empty((channels, rows, cols))
    for i in range(rows):
        for j in range(cols):
            window = x[:, i * stride:min(i * stride + kernel, height), j * stride:min(j * stride + kernel, width)]
            out[:, i, j] = window.max(axis=(1, 2)) if kind == "max" else window.mean(axis=(1, 2))
    return out


def caffe_lsp_net(weights, bgr: np.ndarray, center: np.ndarray, stages: int = 3) -> list[np.ndarray]:
    """pose_deploy.prototxt (LSP/FLIC) on one image (3, H, W) in BGR order and a centre map (1, H, W)."""
    pool_center = pool(center, 9, 8, "ave")
    x = bgr
    for i in (1, 2, 3):
        x = pool(conv(x, weights[f"conv{i}_stage1"]), 3, 2, "max")
    for i in (4, 5, 6):
        x = conv(x, weights[f"conv{i}_stage1"])
    beliefs = [conv(x, weights["conv7_stage1"], relu=False)]
    shared = bgr
    for i in (1, 2, 3):
        shared = pool(conv(shared, weights[f"conv{i}_stage2"]), 3, 2, "max")  # pool3_stage2
    for t in range(2, stages + 1):
        features = conv(shared, weights["conv4_stage2" if t == 2 else f"conv1_stage{t}"])
        x = np.concatenate([features, beliefs[-1], pool_center])  # concat_stage<t>: features, beliefs, centre
        for i in (1, 2, 3, 4):
            x = conv(x, weights[f"Mconv{i}_stage{t}"])
        beliefs.append(conv(x, weights[f"Mconv5_stage{t}"], relu=False))
    return beliefs


def caffe_mpii_net(weights, bgr: np.ndarray, center: np.ndarray, stages: int = 3) -> list[np.ndarray]:
    """pose_deploy_resize.prototxt (VGG MPII) on one image (3, H, W) in BGR order and a centre map (1, H, W)."""
    pool_center = pool(center, 9, 8, "ave")
    x = bgr
    for block, count in ((1, 2), (2, 2), (3, 4), (4, 2)):
        for i in range(1, count + 1):
            x = conv(x, weights[f"conv{block}_{i}"])
        if block < 4:
            x = pool(x, 2, 2, "max")
    features = conv(conv(x, weights["conv4_3_CPM"]), weights["conv4_4_CPM"])
    beliefs = [conv(conv(features, weights["conv5_1_CPM"]), weights["conv5_2_CPM"], relu=False)]
    for t in range(2, stages + 1):
        x = np.concatenate([beliefs[-1], features, pool_center])  # concat_stage<t>: beliefs, features, centre
        for i in (1, 2, 3):
            x = conv(x, weights[f"Mconv{i}_stage{t}"])
        beliefs.append(conv(x, weights[f"Mconv4_stage{t}"], relu=False))
    return beliefs


def converted_outputs(tmp_path, config_name, settings, layers, reference, size):
    weights = known_weights(layers)
    write_caffemodel(tmp_path / "net.caffemodel", weights)
    config = load_config(EXPERIMENTS / config_name, settings)
    convert_caffemodel(tmp_path / "net.caffemodel", config, tmp_path / "net.pt")
    model, saved = load_model(tmp_path / "net.pt")
    assert saved == config and not model.training
    rng = np.random.default_rng(1)
    rgb = rng.uniform(-0.5, 0.5, size=(3, size, size))
    yy, xx = np.mgrid[:size, :size]
    center = np.exp(-((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (2 * 21.0**2))[None]
    with torch.no_grad():
        ours = model(torch.from_numpy(rgb[None]).float(), torch.from_numpy(center[None]).float())
    expected = reference(weights, rgb[::-1].copy(), center)  # Caffe reads OpenCV's BGR
    return [o[0].double().numpy() for o in ours], expected


@pytest.mark.parametrize(("config_name", "settings", "layers", "reference", "size"), [
    ("caffe_lsp.toml", LSP_SETTINGS, lsp_layers(), caffe_lsp_net, 64),
    ("caffe_mpii.toml", MPII_SETTINGS, mpii_layers(), caffe_mpii_net, 32),
], ids=["lsp", "mpii"])
def test_converted_weights_compute_the_caffe_net(tmp_path, config_name, settings, layers, reference, size):
    """Every stage's beliefs equal the NumPy reference's, channel for channel once Caffe's part order is mapped onto
    lsp14's; for the MPII net this holds only with [beliefs, features, centre] (model.beliefs_first)."""
    ours, expected = converted_outputs(tmp_path, config_name, settings, layers, reference, size)
    assert len(ours) == len(expected) == 3
    for stage, (mine, theirs) in enumerate(zip(ours, expected, strict=True), start=1):
        assert mine.shape == theirs.shape == (OUT, size // 8, size // 8)
        scale = np.abs(theirs).max()
        assert scale > 1e-3, f"stage {stage}: the reference is all zeros, the test would prove nothing"
        np.testing.assert_allclose(mine[LSP_POSITION_OF_CAFFE_PART], theirs, atol=1e-5 * scale, rtol=1e-4)


def test_the_concatenation_order_is_the_released_nets(tmp_path):
    """The MPII net read with the LSP net's order would compute something else: the converter refuses that config,
    and swapping the order in the model (as a wrong converter would leave it) breaks the match from stage 2 on."""
    weights = known_weights(mpii_layers())
    write_caffemodel(tmp_path / "net.caffemodel", weights)
    wrong = load_config(EXPERIMENTS / "caffe_mpii.toml", [*MPII_SETTINGS, "model.beliefs_first=false"])
    with pytest.raises(CPMError, match=r"model\.beliefs_first = False: the released vgg19 net has True"):
        convert_caffemodel(tmp_path / "net.caffemodel", wrong, tmp_path / "net.pt")
    assert not (tmp_path / "net.pt").exists()
    ours, expected = converted_outputs(tmp_path, "caffe_mpii.toml", MPII_SETTINGS, mpii_layers(), caffe_mpii_net, 32)
    model, _ = load_model(tmp_path / "net.pt")
    model.beliefs_first = False
    rgb = torch.from_numpy(np.random.default_rng(1).uniform(-0.5, 0.5, size=(1, 3, 32, 32))).float()
    yy, xx = np.mgrid[:32, :32]
    center = torch.from_numpy(np.exp(-((xx - 16) ** 2 + (yy - 16) ** 2) / (2 * 21.0**2))[None, None]).float()
    with torch.no_grad():
        swapped = model(rgb, center)
    np.testing.assert_allclose(swapped[0][0].double().numpy(), ours[0], rtol=1e-6)  # stage 1 has no concatenation
    assert not np.allclose(swapped[1][0].double().numpy(), ours[1], rtol=1e-3, atol=1e-4)


def test_blobs_round_trip_through_the_schema(tmp_path):
    weights = known_weights(lsp_layers())
    write_caffemodel(tmp_path / "a.caffemodel", weights)
    read = read_caffemodel(tmp_path / "a.caffemodel")
    assert list(read) == list(weights)
    for name, blobs in weights.items():
        assert all(np.array_equal(mine, theirs) for mine, theirs in zip(read[name], blobs, strict=True))
    # Old files give every blob num/channels/height/width (a bias is 1 x 1 x 1 x n): the same checkpoint.
    write_caffemodel(tmp_path / "old.caffemodel", weights, legacy_shapes=True)
    assert read_caffemodel(tmp_path / "old.caffemodel")["conv1_stage1"][1].shape == (1, 1, 1, 4)
    config = load_config(EXPERIMENTS / "caffe_lsp.toml", LSP_SETTINGS)
    convert_caffemodel(tmp_path / "a.caffemodel", config, tmp_path / "a.pt")
    convert_caffemodel(tmp_path / "old.caffemodel", config, tmp_path / "old.pt")
    first, second = load_model(tmp_path / "a.pt")[0].state_dict(), load_model(tmp_path / "old.pt")[0].state_dict()
    assert all(torch.equal(first[key], second[key]) for key in first)
    # The image convs read RGB: conv1_stage1's input channels reversed; a belief output reordered into lsp14's order.
    assert torch.equal(first["image_features_stage1.0.0.weight"],
                       torch.from_numpy(weights["conv1_stage1"][0][:, ::-1].copy()))
    assert torch.equal(first["stage1.3.weight"][LSP_POSITION_OF_CAFFE_PART],
                       torch.from_numpy(weights["conv7_stage1"][0]))


def test_converted_checkpoint_predicts_and_exports(tmp_path):
    from cpm.inference.predictor import load_predictor, predict_images

    write_caffemodel(tmp_path / "net.caffemodel", known_weights(lsp_layers()))
    assert main(["convert-caffe", str(tmp_path / "net.caffemodel"), "--config", str(EXPERIMENTS / "caffe_lsp.toml"),
                 *(f"--set={s}" for s in [*LSP_SETTINGS, "eval.scales=[1.0]"]), "--out", str(tmp_path / "net.pt")]) == 0
    predictor = load_predictor(tmp_path / "net.pt", device_name="cpu")
    assert (predictor.input_scale, predictor.decoder, predictor.skeleton.name) == ("caffe", "paper", "lsp14")
    image = np.random.default_rng(0).integers(0, 256, size=(80, 60, 3), dtype=np.uint8)
    result = predict_images(predictor, [image])
    assert result["keypoints"].shape == (1, 3, 14, 2) and np.isfinite(result["keypoints"]).all()
    pytest.importorskip("onnxruntime")
    assert main(["export", str(tmp_path / "net.pt"), "--onnx", str(tmp_path / "net.onnx")]) == 0


# --- bad input: one line, exit 2, nothing written ------------------------------------------------------------

def convert(tmp_path, capsys, caffemodel, *settings, config="caffe_lsp.toml") -> str:
    code = main(["convert-caffe", str(caffemodel), "--config", str(EXPERIMENTS / config),
                 *(f"--set={s}" for s in [*LSP_SETTINGS, *settings]), "--out", str(tmp_path / "out.pt")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.pt").exists() and not list(tmp_path.glob("*.tmp*"))
    return err


def test_bad_and_foreign_files_stop_with_one_line(tmp_path, capsys):
    garbage = tmp_path / "garbage.caffemodel"
    garbage.write_bytes(b"\xff" * 64)
    assert "garbage.caffemodel: not a .caffemodel" in convert(tmp_path, capsys, garbage)
    prototxt = tmp_path / "pose_deploy.prototxt"
    prototxt.write_text('name: "CPM"\nlayer { name: "conv1_stage1" type: "Convolution" }\n')
    assert "pose_deploy.prototxt: not a .caffemodel" in convert(tmp_path, capsys, prototxt)
    foreign = tmp_path / "foreign.pb"  # another protobuf: it parses, but holds no layer with weights
    foreign.write_bytes(bytes([0x08, 0x07, 0x3a, 0x02, 0x08, 0x01]))
    assert "foreign.pb: not a trained .caffemodel: no layer with weights" in convert(tmp_path, capsys, foreign)
    assert "missing.caffemodel: no such file" in convert(tmp_path, capsys, tmp_path / "missing.caffemodel")


def test_every_blob_is_placed_and_checked(tmp_path, capsys):
    weights = known_weights(lsp_layers())
    path = tmp_path / "net.caffemodel"
    write_caffemodel(path, weights)
    err = convert(tmp_path, capsys, path, "model.stages=4")
    assert "no layer 'conv1_stage4'" in err and "model.stages = 4" in err
    err = convert(tmp_path, capsys, path, "model.stages=2")
    assert "has no place for: conv1_stage3, Mconv1_stage3" in err
    err = convert(tmp_path, capsys, path, "model.stage_kernel=5")
    assert "layer 'Mconv1_stage2' has weights (6, 20, 3, 3)" in err and "expects (6, 20, 5, 5)" in err
    assert "data.skeleton = 'itop15'" in convert(tmp_path, capsys, path, "data.skeleton=itop15")
    assert "model.batch_norm = True" in convert(tmp_path, capsys, path, "model.batch_norm=true")
    flic = {**weights, "conv7_stage1": [weights["conv7_stage1"][0][:10], weights["conv7_stage1"][1][:10]]}
    write_caffemodel(path, flic)  # the FLIC net's 9 parts + background
    assert "layer 'conv7_stage1' predicts 9 parts + background" in convert(tmp_path, capsys, path)
    write_caffemodel(path, {**weights, "conv7_stage1": weights["conv7_stage1"][:1]})
    assert "layer 'conv7_stage1' has 1 blobs" in convert(tmp_path, capsys, path)
    write_caffemodel(path, weights)
    code = main(["convert-caffe", str(path), "--config", str(EXPERIMENTS / "caffe_lsp.toml"),
                 *(f"--set={s}" for s in LSP_SETTINGS), "--out", str(tmp_path / "no" / "such" / "out.pt")])
    assert code == 2 and "the folder to write the checkpoint into does not exist" in capsys.readouterr().err
