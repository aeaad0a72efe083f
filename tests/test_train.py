import json

import numpy as np
import pytest
import torch

from cpm.config import config_from_dict, load_config
from cpm.errors import CPMError
from cpm.evaluation.evaluate import evaluate_checkpoint
from cpm.runtime.build import build_codec, build_datasets, build_network
from cpm.runtime.checkpoint import load_checkpoint
from cpm.training.loop import train
from cpm.training.step import NonFiniteLossError, read_losses
from tests.helpers import tiny_overrides


def quiet(*_args, **_kwargs):
    pass


def test_training_run_writes_the_run_directory(tmp_path):
    config = load_config(None, tiny_overrides(tmp_path, **{"train.epochs": 2}))
    results = train(config, progress=False, log=quiet)
    run_dir = tmp_path / "runs" / "tiny"
    assert results["run_dir"] == str(run_dir)
    assert {"config.toml", "metrics.jsonl", "last.pt", "best.pt"} <= {p.name for p in run_dir.iterdir()}
    assert any(p.name.startswith("events.out.tfevents") for p in run_dir.iterdir())
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert set(lines[-1]) >= {"val/pck@0.2/stage4", "val/pck@0.1/stage1", "train/loss/stage1"}
    assert load_config(run_dir / "config.toml") == config
    # A second run of the same name never overwrites the first.
    again = train(config, progress=False, log=quiet)
    assert again["run_dir"] == str(tmp_path / "runs" / "tiny-2")


def test_smoke_training_lowers_the_loss(tmp_path):
    overrides = tiny_overrides(tmp_path, **{"data.train_samples": 160, "train.lr": 3e-3, "train.epochs": 2})
    config = load_config(None, overrides)
    train(config, progress=False, log=quiet)  # 2 epochs x 20 steps
    lines = [json.loads(line) for line in (tmp_path / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]
    assert lines[1]["train/loss"] < 0.8 * lines[0]["train/loss"]
    assert lines[1]["val/loss/stage3"] < lines[0]["val/loss/stage3"]


def first_losses(tmp_path, name):
    config = load_config(None, tiny_overrides(tmp_path, **{"train.name": name, "train.log_every": 1,
                                                            "data.train_samples": 24}))
    train(config, progress=False, log=quiet)
    return json.loads((tmp_path / "runs" / name / "metrics.jsonl").read_text().splitlines()[0])


def test_same_seed_gives_the_same_losses(tmp_path):
    first, second = first_losses(tmp_path, "a"), first_losses(tmp_path, "b")
    keys = [k for k in first if k.startswith(("train/loss", "val/"))]
    assert [first[k] for k in keys] == [second[k] for k in keys]


def test_same_seed_gives_the_same_samples():
    config = load_config(None, ["data.train_samples=4", "data.val_samples=4"])
    train_a, val_a = build_datasets(config)
    train_b, _ = build_datasets(config)
    for dataset in (train_a, train_b):
        dataset.set_epoch(1)
    assert torch.equal(train_a[3]["image"], train_b[3]["image"])
    train_a.set_epoch(2)
    assert not torch.equal(train_a[3]["image"], train_b[3]["image"])  # a new epoch, new samples
    assert not torch.equal(val_a[0]["image"], train_b[0]["image"])


def test_checkpoint_reloads_to_identical_outputs(tmp_path):
    config = load_config(None, tiny_overrides(tmp_path))
    train(config, progress=False, log=quiet)
    checkpoint = load_checkpoint(tmp_path / "runs" / "tiny" / "last.pt")
    assert checkpoint["epoch"] == 1 and checkpoint["step"] == 8
    model = build_network(config_from_dict(checkpoint["config"]))
    model.load_state_dict(checkpoint["model"])
    model.eval()
    _, val_set = build_datasets(config)
    batch = torch.stack([val_set[i]["image"] for i in range(4)])
    center = build_codec(config).center_map(torch.stack([val_set[i]["center"] for i in range(4)]))
    again = build_network(config_from_dict(checkpoint["config"]))
    again.load_state_dict(load_checkpoint(tmp_path / "runs" / "tiny" / "last.pt")["model"])
    again.eval()
    with torch.no_grad():
        for a, b in zip(model(batch, center), again(batch, center), strict=True):
            assert torch.equal(a, b)
    # Evaluating the checkpoint reproduces the numbers the run logged.
    logged = json.loads((tmp_path / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()[-1])
    results = evaluate_checkpoint(tmp_path / "runs" / "tiny" / "best.pt", progress=False, device_name="cpu")
    assert results["pck"][0.2] == pytest.approx([logged[f"val/pck@0.2/stage{t}"] for t in range(1, 5)])


def test_resume_continues_where_the_run_stopped(tmp_path, monkeypatch):
    import cpm.training.loop

    straight = train(load_config(None, tiny_overrides(tmp_path, **{"train.epochs": 2})), progress=False, log=quiet)
    config = load_config(None, tiny_overrides(tmp_path, **{"train.epochs": 2, "train.name": "split"}))
    real_evaluate, calls = cpm.training.loop.evaluate, []

    def evaluate_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the run dies in epoch 2, after last.pt of epoch 1 was written
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(cpm.training.loop, "evaluate", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False, log=quiet)
    monkeypatch.setattr(cpm.training.loop, "evaluate", real_evaluate)
    last = tmp_path / "runs" / "split" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 1
    resumed = train(config, resume=last, progress=False, log=quiet)
    assert resumed["run_dir"] == str(tmp_path / "runs" / "split")
    assert np.array_equal(resumed["predictions"], straight["predictions"])
    with pytest.raises(CPMError, match="already finished"):
        train(config, resume=last, progress=False, log=quiet)


def test_non_finite_losses_stop_with_every_term_named():
    sums = {"loss": torch.tensor(float("nan")), "loss/stage1": torch.tensor(0.5)}
    with pytest.raises(NonFiniteLossError, match=r"step 7: loss=nan, loss/stage1=0.5"):
        read_losses(sums, 1, 7)
