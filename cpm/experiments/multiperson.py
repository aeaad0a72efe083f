"""Many people, bottom-up against top-down: the cells of ``experiments/multiperson/run.sh`` and their table.

``python -m cpm.experiments.multiperson --collect RUN_DIR --out FILE`` keeps what a finished run scored (its
``coco-ap.json``: COCO AP per setting; the bottom-up runs' median time per frame by people), its revision, machine
and training time, as a small JSON to commit. ``python -m cpm.experiments.multiperson`` reads every such file under
``experiments/results/multiperson/`` and writes ``multiperson.md`` there: AP per cell kind (mean ± std over seeds) and
the paired differences of the decision rule in ``run.sh`` (95 % t-intervals, `cpm.experiments.stats`).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cpm.errors import CPMError
from cpm.io import write_text_atomic

RESULTS = Path("experiments/results/multiperson")
KEYS = ("AP", "AP50", "AP75", "APM", "AR")
# (row label, cell kind, setting in coco-ap.json)
ROWS = (
    ("top-down, ground-truth boxes", "td", "ground-truth boxes"),
    ("top-down, ground-truth boxes, flip test", "td", "ground-truth boxes, flip test"),
    ("top-down, detector-like boxes", "td", "detector-like boxes"),
    ("top-down, detector-like boxes, flip test", "td", "detector-like boxes, flip test"),
    ("bottom-up, greedy matching", "bu", "bottom-up, greedy matching"),
    ("bottom-up, optimal matching", "bu", "bottom-up, optimal matching"),
    ("bottom-up without intermediate supervision, greedy", "bu-nois", "bottom-up, greedy matching"),
    ("mean pose in each ground-truth box", "td", "mean pose (no image), ground-truth boxes"),
)
# (label, (kind, setting) a, (kind, setting) b): the decision rule's differences, a - b
DIFFERENCES = (
    ("bottom-up (greedy) − top-down, ground-truth boxes", ("bu", "bottom-up, greedy matching"),
     ("td", "ground-truth boxes")),
    ("bottom-up (greedy) − top-down, detector-like boxes", ("bu", "bottom-up, greedy matching"),
     ("td", "detector-like boxes")),
    ("optimal − greedy matching", ("bu", "bottom-up, optimal matching"), ("bu", "bottom-up, greedy matching")),
    ("intermediate supervision on − off (greedy)", ("bu", "bottom-up, greedy matching"),
     ("bu-nois", "bottom-up, greedy matching")),
)
CELL = re.compile(r"(?P<kind>td|bu|bu-nois)-seed(?P<seed>\d+)")


def collect(run_dir: str | Path) -> dict[str, Any]:
    """What a finished cell keeps: {"cell", "kind", "seed", "revision", "machine", "train_seconds", "images",
    "settings": {setting: {AP, AP50, AP75, APM, AR}}, "times": {setting: {people: median ms}}} (bottom-up)."""
    from cpm.experiments.runs import machine
    from cpm.io import read_jsonl
    from cpm.runtime.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    match = CELL.fullmatch(run_dir.name)
    if match is None:
        raise CPMError(f"{run_dir}: not a multiperson cell (td-seedS, bu-seedS or bu-nois-seedS)")
    path = run_dir / "coco-ap.json"
    try:
        scores = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CPMError(f"{path}: no COCO AP of a finished run ({error})") from None
    checkpoint = load_checkpoint(run_dir / "best.pt")
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    config = checkpoint["config"]
    settings = {name: {key: round(float(values[key]), 6) for key in KEYS if key in values}
                for name, values in scores["settings"].items()}
    times = {}
    for name, rows in scores.get("times", {}).items():
        people = sorted({row["people"] for row in rows})
        times[name] = {str(p): round(float(np.median([r["network_ms"] + r["grouping_ms"] for r in rows
                                                       if r["people"] == p])), 2) for p in people}
    return {"cell": run_dir.name, "kind": match["kind"], "seed": int(match["seed"]),
            "revision": checkpoint.get("git_revision", "unknown"), "machine": machine(),
            "train_seconds": round(sum(row.get("train_seconds", 0.0) for row in metrics), 1),
            "images": int(metrics[-1]["step"]) * int(config["train"]["batch_size"]) if metrics else 0,
            "settings": settings, "times": times}


def read_cells(folder: Path = RESULTS) -> list[dict[str, Any]]:
    cells = []
    for path in sorted(folder.glob("*-seed*.json")):
        try:
            cells.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as error:
            raise CPMError(f"{path}: not a readable cell result ({error})") from None
    return cells


def table(cells: list[dict[str, Any]]) -> str:
    from cpm.experiments.stats import format_difference, paired_difference

    def values(kind: str, setting: str) -> dict[int, float]:
        return {c["seed"]: c["settings"][setting]["AP"] for c in cells
                if c["kind"] == kind and setting in c["settings"]}

    lines = ["| model | seeds | AP | AP50 | AP75 | AR |", "|---|---:|---:|---:|---:|---:|"]
    for label, kind, setting in ROWS:
        found = [c["settings"][setting] for c in cells if c["kind"] == kind and setting in c["settings"]]
        if not found:
            continue
        cols = []
        for key in ("AP", "AP50", "AP75", "AR"):
            v = 100 * np.array([f[key] for f in found])
            cols.append(f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else f"{v.mean():.1f}")
        lines.append(f"| {label} | {len(found)} | " + " | ".join(cols) + " |")
    lines += ["", "| difference in AP (paired by seed) | n | mean [95 % t-interval] | reading |", "|---|---:|---:|---|"]
    for label, a, b in DIFFERENCES:
        first, second = values(*a), values(*b)
        seeds = sorted(set(first) & set(second))
        if not seeds:
            continue
        difference = paired_difference([first[s] for s in seeds], [second[s] for s in seeds])
        reading = ("higher" if difference.low > 0 else "lower") if difference.excludes_zero else (
            "no difference detected" if difference.n >= 2 else "one seed: no interval")
        lines.append(f"| {label} | {difference.n} | {format_difference(difference)} | {reading} |")
    revisions = sorted({c["revision"] for c in cells})
    lines += ["", f"Cells: {', '.join(sorted(c['cell'] for c in cells))}; revision(s) {', '.join(revisions)}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpm.experiments.multiperson", description=__doc__.splitlines()[0])
    parser.add_argument("--collect", metavar="RUN_DIR", help="keep a finished cell's scores (with --out)")
    parser.add_argument("--out", type=Path, help="--collect: the JSON to write; else the table (default: "
                                                 f"{RESULTS}/multiperson.md)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the cells' JSON files")
    args = parser.parse_args(argv)
    try:
        if args.collect:
            if args.out is None:
                raise CPMError("--collect needs --out FILE")
            write_text_atomic(args.out, json.dumps(collect(args.collect), indent=1, sort_keys=True) + "\n")
            print(f"wrote {args.out}")
            return 0
        cells = read_cells(args.results)
        if not cells:
            raise CPMError(f"{args.results}: no cell results (sh experiments/multiperson/run.sh SEED)")
        out = args.out or args.results / "multiperson.md"
        text = ("# Many people: bottom-up against top-down\n\nCOCO keypoint AP (%) on the 880 held-out people of the "
                "depth scenes, cells of `experiments/multiperson/run.sh` (its header: cells, training compute, "
                "decision rule); made by `python -m cpm.experiments.multiperson`.\n\n" + table(cells) + "\n")
        write_text_atomic(out, text)
        print(text)
    except CPMError as error:
        print(f"python -m cpm.experiments.multiperson: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
