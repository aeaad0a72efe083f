"""The decision section of an intermediate-supervision study (cpm.experiments.decision), by hand."""

from __future__ import annotations

import math
import subprocess

import pytest
from scipy.stats import ttest_rel

from cpm.errors import ConfigError
from cpm.experiments.decision import code_differs, holm, paired_p, seeds_for_half_width, verdict
from cpm.experiments.grids import grid_margin, grid_seeds
from cpm.experiments.reports import ablate_supervision_report, load_runs
from cpm.experiments.stats import paired_difference
from tests.test_experiments import NOTE, pck_line, summary


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.04 (m = 3): 3 x 0.01 = 0.03, max(0.03, 2 x 0.02 = 0.04), max(0.04, 1 x 0.04) = 0.04
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.01, 0.012, 0.04]) == pytest.approx([0.03, 0.03, 0.04])  # 2 x 0.012 = 0.024 < 0.03: kept monotone
    assert holm([0.5, float("nan"), 0.6]) == pytest.approx([1.0, math.nan, 1.0], nan_ok=True)  # 2 x 0.5, capped


def test_paired_p_is_the_paired_t_test():
    a, b = [0.71, 0.69, 0.75, 0.70], [0.66, 0.68, 0.70, 0.64]
    assert paired_p([x - y for x, y in zip(a, b, strict=True)]) == pytest.approx(ttest_rel(a, b).pvalue)
    assert math.isnan(paired_p([1.0])) and paired_p([2.0, 2.0]) == 0.0


def test_seeds_for_a_half_width_by_hand():
    # sd of (1, 3) = sqrt(2); n = 2: 12.706 * 1.414 / 1.414 = 12.7 > 2; ... n = 6: 2.571 * 1.414 / 2.449 = 1.48 <= 2,
    # n = 5: 2.776 * 1.414 / 2.236 = 1.76 <= 2, n = 4: 3.182 * 1.414 / 2 = 2.25 > 2 -> 5
    assert seeds_for_half_width([1.0, 3.0], 2.0) == 5


@pytest.mark.parametrize(("d", "expected"), [
    ([3.0, 4.0, 5.0], "confirms"),  # [+1.52, +6.48]
    ([-0.5, 0.5, 0.2, -0.2], "refutes the paper (interval within"),  # mean 0, half-width 0.71
    ([-3.0, -4.0, -5.0], "refutes the paper (interval below 0)"),
    ([-5.0, 6.0, 1.0], "undecided; n ≈"),
])
def test_verdicts(d, expected):
    assert verdict(paired_difference(d, [0.0] * len(d)), d, 2.0).startswith(expected)


def known(revision: str) -> bool:
    return subprocess.run(["git", "cat-file", "-e", f"{revision}^{{commit}}"], capture_output=True).returncode == 0


@pytest.mark.skipif(not (known("d074173") and known("cf73876")), reason="a clone without this history")
def test_code_differs_reads_git():
    assert code_differs("d074173", "d074173") is False
    assert code_differs("d074173~1", "d074173") is True  # the body cues changed cpm/data
    assert code_differs("d074173", "cf73876") is False  # only the diagnosis record and script changed
    assert code_differs("0000000", "d074173") is None


def test_the_report_states_the_decision_of_a_config_with_a_margin(tmp_path):
    config = tmp_path / "study.toml"
    config.write_text("[grid]\nseeds = [0, 1, 2]\nmargin = 2.0\n")
    assert grid_margin(config) == 2.0 and grid_seeds(config) == (0, 1, 2)
    runs = []
    for seed, (on, off, one) in enumerate([(0.80, 0.75, 0.70), (0.82, 0.76, 0.71), (0.84, 0.80, 0.69)]):
        runs.append(summary(f"T1-is-seed{seed}", pck_line(1, 0.9, one)))
        runs.append(summary(f"T3-is-seed{seed}", pck_line(3, 0.9, on)))
        runs.append(summary(f"T3-nois-seed{seed}", pck_line(3, 0.9, off)))
    path = ablate_supervision_report(load_runs(runs), NOTE, tmp_path, "hand", extra_folder=tmp_path, margin=2.0,
                                     config_path="study.toml")
    rows = path.read_text().splitlines()
    # IS - last only @0.1: 5, 6, 4 points: mean 5, sd 1, t 4.303 -> [+2.52, +7.48]
    assert "| 3 | +5.00 [+2.52, +7.48] | 3 | confirms the paper (lower bound above 0) |" in rows
    # stage 3 - stage 1 of T3-is: pck_line puts stage 1 at a third of the last: 2/3 x (80, 82, 84) = 53.33, ...
    assert any(row.startswith("| T = 3, IS | +54.67 [") for row in rows)
    assert any(row.startswith("| T = 3 (IS) − T = 1 | +12.00 [") for row in rows)
    assert "Hygiene: every pair above ran on one revision of `cpm/models`, `cpm/data`, `cpm/targets`." in rows
    runs[2]["revision"], runs[1]["revision"] = "d074173~1", "d074173"  # T3-is-seed0 / T3-nois-seed0 differ
    rows = ablate_supervision_report(load_runs(runs), NOTE, tmp_path, "hand", extra_folder=tmp_path, margin=2.0,
                                     config_path="study.toml").read_text().splitlines()
    if known("d074173"):
        assert "- T3-nois-seed0 (`d074173~1`) and T1-is-seed0 (`abc123`): revisions git cannot compare" in rows
        assert "- T3-is-seed0 (`d074173`) and T3-nois-seed0 (`d074173~1`): differ in cpm/models, cpm/data, " \
               "cpm/targets" in rows
    plain = ablate_supervision_report(load_runs(runs), NOTE, tmp_path, "hand", extra_folder=tmp_path).read_text()
    assert "## Decision" not in plain


@pytest.mark.parametrize("table", ["[grid]\nmargin = 0\n", "[grid]\nmargin = true\n", "[grid]\nmargin = 'two'\n",
                                   "[grid]\nrule = 2\n"])
def test_a_bad_margin_fails_naming_the_file(tmp_path, table):
    config = tmp_path / "study.toml"
    config.write_text(table)
    with pytest.raises(ConfigError, match=r"study.toml: \[grid\]"):
        grid_margin(config)


def test_the_heads_decision_by_hand():
    from cpm.experiments.decision import heads_decision_section

    values = {  # final PCK@0.1 and @0.2 per seed
        "heatmap-sigma1-s8": ([0.80, 0.82, 0.84], [0.95, 0.95, 0.95]),
        "regression-grid4h-l1-s8": ([0.75, 0.76, 0.80], [0.945, 0.95, 0.955]),
        "heatmap-px4-s8": ([0.70, 0.74, 0.86], [0.90, 0.91, 0.92]),
        "regression-l1-s16": ([0.5, 0.5, 0.5], [0.6, 0.6, 0.6]),  # no heatmap-sigma1-s16: no stride-16 rows
    }
    runs = [summary(f"{cell}-seed{seed}", {}, scores={"pck": {"0.1": [a01[seed]], "0.2": [a02[seed]]}})
            for cell, (a01, a02) in values.items() for seed in range(3)]
    cells = load_runs(runs)
    lines = heads_decision_section(cells, 2.0, config="heads.toml",
                                   final_pck=lambda run, threshold: run.summary["pck"][threshold][-1])
    # sigma1 - grid4h @0.1: 5, 6, 4 -> +5.00 [+2.52, +7.48]; @0.2: 0.5, 0, -0.5 -> 0, sd 0.5, 4.303 x 0.5 / 1.732
    assert ("| 8 | heatmap-sigma1 − regression-grid4h-l1 | +5.00 [+2.52, +7.48] | heatmap better | "
            "+0.00 [-1.24, +1.24] | no larger than 2 points | 3 |") in lines
    # px4 - sigma1 @0.1: -10, -8, +2 (sd 6.43): undecided; @0.2: -5, -4, -3 -> -4.00 [-6.48, -1.52]: cells better
    row = next(line for line in lines if "heatmap-px4 − heatmap-sigma1" in line)
    assert "| undecided; n ≈ " in row and "| -4.00 [-6.48, -1.52] | cells better | 3 |" in row
    assert not any("| 16 |" in line for line in lines) and not any("rle-grid4h" in line for line in lines)
    assert "Hygiene: every pair above ran on one revision of `cpm/models`, `cpm/data`, `cpm/targets`." in lines
    runs[3]["revision"] = "0000000"  # regression-grid4h-l1-s8-seed0 on a revision git does not know
    lines = heads_decision_section(load_runs(runs), 2.0, config="heads.toml",
                                   final_pck=lambda run, threshold: run.summary["pck"][threshold][-1])
    assert "- heatmap-sigma1-s8-seed0 (`abc123`) and regression-grid4h-l1-s8-seed0 (`0000000`): revisions git cannot " \
           "compare" in lines
