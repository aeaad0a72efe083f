"""cpm.experiments.multiperson: the bottom-up against top-down cells' table and the collection of a run's scores."""

from __future__ import annotations

import json

import pytest

from cpm.errors import CPMError
from cpm.experiments.multiperson import collect, main, table


def cell(kind: str, seed: int, **aps: float) -> dict:
    settings = {name: {"AP": ap, "AP50": ap, "AP75": ap, "APM": ap, "AR": ap} for name, ap in aps.items()}
    return {"cell": f"{kind}-seed{seed}", "kind": kind, "seed": seed, "revision": "abc1234", "settings": settings}


def test_paired_differences_follow_the_seeds_and_the_rule():
    gt, greedy = "ground-truth boxes", "bottom-up, greedy matching"
    cells = [cell("td", 0, **{gt: 0.60}), cell("td", 1, **{gt: 0.62}), cell("td", 2, **{gt: 0.64}),
             cell("bu", 0, **{greedy: 0.40}), cell("bu", 1, **{greedy: 0.43}), cell("bu", 2, **{greedy: 0.44})]
    text = table(cells)
    assert "| top-down, ground-truth boxes | 3 | 62.0 ± 2.0 |" in text
    # differences -0.20, -0.19, -0.20: mean -19.67 points, sd 0.577 points, t(0.975, 2) = 4.303 -> half 1.43
    row = next(line for line in text.splitlines() if line.startswith("| bottom-up (greedy) − top-down, ground"))
    assert row == "| bottom-up (greedy) − top-down, ground-truth boxes | 3 | -19.67 [-21.10, -18.23] | lower |"
    assert "detector-like" not in text.split("| difference")[1]  # no pair: no row
    swapped = [dict(c, seed={0: 1, 1: 0, 2: 2}[c["seed"]]) if c["kind"] == "bu" else c for c in cells]
    assert "-19.67 [-21.10, -18.23]" not in table(swapped)  # pairs are by seed, not by order


def test_collect_refuses_a_folder_that_is_no_cell_or_no_finished_run(tmp_path, capsys):
    with pytest.raises(CPMError, match="not a multiperson cell"):
        collect(tmp_path / "scenes")
    (tmp_path / "td-seed0").mkdir()
    with pytest.raises(CPMError, match="coco-ap.json: no COCO AP of a finished run"):
        collect(tmp_path / "td-seed0")
    assert main(["--collect", str(tmp_path / "td-seed0"), "--out", str(tmp_path / "x.json")]) == 2
    assert not (tmp_path / "x.json").exists()
    assert main(["--results", str(tmp_path)]) == 2
    assert "no cell results" in capsys.readouterr().err


def test_the_table_file_is_written_from_the_cells(tmp_path):
    (tmp_path / "td-seed0.json").write_text(json.dumps(cell("td", 0, **{"ground-truth boxes": 0.5})))
    assert main(["--results", str(tmp_path)]) == 0
    assert "| top-down, ground-truth boxes | 1 | 50.0 |" in (tmp_path / "multiperson.md").read_text()
