"""cpm convert-caffe on the released networks' own definitions (../shared/caffe: the 9x9 centre-map CPM of LSP and
MPII, the VGG-19 MPII CPM, the FLIC CPM, and Caffe's official caffe.proto). For each, a .caffemodel of random
fan-in-scaled weights is written from the real prototxt through the official schema, converted with the preset that
names its weight files, and the converted model's beliefs are checked stage by stage against a NumPy forward pass
that interprets the prototxt layer by layer (tests/caffe_reference.py), at small input sizes. Each test also runs a
sabotaged conversion (RGB not flipped to BGR, parts in Caffe's order, floor-mode pools) and checks that the
comparison catches it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("google.protobuf")

from cpm.config import load_config  # noqa: E402
from cpm.errors import CPMError  # noqa: E402
from cpm.inference.caffe import convert_caffemodel  # noqa: E402
from cpm.inference.predictor import load_predictor  # noqa: E402
from cpm.models import build_model  # noqa: E402
from cpm.skeleton import get_skeleton  # noqa: E402
from tests.caffe_reference import (  # noqa: E402
    SHARED_CAFFE,
    belief_layers,
    blob_shapes,
    forward,
    random_weights,
    read_prototxt,
    write_caffemodel,
)

pytestmark = pytest.mark.skipif(not (SHARED_CAFFE / "caffe.proto").is_file(),
                                reason=f"the released Caffe definitions are not at {SHARED_CAFFE}")
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"

# testing/config.m's part_str of each net, as this project's joint names (its "head" is the LSP head top for the
# 14-part nets, FLIC's nose for the FLIC net: run_benchmark.m scores it against coords 17).
LSP_MPII_PARTS = ["head_top", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
                  "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle"]
FLIC_PARTS = ["left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist", "left_hip",
              "right_hip", "nose"]
# (definition, the preset naming its weights, its parts, its stages, an input size off the multiples of 8 that the
# Caffe net runs at)
RELEASED = {
    "lsp": ("lsp_pose_deploy_centerMap.prototxt", "caffe_lsp.toml", LSP_MPII_PARTS, 6, 40),
    "mpii_vgg": ("mpi_pose_deploy_resize.prototxt", "caffe_mpii.toml", LSP_MPII_PARTS, 6, 36),
    "flic": ("flic_pose_deploy.prototxt", "caffe_flic.toml", FLIC_PARTS, 4, 40),
}


class Converted:
    """A released definition with random weights, its .caffemodel converted by the preset, and the model."""

    def __init__(self, key: str, folder: Path) -> None:
        prototxt, preset, parts, self.stages, self.odd_size = RELEASED[key]
        self.net = read_prototxt(SHARED_CAFFE / prototxt)
        self.weights = random_weights(self.net, seed=7)
        self.caffemodel = write_caffemodel(self.net, self.weights, folder / f"{key}.caffemodel")
        self.config = load_config(EXPERIMENTS / preset, ["data.root=/nowhere", "data.input_size=32",
                                                         "eval.scales=[1.0]"])
        self.result = convert_caffemodel(self.caffemodel, self.config, folder / f"{key}.pt")
        self.model = load_predictor(folder / f"{key}.pt", "cpu").model
        skeleton = get_skeleton(self.config.data.skeleton)
        # Caffe's belief channel c is this model's channel position[c]; the background stays last.
        self.position = [*(skeleton.joint_names.index(name) for name in parts), len(parts)]

    def inputs(self, size: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """An RGB image already normalised ((pixel - 128) / 256 range) and the centre map (sigma 21 px), (C, H, W)."""
        rgb = np.random.default_rng(seed).uniform(-0.5, 0.5, size=(3, size, size))
        yy, xx = np.mgrid[:size, :size]
        center = np.exp(-((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (2 * 21.0**2))[None]
        return rgb, center

    def caffe(self, rgb: np.ndarray, center: np.ndarray) -> list[np.ndarray]:
        """The definition's beliefs, stage by stage, on the 4-channel data blob [B, G, R, centre] (Caffe's image
        layer holds OpenCV's BGR)."""
        blobs = forward(self.net, self.weights, np.concatenate([rgb[::-1], center]))
        return [blobs[name] for name in belief_layers(self.net)]

    def ours(self, rgb: np.ndarray, center: np.ndarray, model: nn.Module | None = None) -> list[np.ndarray]:
        with torch.no_grad():
            out = (model or self.model)(torch.from_numpy(rgb[None].copy()).float(),
                                        torch.from_numpy(center[None]).float())
        return [o[0].double().numpy() for o in out]


def agree(ours: list[np.ndarray], caffe: list[np.ndarray], position: list[int]) -> bool:
    """Every stage equal, channel for channel through ``position``, to 1e-5 of the stage's largest belief."""
    assert len(ours) == len(caffe)
    for mine, theirs in zip(ours, caffe, strict=True):
        assert mine.shape == theirs.shape, (mine.shape, theirs.shape)
        scale = np.abs(theirs).max()
        assert scale > 1e-2, "the reference beliefs are all ~0: the comparison would prove nothing"
        if not np.allclose(mine[position], theirs, rtol=1e-4, atol=1e-5 * scale):
            return False
    return True


@pytest.mark.parametrize("key", list(RELEASED))
def test_the_released_definition_converts_and_computes_the_caffe_net(tmp_path, key):
    """Every Convolution of the prototxt is mapped (the converter refuses a missing or left-over layer), and the
    converted model's beliefs equal the definition's at every stage, at 32 px and at a size off the multiples of 8
    that Caffe runs at (its pools round up: 36 -> 18, 9, 5 cells through the VGG net's 2x2 pools, as through the
    centre map's 9x9/8 pool). Sabotages the comparison must catch: the first convolutions reading RGB where Caffe read
    BGR (a converter that forgot the flip), the belief channels left in Caffe's part order (the 14-part nets, whose
    order is not lsp14's), and torchvision's floor-mode pools in the VGG net (18, 9, 4: it cannot join its features
    to the centre map)."""
    net = Converted(key, tmp_path)
    convolutions = blob_shapes(net.net)
    assert net.result["layers"] == len(convolutions)
    assert net.result["parameters"] == sum(int(np.prod(s)) for shapes in convolutions.values() for s in shapes)
    rgb, center = net.inputs(32)
    caffe = net.caffe(rgb, center)
    assert len(caffe) == net.stages
    assert agree(net.ours(rgb, center), caffe, net.position)
    odd_rgb, odd_center = net.inputs(net.odd_size, seed=2)
    assert agree(net.ours(odd_rgb, odd_center), net.caffe(odd_rgb, odd_center), net.position)

    unflipped = build_model(net.config.model, len(net.position) - 1, center_pool=net.config.targets.center_pool).eval()
    unflipped.load_state_dict(net.model.state_dict())
    for module in unflipped.modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            module.weight.data = module.weight.data.flip(1)
    assert not agree(net.ours(rgb, center, unflipped), caffe, net.position)
    if net.position != sorted(net.position):
        assert not agree(net.ours(rgb, center), caffe, sorted(net.position))
    if key == "mpii_vgg":
        config = load_config(EXPERIMENTS / "caffe_mpii.toml", ["data.root=/nowhere", "model.caffe_pooling=false"])
        floor = build_model(config.model, 14, center_pool=config.targets.center_pool).eval()
        floor.load_state_dict(net.model.state_dict())
        with pytest.raises(ValueError, match=r"centre map of size \(5, 5\) after pooling, belief maps \(4, 4\)"):
            net.ours(odd_rgb, odd_center, floor)


def test_each_weight_file_loads_with_the_preset_that_names_it(tmp_path):
    """testing/config.m pairs pose_iter_630000 and pose_iter_985000_addLEEDS with the 9x9 definition, not the VGG-19
    one: a file of that layout stops with one line under caffe_mpii.toml, whose header names pose_iter_320000 alone
    (caffe_lsp.toml converts it: the test above); each preset's header names its files and the command that loads
    them."""
    net = read_prototxt(SHARED_CAFFE / RELEASED["lsp"][0])
    first = next(iter(blob_shapes(net)))  # conv1_stage1: where a converter reading this layout starts
    weights = {first: random_weights(net)[first]}
    write_caffemodel(net, weights, tmp_path / "pose_iter_985000_addLEEDS.caffemodel")
    vgg = load_config(EXPERIMENTS / "caffe_mpii.toml", ["data.root=/nowhere"])
    with pytest.raises(CPMError, match="no layer 'conv1_1'"):
        convert_caffemodel(tmp_path / "pose_iter_985000_addLEEDS.caffemodel", vgg, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
    headers = {name: (EXPERIMENTS / name).read_text(encoding="utf-8").split("\n[")[0]
               for name in ("caffe_lsp.toml", "caffe_mpii.toml", "caffe_flic.toml")}
    files = {"caffe_lsp.toml": ["pose_iter_395000", "pose_iter_630000", "pose_iter_985000_addLEEDS"],
             "caffe_mpii.toml": ["pose_iter_320000"], "caffe_flic.toml": ["pose_iter_40000"]}
    for name, names in files.items():
        assert all(f"{weights}.caffemodel" in headers[name] for weights in names), name
        assert f"cpm convert-caffe {names[0]}.caffemodel --config experiments/{name}" in headers[name]
    assert "pose_iter_320000" not in headers["caffe_lsp.toml"].split("The VGG-19 MPII net")[0]
