"""python -m cpm.experiments.pilot: a grid file's length stands when its pilot cells change by under a point."""

from __future__ import annotations

import json

from cpm.experiments.grids import GridRequest, grid_cells
from cpm.experiments.pilot import main


def write_summary(results, config, epochs_set, cell, pck01):
    sets = {"train.epochs": epochs_set} if epochs_set else {}
    (path,) = [c.summary_path for c in grid_cells(GridRequest("ablate-supervision", "none", str(config), sets=sets),
                                                   runs_root=results, results_root=results, only=cell)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"summary": {"pck": {"0.1": [0.1, pck01]}}}))


def test_the_length_stands_doubles_or_waits(tmp_path, capsys):
    config = tmp_path / "study.toml"
    config.write_text("[train]\nepochs = 5\n")
    results = tmp_path / "results"
    argv = [str(config), "--cells", "T3-is-seed0", "T3-nois-seed0", "--results", str(results)]
    assert main(argv) == 3  # nothing trained yet
    write_summary(results, config, None, "T3-is-seed0", 0.700)
    write_summary(results, config, 10, "T3-is-seed0", 0.709)
    write_summary(results, config, None, "T3-nois-seed0", 0.690)
    assert main(argv) == 3 and "waiting for T3-nois-seed0" in capsys.readouterr().out
    write_summary(results, config, 10, "T3-nois-seed0", 0.695)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "70.00 -> 70.90 at twice the length (+0.90 points)" in out and "the length stands" in out
    write_summary(results, config, 10, "T3-nois-seed0", 0.680)  # -1.0 point: not under 1
    assert main(argv) == 1 and "the length doubles" in capsys.readouterr().out
    assert main([str(config), "--cells", "T9-is-seed0", "--results", str(results)]) == 2
    assert "T9-is-seed0 is no cell" in capsys.readouterr().err


def test_the_curve_reads_the_final_stage_per_epoch_and_the_plot_is_written(tmp_path, capsys):
    from cpm.experiments.pilot import pilot_curve

    metrics = [{"step": 250 * epoch, "val/pck@0.1/stage1": 0.5, "val/pck@0.1/stage2": 0.25 * epoch,
                "val/pck@0.1/stage3": 0.1 * epoch} for epoch in (1, 2, 3)]
    summary = {"config": {"train": {"batch_size": 16, "epochs": 3}}, "metrics": [{"note": "no step"}, *metrics],
               "summary": {"pck": {"0.1": [0.1, 0.3]}}}
    images, pck = pilot_curve(summary)
    assert images == [4000, 8000, 12000]  # steps x batch
    assert [round(value, 6) for value in pck] == [10.0, 20.0, 30.0]  # the last stage, in %, not stage 1 or 2

    config = tmp_path / "study.toml"
    config.write_text("[train]\nepochs = 5\n")
    results = tmp_path / "results"
    for epochs_set in (None, 10):
        sets = {"train.epochs": epochs_set} if epochs_set else {}
        (path,) = [c.summary_path for c in grid_cells(GridRequest("ablate-supervision", "none", str(config), sets=sets),
                                                       runs_root=results, results_root=results, only="T3-is-seed0")]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary))
    plot = tmp_path / "pilot.png"
    argv = [str(config), "--cells", "T3-is-seed0", "--results", str(results), "--plot", str(plot)]
    assert main(argv) == 0 and plot.stat().st_size > 10_000
    assert f"curves in {plot}" in capsys.readouterr().out


def test_a_pilot_run_is_found_by_its_hash_once_the_file_doubles(tmp_path, capsys):
    """The run at twice the length (written under the ``--set`` folder ``study+HASH``) is the doubled file's own cell:
    the next pilot reads it from there, with no copy under ``study/``; a folder of another stem is not searched."""
    from cpm.experiments.runs import kept_run

    config = tmp_path / "study.toml"
    config.write_text("[train]\nepochs = 5\n")
    results = tmp_path / "results"
    write_summary(results, config, 10, "T3-is-seed0", 0.709)
    write_summary(results, config, 10, "T3-nois-seed0", 0.695)
    written = sorted(path.relative_to(results) for path in results.rglob("*.json"))
    assert [path.parts[-2][:6] for path in written] == ["study+", "study+"]

    config.write_text("[train]\nepochs = 10\n")  # the pilot doubled the length
    cells = {c.name: c for c in grid_cells(GridRequest("ablate-supervision", "none", str(config)),
                                           runs_root=results, results_root=results, only="T3-*-seed0")}
    assert cells["T3-is-seed0"].summary_path == results / written[0]  # found in the sibling folder
    write_summary(results, config, 20, "T3-is-seed0", 0.715)
    write_summary(results, config, 20, "T3-nois-seed0", 0.700)
    argv = [str(config), "--cells", "T3-is-seed0", "T3-nois-seed0", "--results", str(results)]
    assert main(argv) == 0 and "70.90 -> 71.50" in capsys.readouterr().out

    own = results / "ablate-supervision" / "study" / "T1-seed0-abc.json"
    other = results / "ablate-supervision" / "study-sgd" / "T1-seed0-abc.json"
    other.parent.mkdir(parents=True)
    other.write_text("{}")
    assert kept_run(own) == own  # study-sgd is another file's setting, not this one's
    sibling = results / "ablate-supervision" / "study+123456" / "T1-seed0-abc.json"
    sibling.parent.mkdir(parents=True)
    sibling.write_text("{}")
    assert kept_run(own) == sibling
    own.parent.mkdir(parents=True, exist_ok=True)
    own.write_text("{}")
    assert kept_run(own) == own  # a folder's own copy first


def test_a_run_cut_short_under_the_pilots_folder_resumes_there(tmp_path):
    """A pilot cell still training under ``study+HASH`` when the file doubles is resumed in its own run directory,
    not started again under ``study``."""
    config = tmp_path / "study.toml"
    config.write_text("[train]\nepochs = 5\n")
    runs, results = tmp_path / "runs", tmp_path / "results"
    (long,) = grid_cells(GridRequest("ablate-supervision", "none", str(config), sets={"train.epochs": 10}),
                         runs_root=runs, results_root=results, only="T3-is-seed0")
    long.run_dir.mkdir(parents=True)  # started, no summary yet
    config.write_text("[train]\nepochs = 10\n")
    (cell,) = grid_cells(GridRequest("ablate-supervision", "none", str(config)), runs_root=runs,
                         results_root=results, only="T3-is-seed0")
    assert cell.hash == long.hash and cell.run_dir == long.run_dir and "study+" in cell.run_dir.parent.name
    assert cell.config.train.name == long.run_dir.name and cell.config.train.runs_dir == str(long.run_dir.parent)
    assert cell.summary_path.parent.name == "study" and not cell.summary_path.exists()
