"""The refinement gate of the intermediate-supervision study (experiments/gate/README.md): in each candidate
setting, does T = 3 with intermediate supervision beat T = 1, and does its last stage beat its stage 1?

    python -m cpm.experiments.gate [--results experiments/results] [--out experiments/results/gate.md]

Reads the committed cell summaries ``<results>/runs/ablate-supervision/gate-*/T{1,3}-is-seed*.json`` (and each
setting's ``baseline.json``, `cpm.experiments.baselines`) and writes one Markdown table with the decision rule
applied to the means over the seeds present. A setting with fewer than 2 seeds of both cells is "incomplete".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from cpm.errors import CPMError
from cpm.experiments.runs import is_cell_summary, read_summary
from cpm.io import write_text_atomic

SETTINGS = ("gate-ablation-k3", "gate-train", "gate-real-motion", "gate-occlusion")
MIN_GAIN_OVER_T1 = 5.0  # points of PCK@0.1, final stage of T = 3 over T = 1
MIN_REFINEMENT = 3.0  # points of PCK@0.1, last stage of T = 3 over its stage 1
SEEDS_NEEDED = 2


def _cells(folder: Path) -> dict[str, dict[int, dict]]:
    """{"T1-is": {seed: summary}, "T3-is": {...}} of a setting's folder."""
    found: dict[str, dict[int, dict]] = {}
    for path in sorted(folder.glob("T*-is-seed*.json")):
        if is_cell_summary(path):
            summary = read_summary(path)
            cell, _, seed = summary["cell"].rpartition("-seed")
            found.setdefault(cell, {})[int(seed)] = summary
    return found


def _pck(summary: dict, threshold: str, stage: int) -> float:
    return 100 * summary["summary"]["pck"][threshold][stage]


def _mean(values: list[float]) -> str:
    if not values:
        return "–"
    return f"{np.mean(values):.1f}" + (f" ± {np.std(values, ddof=1):.1f}" if len(values) > 1 else "")


def setting_row(name: str, folder: Path) -> tuple[list[str], str]:
    """One table row and the setting's verdict."""
    cells = _cells(folder)
    one, three = cells.get("T1-is", {}), cells.get("T3-is", {})
    paired = sorted(set(one) & set(three))
    gains = [_pck(three[s], "0.1", -1) - _pck(one[s], "0.1", -1) for s in paired]
    refinement = [_pck(three[s], "0.1", -1) - _pck(three[s], "0.1", 0) for s in sorted(three)]
    revisions = {summary["revision"] for runs in (one, three) for summary in runs.values()}
    if len(paired) < SEEDS_NEEDED:
        verdict = f"incomplete ({len(paired)} of {SEEDS_NEEDED} seeds)"
    else:
        passes = np.mean(gains) >= MIN_GAIN_OVER_T1 and np.mean(refinement) >= MIN_REFINEMENT
        verdict = "passes" if passes else "fails"
    baseline_path = folder / "baseline.json"
    baseline = json.loads(baseline_path.read_text(encoding="utf-8")) if baseline_path.is_file() else {}
    mean_pose = baseline.get("mean_pose", {}).get("pck@0.1")
    row = [name, _mean([_pck(s, "0.1", -1) for s in one.values()]),
           _mean([_pck(s, "0.1", 0) for s in three.values()]),
           _mean([_pck(s, "0.1", -1) for s in three.values()]),
           _mean([_pck(s, "0.2", -1) for s in one.values()]), _mean([_pck(s, "0.2", -1) for s in three.values()]),
           _mean(gains), _mean(refinement), "–" if mean_pose is None else f"{100 * mean_pose:.1f}",
           f"{len(one)} / {len(three)}", ", ".join(sorted(revisions)) or "–", verdict]
    return row, verdict


def gate_table(results: Path) -> str:
    root = results / "runs" / "ablate-supervision"
    header = ["setting", "T1 @0.1", "T3 stage 1 @0.1", "T3 stage 3 @0.1", "T1 @0.2", "T3 stage 3 @0.2",
              "T3 − T1 @0.1", "T3 stage 3 − stage 1 @0.1", "mean pose @0.1", "n (T1 / T3)", "revision", "verdict"]
    lines = ["# Refinement gate", "",
             "Final held-out PCK (%, mean ± std over seeds; differences paired by seed) of T = 1 and T = 3 with "
             "intermediate supervision in each candidate setting (`experiments/gate/`). Decision rule, fixed in "
             f"the configs before the runs: a setting passes when T3 − T1 ≥ {MIN_GAIN_OVER_T1:g} and T3's stage 3 "
             f"− stage 1 ≥ {MIN_REFINEMENT:g} points of PCK@0.1, as means over {SEEDS_NEEDED} seeds. Mean pose: "
             "the training crops' mean pose placed in every held-out crop (`python -m cpm.experiments.baselines`).",
             "", "| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 3)
                                                                 + ["---", "---"]) + "|"]
    verdicts = {}
    for name in SETTINGS:
        row, verdicts[name] = setting_row(name, root / name)
        lines.append("| " + " | ".join(row) + " |")
    passing = [name for name, verdict in verdicts.items() if verdict == "passes"]
    pending = [name for name, verdict in verdicts.items() if verdict.startswith("incomplete")]
    lines += ["", "Decision: " + (f"passing: {', '.join(passing)}." if passing else "no setting passes yet.")
              + (f" Incomplete: {', '.join(pending)}." if pending else ""), "",
              "Made by `python -m cpm.experiments.gate` from the committed cell summaries under "
              "`experiments/results/runs/ablate-supervision/gate-*/` (their revision is the column above); each "
              "cell trained at one thread in fp32, two cells side by side, on the machine its summary names."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpm.experiments.gate", description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("experiments/results"))
    parser.add_argument("--out", type=Path, help="default: <results>/ablate-supervision/gate.md")
    args = parser.parse_args(argv)
    try:
        text = gate_table(args.results)
    except (CPMError, ValueError, KeyError) as error:
        print(f"cpm.experiments.gate: error: {error}", file=sys.stderr)
        return 2
    out = args.out or args.results / "ablate-supervision" / "gate.md"
    write_text_atomic(out, text)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
