"""The refinement gate's table and decision rule (`cpm.experiments.gate`) on hand-made cell summaries."""

from __future__ import annotations

import json

from cpm.experiments.gate import gate_table, main


def _summary(folder, cell, seed, pck01, pck02=0.9):
    folder.mkdir(parents=True, exist_ok=True)
    summary = {"cell": f"{cell}-seed{seed}", "revision": "abc1234",
               "summary": {"pck": {"0.1": pck01, "0.2": [pck02] * len(pck01)}}}
    (folder / f"{cell}-seed{seed}-0123abcd.json").write_text(json.dumps(summary))


def test_gate_decision_rule(tmp_path):
    root = tmp_path / "runs" / "ablate-supervision"
    # passes: T3 - T1 = 6 and 7 points (mean 6.5 >= 5); stage 3 - stage 1 = 4 and 3 (mean 3.5 >= 3)
    for seed, (t1, s1, s3) in enumerate([(0.60, 0.62, 0.66), (0.61, 0.65, 0.68)]):
        _summary(root / "gate-ablation-k3", "T1-is", seed, [t1])
        _summary(root / "gate-ablation-k3", "T3-is", seed, [s1, 0.64, s3])
    # fails on refinement: T3 - T1 = 8 on average, but stage 3 - stage 1 = 2
    for seed in (0, 1):
        _summary(root / "gate-train", "T1-is", seed, [0.70])
        _summary(root / "gate-train", "T3-is", seed, [0.76, 0.77, 0.78])
    # one seed only
    _summary(root / "gate-occlusion", "T1-is", 0, [0.5])
    _summary(root / "gate-occlusion", "T3-is", 0, [0.5, 0.6, 0.7])
    (root / "gate-ablation-k3" / "baseline.json").write_text(json.dumps({"mean_pose": {"pck@0.1": 0.148}}))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in gate_table(tmp_path).splitlines()
            if line.startswith("| gate-")}
    assert rows["gate-ablation-k3"].endswith("| passes |")
    assert "| 6.5 ± 0.7 | 3.5 ± 0.7 | 14.8 |" in rows["gate-ablation-k3"]
    assert rows["gate-train"].endswith("| fails |") and "| 8.0 ± 0.0 | 2.0 ± 0.0 |" in rows["gate-train"]
    assert rows["gate-occlusion"].endswith("| incomplete (1 of 2 seeds) |")
    assert rows["gate-real-motion"].endswith("| incomplete (0 of 2 seeds) |")
    assert "Decision: passing: gate-ablation-k3." in gate_table(tmp_path)
    assert main(["--results", str(tmp_path)]) == 0
    assert (tmp_path / "ablate-supervision" / "gate.md").is_file()
