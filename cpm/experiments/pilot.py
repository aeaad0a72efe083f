"""The length pilot of a grid file: its pilot cells trained at the file's length and at twice it.

``python -m cpm.experiments.pilot CONFIG --cells T3-is-seed0 T3-nois-seed0 [--target ablate-supervision]`` reads the
committed summaries of each pilot cell at the file's ``train.epochs`` and at twice it (the request of ``--set
train.epochs=2N``, a setting of its own) and prints, per cell, final-stage PCK@0.1 at both lengths and the change.
The length stands when every change is under ``--points`` (1 point of PCK@0.1, the rule of
``experiments/supervision.toml``); otherwise it doubles and the pilot repeats at the new length.

Exit status: 0 the length stands, 1 it doubles, 3 a pilot summary is still missing (``fill-grids.sh`` waits on it),
2 a bad request.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cpm.errors import CPMError


def pilot_changes(config: str, cells: list[str], *, target: str = "ablate-supervision",
                  results: Path = Path("experiments/results"), runs: Path = Path("runs")
                  ) -> dict[str, tuple[float, float] | None]:
    """{cell: (final-stage PCK@0.1 at the file's length, at twice it)}, None where a summary is missing."""
    from cpm.experiments.grids import GridRequest, grid_cells
    from cpm.experiments.runs import make_config, read_summary

    epochs = make_config({}, config).train.epochs
    requests = [GridRequest(target, "none", config),
                GridRequest(target, "none", config, sets={"train.epochs": 2 * epochs})]
    found: dict[str, list[float | None]] = {name: [] for name in cells}
    for request in requests:
        resolved = {cell.name: cell for cell in grid_cells(request, runs_root=runs, results_root=results)}
        for name in cells:
            if name not in resolved:
                raise CPMError(f"--cells: {name} is no cell of {target} with {config}")
            path = resolved[name].summary_path
            found[name].append(read_summary(path)["summary"]["pck"]["0.1"][-1] if path.is_file() else None)
    return {name: None if None in values else (values[0], values[1]) for name, values in found.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpm.experiments.pilot", description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--cells", nargs="+", required=True)
    parser.add_argument("--target", default="ablate-supervision")
    parser.add_argument("--points", type=float, default=1.0, help="the largest change that lets the length stand")
    parser.add_argument("--results", type=Path, default=Path("experiments/results"))
    args = parser.parse_args(argv)
    try:
        changes = pilot_changes(args.config, args.cells, target=args.target, results=args.results)
    except CPMError as error:
        print(f"python -m cpm.experiments.pilot: error: {error}", file=sys.stderr)
        return 2
    missing = [name for name, values in changes.items() if values is None]
    if missing:
        print(f"pilot: waiting for {', '.join(missing)}")
        return 3
    stands = True
    for name, (short, long) in changes.items():
        change = round(100 * (long - short), 6)  # PCK is a share of joints: a difference of exactly a point is one
        stands &= abs(change) < args.points
        print(f"pilot {name}: final-stage PCK@0.1 {100 * short:.2f} -> {100 * long:.2f} at twice the length "
              f"({change:+.2f} points)")
    print("pilot: the length stands" if stands else
          f"pilot: a change of {args.points:g} point or more: the length doubles (train.epochs in {args.config}) "
          "and the pilot repeats")
    return 0 if stands else 1


if __name__ == "__main__":
    raise SystemExit(main())
