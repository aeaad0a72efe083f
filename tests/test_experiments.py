"""The experiment grids: tables from hand-made cell summaries, cells keyed by config, and one smoke cell of every
target trained, skipped on a fresh clone and reported again byte for byte."""

import json
import shutil

import numpy as np
import pytest
import torch

from cpm.config import Config, load_config
from cpm.errors import ConfigError, CPMError
from cpm.experiments.figure5 import gradient_magnitudes
from cpm.experiments.grids import (
    BUDGETS,
    GRIDS,
    GridRequest,
    cell_overrides,
    grid_cells,
    grid_seeds,
    main,
    run_target,
    setting_name,
)
from cpm.experiments.report_heads import _last_gain, compare_decoders_report, compare_heads_report
from cpm.experiments.reports import RunRecord, ablate_supervision_report, format_mean_std, load_runs, mean_std
from cpm.experiments.runs import config_hash, make_config, run_cells


def summary(cell: str, final: dict, *, epochs: int = 2, scores: dict | None = None, steps=(), decoders=None,
            config: dict | None = None) -> dict:
    """A hand-made cell summary, as `cpm.experiments.runs.write_summary` writes them."""
    lines = [{"epoch": epoch, "step": 10 * epoch, "train_seconds": 1.0, **final} for epoch in range(1, epochs + 1)]
    return {"cell": cell, "target": "t", "metrics": lines, "steps": list(steps), "summary": scores,
            "decoders": decoders, "config": config, "revision": "abc123", "train_seconds": 2.0,
            "machine": {"cpu": "test cpu", "cpu_bf16": False, "cores": 2}}


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


NOTE = {"setting": "hand", "budget": "none", "description": "hand-made", "command": "make ablate-supervision"}


def test_ablate_supervision_table_from_summaries(tmp_path):
    runs = []
    for seed, (on, off) in enumerate([(0.60, 0.40), (0.80, 0.50), (0.70, 0.42)]):
        runs.append(summary(f"T1-is-seed{seed}", pck_line(1, 0.3 + 0.1 * seed, 0.1)))
        runs.append(summary(f"T4-is-seed{seed}", pck_line(4, on, on / 2)))
        runs.append(summary(f"T4-nois-seed{seed}", pck_line(4, off, off / 2)))
    runs.append(summary("stagewise-joint-seed0", pck_line(4, 0.7, 0.3)))
    text = ablate_supervision_report(load_runs(runs), NOTE, tmp_path, "hand", extra_folder=tmp_path).read_text()
    rows = text.splitlines()
    # T = 4, PCK@0.2: IS 60, 80, 70 -> 70.00 ± 10.00; last only 40, 50, 42 -> 44.00 ± 5.29; paired d = 20, 30, 28:
    # mean 26, sd 5.2915, t_{0.975,2} = 4.3027 -> half-width 13.14 -> [+12.86, +39.14].
    assert ("| 4 | 70.00 ± 10.00 | 44.00 ± 5.29 | +26.00 [+12.86, +39.14] | 35.00 ± 5.00 | 22.00 ± 2.65 | "
            "+13.00 [+6.43, +19.57] | 3 / 3 |") in rows
    # T = 1: the same runs in both columns (30, 40, 50 -> 40.00 ± 10.00), no difference column.
    assert "| 1 | 40.00 ± 10.00 | 40.00 ± 10.00 | – | 10.00 ± 0.00 | 10.00 ± 0.00 | – | 3 / 3 |" in rows
    assert ("- IS minus last only, PCK@0.2, T = 4: +26.00 points, 95 % CI [+12.86, +39.14], n = 3: IS is higher."
            in rows)
    assert "| stage-wise, then joint fine-tuning | 70.00 | 30.00 | 1 |" in rows
    # Per stage of the four-stage models: stage 2 is half the final value in pck_line.
    assert "| 2 | 35.00 ± 5.00 | 22.00 ± 2.65 |" in rows
    assert "`make ablate-supervision` (the whole grid; " in text and "at revision(s) `abc123`" in text
    assert "budget none (hand-made)" in text
    assert "10 runs, 0.0 h of training in all, on test cpu (fp32, no native bf16 CPU, 2 cores)" in text
    assert (tmp_path / "ablate-supervision-hand.png").stat().st_size > 10_000


def test_the_machine_label_names_the_precision_a_cell_trained_in():
    from cpm.experiments.reports import machine_label

    cpu, gpu = {"cpu": "EPYC", "cpu_bf16": True, "cores": 2}, {"cpu": "EPYC", "cuda": "NVIDIA H200", "cores": 16}
    assert machine_label(cpu, "off") == "EPYC (fp32, native bf16 CPU, 2 cores)"  # a grid that fixes fp32
    assert machine_label(cpu, "auto") == "EPYC (bf16, native bf16 CPU, 2 cores)"
    assert machine_label({**cpu, "cpu_bf16": False}, "auto") == "EPYC (fp32, no native bf16 CPU, 2 cores)"
    assert machine_label(gpu, "auto") == "NVIDIA H200 (bf16, 16 cores)"


def test_compare_heads_and_decoders_tables_from_summaries(tmp_path):
    from cpm.runtime.build import build_network

    pdj = {"thresholds": [0.0, 0.1, 0.2], "rate": [0.0, 0.5, 0.9]}
    common = {"model.backbone": "fourconv", "model.stride": 2, "data.input_size": 64, "train.epochs": 3,
              "data.train_samples": 100}
    regression = make_config(common | {"model.head": "regression", "train.lr": 0.01})
    heatmap = make_config(common | {"model.stages": 1, "train.lr": 0.002})
    runs = []
    for seed, epe in enumerate([4.0, 6.0]):
        scores = {"pck": {"0.05": [0.1], "0.1": [0.2 + 0.1 * seed], "0.2": [0.5]}, "epe": [epe], "pdj": pdj,
                  "zero_fraction": {"a": 0.0, "b": 0.5}, "samples": 4}
        steps = [{"step": 2, "loss": 1.0}, {"step": 4, "loss": 0.5}]
        runs.append(summary(f"regression-l1-fourconv-seed{seed}", pck_line(1, 0.5, 0.2), scores=scores, steps=steps,
                            config=regression.to_dict()))
        runs[-1]["metrics"][-2] |= pck_line(1, 0.45 - 0.01 * seed, 0.2)  # one epoch before the end: +5 and +6 points
        scores = {"pck": {"0.05": [0.3], "0.1": [0.5 + 0.2 * seed], "0.2": [0.8]}, "epe": [2.0], "pdj": pdj,
                  "zero_fraction": {"a": 0.0}, "samples": 4}
        runs.append(summary(f"heatmap-fourconv-seed{seed}", pck_line(1, 0.8, 0.5), scores=scores, steps=steps,
                            config=heatmap.to_dict()))
    text = compare_heads_report(load_runs(runs), NOTE, tmp_path, "hand").read_text()
    parameters = sum(p.numel() for p in build_network(regression).parameters())
    # PDJ AUC: trapezoids (0 + 0.5) / 2 x 0.1 + (0.5 + 0.9) / 2 x 0.1 = 0.095 over a range of 0.2 -> 47.50 %.
    assert (f"| regression-l1 | fourconv | 32x32 of 64 px | 10.00 ± 0.00 | 25.00 ± 7.07 | 50.00 ± 0.00 | 5.50 ± 0.71 | "
            f"5.00 ± 1.41 | "
            f"47.50 ± 0.00 | {parameters:,} | 300 | 0.01 | 25.00 ± 0.00 | 2 |") in text
    # heatmap - regression at PCK@0.1: 0.3 and 0.4 -> +35, sd 7.07 / sqrt 2 x t(0.975, 1) = 12.706 -> +-63.53.
    assert "| fourconv | heatmap | regression-l1 | +35.00 [-28.53, +98.53] | +30.00 [+30.00, +30.00] | 2 |" in text
    assert (tmp_path / "compare-heads-hand-pdj.png").is_file()
    assert (tmp_path / "compare-heads-hand-curves.png").is_file()
    cells = json.loads((tmp_path / "compare-heads-hand.json").read_text())["cells"]
    assert [(c["head"], c["backbone"], c["seeds"], c["pck@0.1"], c["epe"]) for c in cells][0] == (
        "regression-l1", "fourconv", [0, 1], [0.2, pytest.approx(0.3)], [4.0, 6.0])
    assert cells[0]["pdj_rate"] == [0.0, 0.5, 0.9] and cells[0]["pck@0.05"] == [0.1, 0.1]
    assert (cells[0]["parameters"], cells[0]["images"], cells[0]["lr"]) == (parameters, [300, 300], [0.01, 0.01])

    runs = []
    for seed, value in enumerate([0.4, 0.6]):
        decoders = {name: {"pck": {"0.05": [value], "0.1": [0.8], "0.2": [0.9]}, "epe": [3.0]}
                    for name in ("argmax", "parabola")}
        runs.append(summary(f"heatmap-cpm-seed{seed}", {}, decoders=decoders))
    text = compare_decoders_report(load_runs(runs), NOTE, tmp_path, "hand").read_text()
    assert "| parabola | 50.00 ± 14.14 | 80.00 ± 0.00 | 90.00 ± 0.00 | 3.00 ± 0.00 | 2 |" in text


def test_last_quarter_gain_compares_the_same_share_of_any_budget():
    def record(epochs: int, pck) -> RunRecord:
        lines = [{"epoch": e, "step": 187 * e, **pck_line(1, pck(e), 0.0)} for e in range(1, epochs + 1)]
        return RunRecord(name="x-seed0", cell="x", seed=0, final=lines[-1], data={"metrics": lines})

    # 4 epochs: epoch 4 minus epoch 3 (step 561 = 3/4 of 748); 16 epochs: epoch 16 minus epoch 12, not minus epoch 15.
    assert _last_gain(record(4, lambda e: 0.1 * e)) == pytest.approx(0.1)
    assert _last_gain(record(16, lambda e: 0.01 * e)) == pytest.approx(0.04)
    assert _last_gain(record(16, lambda e: min(e, 15) / 100)) == pytest.approx(0.03)  # flat at the very end only
    assert np.isnan(_last_gain(record(1, lambda e: 0.5)))


def test_grids_name_every_cell_once():
    seeds = BUDGETS["default"].seeds
    ablation = [run.name for run in GRIDS["ablate-supervision"](seeds)]
    # T = 1 once, T = 2, 3, 4, 6 with and without IS, the AdamW pair, 4 stage-wise cells, 4 + 1 stage-wise + joint,
    # the paper's stage-wise regime (3 phases + joint) and the joint run on as many images as those four.
    assert len(ablation) == len(set(ablation)) == len(seeds) * (1 + 8 + 2 + 4 + 5 + 4 + 1)
    heads = [run.name for run in GRIDS["compare-heads"](seeds)]
    # 11 matched heads x 3 strides, and the baselines' two heads on its two backbones
    assert len(heads) == len(set(heads)) == len(seeds) * (11 * 3 + 4) and "regression-smooth_l1-s16-seed2" in heads


def test_heads_resolved_per_stride(tmp_path):
    """The flatten regressor pools to its own map (128 px: 32, 16, 8 cells), a sigma in pixels becomes cells of the
    stride, and the cells that were already in the grid keep their hashes (their committed summaries stay theirs)."""
    from cpm.experiments.grids import GridRequest, grid_cells

    cells = {cell.name: cell for cell in grid_cells(GridRequest("compare-heads", "none", "experiments/heads.toml"),
                                                    runs_root=tmp_path, results_root=tmp_path, only="*-seed0")}
    assert [cells[f"regression-flat-l1-s{s}-seed0"].config.model.regression_pool for s in (4, 8, 16)] == [32, 16, 8]
    assert [cells[f"heatmap-px8-s{s}-seed0"].config.targets.sigma for s in (4, 8, 16)] == [2.0, 1.0, 0.5]
    assert cells["rle-grid4h-s8-seed0"].config.model.regression_loss == "rle"
    assert (cells["rle-grid4h-s8-seed0"].config.model.regression_pool, cells["rle-grid4h-s8-seed0"].config.model.
            regression_hidden) == (4, 256)
    assert cells["heatmap-sigma1-s16-seed0"].hash == "0575c65b" and cells["regression-l2-s16-seed0"].hash == "6c67e9d5"
    stagewise = {run.name: run for run in GRIDS["ablate-supervision"]((0,))}
    assert stagewise["stagewise3-seed0"].after == "stagewise2-seed0" and stagewise["stagewise1-seed0"].after is None
    assert stagewise["stagewise-joint-seed0"].after == "stagewise-joint4-seed0"
    assert stagewise["stagewise2-seed0"].overrides["train_share"] == 1 / 4  # equal images: 4 phases
    assert stagewise["stagewise-joint2-seed0"].overrides["train_share"] == 1 / 5
    # the paper's regime: every phase on the whole budget, chained, and the joint run on four budgets
    assert stagewise["paper-stagewise1-seed0"].after is None and "train_share" not in stagewise[
        "paper-stagewise2-seed0"].overrides
    assert stagewise["paper-stagewise-joint-seed0"].after == "paper-stagewise3-seed0"
    assert stagewise["paper-stagewise3-seed0"].overrides["train.stage_weights"] == [0.0, 0.0, 1.0]
    assert stagewise["paper-joint-x4-seed0"].overrides["train_share"] == 4


def test_the_papers_stage_wise_regime_is_tabled_against_joint_training(tmp_path):
    runs = []
    for seed, (joint, paper, long) in enumerate([(0.60, 0.70, 0.66), (0.64, 0.70, 0.70), (0.62, 0.72, 0.68)]):
        runs.append(summary(f"T3-is-seed{seed}", pck_line(3, 0.9, joint)))
        runs.append(summary(f"paper-stagewise-joint-seed{seed}", pck_line(3, 0.9, paper)))
        runs.append(summary(f"paper-joint-x4-seed{seed}", pck_line(3, 0.9, long)))
    rows = ablate_supervision_report(load_runs(runs), NOTE, tmp_path, "hand", extra_folder=tmp_path).read_text()
    rows = rows.splitlines()
    assert "| stage-wise, then joint fine-tuning (4 budgets) | 90.00 ± 0.00 | 70.67 ± 1.15 | 3 |" in rows
    assert "| joint, intermediate supervision (1 budget) | 90.00 ± 0.00 | 62.00 ± 2.00 | 3 |" in rows
    # paired PCK@0.1: stage-wise - joint (1 budget) 10, 6, 10: mean 8.67, sd 2.309, t 4.3027 -> +-5.74
    assert any(row.startswith("- stage-wise then joint minus joint, intermediate supervision (1 budget), PCK@0.1, "
                              "T = 3, equal final images: +8.67 points, 95 % CI [+2.93, +14.40]") for row in rows)


def test_gradients_of_stage_one_are_larger_with_intermediate_supervision():
    budget = BUDGETS["smoke"].overrides | {"model.stages": 6, "train.device": "cpu"}
    with_is = gradient_magnitudes(budget | {"train.intermediate_supervision": True}, steps=1, record=[1])
    without = gradient_magnitudes(budget | {"train.intermediate_supervision": False}, steps=1, record=[1])
    stage1 = [i for i, stage in enumerate(with_is["stages"]) if stage == "1"]
    assert stage1 and with_is["stages"][-1] == "6"
    assert np.mean([with_is["steps"]["1"][i] for i in stage1]) > np.mean([without["steps"]["1"][i] for i in stage1])


SMOKE_CELLS = {"ablate-supervision": ("T2-nois-seed0", "| 2 | – |"),  # no IS run of T = 2 in this cell
               "compare-heads": ("integral-l1-s4-seed0", "| integral-l1 | s4 |"),
               "compare-decoders": ("heatmap-cpm-seed0", "| soft_argmax |")}


@pytest.mark.parametrize("target", list(SMOKE_CELLS))
def test_one_smoke_cell_of_each_target_trains_reports_and_is_skipped_on_a_fresh_clone(tmp_path, capsys, target):
    runs, results = tmp_path / "runs", tmp_path / "results"
    cell, expected_row = SMOKE_CELLS[target]
    request = GridRequest(target, "smoke")
    markdown = run_target(request, runs_root=runs, results_root=results, device="cpu", only=cell,
                          command=f"test {target}", progress=False, log=lambda *a: None)
    summaries = list((results / "runs" / target / "smoke").glob(f"{cell}-*.json"))
    assert len(summaries) == 1
    data = json.loads(summaries[0].read_text())
    assert data["config"]["train"]["seed"] == data["config"]["data"]["seed"] == 0
    assert data["metrics"][-1]["epoch"] == 1 and (runs / target / "smoke" / summaries[0].stem / "train.log").is_file()
    text = markdown.read_text()
    assert markdown == results / target / f"{target}-smoke.md" and "`test " in text and expected_row in text
    if target == "compare-decoders":
        assert all(f"| {name} |" in text for name in ("argmax", "quarter", "parabola", "bicubic", "dark"))
    before = {path.name: path.read_bytes() for path in (results / target).iterdir()}
    shutil.rmtree(runs)  # a fresh clone: the committed summaries only
    logged = []
    run_target(request, runs_root=runs, results_root=results, device="cpu", only=cell, command=f"test {target}",
               log=logged.append)
    assert logged[0] == f"{target} / smoke: 1 of 1 cells done, 0 to do" and not runs.exists()
    for name in list(before):  # make report rebuilds every table byte for byte
        (results / target / name).unlink()
    (results / "runs" / target / "smoke" / "figure5.json").write_text("{}")  # other records beside the summaries
    capsys.readouterr()
    assert main(["report", "--runs", str(runs), "--results", str(results)]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {markdown}"
    assert markdown.read_bytes() == before[markdown.name]


def test_a_cells_wall_time_is_its_runs_own_over_every_sitting(tmp_path):
    """A cell's summary gives the run's run_seconds (all its sittings), not the time of the sitting that wrote it:
    here the run is finished and only its summary is missing, so that sitting trains nothing."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    request = GridRequest("ablate-supervision", "smoke")
    kwargs = {"runs_root": runs, "results_root": results, "device": "cpu", "only": "T2-nois-seed0", "command": "test",
              "progress": False, "log": lambda *a: None}
    run_target(request, **kwargs)
    (summary,) = (results / "runs" / "ablate-supervision" / "smoke").glob("T2-nois-seed0-*.json")
    last = runs / "ablate-supervision" / "smoke" / summary.stem / "last.pt"
    checkpoint = torch.load(last, weights_only=True)
    assert json.loads(summary.read_text())["wall_seconds"] == round(checkpoint["run_seconds"], 1)
    checkpoint["run_seconds"] = 1234.5  # as if the run had taken 1234.5 s over several sittings
    torch.save(checkpoint, last)
    summary.unlink()
    run_target(request, **kwargs)
    assert json.loads(summary.read_text())["wall_seconds"] == 1234.5


def test_a_changed_set_runs_new_cells_and_the_old_summaries_stay(tmp_path):
    runs, results = tmp_path / "runs", tmp_path / "results"
    common = ["ablate-supervision", "--budget", "smoke", "--only", "T2-is-*", "--runs", str(runs), "--results",
              str(results), "--no-progress", "--device", "cpu"]

    def summaries() -> list[str]:
        return sorted(str(p.relative_to(results)) for p in results.glob("runs/ablate-supervision/*/T2-*.json"))

    assert main([*common, "--set", "model.stage_width=6"]) == 0
    first = summaries()
    assert main([*common, "--set", "model.stage_width=6"]) == 0  # the same request: nothing new
    assert summaries() == first
    assert main([*common, "--set", "model.stage_width=5"]) == 0  # another config: a new cell beside the old one
    second = summaries()
    assert len(first) == 1 and len(second) == 2 and first[0] in second
    widths = {json.loads((results / name).read_text())["config"]["model"]["stage_width"] for name in second}
    assert widths == {5, 6}
    assert len({name.split("/")[2] for name in second}) == 2  # each request has its own setting folder and table


def test_a_cell_overrides_the_users_set_for_its_own_factor(tmp_path):
    cells = grid_cells(GridRequest("ablate-supervision", "smoke", sets={"model.stages": 3, "model.stage_width": 5}),
                       runs_root=tmp_path, results_root=tmp_path, only="T2-*")
    assert {cell.config.model.stages for cell in cells} == {2}  # the grid's factor wins
    assert {cell.config.model.stage_width for cell in cells} == {5}  # the rest of the user's --set holds


def test_cell_sets_reach_only_the_matching_cells_and_win_over_their_factors(tmp_path, capsys):
    request = GridRequest("compare-heads", "smoke", cell_sets={"regression-*-s4-*": {"train.lr": 0.005},
                                                               "heatmap-sigma1-*": {"targets.sigma": 1.5}})
    cells = {cell.name: cell for cell in grid_cells(request, runs_root=tmp_path, results_root=tmp_path)}
    lrs = {name: cell.config.train.lr for name, cell in cells.items() if name.endswith("-seed0")}
    assert {name for name, lr in lrs.items() if lr == 0.005} == {f"regression-{variant}-s4-seed0" for variant in
                                                                 ("l2", "l1", "smooth_l1", "flat-l1", "grid4h-l1")}
    assert cells["heatmap-sigma1-s8-seed0"].config.targets.sigma == 1.5  # the cell's own sigma = 1 loses
    assert cells["heatmap-sigma2-s8-seed0"].config.targets.sigma == 2.0
    plain = GridRequest("compare-heads", "smoke")
    assert request.setting != plain.setting == "smoke"  # another request, another folder
    assert GridRequest("compare-heads", "smoke", sets={"train.threads": 1, "data.workers": 0}).setting == "smoke"
    assert cells["regression-l2-s4-seed0"].run_dir != next(
        c for c in grid_cells(plain, runs_root=tmp_path, results_root=tmp_path)
        if c.name == "regression-l2-s4-seed0").run_dir
    assert main(["compare-heads", "--budget", "smoke", "--cell-set", "train.lr=0.1"]) == 2
    assert "--cell-set: expected GLOB:SECTION.KEY=VALUE" in capsys.readouterr().err


def test_a_config_files_cells_table_reaches_its_cells_below_set_and_cell_set(tmp_path, capsys):
    config = tmp_path / "heads.toml"
    config.write_text('[train]\nlr = 0.001\n\n[cells]\n"regression-l1-*".train.lr = 0.02\n'
                      '"heatmap-*".targets.sigma = 1.5\n')
    assert load_config(config).train.lr == 0.001  # cpm train reads the file without [cells]

    def lrs(**request) -> dict[str, float]:
        cells = grid_cells(GridRequest("compare-heads", "none", str(config), **request), runs_root=tmp_path,
                           results_root=tmp_path, only="*-s4-seed0")
        return {cell.name.removesuffix("-s4-seed0"): (cell.config.train.lr, cell.config.targets.sigma)
                for cell in cells}

    plain = lrs()
    assert plain["regression-l1"][0] == 0.02 and plain["regression-l2"][0] == 0.001
    assert plain["heatmap-sigma1"] == (0.001, 1.5) == plain["heatmap-sigma2"]  # over the cells' own sigma
    assert lrs(sets={"train.lr": 0.003})["regression-l1"][0] == 0.003  # --set wins over the file's [cells]
    assert lrs(sets={"train.lr": 0.003}, cell_sets={"regression-*": {"train.lr": 0.05}})["regression-l1"][0] == 0.05
    assert GridRequest("compare-heads", "none", str(config)).setting == "heads"  # the file's own, like its [train]

    config.write_text('[cells]\n"regression-*".train.lrr = 0.02\n')
    with pytest.raises(ConfigError, match=r"heads.toml: \[cells\] 'regression-\*': unknown config key train.lrr"):
        cell_overrides(config)
    assert load_config(config) == Config()  # cpm train leaves the table unread
    config.write_text('[cells]\nregression = 0.02\n')
    results = tmp_path / "results"
    assert main(["compare-heads", "--budget", "none", "--config", str(config), "--only", "x", "--results",
                 str(results), "--runs", str(tmp_path / "runs")]) == 2
    assert "heads.toml: [cells] must map a cell-name glob to settings" in capsys.readouterr().err
    assert not results.exists()  # nothing written for a request that does not resolve


def test_a_run_directory_of_another_config_is_never_resumed_into(tmp_path):
    request = GridRequest("ablate-supervision", "smoke")
    (cell,) = grid_cells(request, runs_root=tmp_path / "runs", results_root=tmp_path / "results", only="T1-*")
    cell.run_dir.mkdir(parents=True)
    other = make_config({"model.stages": 2})
    (cell.run_dir / "config.toml").write_text(other.to_toml())
    with pytest.raises(CPMError, match=f"{cell.run_dir}: its config.toml has hash"):
        run_cells([cell], target="ablate-supervision", setting="smoke", device="cpu", log=lambda *a: None)


def test_setting_names():
    assert setting_name("default", None) == "default"
    assert setting_name("none", "experiments/ablation.toml") == "ablation"
    assert setting_name("smoke", "my/lsp.toml") == "lsp-smoke"
    with_sets = setting_name("none", "a.toml", {"train.epochs": 16})
    assert with_sets.startswith("a+") and len(with_sets) == len("a+") + 6
    assert with_sets != setting_name("none", "a.toml", {"train.epochs": 17})


def test_the_hash_depends_only_on_what_differs_from_the_defaults(monkeypatch):
    import dataclasses

    from cpm import config as config_module
    from cpm.experiments import runs

    before = config_hash(make_config({"train.lr": 1e-3}))

    @dataclasses.dataclass
    class WithNewKey(config_module.TrainConfig):
        a_new_switch: bool = False  # a key added later, whose default keeps the old behaviour

    @dataclasses.dataclass
    class NewConfig(config_module.Config):
        train: WithNewKey = dataclasses.field(default_factory=WithNewKey)

    monkeypatch.setattr(runs, "Config", NewConfig)
    extended = NewConfig()
    extended.train.lr = 1e-3
    assert config_hash(extended) == before
    extended.train.a_new_switch = True
    assert config_hash(extended) != before


def test_the_hash_ignores_where_a_run_executes():
    a = make_config({"train.device": "cpu", "data.workers": 0, "train.runs_dir": "x"})
    b = make_config({"train.device": "cuda", "data.workers": 8, "train.runs_dir": "y", "data.prerender": True})
    assert config_hash(a) == config_hash(b) != config_hash(make_config({"train.lr": 1e-3}))


def test_a_config_files_grid_seeds_replace_the_budgets_and_runs_leave_them_unread(tmp_path, capsys):
    config = tmp_path / "study.toml"
    config.write_text("[train]\nlr = 0.001\n\n[grid]\nseeds = [0, 3, 7]\n")
    assert load_config(config).train.lr == 0.001  # cpm train reads the file without [grid]
    assert grid_seeds(config) == (0, 3, 7)
    cells = grid_cells(GridRequest("ablate-supervision", "none", str(config)), runs_root=tmp_path,
                       results_root=tmp_path, only="T3-is-*")
    assert [cell.name for cell in cells] == ["T3-is-seed0", "T3-is-seed3", "T3-is-seed7"]
    assert [cell.config.train.seed for cell in cells] == [0, 3, 7]
    plain = tmp_path / "plain.toml"
    plain.write_text("[train]\nlr = 0.001\n")
    assert grid_seeds(plain) is None
    cells = grid_cells(GridRequest("ablate-supervision", "none", str(plain)), runs_root=tmp_path,
                       results_root=tmp_path, only="T3-is-*")
    assert [cell.name for cell in cells] == ["T3-is-seed0", "T3-is-seed1", "T3-is-seed2"]  # the budget's
    assert GridRequest("ablate-supervision", "none", str(config)).setting == "study"  # not part of the hash
    for text, message in (("[grid]\nseeds = []\n", "seeds must be a list of distinct integers"),
                          ("[grid]\nseeds = [1, 1]\n", "seeds must be a list of distinct integers"),
                          ("[grid]\nseeds = [-1]\n", "seeds must be a list of distinct integers"),
                          ("[grid]\nseeds = 8\n", "seeds must be a list of distinct integers"),
                          ("[grid]\nseed = [1]\n", r"\[grid\] takes seeds")):
        config.write_text(text)
        with pytest.raises(ConfigError, match=message):
            grid_seeds(config)
    results = tmp_path / "results"
    assert main(["ablate-supervision", "--budget", "none", "--config", str(config), "--only", "x", "--results",
                 str(results), "--runs", str(tmp_path / "runs")]) == 2
    assert "study.toml: [grid] takes seeds" in capsys.readouterr().err



@pytest.mark.parametrize("budget", sorted(BUDGETS))
def test_every_cell_of_every_grid_is_a_valid_config_under_every_budget(budget, tmp_path):
    for target in GRIDS:
        cells = grid_cells(GridRequest(target, budget), runs_root=tmp_path, results_root=tmp_path)  # ConfigError
        assert len({cell.run_dir for cell in cells}) == len(cells)  # no two cells share a run directory


def test_the_paper_budget_trains_the_released_network(tmp_path):
    from cpm.runtime.build import build_network

    cells = grid_cells(GridRequest("ablate-supervision", "paper"), runs_root=tmp_path, results_root=tmp_path,
                       only="T6-is-seed0")
    config = cells[0].config
    assert (config.data.input_size, config.model.stage_kernel, config.train.optimizer) == (368, 11, "adamw")
    model = build_network(config)
    assert sum(p.numel() for p in model.parameters()) == 31_298_464  # the released LSP net with 15 joints


def test_the_gpu_budget_runs_the_ablation_design_at_the_papers_geometry(tmp_path):
    from pathlib import Path

    from cpm.runtime.build import build_network

    config_path = str(Path(__file__).resolve().parents[1] / "experiments" / "ablation.toml")
    cells = grid_cells(GridRequest("ablate-supervision", "gpu", config=config_path), runs_root=tmp_path,
                       results_root=tmp_path)
    assert len(cells) == 3 * 25 and cells[0].run_dir.parent == tmp_path / "ablate-supervision" / "ablation-gpu"
    t4 = next(cell.config for cell in cells if cell.name == "T4-is-seed0")
    assert (t4.data.input_size, t4.model.stride, t4.model.stage_kernel, t4.model.init) == (368, 8, 11, "caffe")
    assert (t4.train.optimizer, t4.train.caffe_lr, t4.targets.sigma) == ("sgd", True, 0.875)
    adamw = next(cell.config for cell in cells if cell.name == "T4-is-adamw-seed0")
    assert adamw.train.optimizer == "adamw" and adamw.data.input_size == 368
    t6 = next(cell.config for cell in cells if cell.name == "T6-is-seed0")
    model = build_network(t6)
    # The released LSP network with 15 joints (31,298,464 parameters, experiments/paper_lsp.toml) on 1-channel depth:
    # each of its two trunks' first 9x9 conv (128 filters) has 2 input channels fewer.
    assert sum(p.numel() for p in model.parameters()) == 31_298_464 - 2 * (9 * 9 * 128 * 2)


def test_parallel_shards_train_every_seed_once_and_report_once(tmp_path, capsys):
    runs, results = tmp_path / "runs", tmp_path / "results"
    code = main(["ablate-supervision", "--budget", "smoke", "--only", "T1-*", "--set", "train.epochs=1",
                 "--runs", str(runs), "--results", str(results), "--device", "cpu", "--parallel", "2",
                 "--set", "data.train_samples=16"])
    assert code == 0
    # the smoke budget has one seed: shard 0 trains it, shard 1 has nothing to do
    assert sorted(p.name.split("-")[0] for p in results.glob("runs/ablate-supervision/*/T1-*.json")) == ["T1"]
    assert capsys.readouterr().out.strip().endswith(".md")  # one report, written once every shard finished
    assert main(["ablate-supervision", "--budget", "smoke", "--shard", "2/2"]) == 2


def test_the_resolution_sweep_cuts_the_configs_trunk_to_the_stride(tmp_path):
    cells = {cell.name: cell.config for cell in grid_cells(GridRequest("compare-heads", "none"), runs_root=tmp_path,
                                                            results_root=tmp_path, only="*-seed0")}
    # the defaults' trunk is [16, 32, 64] (stride 8): stride 4 keeps two levels, stride 16 repeats the last width
    assert cells["heatmap-sigma1-s4-seed0"].model.trunk_widths == [16, 32]
    assert cells["heatmap-sigma1-s16-seed0"].model.trunk_widths == [16, 32, 64, 64]
    regression = cells["regression-l1-s8-seed0"].model
    assert (regression.head, regression.regression_features, regression.regression_pool) == ("regression", "stage1", 1)
    assert cells["regression-l2-vgg16-seed0"].model.regression_features == "backbone"


def test_sweep_table_lines_up_one_cell_per_row_and_flags_a_best_value_at_the_edge(tmp_path, capsys):
    from cpm.experiments.sweeps import sweep_table

    def summary(setting, cell, lr, pck2, pck1, sigma=1.0):
        folder = tmp_path / "runs" / "compare-heads" / setting
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "grid.json").write_text("{}")
        (folder / "figure5.json").write_text("{}")  # other records beside the summaries
        data = {"cell": cell, "config": {"train": {"lr": lr, "epochs": 2, "threads": 1},
                                         "data": {"train_samples": 100}, "model": {"sigma": sigma}},
                "summary": {"pck": {"0.2": [0.0, pck2], "0.1": [0.0, pck1]}}}
        (folder / f"{cell}-abc12345.json").write_text(json.dumps(data))

    for setting, lr, scores in [("heads+a", 0.001, (0.30, 0.50)), ("heads+b", 0.002, (0.40, 0.45)),
                                ("heads+c", 0.004, (0.45, 0.40))]:
        summary(setting, "heatmap-seed0", lr, scores[0], 0.1)
        summary(setting, "integral-seed0", lr, scores[1], 0.2, sigma=2.0 if lr == 0.004 else 1.0)
    summary("other+d", "heatmap-seed0", 0.1, 0.99, 0.9)  # another config's folder: left out
    out = sweep_table(tmp_path, "compare-heads", "train.lr", only="*-seed0", config="experiments/heads.toml")
    assert out == tmp_path / "compare-heads" / "compare-heads-sweep-train.lr-heads.md"
    text = out.read_text()
    assert "| heatmap-seed0 | 30.0 / 10.0 | 40.0 / 10.0 | 45.0 / 10.0 | 0.004 (edge of the values tried) |" in text
    assert "| integral-seed0 | 50.0 / 20.0 | 45.0 / 20.0 | 40.0 / 20.0 | 0.001 (edge of the values tried) |" in text
    assert "integral-seed0: the runs also differ in targets.sigma." in text and "heatmap-seed0: the runs" not in text
    assert "0.1 " not in text.split("|---")[0] and "99.0" not in text
    assert main(["compare-heads", "--sweep", "train.nothing", "--results", str(tmp_path)]) == 2
    assert "'train.nothing' is not a config key" in capsys.readouterr().err
    summary("heads+e", "heatmap-seed0", 0.002, 0.9, 0.9)  # a second run at lr 0.002, longer
    (tmp_path / "runs" / "compare-heads" / "heads+e" / "heatmap-seed0-abc12345.json").write_text(json.dumps(
        json.loads((tmp_path / "runs" / "compare-heads" / "heads+e" / "heatmap-seed0-abc12345.json").read_text())
        | {"config": {"train": {"lr": 0.002, "epochs": 9}, "data": {"train_samples": 100}}}))
    with pytest.raises(CPMError, match=r"heatmap-seed0 has two runs with train.lr = 0.002 \(settings heads\+b and "
                                       r"heads\+e\)"):
        sweep_table(tmp_path, "compare-heads", "train.lr", config="heads.toml")
    text = sweep_table(tmp_path, "compare-heads", "train.lr", config="heads.toml", where={"train.epochs": 2})
    text = text.read_text()
    assert "| heatmap-seed0 | 30.0 / 10.0 | 40.0 / 10.0 | 45.0 / 10.0 |" in text


def test_request_argv_makes_the_same_request_again():
    from cpm.experiments.grids import _parse_cell_sets, _parse_sets, request_argv, request_from_note

    request = GridRequest("compare-heads", "none", "experiments/heads.toml",
                          {"train.lr": 0.005, "train.threads": 1, "model.trunk_widths": [8, 16],
                           "model.head": "regression", "train.channels_last": False}, "/data",
                          {"regression-*": {"train.lr": 0.01}})
    argv = request_argv(request)
    assert "train.threads=1" not in " ".join(argv)  # the machine that runs it chooses its threads
    values = {flag: [argv[i + 1] for i, a in enumerate(argv) if a == flag] for flag in ("--set", "--cell-set")}
    again = GridRequest(argv[0], argv[argv.index("--budget") + 1], argv[argv.index("--config") + 1],
                        _parse_sets(values["--set"]), argv[argv.index("--data") + 1],
                        _parse_cell_sets(values["--cell-set"]))
    assert again.setting == request.setting and again.cell_sets == request.cell_sets
    assert again.sets == {k: v for k, v in request.sets.items() if k != "train.threads"}
    assert request_from_note(request.to_json()) == request


def test_the_reports_quote_the_command_of_the_whole_grid():
    from cpm.experiments.grids import whole_grid_command, without_options

    piece = ["ablate-supervision", "--config", "experiments/ablation.toml", "--budget", "none", "--only",
             "T4-*-seed0", "--set", "train.threads=1", "--no-progress", "--parallel=2", "--shard", "0/2",
             "--device", "cuda", "--cell-set", "T1-*:train.lr=0.1"]
    assert whole_grid_command(piece) == (
        "python -m cpm.experiments ablate-supervision --config experiments/ablation.toml --budget none "
        "--set train.threads=1 --cell-set 'T1-*:train.lr=0.1'")
    assert whole_grid_command(["compare-heads", "--only=*-s4-*"]) == "python -m cpm.experiments compare-heads"
    # what each shard's process is given: the request without --parallel (and its value), the piece kept
    assert without_options(piece, ["--parallel"]) == [a for a in piece if a != "--parallel=2"]
    assert without_options(["heads", "--parallel", "3", "--only", "x"], ["--parallel"]) == ["heads", "--only", "x"]


def test_figure5_follows_the_deepest_sgd_model_with_intermediate_supervision(tmp_path):
    from cpm.experiments.figure5 import figure5_cell

    every = grid_cells(GridRequest("ablate-supervision", "none"), runs_root=tmp_path, results_root=tmp_path, only="*")
    assert figure5_cell(every) == "T6-is-seed0"
    assert figure5_cell([c for c in every if c.name.startswith(("T4", "T2"))]) == "T4-is-seed0"  # not the AdamW pair
    assert figure5_cell([c for c in every if "nois" in c.name]) is None
