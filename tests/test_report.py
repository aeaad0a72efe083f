import json

import cv2
import numpy as np
import pytest
from matplotlib.colors import to_rgb

from cpm.config import load_config
from cpm.errors import CPMError
from cpm.evaluation.report import flatten_metrics, format_stage_table, stage_results, write_report
from cpm.training.loop import train
from tests.helpers import tiny_overrides


def test_stage_table_lists_every_stage_and_threshold():
    metrics = {"val/pck@0.1/stage1": 0.5, "val/pck@0.1/stage2": 0.75, "val/pck@0.2/stage1": 0.8,
               "val/pck@0.2/stage2": 0.9, "val/loss/stage1": 1.0}
    assert format_stage_table(stage_results(metrics)).splitlines() == [
        "| stage | PCK@0.1 | PCK@0.2 |", "|---:|---:|---:|", "| 1 | 50.00 | 80.00 |", "| 2 | 75.00 | 90.00 |"]


def test_stage_results_inverts_flatten_metrics():
    results = {"pck": {0.05: [0.1, 0.2, 0.3], 0.2: [0.5, 0.6, 0.7]}, "loss": [3.0, 2.0, 1.0]}
    assert stage_results(flatten_metrics(results)) == results


def test_report_of_a_run_writes_markdown_and_plot(tmp_path):
    train(load_config(None, tiny_overrides(tmp_path, **{"train.epochs": 2})), progress=False, log=lambda *a: None)
    run_dir = tmp_path / "runs" / "tiny"
    markdown = write_report(run_dir, tmp_path / "tiny_report", command="cpm train tiny")
    text = markdown.read_text()
    final = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert f"| 4 | {100 * final['val/pck@0.1/stage4']:.2f} | {100 * final['val/pck@0.2/stage4']:.2f} |" in text
    assert "`cpm train tiny`" in text and "revision" in text and "![curves](tiny_report.png)" in text
    named = write_report(run_dir, tmp_path / "named.md")  # --out NAME.md: NAME.md beside the NAME.png it shows
    assert named.name == "named.md" and "![curves](named.png)" in named.read_text()
    assert (tmp_path / "named.png").is_file()
    plot = cv2.imread(str(tmp_path / "tiny_report.png"))[..., ::-1]  # RGB
    assert plot.shape == (440, 1100, 3)  # figsize (10, 4) at 110 dpi
    half = plot.shape[1] // 2
    for t in range(5):  # stage t + 1 is drawn in matplotlib's colour C<t>, in both panels (PCK left, loss right)
        rgb = np.array([round(255 * v) for v in to_rgb(f"C{t}")])
        drawn = np.abs(plot.astype(int) - rgb).max(axis=-1) <= 2
        if t < 4:
            assert drawn[:, :half].sum() > 50 and drawn[:, half:].sum() > 50, f"stage {t + 1}"
        else:
            assert not drawn.any()  # a 4-stage run: no fifth series


def test_report_of_a_folder_without_metrics_names_it(tmp_path):
    with pytest.raises(CPMError, match="metrics.jsonl: not found"):
        write_report(tmp_path, tmp_path / "out")


def test_cpm_report_command_writes_the_table_of_a_run(tmp_path, capsys):
    from cpm.cli import main

    train(load_config(None, tiny_overrides(tmp_path)), progress=False, log=lambda *a: None)
    out = tmp_path / "report"
    assert main(["report", str(tmp_path / "runs" / "tiny"), "--out", str(out), "--command", "make train"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {out}.md"
    assert "`make train`" in out.with_suffix(".md").read_text() and out.with_suffix(".png").is_file()
