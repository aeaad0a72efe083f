"""experiments/coco.toml (mmpose's CPM on COCO, for a GPU) as a config, and the top-down COCO path on real COCO
val2017 annotations and photographs (../shared/data/fixtures/coco; skipped where absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cpm.config import load_config
from cpm.data.datasets.coco_files import read_coco_file
from cpm.evaluation.coco import keypoint_ap
from cpm.evaluation.topdown import evaluate_topdown, ground_truth_boxes, instances_to_results
from cpm.runtime.build import build_network
from cpm.runtime.checkpoint import save_checkpoint
from cpm.skeleton import COCO_17, oks_sigmas
from tests.helpers import tiny_overrides
from tests.test_caffe_training import mmpose_cpm_parameters

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
FIXTURE = Path(__file__).resolve().parents[2] / "shared" / "data" / "fixtures" / "coco" / "test_coco.json"
needs_fixture = pytest.mark.skipif(not FIXTURE.is_file(), reason="../shared/data/fixtures/coco is not here")


def test_the_coco_config_is_mmposes_cpm_on_coco_top_down_with_flip_test():
    config = load_config(EXPERIMENTS / "coco.toml", ["data.root=/nowhere"])
    assert (config.data.source, config.data.skeleton, config.data.crop_around) == ("coco", "coco17", "box")
    assert (config.data.input_size, config.data.crop_padding, config.data.input_scale) == (256, 1.25, "imagenet")
    assert (config.eval.flip_test, config.eval.oks_nms, config.eval.decoder) == (True, 0.9, "quarter")
    assert (config.train.epochs, config.train.lr, config.train.lr_milestones) == (210, 5e-4, [170, 200])
    model = build_network(config)
    assert sum(p.numel() for p in model.parameters()) == mmpose_cpm_parameters(joints=17)
    assert model.out_channels == 17 and not model.use_center_map
    np.testing.assert_allclose(oks_sigmas(COCO_17)[[0, 5, 9, 11, 15]], [0.026, 0.079, 0.062, 0.107, 0.089])


@needs_fixture
def test_real_coco_ground_truth_as_results_scores_ap_one_and_a_shift_lowers_it():
    coco = read_coco_file(FIXTURE)
    assert coco.skeleton == "coco17" and sum(len(image.boxes) for image in coco.images) == 14
    keypoints, confidence, meta = [], [], []
    for image in coco.images:
        labeled = (image.keypoints[:, :, 2] > 0).any(axis=1)
        for person, box in zip(image.keypoints[labeled], image.boxes[labeled], strict=True):
            keypoints.append(person[:, :2])
            confidence.append(np.ones(17))
            meta.append((image.id, box, 1.0))
    sigmas = oks_sigmas(COCO_17)
    perfect = keypoint_ap(coco.to_dict(), instances_to_results(np.stack(keypoints), np.stack(confidence), meta,
                                                               sigmas), sigmas)
    assert perfect["AP"] == pytest.approx(1.0) and perfect["AR"] == pytest.approx(1.0)
    shifted = keypoint_ap(coco.to_dict(), instances_to_results(np.stack(keypoints) + 8.0, np.stack(confidence),
                                                               meta, sigmas), sigmas)
    assert 0.0 < shifted["AP"] < 0.8


@needs_fixture
def test_a_tiny_rgb_coco_model_runs_top_down_on_real_photographs(tmp_path):
    config = load_config(None, tiny_overrides(tmp_path, **{"data.skeleton": "coco17", "model.in_channels": 3,
                                                           "model.stages": 2, "eval.flip_test": True}))
    torch.manual_seed(0)
    save_checkpoint({"model": build_network(config).state_dict(), "config": config.to_dict()}, tmp_path / "rgb.pt")
    result = evaluate_topdown(tmp_path / "rgb.pt", FIXTURE, boxes="gt", device_name="cpu", progress=False)
    assert result["flip_test"] and result["images"] == 4
    # 14 people, 2 of them without a labeled joint (not scored by COCO AP, no box run)
    assert result["boxes"] == sum(len(v) for v in ground_truth_boxes(read_coco_file(FIXTURE)).values()) == 12
    assert 0.0 <= result["stats"]["AP"] < 0.5  # an untrained model: finite, low
    assert {len(r["keypoints"]) for r in result["results"]} == {51}
