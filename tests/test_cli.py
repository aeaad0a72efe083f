import json
import subprocess
import sys

import pytest

from cpm.cli import main
from tests.helpers import tiny_overrides


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cpm", *args], capture_output=True, text=True, timeout=300)


def assert_one_clear_line(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_train_with_a_typo_in_the_config_exits_2_naming_the_key(tmp_path):
    config = tmp_path / "typo.toml"
    config.write_text("[train]\nepohcs = 3\n")
    result = run_cli("train", str(config), "--set", f"train.runs_dir={tmp_path / 'runs'}")
    assert_one_clear_line(result, "typo.toml", "unknown config key train.epohcs")
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_eval_on_a_missing_checkpoint_exits_2(tmp_path):
    assert_one_clear_line(run_cli("eval", str(tmp_path / "missing.pt")), "missing.pt", "checkpoint not found")


def test_eval_on_a_file_that_is_not_a_checkpoint_exits_2(tmp_path):
    bogus = tmp_path / "notes.pt"
    bogus.write_text("these are not weights")
    assert_one_clear_line(run_cli("eval", str(bogus)), "notes.pt", "not a readable checkpoint")


def test_eval_refuses_a_checkpoint_with_pickled_code(tmp_path):
    import torch

    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pt"
    torch.save({"model": Payload(), "config": {}}, evil)
    result = run_cli("eval", str(evil))
    assert_one_clear_line(result, "evil.pt", "refused to load")
    assert "this must never run" not in result.stdout


def test_train_then_eval_prints_the_per_stage_table(tmp_path, capsys):
    overrides = tiny_overrides(tmp_path, **{"train.epochs": 3, "model.stages": 4})  # make train's config, 4 stages
    assert main(["train", "--no-progress", "--no-pose-sources", *sum((["--set", o] for o in overrides), [])]) == 0
    printed = capsys.readouterr().out
    assert "| stage | PCK@0.1 | PCK@0.2 |" in printed
    rows = [line for line in printed.splitlines() if line.startswith("| ") and "stage" not in line]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2", "3", "4"]
    # best.pt holds the first epoch with the highest final-stage val PCK@0.2 in metrics.jsonl (the selection
    # rule of cpm.training.loop), and `cpm eval` of it re-computes that epoch's per-stage numbers exactly.
    epochs = [json.loads(line) for line in (tmp_path / "runs" / "tiny" / "metrics.jsonl").read_text().splitlines()]
    epochs = [record for record in epochs if "val/pck@0.2/stage4" in record]
    assert len(epochs) == 3
    best = max(epochs, key=lambda record: record["val/pck@0.2/stage4"])  # max keeps the first of equal ones
    checkpoint = tmp_path / "runs" / "tiny" / "best.pt"
    written = tmp_path / "predictions.mat"
    assert main(["eval", str(checkpoint), "--json", "--no-progress", "--device", "cpu",
                 "--predictions", str(written)]) == 0
    results = json.loads(capsys.readouterr().out)
    assert len(results["pck"]["0.2"]) == 4 and results["samples"] == 16
    for threshold in ("0.1", "0.2"):
        expected = [best[f"val/pck@{threshold}/stage{t}"] for t in range(1, 5)]
        assert results["pck"][threshold] == pytest.approx(expected, abs=1e-6), (threshold, best.get("epoch"))
    # the table printed after training is the last evaluation's (metrics.jsonl's last line), in percent
    assert [row.split("|")[3].strip() for row in rows] == [f"{100 * epochs[-1][f'val/pck@0.2/stage{t}']:.2f}"
                                                           for t in range(1, 5)]
    from cpm.data.datasets.matfiles import read_prediction_all

    assert read_prediction_all(written).shape[:2] == (16, 15)


@pytest.mark.parametrize("override", ["model.stages=0", "train.nope=1", "targets.sigma=-2"])
def test_bad_overrides_exit_2(override, capsys):
    assert main(["config", "--set", override]) == 2
    assert override.split("=")[0] in capsys.readouterr().err


def test_every_command_of_the_parser_has_its_runner():
    import argparse

    from cpm.cli import COMMANDS, build_parser

    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert set(commands.choices) == set(COMMANDS)
