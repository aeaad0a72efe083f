"""The trivial baselines of the experiment tables (`cpm.experiments.baselines`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cpm.config import load_config
from cpm.errors import CPMError
from cpm.experiments.baselines import baseline_scores, main, mean_pose


def test_mean_pose_averages_labelled_joints_only():
    items = [{"keypoints": torch.tensor([[2.0, 4.0, 2.0], [10.0, 10.0, 0.0]])},
             {"keypoints": torch.tensor([[4.0, 8.0, 1.0], [6.0, 2.0, 2.0]])}]
    assert np.allclose(mean_pose(items, 2), [[3.0, 6.0], [6.0, 2.0]])  # joint 2's unlabelled (10, 10) left out
    assert np.allclose(mean_pose(items[::-1], 1), [[4.0, 8.0], [6.0, 2.0]])  # only the first crop
    with pytest.raises(CPMError, match="never labelled"):
        mean_pose(items, 1)


def test_baselines_on_synthetic_frames(tmp_path):
    config = load_config(None, ["data.val_samples=24", "data.train_samples=32", "data.input_size=64",
                                "model.trunk_widths=[8, 8, 8]"])
    scores = baseline_scores(config, train_frames=32)
    assert scores["samples"] == 24 and scores["train_frames"] == 32
    for name in ("mean_pose", "crop_centre"):
        values = [scores[name][f"pck@{a:g}"] for a in config.eval.pck_thresholds]
        assert all(0.0 <= v <= 1.0 for v in values) and values == sorted(values)
    # every joint at one point scores far below a pose-shaped guess at the wide threshold
    assert scores["mean_pose"]["pck@0.2"] > scores["crop_centre"]["pck@0.2"] + 0.1
    out = tmp_path / "baseline.json"
    assert main(["--train-frames", "0", "experiments/default.toml"]) == 2
    assert main([str(tmp_path / "missing.toml")]) == 2
    assert not out.exists()
    assert main(["experiments/default.toml", "--set", "data.val_samples=8", "--set", "data.train_samples=16",
                 "--set", "data.missing_pose_files=\"procedural\"", "--train-frames", "16", "--out", str(out)]) == 0
    assert '"mean_pose"' in out.read_text()


def test_the_report_tables_carry_the_mean_pose_row(tmp_path):
    import json

    from cpm.experiments.reports import BASELINE_LABEL, _supervision_table, baseline_scores

    assert baseline_scores(tmp_path) is None  # no baseline.json: no row
    (tmp_path / "baseline.json").write_text(json.dumps({"mean_pose": {"pck@0.05": 0.04, "pck@0.1": 0.148,
                                                                      "pck@0.2": 0.425}}))
    scores = baseline_scores(tmp_path)
    assert scores == pytest.approx({"0.05": 4.0, "0.1": 14.8, "0.2": 42.5})
    rows = [line for line in _supervision_table({}, [], scores) if line.startswith(f"| {BASELINE_LABEL}")]
    assert rows == [f"| {BASELINE_LABEL} | 42.5 | – | – | 14.8 | – | – | – |"]
    assert not any(BASELINE_LABEL in line for line in _supervision_table({}, [], None))
