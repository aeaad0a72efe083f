"""The part-affinity-field model (model.head = "paf"): its stages' outputs and inputs, its loss with per-pixel weights
and intermediate supervision, the whole-image dataset over a COCO keypoints file, the config rules, and a short
training run on rendered depth scenes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cpm.cli import main
from cpm.config import ConfigError, load_config
from cpm.data.transforms import apply_affine, invert_affine
from cpm.models.paf import PartAffinityFields
from cpm.runtime.batch import prepare_batch
from cpm.runtime.build import build_codec, build_datasets, build_network, build_stage_weights
from cpm.runtime.checkpoint import load_checkpoint, load_model_state
from cpm.skeleton import ITOP_15
from cpm.targets.losses import staged_loss, weighted_mse
from tests.helpers import TINY_MODEL, tiny, tiny_overrides

K, L = ITOP_15.num_joints, len(ITOP_15.limbs)  # 15 joints, 14 limbs
PAF = ['model.head="paf"', "model.center_map=false", 'data.source="coco"', 'data.root="scenes"',
       'data.annotations="train/annotations.json"']


def render(folder: Path, scenes: int, seed: int) -> Path:
    assert main(["data", "render-scenes", str(folder), "--scenes", str(scenes), "--seed", str(seed)]) == 0
    return folder / "annotations.json"


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """A scenes root as `make train-scenes` renders it: train/ (4 frames), val/ (2 frames)."""
    root = tmp_path_factory.mktemp("scenes")
    render(root / "train", 4, 0)
    render(root / "val", 2, 1000)
    return root


def paf_config(root: Path, *extra: str):
    return load_config(None, [*PAF, f'data.root="{root}"', 'data.val_annotations="val/annotations.json"',
                              *[f"model.{k}={v}" for k, v in TINY_MODEL.items()], "data.input_size=64",
                              "data.workers=0", *extra])


def test_every_stage_outputs_confidence_maps_then_fields_in_the_codec_order():
    torch.manual_seed(0)
    model = PartAffinityFields(tiny(head="paf", center_map=False, stages=3), K, num_limbs=L).eval()
    image = torch.randn(2, 1, 64, 64)
    outputs = model(image)
    assert [tuple(o.shape) for o in outputs] == [(2, K + 1 + 2 * L, 8, 8)] * 3  # 16 maps + 28 field channels
    features = model.image_features(image)
    inputs = features
    for t, stage in enumerate([model.stage1, *model.stages]):
        maps, fields = model.split(outputs[t])
        assert torch.equal(maps, stage.maps(inputs)) and torch.equal(fields, stage.fields(inputs))
        inputs = torch.cat([features, outputs[t]], dim=1)  # what stage t + 1 reads: [F, S, L]
    codec = build_codec(load_config(None, [*PAF, "data.input_size=64"]))
    assert codec.channels == model.out_channels == 44 and codec.field_offset == model.joint_channels == 16


@pytest.mark.parametrize("background", [True, False])
def test_stage_t_reads_the_features_the_previous_confidence_maps_and_fields(background):
    model = PartAffinityFields(tiny(head="paf", center_map=False, stages=3), K, num_limbs=L, background=background)
    features = model.image_features.out_channels  # 8: the tiny trunk's last width
    first = [module for module in model.stage1.maps.modules() if isinstance(module, torch.nn.Conv2d)][0]
    assert first.in_channels == features
    for stage in model.stages:
        for branch, out in ((stage.maps, K + background), (stage.fields, 2 * L)):
            convs = [module for module in branch.modules() if isinstance(module, torch.nn.Conv2d)]
            assert convs[0].in_channels == features + K + background + 2 * L  # 8 + 16 + 28 = 52 with background
            assert convs[-1].out_channels == out


def test_intermediate_supervision_weights_every_stage_or_the_last_alone(scenes):
    on, off = paf_config(scenes, "model.stages=3"), paf_config(scenes, "model.stages=3",
                                                               "train.intermediate_supervision=false")
    assert build_stage_weights(on) == [1.0, 1.0, 1.0] and build_stage_weights(off) == [0.0, 0.0, 1.0]
    torch.manual_seed(0)
    model, codec = build_network(on), build_codec(on)
    train_set, _ = build_datasets(on)
    batch = {k: torch.stack([train_set[i][k] for i in range(2)]) for k in ("image", "keypoints", "center")}
    image, center_map, targets, weights = prepare_batch(batch, codec, torch.device("cpu"), False)
    assert center_map is None and targets.shape == weights.shape == (2, 44, 8, 8)
    outputs = model(image, center_map)
    losses = staged_loss(outputs, targets, weights, build_stage_weights(off))
    assert torch.equal(losses["loss"], 0.0 * losses["loss/stage1"] + 0.0 * losses["loss/stage2"]
                       + 1.0 * losses["loss/stage3"])
    losses["loss"].backward()  # without intermediate supervision stage 1 still learns through the last stage
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.stage1.parameters())


def test_per_pixel_weights_give_the_per_channel_loss_and_the_old_shape_is_unchanged():
    torch.manual_seed(0)
    prediction, target = torch.randn(3, 16, 8, 8), torch.rand(3, 16, 8, 8)
    per_joint = (torch.rand(3, 15) > 0.3).float()  # (B, K): background weighted 1
    squared = (prediction.float() - target) ** 2
    expanded = torch.cat([per_joint, per_joint.new_ones(3, 1)], dim=1)
    assert torch.equal(weighted_mse(prediction, target, per_joint), (squared.mean(dim=(2, 3)) * expanded).mean())
    per_pixel = expanded[:, :, None, None].expand(3, 16, 8, 8)
    assert weighted_mse(prediction, target, per_pixel).item() == pytest.approx(
        weighted_mse(prediction, target, per_joint).item(), rel=1e-6)
    masked = torch.ones(3, 16, 8, 8)
    masked[:, :, :4] = 0  # the top half ignored
    assert weighted_mse(prediction, target, masked).item() == pytest.approx(
        (squared[:, :, 4:].sum() / squared.numel()).item(), rel=1e-6)


def test_bottom_up_keypoints_map_back_to_source_pixels_through_the_inverse_matrix(scenes):
    config = paf_config(scenes, "data.input_size=128", "data.rotation=30")
    train_set, val_set = build_datasets(config)
    coco = json.loads((scenes / "train" / "annotations.json").read_text())
    assert len(train_set) == 4 and len(val_set) == 2
    assert train_set.max_people == max(sum(a["image_id"] == i["id"] for a in coco["annotations"])
                                       for i in coco["images"])
    flips = 0
    for epoch in range(3):
        train_set.set_epoch(epoch)
        for index in range(len(train_set)):
            sample = train_set[index]
            assert sample["image"].shape == (1, 128, 128) and sample["center"].tolist() == [0.0, 0.0]
            people, keypoints, source = int(sample["people"]), sample["keypoints"].numpy(), sample["source_keypoints"]
            assert keypoints.shape == source.shape == (train_set.max_people, K, 3)
            assert (keypoints[people:, :, 2] == 0).all() and (source[people:] == 0).all()  # padding rows
            matrix = sample["matrix"].double().numpy()
            flipped = np.linalg.det(matrix[:, :2]) < 0
            flips += flipped
            back = apply_affine(keypoints[:people, :, :2].astype(np.float64), invert_affine(matrix))
            order = list(ITOP_15.flip_permutation) if flipped else list(range(K))
            expected = source[:people].numpy()[:, order]
            labeled = expected[..., 2] > 0
            assert np.abs(back - expected[..., :2])[labeled].max() < 1e-3
            assert (keypoints[:people, :, 2] == expected[..., 2]).all()
    assert 0 < flips < 12  # both kinds were drawn
    sample = val_set[0]  # held out: the whole image, its longer side (256 of 256 x 212) fitted to the input
    matrix = sample["matrix"].double().numpy()
    assert np.allclose(matrix, [[0.5, 0.0, 0.0 + 63.5 - 0.5 * 127.5], [0.0, 0.5, 63.5 - 0.5 * 105.5]])


def test_without_held_out_annotations_the_last_val_samples_images_are_held_out(scenes):
    config = load_config(None, [*PAF, f'data.root="{scenes}"', "data.val_samples=1", "data.input_size=64"])
    train_set, val_set = build_datasets(config)
    assert (len(train_set), len(val_set)) == (3, 1) and train_set.image_ids == [0, 1, 2] and val_set.image_ids == [3]
    with pytest.raises(ConfigError, match=r"^data.val_samples: 4 held out of 4 images"):
        build_datasets(load_config(None, [*PAF, f'data.root="{scenes}"', "data.val_samples=4"]))


def test_a_flip_mirrors_the_image_and_swaps_left_and_right_joints(scenes):
    plain = paf_config(scenes, "data.input_size=128", "data.rotation=0", "data.shift=0", "data.scale_range=[1, 1]",
                       "data.flip=false")
    mirrored = paf_config(scenes, "data.input_size=128", "data.rotation=0", "data.shift=0", "data.scale_range=[1, 1]")
    straight, maybe = build_datasets(plain)[0], build_datasets(mirrored)[0]
    found = 0
    for index in range(len(straight)):
        a, b = straight[index], maybe[index]
        if not np.linalg.det(b["matrix"][:, :2].numpy()) < 0:
            continue
        found += 1
        assert torch.allclose(b["image"], a["image"].flip(-1), atol=1e-5)
        people = int(a["people"])
        left, right = ITOP_15.index("left_shoulder"), ITOP_15.index("right_shoulder")
        for one, other in ((left, right), (right, left)):
            assert torch.allclose(b["keypoints"][:people, one, 0], 127 - a["keypoints"][:people, other, 0], atol=1e-4)
            assert torch.allclose(b["keypoints"][:people, one, 1], a["keypoints"][:people, other, 1], atol=1e-4)
    assert found


@pytest.mark.parametrize(("overrides", "key"), [
    ([*PAF[:1], *PAF[2:]], "model.center_map"),  # a centre map (the default) for a bottom-up model
    (PAF[:2], "data.source"),  # synthetic single-person crops
    ([*PAF, "targets.stage1_all_people=true"], "targets.stage1_all_people"),
    ([*PAF, 'train.best_metric="pck@0.2"'], "train.best_metric"),
])
def test_a_bad_paf_config_fails_in_one_line_naming_the_key(overrides, key):
    with pytest.raises(ConfigError) as error:
        load_config(None, overrides, reject_ignored=True)
    assert str(error.value).startswith(f"{key}: ") and "\n" not in str(error.value)


def test_a_skeleton_without_limbs_is_refused_for_a_paf_model(tmp_path):
    flips = [[f"left_{part}", f"right_{part}"] for part in ("shoulder", "elbow", "hand", "hip", "knee", "foot")]
    table = {"name": "no_limbs", "joints": list(ITOP_15.joint_names), "flip_pairs": flips,
             "torso": ["left_shoulder", "right_hip"]}
    lines = ["[skeleton]", *(f"{key} = {json.dumps(value)}" for key, value in table.items())]
    (tmp_path / "paf.toml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as error:
        load_config(tmp_path / "paf.toml", PAF)
    assert str(error.value).startswith("skeleton.limbs: the paf head predicts a field per limb") and \
        "\n" not in str(error.value)
    assert load_config(tmp_path / "paf.toml", ['data.source="coco"', 'data.root="x"', 'data.annotations="a.json"'])


def test_a_tiny_paf_model_trains_on_rendered_scenes_its_loss_falls_and_best_pt_loads(scenes, tmp_path):
    from cpm.training.loop import train

    overrides = tiny_overrides(tmp_path, **{"train.epochs": 4, "train.batch_size": 2, "train.lr": 3e-3,
                                            "data.train_samples": 4, "train.log_every": 1, "model.stages": 2})
    config = load_config(None, [*PAF, f'data.root="{scenes}"', 'data.val_annotations="val/annotations.json"',
                                *overrides])
    lines: list[str] = []
    results = train(config, progress=False, log=lines.append)
    assert len(results["loss"]) == 2 and results["pck"] == {} and results["samples"] == 2
    run = Path(results["run_dir"])
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [1, 2, 3, 4]
    assert rows[-1]["train/loss"] < rows[0]["train/loss"] and rows[-1]["val/loss/stage2"] < rows[0]["val/loss/stage2"]
    assert not any(name.startswith("val/pck") for name in rows[-1])
    assert "held-out loss per stage" in lines[-1]
    best = load_checkpoint(run / "best.pt")
    assert best["best"]["metric"] == "loss"
    assert best["best"]["value"] == min(row["val/loss/stage2"] for row in rows)
    model = build_network(config)
    load_model_state(model, best["model"], run / "best.pt")
    assert isinstance(model, PartAffinityFields) and model.num_stages == 2
