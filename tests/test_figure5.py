"""python -m cpm.experiments.figure5: gradient records over a whole training run, under both output-layer inits."""

from __future__ import annotations

import json

import pytest

import cpm.experiments.figure5 as figure5

TINY = ["data.train_samples=32", "train.epochs=2", "train.batch_size=8", "train.threads=1", "data.input_size=64",
        "data.val_samples=8"]


def test_records_at_the_start_middle_and_end_under_both_inits_and_resumes(tmp_path, monkeypatch):
    out, plot = tmp_path / "f5.json", tmp_path / "f5.png"
    args = ["experiments/supervision.toml", "--stages", "2", "--out", str(out), "--plot", str(plot)]
    for text in TINY:
        args += ["--set", text]
    assert figure5.main(args) == 0
    data = json.loads(out.read_text())
    assert set(data) == {"kaiming", "kaiming-all"} and all(set(v) == {"with", "without"} for v in data.values())
    record = data["kaiming"]["with"]
    assert list(record["steps"]) == ["1", "4", "8"]  # 2 epochs x 32 / 8 steps
    assert record["config"] == {"stages": 2, "epochs": 2, "steps": 8}
    assert set(record["stages"]) == {"1", "2", "trunk"} and plot.stat().st_size > 0

    def stage1(init, label):
        values = [g for g, s in zip(data[init][label]["steps"]["1"], data[init][label]["stages"], strict=True)
                  if s == "1"]
        return sum(values) / len(values)

    # without IS stage 1 learns only through stage 2's output layer: std 1e-3 under kaiming, He under kaiming-all
    assert stage1("kaiming", "without") < 0.05 * stage1("kaiming-all", "without")
    assert stage1("kaiming", "with") > 20 * stage1("kaiming", "without")

    def trained_again(*_args, **_kwargs):
        raise AssertionError("a recorded run was trained again")

    monkeypatch.setattr(figure5, "gradient_magnitudes", trained_again)
    assert figure5.main(args[:5] + sum((["--set", t] for t in TINY), [])) == 0


def test_a_schedule_without_steps_fails_in_one_line(tmp_path, capsys):
    args = ["experiments/supervision.toml", "--out", str(tmp_path / "f5.json"), "--set", "data.train_samples=4",
            "--set", "train.batch_size=8"]
    assert figure5.main(args) == 2
    assert "no training step" in capsys.readouterr().err and not (tmp_path / "f5.json").exists()


@pytest.mark.parametrize("bad", [["--set", "model.init=he"], ["--set", "train.epochs=-1"]])
def test_bad_overrides_fail_with_status_2(tmp_path, bad, capsys):
    assert figure5.main(["experiments/supervision.toml", "--out", str(tmp_path / "f5.json"), *bad]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_table_averages_each_stage_by_hand(tmp_path):
    record = {"stages": ["1", "1", "trunk", "2"], "steps": {"1": [1e-3, 3e-3, 5e-4, 4e-5], "9": [0.0, 2e-9, 1.0, 0.25]}}
    data = {"kaiming": {"with": record, "without": {"stages": ["1", "2"], "steps": {"1": [7e-9, 1.5]}}}}
    lines = figure5.figure5_table(data).splitlines()
    assert lines[0] == "| init | IS | step | stage 1 | trunk | stage 2 |"
    assert lines[2] == "| kaiming | with | 1 | 0.002 | 0.0005 | 4e-05 |"  # stage 1: (1e-3 + 3e-3) / 2
    assert lines[3] == "| kaiming | with | 9 | 1e-09 | 1 | 0.25 |"
    assert lines[4] == "| kaiming | without | 1 | 7e-09 | – | 1.5 |"  # no trunk layers in this record
    assert len(lines) == 5
