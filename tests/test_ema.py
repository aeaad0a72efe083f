"""``train.ema``: the average of the weights, by hand; it leaves training as it was, is what evaluations score
and checkpoints hold as "model", and resumes mid-epoch to the same weights."""

import json

import pytest
import torch

from cpm.cli import main as cpm_main
from cpm.config import load_config
from cpm.errors import ConfigError
from cpm.runtime.checkpoint import load_checkpoint
from cpm.training.ema import WeightAverage, ema_decay
from cpm.training.loop import train
from tests.helpers import tiny_overrides


def test_the_average_moves_by_the_ramped_decay_and_copies_integer_buffers():
    model = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        model[0].weight.fill_(1.0)
    average = WeightAverage(model, 0.9)
    with torch.no_grad():
        model[0].weight.fill_(3.0)
        model[1].num_batches_tracked.fill_(7)
    average.update(1)  # d = min(0.9, 2 / 11): 2/11 * 1 + 9/11 * 3
    assert average.average[0].weight.item() == pytest.approx(29 / 11, rel=1e-6)
    assert average.average[1].num_batches_tracked.item() == 7
    with torch.no_grad():
        model[0].weight.fill_(0.0)
    average.update(100)  # d = min(0.9, 101 / 110) = 0.9
    assert average.average[0].weight.item() == pytest.approx(0.9 * 29 / 11, rel=1e-6)
    assert model[0].weight.item() == 0.0 and not average.average[0].weight.requires_grad
    assert ema_decay(0.999, 890) == pytest.approx(0.99) and ema_decay(0.5, 890) == 0.5


def test_ema_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match="train.ema"):
        load_config(None, ["train.ema=1.0"])


def run(tmp_path, name, **extra):
    overrides = tiny_overrides(tmp_path, **{"train.name": name, "train.epochs": 2, **extra})
    train(load_config(None, overrides), progress=False, log=lambda *_: None)
    return tmp_path / "runs" / name


def test_the_average_leaves_training_as_it_was_and_is_what_the_evaluation_scored(tmp_path, capsys):
    plain = load_checkpoint(run(tmp_path, "plain") / "last.pt")
    averaged_dir = run(tmp_path, "ema", **{"train.ema": 0.9})
    averaged = load_checkpoint(averaged_dir / "last.pt")
    assert "raw_model" not in plain
    for name, tensor in plain["model"].items():  # the same training: the raw weights are the plain run's
        torch.testing.assert_close(averaged["raw_model"][name], tensor, rtol=0, atol=1e-6, msg=name)
    moved = [name for name, tensor in averaged["model"].items()
             if tensor.is_floating_point() and not torch.allclose(tensor, averaged["raw_model"][name])]
    assert moved  # the average is not the weights
    follows = load_checkpoint(run(tmp_path, "follows", **{"train.ema": 1e-6}) / "last.pt")  # d ~ 0: the weights
    for name, tensor in follows["raw_model"].items():
        torch.testing.assert_close(follows["model"][name], tensor, rtol=0, atol=1e-5, msg=name)
    logged = [json.loads(line) for line in (averaged_dir / "metrics.jsonl").read_text().splitlines()][-1]
    capsys.readouterr()
    assert cpm_main(["eval", str(averaged_dir / "last.pt"), "--json", "--no-progress"]) == 0
    scored = json.loads(capsys.readouterr().out)
    per_stage = {f"val/pck@{float(a):g}/stage{t}": value
                 for a, values in scored["pck"].items() for t, value in enumerate(values, 1)}
    per_stage |= {f"val/loss/stage{t}": value for t, value in enumerate(scored["loss"], 1)}
    assert len(per_stage) == 12  # 2 thresholds x 4 stages, 4 losses
    assert {key: logged[key] for key in per_stage} == pytest.approx(per_stage, abs=1e-9)


def test_a_mid_epoch_resume_gives_the_same_average_and_weights(tmp_path, monkeypatch):
    import cpm.training.loop as loop

    real_save = loop.save_checkpoint

    def keep_step_3(state, path):
        real_save(state, path)
        if state["step"] == 3 and path.name == "last.pt":
            torch.save(state, tmp_path / "mid.pt")

    monkeypatch.setattr(loop, "save_checkpoint", keep_step_3)
    whole = load_checkpoint(run(tmp_path, "a", **{"train.ema": 0.8, "train.checkpoint_every": 3}) / "last.pt")
    monkeypatch.setattr(loop, "save_checkpoint", real_save)
    resumed_dir = tmp_path / "runs" / "b"
    resumed_dir.mkdir(parents=True)
    (tmp_path / "mid.pt").rename(resumed_dir / "last.pt")
    train(None, resume=resumed_dir / "last.pt", progress=False, log=lambda *_: None)
    again = load_checkpoint(resumed_dir / "last.pt")
    for key in ("model", "raw_model"):
        for name, tensor in whole[key].items():
            torch.testing.assert_close(again[key][name], tensor, rtol=0, atol=1e-6, msg=f"{key} {name}")
