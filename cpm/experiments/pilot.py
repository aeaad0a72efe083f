"""The length pilot of a grid file: its pilot cells trained at the file's length and at twice it.

``python -m cpm.experiments.pilot CONFIG --cells T3-is-seed0 T3-nois-seed0 [--target ablate-supervision]`` reads the
committed summaries of each pilot cell at the file's ``train.epochs`` and at twice it (the request of ``--set
train.epochs=2N``, a setting of its own) and prints, per cell, final-stage PCK@0.1 at both lengths and the change.
The length stands when every change is under ``--points`` (1 point of PCK@0.1, the rule of
``experiments/supervision.toml``); otherwise it doubles and the pilot repeats at the new length.

``--plot FILE.png`` draws the pilot's curves: each cell's final-stage held-out PCK@0.1 after every epoch against
the training images, at the file's length (solid) and at twice it (dashed), from the summaries' per-epoch metrics.
A pilot of the file as it was before a change is read from that version of the file under the same name, e.g.
``git show REV:experiments/supervision.toml > old/supervision.toml`` then ``... pilot old/supervision.toml``: the
cells are named by the setting (the file's stem) and their configs, not by the file's path.

Exit status: 0 the length stands, 1 it doubles, 3 a pilot summary is still missing (``fill-grids.sh`` waits on it),
2 a bad request.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cpm.errors import CPMError


def pilot_summaries(config: str, cells: list[str], *, target: str = "ablate-supervision",
                     results: Path = Path("experiments/results"), runs: Path = Path("runs")
                     ) -> dict[str, list[dict | None]]:
    """{cell: [summary at the file's length, summary at twice it]}, None where a summary is missing."""
    from cpm.experiments.grids import GridRequest, grid_cells
    from cpm.experiments.runs import make_config, read_summary

    epochs = make_config({}, config).train.epochs
    requests = [GridRequest(target, "none", config),
                GridRequest(target, "none", config, sets={"train.epochs": 2 * epochs})]
    found: dict[str, list[dict | None]] = {name: [] for name in cells}
    for request in requests:
        resolved = {cell.name: cell for cell in grid_cells(request, runs_root=runs, results_root=results)}
        for name in cells:
            if name not in resolved:
                raise CPMError(f"--cells: {name} is no cell of {target} with {config}")
            path = resolved[name].summary_path
            found[name].append(read_summary(path) if path.is_file() else None)
    return found


def pilot_changes(config: str, cells: list[str], *, target: str = "ablate-supervision",
                  results: Path = Path("experiments/results"), runs: Path = Path("runs")
                  ) -> dict[str, tuple[float, float] | None]:
    """{cell: (final-stage PCK@0.1 at the file's length, at twice it)}, None where a summary is missing."""
    return _changes(pilot_summaries(config, cells, target=target, results=results, runs=runs))


def _changes(found: dict[str, list[dict | None]]) -> dict[str, tuple[float, float] | None]:
    """`pilot_summaries`' pairs -> their final-stage PCK@0.1 pairs (None where one is missing)."""
    return {name: None if None in pair else tuple(s["summary"]["pck"]["0.1"][-1] for s in pair)
            for name, pair in found.items()}


def pilot_curve(summary: dict) -> tuple[list[int], list[float]]:
    """(training images after each epoch, final-stage held-out PCK@0.1 in %) from a summary's per-epoch metrics."""
    batch = summary["config"]["train"]["batch_size"]
    rows = [row for row in summary.get("metrics", []) if "step" in row]
    stage = max((int(key.rsplit("stage", 1)[1]) for row in rows for key in row if key.startswith("val/pck@0.1/stage")),
                default=0)
    rows = [row for row in rows if f"val/pck@0.1/stage{stage}" in row]
    return [row["step"] * batch for row in rows], [100 * row[f"val/pck@0.1/stage{stage}"] for row in rows]


def plot_pilot(found: dict[str, list[dict | None]], path: Path, title: str) -> None:
    """Each cell's curve at the file's length (solid) and at twice it (dashed), one colour per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    for index, (name, pair) in enumerate(found.items()):
        for summary, style, label in zip(pair, ("-", "--"), ("length", "twice the length"), strict=True):
            if summary is None:
                continue
            images, pck = pilot_curve(summary)
            epochs = summary["config"]["train"]["epochs"]
            axes.plot(images, pck, style, color=f"C{index}", label=f"{name}, {epochs} epochs ({label})")
    axes.set(xlabel="training images", ylabel="final-stage held-out PCK@0.1 (%)", title=title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpm.experiments.pilot", description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--cells", nargs="+", required=True)
    parser.add_argument("--target", default="ablate-supervision")
    parser.add_argument("--points", type=float, default=1.0, help="the largest change that lets the length stand")
    parser.add_argument("--results", type=Path, default=Path("experiments/results"))
    parser.add_argument("--plot", type=Path, help="write the pilot's curves to this PNG")
    args = parser.parse_args(argv)
    try:
        found = pilot_summaries(args.config, args.cells, target=args.target, results=args.results)
    except CPMError as error:
        print(f"python -m cpm.experiments.pilot: error: {error}", file=sys.stderr)
        return 2
    if args.plot and any(s is not None for pair in found.values() for s in pair):
        plot_pilot(found, args.plot, f"length pilot of {Path(args.config).name}")
        print(f"pilot: curves in {args.plot}")
    changes = _changes(found)
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
