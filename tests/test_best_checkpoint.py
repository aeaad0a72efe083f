"""best.pt selection with scripted validation scores: the first epoch with the highest final-stage PCK@0.2 wins.

A real tiny run rarely produces the score sequences that tell selection bugs apart (a later epoch better than a
worse one but not than the best; a tie), so each epoch's evaluation is run for real and its PCK then replaced by
a scripted value: the final stage of epoch e reads ``SCORES[e]`` at PCK@0.2; the earlier stages and the other
thresholds read ``1 - SCORES[e]``, so a selection by another stage or threshold would pick another epoch.
"""

from __future__ import annotations

import json

import pytest
import torch

from cpm.config import load_config
from cpm.training import loop
from tests.helpers import tiny_overrides

# epoch 2 is the best; epoch 3 beats epoch 1 but not epoch 2; epoch 4 ties epoch 2 (the earlier one stays).
SCORES = (0.2, 0.5, 0.3, 0.5)


@pytest.fixture
def scripted_run(tmp_path, monkeypatch):
    real = loop.evaluate
    calls = []

    def evaluate(*args, **kwargs):
        results = real(*args, **kwargs)
        if len(calls) < len(SCORES):  # the training loop's evaluation after each epoch
            score = SCORES[len(calls)]
            results["pck"] = {a: [1 - score] * (len(v) - 1) + [score if float(a) == 0.2 else 1 - score]
                              for a, v in results["pck"].items()}
        calls.append(1)
        return results

    monkeypatch.setattr(loop, "evaluate", evaluate)
    overrides = tiny_overrides(tmp_path, **{"train.epochs": len(SCORES), "data.train_samples": 16,
                                            "data.val_samples": 8, "model.stages": 2})
    loop.train(load_config(None, overrides), progress=False, log=lambda *_: None)
    return tmp_path / "runs" / "tiny"


def test_best_pt_is_the_first_epoch_with_the_highest_final_stage_score(scripted_run):
    lines = [json.loads(line) for line in (scripted_run / "metrics.jsonl").read_text().splitlines()]
    finals = [line["val/pck@0.2/stage2"] for line in lines if "val/pck@0.2/stage2" in line]
    assert finals == pytest.approx(list(SCORES))
    assert [line["val/pck@0.1/stage2"] for line in lines if "val/pck@0.1/stage2" in line] == pytest.approx(
        [1 - score for score in SCORES])
    best = torch.load(scripted_run / "best.pt", map_location="cpu", weights_only=True)
    last = torch.load(scripted_run / "last.pt", map_location="cpu", weights_only=True)
    assert best["epoch"] == 2 and last["epoch"] == len(SCORES)
    assert last["best_metric"] == pytest.approx(0.5)
    # best.pt holds epoch 2's weights, which training changed afterwards
    assert any(not torch.equal(best["model"][k], last["model"][k]) for k in best["model"])
