"""The speedrun's time to target: read from metrics.jsonl lines, and end to end on a tiny recipe pair."""

import json
from pathlib import Path

import pytest
import torch

from cpm.bench.speedrun import Outcome, cpu_kind, final_figures, format_rows, main, time_to_target
from cpm.config import load_config
from cpm.errors import CPMError
from cpm.evaluation.receptive_field import stage_multiply_adds
from cpm.runtime.build import build_network
from tests.helpers import tiny_overrides

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def line(epoch, pck02, pck01, elapsed, speed=10.0):
    return {"epoch": epoch, "step": 5 * epoch, "elapsed_seconds": elapsed, "images_per_second": speed,
            "val/pck@0.2/stage1": 0.1, "val/pck@0.2/stage2": pck02, "val/pck@0.1/stage2": pck01,
            "val/pck@0.1/stage1": 0.0}


def test_time_to_target_is_the_first_epoch_meeting_every_target():
    lines = [line(1, 0.95, 0.80, 100.0, 8.0), line(2, 0.92, 0.86, 190.0, 12.0), line(3, 0.94, 0.86, 280.0, 10.0)]
    # epoch 1 misses PCK@0.1, epoch 2 misses PCK@0.2 (final stage, not stage 1), epoch 3 meets both
    outcome = time_to_target(lines, {0.2: 0.93, 0.1: 0.85}, batch_size=16)
    assert outcome == Outcome(epoch=3, images=15 * 16, seconds=280.0, images_per_second=10.0)
    assert time_to_target(lines, {0.2: 0.99}, batch_size=16).epoch is None
    with pytest.raises(CPMError, match="PCK@0.05 is not measured"):
        time_to_target(lines, {0.05: 0.5}, batch_size=16)


def test_rows_give_each_recipe_its_ratio_to_the_first():
    outcomes = [("a.toml", Outcome(3, 48000, 1800.0, 26.0), "runs/a"), ("b.toml", Outcome(2, 24000, 720.0, 33.3),
                                                                       "runs/b"),
                ("c.toml", Outcome(None, None, None, 40.0), "runs/c")]
    rows = format_rows(outcomes, change="stride 4", cpu="cpu", command="cmd", revision="abc",
                       targets={0.2: 0.9375, 0.1: 0.8472})
    goal = "@0.1 >= 84.72, @0.2 >= 93.75"
    assert rows[0] == (f"| reference of this sitting | a.toml | {goal} | 48,000 | 26.0 | 30.0 | 1.00 | cpu | `cmd` "
                       "| abc |")
    assert rows[1] == f"| stride 4 | b.toml | {goal} | 24,000 | 33.3 | 12.0 | 0.40 | cpu | `cmd` | abc |"
    assert rows[2].startswith(f"| stride 4 | c.toml | {goal} | not reached | 40.0 | not reached | – |")


def test_without_targets_the_reference_runs_final_figures_are_the_targets():
    lines = [line(1, 0.90, 0.80, 50.0), line(2, 0.9375, 0.8472, 99.0)]
    assert final_figures(lines) == {0.1: 0.8472, 0.2: 0.9375}  # the final stage (2) of the last evaluation
    # the reference meets its own figures at its end; a run as good one epoch earlier meets them there
    assert time_to_target(lines, final_figures(lines), batch_size=16).epoch == 2
    early = [line(1, 0.94, 0.85, 50.0)]
    assert time_to_target(early, final_figures(lines), batch_size=16).epoch == 1
    with pytest.raises(CPMError, match="no evaluation"):
        final_figures([{"epoch": 1}])


@pytest.mark.parametrize(("native", "amp", "cap", "kind"), [
    (True, "auto", None, "native bf16"), (False, "auto", None, "AVX2 fp32"), (True, "off", None,
                                                                            "fp32 on a native-bf16 CPU"),
    (True, "off", "AVX2", "fp32 on a native-bf16 CPU, ONEDNN_MAX_CPU_ISA=AVX2"), (False, "bf16", None, "AVX2 bf16")])
def test_the_record_names_the_precision_the_recipes_trained_in_and_the_isa_cap(monkeypatch, native, amp, cap, kind):
    import cpm.device

    monkeypatch.setattr(cpm.device, "cpu_has_native_bf16", lambda: native)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    if cap:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert cpu_kind(amp).split(" cores, ", 1)[1] == kind


def test_two_tiny_recipes_train_and_append_to_the_record(tmp_path, capsys, monkeypatch):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text("")
    record = tmp_path / "speedrun.md"
    argv = [str(recipe), str(recipe), "--runs", str(tmp_path / "runs"), "--no-progress", "--target", "0.2=0.001",
            "--record", str(record), "--change", "the same"]
    for override in tiny_overrides(tmp_path):
        if not override.startswith(("train.runs_dir", "train.name")):
            argv += ["--set", override]
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")  # named in the rows' CPU and command (set before oneDNN starts)
    assert main(argv) == 0
    text = record.read_text()
    assert text.startswith("# Speedrun") and text.count("| the same |") == 1 and "reference of this sitting" in text
    assert text.count(", ONEDNN_MAX_CPU_ISA=AVX2 | `ONEDNN_MAX_CPU_ISA=AVX2 python -m cpm.bench.speedrun ") == 2
    metrics = [json.loads(x) for x in (tmp_path / "runs" / "speedrun-tiny" / "metrics.jsonl").read_text().splitlines()]
    assert metrics[0]["elapsed_seconds"] >= metrics[0]["train_seconds"] > 0
    with pytest.raises(SystemExit) as stop:
        main([str(recipe), "--target", "0.2"])
    assert stop.value.code == 2
    assert "--target: expected THRESHOLD=PCK" in capsys.readouterr().err


def test_stop_at_target_ends_each_run_at_its_first_evaluation_meeting_the_targets(tmp_path):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text("")
    argv = [str(recipe), "--runs", str(tmp_path / "runs"), "--no-progress", "--target", "0.2=0.001", "--stop-at-target"]
    for override in tiny_overrides(tmp_path, **{"train.epochs": 3}):
        if not override.startswith(("train.runs_dir", "train.name")):
            argv += ["--set", override]
    assert main(argv) == 0
    run_dir = tmp_path / "runs" / "speedrun-tiny"
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1]  # met at the first evaluation: two epochs not trained
    assert torch.load(run_dir / "last.pt", weights_only=False)["epoch"] == 1
    from cpm.cli import main as cpm_main

    assert cpm_main(["train", "--no-progress", "--resume", str(run_dir / "last.pt")]) == 0  # the rest, on request
    assert [json.loads(x)["epoch"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_a_screen_tabulates_finished_runs_by_images_with_their_changes(tmp_path, capsys):
    from cpm.config import load_config

    reference = tmp_path / "reference.toml"
    reference.write_text("[train]\nbatch_size = 16\n")
    runs = []
    for name, sets, lines in [("ref", [], [line(1, 0.90, 0.80, 50.0), line(2, 0.94, 0.86, 99.0)]),
                              ("cand", ["model.stage_kernel=5", "train.threads=1"], [line(1, 0.93, 0.85, 40.0)])]:
        run = tmp_path / name
        run.mkdir()
        (run / "config.toml").write_text(load_config(reference, sets).to_toml())
        (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        runs.append(str(run))
    out = tmp_path / "screen.md"
    assert main(["--screen", *runs, "--reference", str(reference), "--out", str(out), "--target", "0.2=0.93",
                 "--target", "0.1=0.85"]) == 0
    rows = [row for row in out.read_text().splitlines() if row.startswith("| ") and not row.startswith("| run")]
    # images = step x batch (5 steps an epoch x 16); PCK of the final stage (stage 2), not stage 1
    assert rows == ["| ref | none | 80 | 80.00 | 90.00 | no |", "|  |  | 160 | 86.00 | 94.00 | yes |",
                    "| cand | model.stage_kernel = 5 | 80 | 85.00 | 93.00 | yes |"]  # threads: a machine key
    with pytest.raises(SystemExit) as stop:
        main([str(reference), "--screen", runs[0]])
    assert stop.value.code == 2 and "not both" in capsys.readouterr().err


def test_make_trains_recipe_trains_the_four_stage_recipes_data_with_less_than_a_third_of_its_compute():
    """experiments/default.toml (the speedrun's recipe) changes the model, the schedule and how training frames are
    drawn and augmented from experiments/four-stages.toml (the recipe before it, the record's reference), never the
    held-out frames the two recipes are scored on."""
    import dataclasses

    from cpm.data.synthetic.sources import drop_missing_pose_files
    from cpm.runtime.build import build_datasets

    before, now = (drop_missing_pose_files(load_config(EXPERIMENTS / name))  # what this machine's files allow
                   for name in ("four-stages.toml", "default.toml"))
    changed = {f.name for f in dataclasses.fields(before.data)
               if getattr(now.data, f.name) != getattr(before.data, f.name)}
    assert changed == {"render_epochs", "prerender", "rotation", "scale_range"} and now.eval == before.eval
    held_out = [build_datasets(config)[1] for config in (before, now)]
    assert len(held_out[0]) == len(held_out[1]) == 500
    for index in (0, 499):
        assert all(torch.equal(held_out[0][index][key], held_out[1][index][key]) for key in held_out[0][index])
    assert (now.model.stages, now.model.trunk_kernel, now.model.stage1_kernel, now.train.epochs) == (2, 3, 5, 3)
    assert (before.model.stages, before.train.epochs, now.train.name) == (4, 4, "default")
    size = before.data.input_size
    adds = {}
    for name, config in (("before", before), ("now", now)):
        image, center = torch.zeros(1, 1, size, size), torch.zeros(1, 1, size // 8, size // 8)
        adds[name] = stage_multiply_adds(build_network(config).eval(), image, center)[-1]
    assert adds["before"] == pytest.approx(441.4e6, rel=1e-3) and adds["now"] == pytest.approx(171.1e6, rel=1e-3)
    images = {name: c.data.train_samples * c.train.epochs for name, c in (("before", before), ("now", now))}
    assert adds["now"] * images["now"] < 0.30 * adds["before"] * images["before"]  # 0.29x the training compute


def test_a_recipe_set_changes_one_recipe_alone_and_names_it(tmp_path, capsys):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text("")
    record = tmp_path / "speedrun.md"
    argv = [str(recipe), str(recipe), "--runs", str(tmp_path / "runs"), "--no-progress", "--target", "0.2=0.001",
            "--recipe-set", "2:train.batch_size=2", "--record", str(record)]
    for override in tiny_overrides(tmp_path):
        if not override.startswith(("train.runs_dir", "train.name")):
            argv += ["--set", override]
    assert main(argv) == 0
    runs = tmp_path / "runs"
    first = load_config(runs / "speedrun-tiny" / "config.toml")
    second = load_config(runs / "speedrun-tiny-2" / "config.toml")  # its own directory, its own batch size
    assert second.train.batch_size == 2 and first.train.batch_size != 2
    assert f"| {recipe} train.batch_size=2 |" in record.read_text()
    for bad, message in ((["3:train.lr=1"], "there is no recipe 3 (recipes 1 to 2)"),
                         (["two:train.lr=1"], "expected N:SECTION.KEY=VALUE"),
                         (["2:train.nonsense=1"], "nonsense")):
        with pytest.raises(SystemExit) as stop:
            main([str(recipe), str(recipe), "--recipe-set", *bad])
        assert stop.value.code == 2
        assert message in capsys.readouterr().err
