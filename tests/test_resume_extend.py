"""Resuming a run: `--set train.epochs=N` extends it, other keys are refused, and ``train.checkpoint_every`` writes
mid-epoch checkpoints that resume at the next batch."""

import json

import pytest
import torch

from cpm.cli import main as cpm_main
from cpm.config import load_config
from cpm.errors import CPMError
from cpm.runtime.checkpoint import load_checkpoint
from cpm.training.loop import train
from tests.helpers import tiny_overrides


def metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_resume_with_more_epochs_extends_the_run(tmp_path):
    run_dir = tmp_path / "runs" / "tiny"
    assert cpm_main(["train", "--no-progress", *sum((["--set", s] for s in tiny_overrides(tmp_path)), [])]) == 0
    assert [line["epoch"] for line in metrics(run_dir)] == [1]
    steps_per_epoch = metrics(run_dir)[0]["step"]
    assert cpm_main(["train", "--no-progress", "--resume", str(run_dir / "last.pt"), "--set", "train.epochs=3"]) == 0
    lines = metrics(run_dir)
    assert [line["epoch"] for line in lines] == [1, 2, 3]
    assert [line["step"] for line in lines] == [steps_per_epoch, 2 * steps_per_epoch, 3 * steps_per_epoch]
    assert load_checkpoint(run_dir / "last.pt")["config"]["train"]["epochs"] == 3  # the saved config says so


def test_a_resumed_run_counts_the_wall_time_of_its_earlier_sittings(tmp_path):
    """run_seconds (metrics.jsonl, last.pt, a grid cell's wall_seconds) goes on from the checkpoint's, while
    elapsed_seconds restarts with the sitting."""
    run_dir = tmp_path / "runs" / "tiny"
    train(load_config(None, tiny_overrides(tmp_path)), progress=False, log=lambda *_: None)
    first = metrics(run_dir)[0]
    assert 0 < first["elapsed_seconds"] <= first["run_seconds"] < first["elapsed_seconds"] + 1  # one sitting
    checkpoint = load_checkpoint(run_dir / "last.pt")
    assert checkpoint["run_seconds"] >= first["run_seconds"]
    checkpoint["run_seconds"] = 1000.0  # as if the first sitting had taken 1000 s
    torch.save(checkpoint, run_dir / "last.pt")
    assert cpm_main(["train", "--no-progress", "--resume", str(run_dir / "last.pt"), "--set", "train.epochs=2"]) == 0
    second = metrics(run_dir)[1]
    assert second["elapsed_seconds"] < 1000 < second["run_seconds"] < 1000 + second["elapsed_seconds"] + 1
    assert 1000 + second["elapsed_seconds"] - 0.01 <= load_checkpoint(run_dir / "last.pt")["run_seconds"]


def test_resume_refuses_a_key_that_changes_what_is_trained(tmp_path, capsys):
    train(load_config(None, tiny_overrides(tmp_path)), progress=False, log=lambda *_: None)
    last = tmp_path / "runs" / "tiny" / "last.pt"
    code = cpm_main(["train", "--resume", str(last), "--set", "model.stages=2"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1
    assert "model.stages" in error[0] and "cannot change" in error[0] and str(last) in error[0]


def test_checkpoint_every_writes_a_mid_epoch_checkpoint_that_resumes_to_the_same_weights(tmp_path, monkeypatch):
    # 64 frames at batch 8: 8 steps an epoch; a checkpoint every 3 steps -> the last mid-epoch one is step 6.
    overrides = tiny_overrides(tmp_path, **{"train.checkpoint_every": 3, "train.name": "a"})
    saved = []
    import cpm.training.loop as loop

    real_save = loop.save_checkpoint

    def record(state, path):
        saved.append((path.name, state["step"], state["data_order"]["batches"], state["epoch"]))
        real_save(state, path)
        if state["step"] == 6 and path.name == "last.pt":
            torch.save(state, tmp_path / "mid.pt")

    monkeypatch.setattr(loop, "save_checkpoint", record)
    train(load_config(None, overrides), progress=False, log=lambda *_: None)
    assert ("last.pt", 3, 3, 0) in saved and ("last.pt", 6, 6, 0) in saved  # mid-epoch: epoch 0, batch 3 / 6
    assert ("last.pt", 8, 0, 1) in saved  # the end of the epoch, as always
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    whole = load_checkpoint(tmp_path / "runs" / "a" / "last.pt")["model"]
    resumed_dir = tmp_path / "runs" / "b"
    resumed_dir.mkdir(parents=True)
    (tmp_path / "mid.pt").rename(resumed_dir / "last.pt")
    train(None, resume=resumed_dir / "last.pt", progress=False, log=lambda *_: None)
    again = load_checkpoint(resumed_dir / "last.pt")["model"]
    for name, tensor in whole.items():
        torch.testing.assert_close(again[name], tensor, rtol=0, atol=1e-6, msg=name)


def test_train_needs_a_config_or_a_checkpoint():
    with pytest.raises(CPMError, match="config or a checkpoint"):
        train(None, progress=False)
