"""What a run chooses for the user: best.pt by ``train.best_metric`` (always written after the first evaluation,
named in the checkpoint and by ``cpm eval``), one default run (``cpm train`` without a config), keys a head ignores
refused, and the CPU kind said at the start."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import cpm.cli
from cpm.cli import _print_cpu_kind, _train_config, main
from cpm.config import best_metric, config_from_dict, load_config
from cpm.errors import ConfigError
from cpm.training.loop import is_better, selection_score
from tests.helpers import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def sets(overrides):
    return sum((["--set", o] for o in overrides), [])


def test_the_best_metric_defaults_to_pck_at_0_2_else_the_first_threshold():
    assert best_metric(load_config()) == "pck@0.2"
    assert best_metric(load_config(None, ["eval.pck_thresholds=[0.5, 0.1]"])) == "pck@0.5"
    assert best_metric(load_config(None, ["eval.pck_thresholds=[0.1]", 'train.best_metric="loss"'])) == "loss"
    assert best_metric(load_config(None, ['train.best_metric="pck@0.1"'])) == "pck@0.1"
    with pytest.raises(ConfigError, match=r"train.best_metric: 'pck@0.3' is not measured .* pck@0.1, pck@0.2 or loss"):
        load_config(None, ['train.best_metric="pck@0.3"'])


def test_selection_reads_the_final_stage_and_minimises_loss():
    results = {"pck": {0.1: [0.2, 0.4], 0.2: [0.5, 0.7]}, "loss": [0.03, 0.01]}
    assert selection_score(results, "pck@0.1") == 0.4 and selection_score(results, "loss") == 0.01
    assert is_better(0.1, math.nan, "pck@0.2") and is_better(0.5, math.nan, "loss")  # the first evaluation
    assert is_better(0.6, 0.5, "pck@0.2") and not is_better(0.5, 0.5, "pck@0.2")  # ties keep the earlier epoch
    assert is_better(0.01, 0.02, "loss") and not is_better(0.03, 0.02, "loss")


def test_best_pt_exists_without_pck_at_0_2_and_names_its_metric(tmp_path, capsys):
    """eval.pck_thresholds = [0.1]: best.pt is the epoch of the highest final-stage PCK@0.1, and with
    train.best_metric = "loss" that of the lowest final-stage held-out loss, as metrics.jsonl records them."""
    for metric, name in (("", "a"), ("loss", "b")):
        overrides = tiny_overrides(tmp_path, **{"train.epochs": 2, "eval.pck_thresholds": [0.1], "model.stages": 2,
                                                "train.best_metric": metric, "train.name": name})
        assert main(["train", "--no-progress", *sets(overrides)]) == 0
        run = tmp_path / "runs" / name
        assert (run / "best.pt").is_file()
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        key = "val/loss/stage2" if metric == "loss" else "val/pck@0.1/stage2"
        pick = (min if metric == "loss" else max)(epochs, key=lambda record: record[key])  # the first of equal ones
        best = torch.load(run / "best.pt", weights_only=True)["best"]
        assert best == {"metric": metric or "pck@0.1", "stage": "final", "value": pytest.approx(pick[key]),
                        "epoch": pick["epoch"]}
        assert torch.load(run / "last.pt", weights_only=True)["best"]["epoch"] == pick["epoch"]
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "runs" / "a" / "best.pt"), "--no-progress", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "chosen by train.best_metric = pck@0.1 (final-stage PCK@0.1" in printed
    assert main(["eval", str(tmp_path / "runs" / "b" / "best.pt"), "--json", "--no-progress", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out)["best"]["metric"] == "loss"


@pytest.mark.parametrize(("overrides", "message"), [
    (['model.head="regression"', "model.stages=6"], "model.stages: the regression head ignores it"),
    (['model.head="regression"', "train.intermediate_supervision=false"],
     "train.intermediate_supervision: the regression head ignores it"),
    (["model.regression_hidden=64"], "model.regression_hidden: the heatmap head ignores it"),
    (['model.head="integral"', "model.regression_pool=2"], "model.regression_pool: the integral head ignores it"),
])
def test_keys_a_head_ignores_are_refused_naming_the_key_and_the_head(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides, reject_ignored=True)
    path = tmp_path / "exp.toml"
    section = {}
    for override in overrides:
        key, _, value = override.partition("=")
        sec, _, name = key.partition(".")
        section.setdefault(sec, []).append(f"{name} = {value}")
    path.write_text("".join(f"[{sec}]\n" + "\n".join(lines) + "\n" for sec, lines in section.items()))
    with pytest.raises(ConfigError, match=message):
        load_config(path, reject_ignored=True)
    section, _, name = message.split(":")[0].partition(".")
    relaxed = load_config(path)  # a program's config is accepted, with the ignored key at its default
    assert getattr(getattr(relaxed, section), name) == getattr(getattr(load_config(), section), name)


def test_what_a_head_ignores_keeps_its_default_so_saved_configs_reload(tmp_path, capfd):
    config = load_config(None, ['model.head="regression"', "model.stages=4", 'model.regression_loss="l1"'])
    table = config.to_dict()
    table["model"]["stages"] = 3  # what a program may set (the compare-heads grid does): nothing to the head
    rebuilt = config_from_dict(table)
    assert rebuilt.model.stages == 4 and rebuilt == config
    path = tmp_path / "resolved.toml"
    path.write_text(rebuilt.to_toml())
    assert load_config(path) == config  # a run's config.toml loads again
    assert main(["train", "--set", 'model.head="regression"', "--set", "model.stages=6"]) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert lines == ["cpm train: error: model.stages: the regression head ignores it (model.head = 'regression'); "
                     "remove model.stages = 6"]


def test_cpm_train_without_a_config_trains_experiments_default_or_refuses(monkeypatch, tmp_path, capfd):
    monkeypatch.chdir(ROOT)
    assert _train_config(None) == "experiments/default.toml"
    assert "no config given: training experiments/default.toml" in capfd.readouterr().out
    assert _train_config("mine.toml") == "mine.toml"
    config = load_config(_train_config(None))
    assert (config.train.name, config.train.epochs, config.data.train_samples, config.train.batch_size) == \
        ("default", 3, 15000, 16)  # make train's run, not the config.py defaults (8 x 20,000 at batch 32)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cpm.cli, "DEFAULT_CONFIG", Path("experiments") / "nowhere.toml")
    assert main(["train"]) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "no config given" in lines[0] and "cpm train CONFIG.toml" in lines[0]


@pytest.mark.parametrize(("native", "expected"), [
    (True, "CPU with native bf16, training in bf16 (train.amp = 'auto'); expected about 11 min for 45,000 images at "
           "the 67 img/s"),
    (False, "CPU with AVX2 fp32, training in fp32 (train.amp = 'auto'), about 2.5x slower than on a CPU with native "
            "bf16; expected about 28 min for 45,000 images at the 27 img/s"),
])
def test_cpm_train_says_which_cpu_it_found_and_the_time_to_expect(monkeypatch, capsys, native, expected):
    import cpm.device

    monkeypatch.setattr(cpm.device, "cpu_has_native_bf16", lambda: native)
    # experiments/procedural.toml: 3 epochs x 15,000 frames = 45,000 images; 45,000 / 67 / 60 = 11.2 min,
    # 45,000 / 27 / 60 = 27.8 min; 67 / 27 = 2.5x
    monkeypatch.chdir(ROOT)
    _print_cpu_kind(load_config(ROOT / "experiments" / "procedural.toml", ['train.device="cpu"']))
    assert expected in capsys.readouterr().out
    monkeypatch.setitem(cpm.cli.CPU_TRAIN_RATES, "default.toml", {"AVX2 fp32": 40.0})  # make train's model
    _print_cpu_kind(load_config(ROOT / "experiments" / "default.toml", ['train.device="cpu"']))
    line = capsys.readouterr().out  # 45,000 / 40 / 60 = 18.75 min, where this kind has a figure
    assert ("expected about 19 min for 45,000 images at the 40 img/s" in line) == (not native)
    _print_cpu_kind(load_config(ROOT / "experiments" / "procedural.toml", ['train.device="cpu"', "train.threads=1"]))
    assert "expected" not in capsys.readouterr().out  # the rates were measured on two threads, not one
    _print_cpu_kind(load_config(None, ['train.device="cpu"', "model.stages=2"]))  # no measured rate for this model
    line = capsys.readouterr().out
    assert line.startswith("cpm train: CPU with") and "expected" not in line
