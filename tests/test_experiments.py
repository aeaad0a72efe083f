"""The experiment grids: tables from hand-written run directories, and one smoke cell of every target."""

import json

import numpy as np
import pytest

from cpm.experiments.figure5 import gradient_magnitudes
from cpm.experiments.grids import BUDGETS, GRIDS, main, run_target, write_target_report
from cpm.experiments.reports import format_mean_std, mean_std
from cpm.experiments.runs import is_finished


def write_run(root, name, final: dict, *, epochs: int = 2, summary: dict | None = None, steps=()):
    run_dir = root / name
    run_dir.mkdir(parents=True)
    lines = [{"epoch": epoch, "step": 10 * epoch, **final} for epoch in range(1, epochs + 1)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary))
    if steps:
        (run_dir / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    return run_dir


def pck_line(stages: int, a02: float, a01: float) -> dict:
    line = {}
    for t in range(1, stages + 1):
        line[f"val/pck@0.2/stage{t}"] = a02 * t / stages
        line[f"val/pck@0.1/stage{t}"] = a01 * t / stages
    return line


def test_mean_and_sample_std_by_hand():
    mean, std, n = mean_std([0.5, 0.7, 0.9])
    assert (mean, n) == (pytest.approx(0.7), 3)
    assert std == pytest.approx(np.sqrt(((0.2**2) * 2) / 2))  # ddof = 1: sum of squares / (n - 1) = 0.2
    assert format_mean_std([0.5, 0.7, 0.9]) == "70.00 ± 20.00"
    assert format_mean_std([0.1234]) == "12.34" and format_mean_std([]) == "–"
    assert format_mean_std([2.0, float("nan"), 4.0], scale=1.0) == "3.00 ± 1.41"


def test_zero_fraction_is_relative_to_each_layers_largest_weight():
    import torch

    from cpm.training.summaries import zero_fractions

    state = {"conv.weight": torch.tensor([[1.0, 0.005], [0.02, -1.0]]), "conv.bias": torch.zeros(2),
             "fc.weight": torch.zeros(2, 2)}
    assert zero_fractions(state) == {"conv": 0.25, "fc": 1.0}  # 0.005 <= 1 % of 1.0; biases are not layers


def test_ablate_supervision_table_from_run_directories(tmp_path):
    folder = tmp_path / "runs" / "ablate-supervision"
    for seed, (on, off) in enumerate([(0.60, 0.40), (0.80, 0.50)]):
        write_run(folder, f"T1-is-seed{seed}", pck_line(1, 0.3 + 0.1 * seed, 0.1))
        write_run(folder, f"T6-is-seed{seed}", pck_line(6, on, on / 2))
        write_run(folder, f"T6-nois-seed{seed}", pck_line(6, off, off / 2))
    write_run(folder, "stagewise-joint-seed0", pck_line(6, 0.7, 0.3))
    (folder / "experiment.json").write_text(json.dumps({"description": "hand-made", "overrides": {"train.epochs": 2},
                                                        "command": "make ablate-supervision", "revision": "abc123"}))
    text = write_target_report("ablate-supervision", root=tmp_path / "runs", out=tmp_path / "out").read_text()
    rows = text.splitlines()
    # T = 6: PCK@0.2 with IS 60, 80 -> 70.00 ± 14.14; without 40, 50 -> 45.00 ± 7.07; PCK@0.1 halves them.
    assert "| 6 | 70.00 ± 14.14 | 45.00 ± 7.07 | 35.00 ± 7.07 | 22.50 ± 3.54 | 2 / 2 |" in rows
    # T = 1: the same runs in both columns (30, 40 -> 35.00 ± 7.07).
    assert "| 1 | 35.00 ± 7.07 | 35.00 ± 7.07 | 10.00 ± 0.00 | 10.00 ± 0.00 | 2 / 2 |" in rows
    assert "| stage-wise, then joint fine-tuning | 70.00 | 30.00 | 1 |" in rows
    # Per stage of the six-stage models: stage 3 is half the final value in pck_line.
    assert "| 3 | 35.00 ± 7.07 | 22.50 ± 3.54 | 35.00 |" in rows
    assert "`make ablate-supervision` at revision `abc123`" in text and "hand-made (`train.epochs=2`)" in text
    # The make-train model (the defaults): 123 px for stage 1 (README, cpm rf), + 144 px per stage.
    assert "(`cpm rf`): 123, 267, 411, 555, 699, 843 px, on 128 px crops: stage 1 sees 96 % of the crop side" in text
    assert (tmp_path / "out" / "ablate-supervision.png").stat().st_size > 10_000


def test_compare_heads_and_decoders_tables_from_run_directories(tmp_path):
    folder = tmp_path / "runs" / "compare-heads"
    pdj = {"thresholds": [0.0, 0.1, 0.2], "rate": [0.0, 0.5, 0.9]}
    for seed, epe in enumerate([4.0, 6.0]):
        summary = {"pck": {"0.05": [0.1], "0.1": [0.2 + 0.1 * seed], "0.2": [0.5]}, "epe": [epe], "pdj": pdj,
                   "zero_fraction": {"a": 0.0, "b": 0.5}, "samples": 4}
        steps = [{"step": 2, "loss": 1.0}, {"step": 4, "loss": 0.5}]
        write_run(folder, f"regression-l1-vgg16-seed{seed}", {}, summary=summary, steps=steps)
    text = write_target_report("compare-heads", root=tmp_path / "runs", out=tmp_path / "out").read_text()
    assert "| regression-l1 | vgg16 | 50.00 ± 0.00 | 25.00 ± 7.07 | 5.00 ± 1.41 | 25.00 ± 0.00 | 2 |" in text
    assert (tmp_path / "out" / "compare-heads-pdj.png").is_file()
    cells = json.loads((tmp_path / "out" / "compare-heads.json").read_text())["cells"]
    assert [(c["head"], c["backbone"], c["seeds"], c["pck@0.1"], c["epe"]) for c in cells] == [
        ("regression-l1", "vgg16", [0, 1], [0.2, pytest.approx(0.3)], [4.0, 6.0])]
    assert cells[0]["pdj_rate"] == [0.0, 0.5, 0.9] and cells[0]["pck@0.05"] == [0.1, 0.1]

    folder = tmp_path / "runs" / "compare-decoders"
    for seed, value in enumerate([0.4, 0.6]):
        run_dir = write_run(folder, f"heatmap-cpm-seed{seed}", {})
        decoders = {name: {"pck": {"0.05": [value], "0.1": [0.8], "0.2": [0.9]}, "epe": [3.0]}
                    for name in ("argmax", "parabola")}
        (run_dir / "decoders.json").write_text(json.dumps(decoders))
    text = write_target_report("compare-decoders", root=tmp_path / "runs", out=tmp_path / "out").read_text()
    assert "| parabola | 50.00 ± 14.14 | 80.00 ± 0.00 | 90.00 ± 0.00 | 3.00 ± 0.00 | 2 |" in text


def test_grids_name_every_cell_once():
    seeds = BUDGETS["default"][1]
    ablation = [run.name for run in GRIDS["ablate-supervision"](seeds)]
    assert len(ablation) == len(set(ablation)) == len(seeds) * (11 + 5 + 1)
    heads = [run.name for run in GRIDS["compare-heads"](seeds)]
    assert len(heads) == len(set(heads)) == len(seeds) * 15 and "regression-smooth_l1-fourconv-seed2" in heads
    stagewise = {run.name: run for run in GRIDS["ablate-supervision"]((0,))}
    assert stagewise["stagewise3-seed0"].after == "stagewise2-seed0"
    assert stagewise["stagewise2-seed0"].after == "T1-is-seed0"


def test_gradients_of_stage_one_are_larger_with_intermediate_supervision():
    budget = BUDGETS["smoke"][0] | {"model.stages": 6, "train.device": "cpu"}
    with_is = gradient_magnitudes(budget | {"train.intermediate_supervision": True}, steps=1, record=[1])
    without = gradient_magnitudes(budget | {"train.intermediate_supervision": False}, steps=1, record=[1])
    stage1 = [i for i, stage in enumerate(with_is["stages"]) if stage == "1"]
    assert stage1 and with_is["stages"][-1] == "6"
    assert np.mean([with_is["steps"]["1"][i] for i in stage1]) > np.mean([without["steps"]["1"][i] for i in stage1])


SMOKE_CELLS = {"ablate-supervision": ("T2-nois-seed0", "| 2 | – |"),  # no IS run of T = 2 in this cell
               "compare-heads": ("integral-l1-fourconv-seed0", "| integral-l1 | fourconv |"),
               "compare-decoders": ("heatmap-cpm-seed0", "| soft_argmax |")}


@pytest.mark.parametrize("target", list(SMOKE_CELLS))
def test_one_smoke_cell_of_each_target_trains_reports_and_is_skipped_the_second_time(tmp_path, capsys, target):
    root, out = tmp_path / "runs", tmp_path / "results"
    cell, expected_row = SMOKE_CELLS[target]
    markdown = run_target(target, budget_name="smoke", root=root, out=out, device="cpu", only=cell,
                          command=f"test {target}", log=lambda *a: None)
    run_dir = root / target / cell
    assert is_finished(run_dir, 1) and (run_dir / "summary.json").is_file()
    text = markdown.read_text()
    assert markdown == out / f"{target}.md" and "`test " in text and expected_row in text
    if target == "compare-decoders":
        assert all(f"| {name} |" in text for name in ("argmax", "quarter", "parabola", "bicubic", "dark"))
    logged = []
    run_target(target, budget_name="smoke", root=root, out=out, device="cpu", only=cell, log=logged.append)
    assert logged == [f"[1/1] {cell}: finished before, skipped"]
    capsys.readouterr()
    assert main(["report", "--runs", str(root), "--out", str(tmp_path / "again")]) == 0
    assert [p.name for p in (tmp_path / "again").glob("*.md")] == [f"{target}.md"]
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'again' / target}.md"


@pytest.mark.parametrize("budget", sorted(BUDGETS))
def test_every_cell_of_every_grid_is_a_valid_config_under_every_budget(budget):
    from cpm.experiments.grids import budget_for
    from cpm.experiments.runs import make_config

    for target, grid in GRIDS.items():
        overrides, seeds, _, _ = budget_for(budget, target)
        for run in grid(seeds):
            make_config(overrides | run.overrides)  # raises ConfigError naming the key


def test_the_paper_budget_trains_the_released_network():
    from cpm.experiments.grids import budget_for
    from cpm.experiments.runs import make_config
    from cpm.models import build_model
    from cpm.training.builders import model_kwargs

    overrides, seeds, _, _ = budget_for("paper", "ablate-supervision")
    cell = next(run for run in GRIDS["ablate-supervision"](seeds) if run.name == "T6-is-seed0")
    config = make_config(overrides | cell.overrides)
    assert (config.data.input_size, config.model.stage_kernel, config.train.optimizer) == (368, 11, "adamw")
    model = build_model(config.model.head, **model_kwargs(config))
    assert sum(p.numel() for p in model.parameters()) == 31_298_464  # the released LSP net with 15 joints
