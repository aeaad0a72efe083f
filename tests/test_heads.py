"""The regression and integral heads: every backbone, training, decoding, checkpoints; stage-wise training."""

import json

import numpy as np
import pytest
import torch

from cpm.config import ModelConfig, load_config
from cpm.data.loader import make_loader
from cpm.errors import CheckpointError, ConfigError
from cpm.evaluation.evaluate import evaluate, evaluate_checkpoint
from cpm.models import HEADS, ConvolutionalPoseMachine, IntegralHead, RegressionHead
from cpm.models.heads import set_trainable_stages
from cpm.runtime.build import build_codec, build_datasets, build_loss, build_network
from cpm.runtime.checkpoint import load_matching_state, save_checkpoint
from cpm.targets.codecs import HeatmapCodec, RegressionCodec
from cpm.targets.losses import coordinate_loss, stage_weights_for, staged_loss
from cpm.training.loop import train
from tests.helpers import TINY_MODEL, tiny, tiny_overrides

BACKBONE_SETTINGS = {  # stride and what each backbone needs at test size
    "cpm": ["model.stride=8"],
    "vgg16": ["model.stride=8", "model.vgg_cpm_widths=[8]", "model.feature_channels=0", "model.stage1_layers=0"],
    "fourconv": ["model.stride=2", "targets.sigma=2.0"],
}
TINY = [f"model.{key}={value}" for key, value in TINY_MODEL.items()]


def head_config(head: str, backbone: str, *extra: str):
    return load_config(None, [f"model.head={head!r}".replace("'", '"'), f'model.backbone="{backbone}"',
                              *BACKBONE_SETTINGS[backbone], *TINY, "model.stages=2", "model.regression_hidden=32",
                              "data.input_size=32", "data.val_samples=4", "data.workers=0", *extra])


def fixed_batch(config) -> dict[str, torch.Tensor]:
    _, val_set = build_datasets(config)
    return next(iter(make_loader(val_set, batch_size=4, shuffle=False, workers=0, device=torch.device("cpu"), seed=0)))


@pytest.mark.parametrize("backbone", ["cpm", "fourconv", pytest.param("vgg16", marks=pytest.mark.slow)])  # vgg: ~30 s
@pytest.mark.parametrize("head", [head for head in HEADS if head != "paf"])  # paf: whole scenes, test_paf_model.py
def test_each_head_trains_on_each_backbone_and_lowers_its_loss(head, backbone):
    config = head_config(head, backbone)
    torch.manual_seed(0)
    model = build_network(config)
    codec, loss_fn = build_codec(config), build_loss(config)
    batch = fixed_batch(config)
    targets, weights = codec.encode(batch["keypoints"])
    center_map = codec.center_map(batch["center"])
    stage_weights = stage_weights_for(len(model(batch["image"], center_map)))
    # VGG16 has no batch norm: Adam steps of 1e-3 make its ten plain convolutions diverge at once.
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4 if backbone == "vgg16" else 2e-3)
    losses = []
    for _ in range(20):
        loss = loss_fn(model(batch["image"], center_map), targets, weights, stage_weights)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert min(losses[-3:]) < 0.7 * losses[0], losses


@pytest.mark.parametrize("backbone", ["cpm", "fourconv"])
@pytest.mark.parametrize(("head", "supervised"), [("regression", True), ("integral", True), ("integral", False)])
def test_every_parameter_of_a_coordinate_head_gets_a_gradient(head, supervised, backbone):
    config = head_config(head, backbone, "model.stages=3", "model.dropout=0.0")
    torch.manual_seed(0)
    model = build_network(config)
    model.eval()  # no dropout: every path carries gradient
    codec = build_codec(config)
    batch = fixed_batch(config)
    targets, weights = codec.encode(batch["keypoints"])
    outputs = model(batch["image"], codec.center_map(batch["center"]))
    assert all(o.shape == (4, 15, 2) for o in outputs) and len(outputs) == (1 if head == "regression" else 3)
    staged_loss(outputs, targets, weights, stage_weights_for(len(outputs), intermediate_supervision=supervised),
                regression_loss="l1")["loss"].backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_regression_codec_round_trip_and_the_integral_head_shares_the_heatmap_grid():
    codec = RegressionCodec(input_size=(64, 48))
    keypoints = torch.tensor([[[0.0, 0.0, 2.0], [47.0, 63.0, 2.0], [12.25, 30.5, 1.0]]])
    targets, weights = codec.encode(keypoints)
    assert targets[0, 0].tolist() == pytest.approx([-1 + 1 / 48, -1 + 1 / 64])
    decoded, confidence = codec.decode(targets)
    assert torch.allclose(decoded, keypoints[..., :2], atol=1e-5) and weights.tolist() == [[1.0, 1.0, 1.0]]
    assert confidence.tolist() == [[1.0, 1.0, 1.0]]
    # A sharp map peaked at cell (u=5, v=2) decodes, through the integral head's normalisation and the
    # regression codec, to the pixel the heatmap codec gives that cell: s*u + (s-1)/2.
    head = IntegralHead(tiny(stages=1, stride=8, center_map=False), 1, beta=50.0)
    logits = torch.zeros(1, 1, 8, 6)
    logits[0, 0, 2, 5] = 1.0
    head.forward_beliefs = lambda image, center_map=None: [logits]
    (normalised,) = head(torch.zeros(1, 1, 64, 48))
    pixels, _ = codec.decode(normalised)
    heatmaps = HeatmapCodec(input_size=(64, 48), stride=8, sigma=1.0)
    expected = heatmaps.cell_to_pixel(torch.tensor([5.0, 2.0]))
    assert pixels[0, 0].tolist() == pytest.approx(expected.tolist(), abs=1e-3)


def test_coordinate_losses_by_hand():
    prediction = torch.tensor([[[0.1, -0.2], [0.5, 0.5]]])
    target = torch.tensor([[[0.0, 0.0], [0.0, 0.0]]])
    weights = torch.tensor([[1.0, 0.0]])  # the second joint does not count
    assert coordinate_loss(prediction, target, weights, "l2").item() == pytest.approx((0.01 + 0.04) / 2)
    assert coordinate_loss(prediction, target, weights, "l1").item() == pytest.approx((0.1 + 0.2) / 2)
    # smooth L1 with beta 0.05: both errors are beyond beta, so |e| - beta / 2 each.
    assert coordinate_loss(prediction, target, weights, "smooth_l1").item() == pytest.approx((0.075 + 0.175) / 2)
    with pytest.raises(ValueError, match="unknown regression loss 'l3'"):
        coordinate_loss(prediction, target, weights, "l3")


class CentreRegressor(torch.nn.Module):
    """Predicts every joint at the crop centre (normalised 0, 0)."""

    def forward(self, image, center_map=None):
        return [torch.zeros(image.shape[0], 15, 2)]


def test_evaluate_maps_regressed_coordinates_back_to_source_pixels():
    config = head_config("regression", "cpm")
    _, val_set = build_datasets(config)
    loader = make_loader(val_set, batch_size=4, shuffle=False, workers=0, device=torch.device("cpu"), seed=0)
    results = evaluate(CentreRegressor(), loader, build_codec(config), torso=(3, 9), device=torch.device("cpu"),
                       progress=False, loss_fn=build_loss(config))
    assert results["predictions"].shape == (4, 1, 15, 2)
    matrix = val_set[0]["matrix"].double().numpy()  # (2, 3) source -> crop
    source = np.linalg.solve(matrix[:, :2], np.array([15.5, 15.5]) - matrix[:, 2])  # the 32 px crop's centre
    assert results["predictions"][0, 0, 0] == pytest.approx(source, abs=1e-6)
    assert len(results["loss"]) == 1 and results["loss"][0] > 0


@pytest.mark.parametrize("head", ["regression", "integral"])
def test_a_coordinate_head_trains_saves_and_reloads(tmp_path, head):
    overrides = tiny_overrides(tmp_path, **{"model.head": head, "model.regression_loss": "smooth_l1",
                                            "model.stages": 2, "model.regression_hidden": 16})
    results = train(load_config(None, overrides), progress=False, log=lambda *a: None)
    run_dir = tmp_path / "runs" / "tiny"
    logged = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    stages = 1 if head == "regression" else 2
    assert f"val/pck@0.2/stage{stages}" in logged and f"val/pck@0.2/stage{stages + 1}" not in logged
    again = evaluate_checkpoint(run_dir / "last.pt", progress=False, device_name="cpu")
    assert np.allclose(again["predictions"], results["predictions"])
    assert again["pck"][0.2] == pytest.approx([logged[f"val/pck@0.2/stage{t}"] for t in range(1, stages + 1)])
    # TensorBoard at evaluation: lr, weight and gradient histograms, zero fractions, skeletons, belief maps.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"histograms": 0, "images": 0, "scalars": 0}).Reload()
    tags = events.Tags()
    assert any(t.startswith("lr/") for t in tags["scalars"])
    assert any(t.startswith("zero_fraction/") for t in tags["scalars"])
    assert any(t.startswith("weights/") for t in tags["histograms"])
    assert any(t.startswith("gradients/") for t in tags["histograms"])
    assert "images/skeletons" in tags["images"]
    assert ("images/beliefs_0" in tags["images"]) == (head == "integral")  # a regression head has no maps


def test_trainable_stages_freeze_the_other_stages_and_the_trunk_of_earlier_ones():
    model = ConvolutionalPoseMachine(tiny(stages=3))

    def trainable(prefix: str) -> bool:
        flags = {p.requires_grad for name, p in model.named_parameters() if name.startswith(prefix)}
        assert len(flags) == 1, prefix
        return flags.pop()

    assert set_trainable_stages(model, [2]) == [2]
    assert [trainable(p) for p in ("image_features_stage1", "stage1", "image_features.", "project.0", "stages.0",
                                   "project.1", "stages.1")] == [False, False, True, True, True, False, False]
    set_trainable_stages(model, [3])  # stage 2's trunk is frozen: stage 2's output must not change
    assert [trainable(p) for p in ("stage1", "image_features.", "stages.0", "stages.1")] == [False, False, False, True]
    set_trainable_stages(model, [])
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match=r"stages \[4\]"):
        set_trainable_stages(model, [4])
    regression = RegressionHead(ModelConfig(trunk_widths=TINY_MODEL["trunk_widths"],
                                            trunk_kernel=TINY_MODEL["trunk_kernel"]))
    assert set_trainable_stages(regression, [1]) == [1]


def test_init_from_copies_the_weights_of_the_earlier_stages(tmp_path):
    one = ConvolutionalPoseMachine(tiny(stages=1))
    save_checkpoint({"model": one.state_dict(), "config": {}}, tmp_path / "one.pt")
    two = ConvolutionalPoseMachine(tiny(stages=2))
    copied = load_matching_state(two, tmp_path / "one.pt")
    assert set(copied) == set(one.state_dict())
    assert torch.equal(two.stage1[-1].weight, one.stage1[-1].weight)
    with pytest.raises(CheckpointError, match="no weight"):
        load_matching_state(RegressionHead(ModelConfig(backbone="fourconv", stride=2)), tmp_path / "one.pt")


def test_config_names_bad_head_settings():
    with pytest.raises(ConfigError, match="model.head"):
        load_config(None, ['model.head="fancy"'])
    with pytest.raises(ConfigError, match="model.regression_loss"):
        load_config(None, ['model.regression_loss="l3"'])
    with pytest.raises(ConfigError, match="train.trainable_stages"):
        load_config(None, ["model.stages=2", "train.trainable_stages=[3]"])
    assert load_config(None, ['model.head="regression"', "train.stage_weights=[1.0]"]).train.stage_weights == [1.0]


def test_a_regression_head_on_stage_one_differs_from_the_heatmap_model_only_in_its_last_layer(tmp_path):
    from cpm.config import load_config

    sets = ["model.stages=1", "model.stride=4", "model.trunk_widths=[8, 16]", "data.input_size=64",
            "model.stage1_width=24", "model.feature_channels=8", "model.stage1_kernel=5"]
    heatmap = build_network(load_config(None, sets))
    config = load_config(None, [s for s in sets if s != "model.stages=1"] + [
        "model.head=regression", "model.regression_features=stage1", "model.regression_pool=1",
        "model.regression_hidden=0"])
    regression = build_network(config)
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    last = heatmap.stage1[-1]  # 1x1 conv 24 -> K + 1 = 16 channels
    assert count(regression) == count(heatmap) - (24 * 16 + 16) + (24 * 2 * 15 + 2 * 15)  # GAP -> FC 24 -> 2K
    assert last.in_channels == 24 and last.out_channels == 16
    # the same features: with the heatmap model's weights, the regression is FC(mean over cells of stage 1's
    # penultimate maps)
    features = regression.image_features
    features.trunk.load_state_dict(heatmap.image_features_stage1.state_dict())
    features.head.load_state_dict(torch.nn.Sequential(*list(heatmap.stage1)[:-1]).state_dict())
    image = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        penultimate = torch.nn.Sequential(*list(heatmap.stage1)[:-1])(heatmap.image_features_stage1(image))
        expected = regression.regressor[-1](penultimate.mean(dim=(2, 3))).view(2, 15, 2)
        torch.testing.assert_close(regression(image)[0], expected)


def test_the_heads_config_builds_every_head_on_the_same_stage_one():
    from pathlib import Path

    from cpm.config import load_config

    path = Path(__file__).resolve().parents[1] / "experiments" / "heads.toml"
    heads = {
        "heatmap": ["model.stages=1"],
        "integral": ["model.stages=1", 'model.head="integral"', 'model.regression_loss="l1"'],
        "regression": ['model.head="regression"', 'model.regression_features="stage1"', "model.regression_pool=1",
                       "model.regression_hidden=0", 'model.regression_loss="l1"'],
    }
    counts = {}
    for head, sets in heads.items():
        config = load_config(path, sets, reject_ignored=True)
        assert (config.data.input_size // config.model.stride, config.model.head) == (32, head)  # 32 x 32 maps
        counts[head] = sum(p.numel() for p in build_network(config).parameters())
    width, joints = 64, 15  # stage1_width; ITOP-15
    assert counts["heatmap"] - counts["integral"] == width + 1  # the background channel's 1x1 filter and bias
    assert counts["heatmap"] - counts["regression"] == (width + 1) * (joints + 1) - (width + 1) * 2 * joints
