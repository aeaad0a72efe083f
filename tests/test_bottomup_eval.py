"""Bottom-up evaluation of a part-affinity-field model (`cpm.evaluation.bottomup`): the model once per image, its
maps grouped into people, keypoints mapped back to image pixels, COCO AP; and ``cpm eval --coco`` of a paf model."""

from __future__ import annotations

import json

import pytest
import torch

from cpm.cli import main
from cpm.config import load_config
from cpm.errors import CPMError
from cpm.evaluation.bottomup import evaluate_bottomup, format_times
from cpm.runtime.build import build_bottom_up_datasets, build_codec, build_network
from cpm.runtime.checkpoint import save_checkpoint
from tests.helpers import TINY_MODEL
from tests.test_paf_model import PAF, render


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    render(root / "train", 2, 0)
    render(root / "val", 3, 1000)
    return root


def paf_checkpoint(root, path, *extra):
    config = load_config(None, [*PAF, f'data.root="{root}"', 'data.val_annotations="val/annotations.json"',
                                *[f"model.{k}={v}" for k, v in TINY_MODEL.items()], "model.stages=2",
                                "data.input_size=256", "model.stride=4", "model.trunk_widths=[4, 8]", "data.workers=0",
                                *extra])
    torch.manual_seed(0)
    save_checkpoint({"model": build_network(config).state_dict(), "config": config.to_dict()}, path)
    return config


class Oracle(torch.nn.Module):
    """Outputs, image by image in loader order, the encoded targets of the held-out images' people: the maps a
    perfect model would give."""

    def __init__(self, targets):
        super().__init__()
        self.targets = list(targets)

    def forward(self, image, center_map=None):
        target = self.targets.pop(0)
        return [target, target]


def test_perfect_maps_give_the_people_back_in_image_pixels(scenes, tmp_path, monkeypatch):
    """With a model that outputs the targets, the grouped people mapped back through the inverse of the whole-image
    warp land on the annotated joints: AP well above what a shifted mapping would give."""
    from cpm.runtime import checkpoint

    config = paf_checkpoint(scenes, tmp_path / "paf.pt")
    _, dataset = build_bottom_up_datasets(config)
    codec = build_codec(config)
    targets = [codec.encode(dataset[i]["keypoints"][None])[0] for i in range(len(dataset))]
    monkeypatch.setattr(checkpoint, "load_model", lambda path, device: (Oracle(targets), config))
    result = evaluate_bottomup(tmp_path / "paf.pt", device_name="cpu", progress=False)
    assert result["images"] == len(dataset) == 3 and len(result["times"]) == 3
    assert result["stats"]["AP50"] == 1.0 and result["stats"]["AP"] > 0.95  # 0 if the warp is not undone
    assert {len(r["keypoints"]) for r in result["results"]} == {45}


def test_a_tiny_paf_model_is_scored_by_cpm_eval_coco_with_a_row_per_matching(scenes, tmp_path, capsys):
    paf_checkpoint(scenes, tmp_path / "paf.pt")
    out = tmp_path / "ap"
    assert main(["eval", str(tmp_path / "paf.pt"), "--coco", str(scenes / "val" / "annotations.json"),
                 "--matching", "both", "--out", str(out), "--no-progress", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "| bottom-up, greedy matching |" in text and "| bottom-up, optimal matching |" in text
    assert "frames / s" in text
    saved = json.loads((out / "coco-ap.json").read_text())
    assert set(saved["settings"]) == {"bottom-up, greedy matching", "bottom-up, optimal matching"}
    assert main(["eval", str(tmp_path / "paf.pt"), "--coco", str(scenes / "val" / "annotations.json"),
                 "--boxes", "gt"]) == 2
    assert "--boxes and --flip-test are for top-down models" in capsys.readouterr().err


def test_a_heatmap_checkpoint_is_refused_by_the_bottom_up_evaluation(tmp_path):
    from tests.test_topdown import tiny_checkpoint

    with pytest.raises(CPMError, match="bottom-up evaluation groups the maps of a paf model"):
        evaluate_bottomup(tiny_checkpoint(tmp_path / "tiny.pt", tmp_path), device_name="cpu")


def test_format_times_gives_medians_by_people():
    times = {"greedy": [{"people": 1, "network_ms": 10.0, "grouping_ms": 2.0},
                        {"people": 1, "network_ms": 30.0, "grouping_ms": 4.0},
                        {"people": 3, "network_ms": 20.0, "grouping_ms": 5.0}]}
    lines = format_times(times).splitlines()
    assert lines[2] == "| greedy | 1 | 2 | 20.0 | 3.0 | 43.5 |"
    assert lines[3] == "| greedy | 3 | 1 | 20.0 | 5.0 | 40.0 |"
