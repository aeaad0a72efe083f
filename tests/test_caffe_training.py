"""The released CPM's training, divergence by divergence (issue 17): stage-1 targets of every person in the crop,
missing joints trained toward 0 with Gaussians cut below 0.01, Caffe's input scale, the released schedule, and
mmpose's CPM (a different model) as its own preset. Targets are checked against maps built by hand with Caffe's
putGaussianMaps / generateLabelMap arithmetic (input pixels, exp(-d^2 / 2 sigma^2), skip below 1 %, sum, clip at 1)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from cpm.config import load_config
from cpm.data.dataset import PoseDataset, normalize_pixels
from cpm.targets.codecs import HeatmapCodec
from cpm.targets.losses import staged_heatmap_loss

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
STRIDE, SIGMA_PX, SIZE = 4, 3.5, 32  # 8 x 8 maps, sigma 0.875 cells


def caffe_gaussians(entry: np.ndarray, center: tuple[float, float]) -> None:
    """data_transformer.cpp putGaussianMaps, in place on entry (h, w)."""
    start = STRIDE / 2.0 - 0.5
    for gy in range(entry.shape[0]):
        for gx in range(entry.shape[1]):
            x, y = start + gx * STRIDE, start + gy * STRIDE
            exponent = ((x - center[0]) ** 2 + (y - center[1]) ** 2) / 2.0 / SIGMA_PX / SIGMA_PX
            if exponent > 4.6052:  # ln(100)
                continue
            entry[gy, gx] = min(entry[gy, gx] + math.exp(-exponent), 1.0)


def caffe_label(self_joints: np.ndarray, others: list[np.ndarray]) -> np.ndarray:
    """generateLabelMap: 2 (K + 1) channels; here stage 1's half (self + others, label_1st_lower) first, then the
    later stages' (self, label_lower), each with its background max(0, 1 - max over parts)."""
    joints = len(self_joints)
    first, later = np.zeros((joints + 1, 8, 8)), np.zeros((joints + 1, 8, 8))
    for k, (x, y, v) in enumerate(self_joints):
        if v > 0:
            caffe_gaussians(first[k], (x, y))
            caffe_gaussians(later[k], (x, y))
        for person in others:
            if person[k, 2] > 0:
                caffe_gaussians(first[k], tuple(person[k, :2]))
    for half in (first, later):
        half[joints] = np.maximum(1 - half[:joints].max(axis=0), 0)
    return np.concatenate([first, later])


def caffe_codec(**kwargs) -> HeatmapCodec:
    settings = {"missing_joints": "zero", "cutoff": 0.01, "stage1_all_people": True} | kwargs
    return HeatmapCodec(input_size=(SIZE, SIZE), stride=STRIDE, sigma=SIGMA_PX / STRIDE, **settings)


# --- 1. stage-1 targets of every person -----------------------------------------------------------------------

def test_two_person_crop_gives_caffes_two_labels():
    me = np.array([[10.0, 12.0, 2], [14.5, 20.0, 1], [0.0, 0.0, 0], [-2.0, 16.0, 2]])  # one unlabeled, one outside
    other = np.array([[24.0, 11.0, 2], [15.5, 21.0, 2], [28.0, 28.0, 2], [30.0, 5.0, 0]])  # overlaps joint 1
    targets, weights = caffe_codec().encode(torch.tensor(np.stack([me, other])[None]).float())
    expected = caffe_label(me, [other])
    assert targets.shape == (1, 10, 8, 8)
    np.testing.assert_allclose(targets[0].numpy(), expected, atol=1e-6)
    assert targets[0, 1].max() == 1.0 and expected[1].max() == 1.0  # the two people's joint 1 overlap: clipped
    assert targets[0, 5:9].sum() < targets[0, 0:4].sum()  # later stages: the centred person only
    assert weights.tolist() == [[1.0, 1.0, 1.0, 1.0]]
    alone, _ = caffe_codec().encode(torch.tensor(me[None]).float())  # no one else: both halves are the person's
    np.testing.assert_allclose(alone[0].numpy(), caffe_label(me, []), atol=1e-6)


def test_stage_one_learns_the_first_half_and_later_stages_the_second():
    torch.manual_seed(0)
    target, weights = torch.rand(2, 10, 8, 8), torch.ones(2, 4)
    beliefs = [torch.rand(2, 5, 8, 8) for _ in range(3)]
    losses = staged_heatmap_loss(beliefs, target, weights, [1.0, 1.0, 1.0])
    assert losses["loss/stage1"].item() == pytest.approx(((beliefs[0] - target[:, :5]) ** 2).mean().item())
    for t in (2, 3):
        assert losses[f"loss/stage{t}"].item() == pytest.approx(((beliefs[t - 1] - target[:, 5:]) ** 2).mean().item())


class TwoPeople(list):
    """A source with the attributes of cpm.data.datasets.samples.ImageSamples that the other-people lookup reads:
    samples 0 and 1 are two people of one image, sample 2 is alone in another."""

    def __init__(self, shift: float) -> None:
        rng = np.random.default_rng(0)
        first = np.concatenate([rng.uniform(30, 50, size=(14, 2)), np.full((14, 1), 2.0)], axis=1)
        second = first.copy()
        second[:, 0] += shift
        self.keypoints = np.stack([first, second, first])
        self.images = ["a.png", "a.png", "b.png"]
        self.indices = [0, 1, 2]
        image = np.zeros((96, 128), np.uint8)
        super().__init__({"image": image, "keypoints": k, "center": k[:, :2].mean(axis=0), "scale": 40.0}
                         for k in self.keypoints)


def test_other_people_of_the_same_image_come_through_the_same_crop():
    from cpm.data.other_people import WithOtherPeople, with_other_people
    from cpm.skeleton import get_skeleton

    source = TwoPeople(shift=12.0)
    flips = get_skeleton("lsp14").flip_permutation
    dataset = with_other_people(PoseDataset(source, input_size=64, flip_permutation=flips, augment=True,
                                            scale_range=(0.8, 1.2), rotation=30, flip=True, seed=3))
    assert isinstance(dataset, WithOtherPeople) and dataset.max_others == 1
    seen_flip = False
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for i in range(3):
            item = dataset[i]
            keypoints = item["keypoints"].double().numpy()  # (2, 14, 3)
            assert keypoints.shape == (2, 14, 3)
            if i == 2:  # alone in its image: a padding row that draws nothing
                assert (keypoints[1, :, 2] == 0).all()
                continue
            linear = item["matrix"].double().numpy()[:, :2]
            seen_flip |= np.linalg.det(linear) < 0
            # the other person is this one moved by +-12 px along the source x axis, whatever the crop did
            step = linear @ np.array([12.0 if i == 0 else -12.0, 0.0])
            np.testing.assert_allclose(keypoints[1, :, :2] - keypoints[0, :, :2], np.tile(step, (14, 1)), atol=1e-3)
    assert seen_flip
    plain = PoseDataset([{"image": np.zeros((8, 8), np.uint8), "keypoints": np.ones((14, 3)),
                          "center": np.array([4.0, 4.0]), "scale": 4.0}], input_size=16, flip_permutation=flips)
    assert with_other_people(plain) is plain  # one person per image (LSP, the synthetic frames): nothing to add


def test_build_datasets_adds_the_other_people_only_when_asked(tmp_path, monkeypatch):
    import cpm.data.datasets.readers as readers
    from cpm.runtime.build import build_codec, build_datasets

    monkeypatch.setattr(readers, "split_dataset", lambda **kwargs: (TwoPeople(12.0), TwoPeople(12.0)))
    base = ["data.root=/nowhere", "data.skeleton=lsp14", "model.in_channels=1", "data.input_size=64"]
    plain, _ = build_datasets(load_config(EXPERIMENTS / "lsp.toml", base))
    config = load_config(EXPERIMENTS / "lsp.toml", [*base, "targets.stage1_all_people=true"])
    train_set, val_set = build_datasets(config)
    assert plain[0]["keypoints"].shape == (14, 3) and val_set[0]["keypoints"].shape == (14, 3)
    batch = torch.stack([train_set[0]["keypoints"], train_set[1]["keypoints"]])  # (2, 2, 14, 3)
    targets, _ = build_codec(config).encode(batch)
    assert targets.shape == (2, 30, 8, 8)


# --- 2. missing joints ----------------------------------------------------------------------------------------

def test_missing_joints_are_trained_toward_zero_under_caffes_rule():
    keypoints = torch.tensor([[[12.0, 12.0, 2], [0.0, 0.0, 0], [-3.0, 14.0, 2], [float("nan"), 3.0, 2]]])
    ours, our_weights = HeatmapCodec(input_size=(SIZE, SIZE), stride=STRIDE, sigma=0.875).encode(keypoints)
    caffe, caffe_weights = caffe_codec(stage1_all_people=False).encode(keypoints)
    assert our_weights.tolist() == [[1, 0, 0, 0]] and caffe_weights.tolist() == [[1, 1, 1, 1]]
    expected = caffe_label(keypoints[0].numpy(), [])[5:]  # one person: the label_lower half
    expected[3] = 0  # a non-finite joint draws nothing
    expected[4] = np.maximum(1 - expected[:4].max(axis=0), 0)
    np.testing.assert_allclose(caffe[0].numpy(), expected, atol=1e-6)
    assert caffe[0, 2, :, 0].max() > 0.01 and ours[0, 2].max() == 0  # the tail of a joint 3 px outside the crop
    assert (caffe[0, 0][caffe[0, 0] > 0] >= 0.01).all() and (ours[0, 0] > 0).all()  # cut below 1 %
    # A belief of 0.5 on the unlabeled channel costs under Caffe's rule and nothing under ours.
    beliefs = caffe.clone()
    beliefs[0, 1] = 0.5
    assert staged_heatmap_loss([beliefs], caffe, caffe_weights, [1.0])["loss"].item() == pytest.approx(0.25 / 5)
    assert staged_heatmap_loss([beliefs], caffe, our_weights, [1.0])["loss"].item() == 0.0


# --- 3. input scale -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("scale", "expected"), [
    ("unit", [(200 / 255 - 0.5) / 0.5] * 3),
    ("caffe", [(200 - 128) / 256] * 3),
    ("imagenet", [(200 / 255 - 0.485) / 0.229, (200 / 255 - 0.456) / 0.224, (200 / 255 - 0.406) / 0.225]),
])
def test_input_scale(scale, expected):
    source = [{"image": np.full((80, 80, 3), 200, np.uint8), "keypoints": np.ones((14, 3)),
               "center": np.array([40.0, 40.0]), "scale": 20.0}]
    image = PoseDataset(source, input_size=32, flip_permutation=tuple(range(14)), input_scale=scale)[0]["image"]
    np.testing.assert_allclose(image.mean(dim=(1, 2)).numpy(), expected, rtol=1e-6)
    assert image.flatten(1).std(dim=1).max() == 0
    assert normalize_pixels(torch.tensor([0.0, 128.0, 255.0])[:, None, None], "caffe").flatten().tolist() == \
        [-0.5, 0.0, 127 / 256]


def test_paper_configs_feed_caffes_input_and_labels():
    from cpm.runtime.build import build_codec, build_datasets

    for name in ("paper_lsp.toml", "paper_mpii.toml"):
        config = load_config(EXPERIMENTS / name, ["data.train_samples=16", "data.val_samples=2"])
        train_set, val_set = build_datasets(config)
        assert train_set.input_scale == val_set.input_scale == "caffe"
        codec = build_codec(config)
        assert (codec.missing_joints, codec.cutoff, codec.stage1_all_people) == ("zero", 0.01, True)
    default_codec = build_codec(load_config(None))
    assert (default_codec.missing_joints, default_codec.cutoff, default_codec.stage1_all_people) == \
        ("ignore", 0.0, False)
    assert build_datasets(load_config(None, ["data.val_samples=2"]))[1].input_scale == "unit"


# --- 5. the schedule ------------------------------------------------------------------------------------------

def lr_at(scheduler, step: int) -> list[float]:
    """The learning rates of step ``step`` (the scheduler's lambda evaluated there)."""
    scheduler.last_epoch = step - 1
    with warnings.catch_warnings():  # stepping the scheduler without an optimizer step
        warnings.simplefilter("ignore", UserWarning)
        scheduler.step()
    return [group["lr"] for group in scheduler.optimizer.param_groups]


def test_paper_lsp_schedule_is_the_released_models():
    from dataclasses import replace

    from cpm.models import ConvolutionalPoseMachine
    from cpm.training.optim import build_optimizer

    config = load_config(EXPERIMENTS / "paper_lsp.toml")
    steps_per_epoch = config.data.train_samples // config.train.batch_size
    assert config.train.epochs * steps_per_epoch == 395_000  # pose_iter_395000 at batch 16
    tiny = {"trunk_widths": [2, 2, 2], "trunk_kernel": 1, "feature_channels": 2, "stage1_width": 2,
            "stage1_kernel": 1, "stage_width": 2, "stage_kernel": 1, "stages": 2}
    model = ConvolutionalPoseMachine(replace(config.model, **tiny), num_joints=15)
    optimizer, scheduler = build_optimizer(model, config, total_steps=395_000)
    base = lr_at(scheduler, 0)
    for step, decays in [(136_105, 0), (136_106, 1), (272_211, 1), (272_212, 2), (394_999, 2)]:
        assert lr_at(scheduler, step) == pytest.approx([lr * 0.333**decays for lr in base], rel=1e-12), step


def test_mmpose_schedule_decays_tenfold_at_epochs_170_and_200():
    from cpm.training.optim import build_optimizer

    config = load_config(EXPERIMENTS / "mmpose_cpm.toml", ["data.root=/nowhere"])
    model = torch.nn.Conv2d(1, 1, 1)
    optimizer, scheduler = build_optimizer(model, config, total_steps=210 * 10)
    assert lr_at(scheduler, 0)[0] == pytest.approx(5e-4 / 500)  # linear warm-up over 500 iterations
    for step, lr in [(500, 5e-4), (1699, 5e-4), (1700, 5e-5), (1999, 5e-5), (2000, 5e-6), (2099, 5e-6)]:
        assert lr_at(scheduler, step)[0] == pytest.approx(lr), step


# --- 7. mmpose's CPM ------------------------------------------------------------------------------------------

def mmpose_cpm_parameters(joints: int = 16, stages: int = 6) -> int:
    """mmpose/models/backbones/cpm.py: ConvModule = conv without bias + BN (2 parameters a channel), except the
    belief outputs (conv with bias, no norm)."""
    def module(k, cin, cout):
        return k * k * cin * cout + 2 * cout

    def output(cin, cout):
        return cin * cout + cout

    trunk = module(9, 3, 128) + 2 * module(9, 128, 128)
    stem = trunk + module(5, 128, 32) + module(9, 32, 512) + module(1, 512, 512) + output(512, joints)
    stage = (module(5, 128, 32) + module(11, 32 + joints, 128) + 2 * module(11, 128, 128) + module(1, 128, 128)
             + output(128, joints))
    return stem + trunk + (stages - 1) * stage


def test_mmpose_preset_is_mmposes_cpm():
    from cpm.runtime.build import build_codec, build_network

    config = load_config(EXPERIMENTS / "mmpose_cpm.toml", ["data.root=/nowhere"])
    torch.manual_seed(0)
    model = build_network(config)
    assert sum(p.numel() for p in model.parameters()) == mmpose_cpm_parameters() == 31_225_568
    assert model.out_channels == 16 and not model.use_center_map and model.beliefs_first
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    with_bias = [m for m in convs if m.bias is not None]
    assert len(with_bias) == 6 and all(m.out_channels == 16 for m in with_bias)  # only the belief outputs
    weights = torch.cat([m.weight.flatten() for m in convs])
    assert weights.std().item() == pytest.approx(0.001, rel=0.01)
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert all(p.padding == 1 and not p.ceil_mode for p in pools)
    codec = build_codec(config)
    assert (codec.sigma, codec.background, codec.missing_joints) == (2.0, False, "ignore")
    assert (config.data.input_scale, config.train.optimizer, config.train.weight_decay) == ("imagenet", "adamw", 0.0)
    with torch.no_grad():
        beliefs = model.eval()(torch.zeros(1, 3, 64, 64))  # no centre map
    assert len(beliefs) == 6 and beliefs[0].shape == (1, 16, 8, 8)


def test_adamw_without_weight_decay_is_adam():
    torch.manual_seed(0)
    a, b = torch.nn.Parameter(torch.randn(5)), torch.nn.Parameter(torch.randn(5))
    b.data.copy_(a.data)
    adamw, adam = torch.optim.AdamW([a], lr=5e-4, weight_decay=0.0), torch.optim.Adam([b], lr=5e-4)
    for _ in range(3):
        grad = torch.randn(5)
        a.grad, b.grad = grad.clone(), grad.clone()
        adamw.step()
        adam.step()
    assert torch.equal(a, b)
