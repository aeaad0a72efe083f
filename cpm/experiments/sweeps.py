"""One setting swept over several grid requests: ``python -m cpm.experiments TARGET --sweep train.lr --only GLOB``.

A sweep is a set of ordinary grid requests that differ in one ``--set`` value (a learning rate, a length): each
request trained its cells into its own setting folder. This module reads every committed cell summary of the target
(``experiments/results/runs/<target>/*/``), keeps the cells that match the glob, groups them by cell name and by the
value of the swept key, checks that within a cell nothing else differs (machine keys aside), and writes one table:
final-stage PCK@0.2 / PCK@0.1 per value, and the value that scores best at PCK@0.2, flagged when it lies at an edge
of the values tried (then the sweep did not bracket the best).
"""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from cpm.errors import CPMError
from cpm.experiments.runs import MACHINE_KEYS, is_cell_summary, read_summary
from cpm.io import write_text_atomic


def _flat(config: dict[str, Any]) -> dict[str, Any]:
    """A saved config as {dotted key: value}, every key present (a summary written before a key existed reads as
    that key's default)."""
    from cpm.config import config_from_dict

    full = config_from_dict(config).to_dict()
    return {f"{section}.{key}": value for section, values in full.items() if isinstance(values, dict)
            for key, value in values.items()}


def _final(summary: dict, threshold: str) -> float:
    return 100 * summary["summary"]["pck"][threshold][-1]


def sweep_table(results_root: Path, target: str, key: str, *, only: str = "*", config: str | None = None,
                where: dict[str, Any] | None = None, command: str = "") -> Path:
    """Write ``<results_root>/<target>/<target>-sweep-<key>[-<config stem>].md``; returns its path. ``config``
    keeps the settings of that config (folders named after its stem), ``where`` ({dotted key: value}, the
    ``--set`` values) the runs whose config has those values. Two runs of one cell with the same value of ``key``
    are an ambiguous sweep: `CPMError` naming both settings (narrow it with ``where``). A key that moved
    (`cpm.config.MOVED_KEYS`) is read under its new name."""
    from cpm.config import MOVED_KEYS
    from cpm.runtime.checkpoint import git_revision

    key = MOVED_KEYS.get(key, key)
    where = {MOVED_KEYS.get(k, k): value for k, value in (where or {}).items()}
    stem = Path(config).stem if config else None
    groups = _swept_cells(results_root, target, key, only=only, stem=stem, where=where)
    lines = [f"# {target}: {key} swept", ""]
    lines.append(f"Command: `{command}` (revision {git_revision()}). Each column is one grid request; its cells' "
                 "summaries are in `experiments/results/runs/" + target + "/<setting>/`.")
    values = sorted({v for cells in groups.values() for v in cells}, key=lambda v: (str(type(v)), v))
    lines += ["", "| cell | " + " | ".join(f"{key} = {v}" for v in values) + " | best (PCK@0.2) |",
              "|---|" + "---:|" * len(values) + "---|"]
    notes = []
    for cell, by_value in sorted(groups.items()):
        row, note = _sweep_row(cell, by_value, values, key)
        lines.append(row)
        notes += [note] if note else []
    images = sorted({s["config"]["train"]["epochs"] * s["config"]["data"]["train_samples"]
                     for by_value in groups.values() for s, _ in by_value.values()})
    settings = sorted({folder for by_value in groups.values() for _, folder in by_value.values()})
    lines += ["", "Final-stage PCK@0.2 / PCK@0.1 (%) on the held-out split, one seed each: a sweep picks a value, "
              "it does not compare the cells (the grid does, with seeds and intervals).",
              f"Training images per run: {', '.join(f'{n:,}' for n in images)}. Settings: "
              + ", ".join(f"`{s}`" for s in settings) + "."]
    lines += [""] + notes if notes else []
    out = results_root / target / f"{target}-sweep-{key}{f'-{stem}' if stem else ''}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, "\n".join(lines) + "\n")
    return out


def _swept_cells(results_root: Path, target: str, key: str, *, only: str, stem: str | None,
                 where: dict[str, Any]) -> dict[str, dict[Any, tuple[dict, str]]]:
    """{cell: {value of ``key``: (its summary, its setting folder)}} of the committed summaries of ``target`` whose
    cell matches ``only``, in the settings of the config ``stem`` (all when None), with the ``where`` values."""
    folders = sorted(p for p in (results_root / "runs" / target).glob("*") if p.is_dir()
                     and (stem is None or p.name == stem or p.name.startswith((f"{stem}+", f"{stem}-"))))
    groups: dict[str, dict[Any, tuple[dict, str]]] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.json")):
            if not is_cell_summary(path):
                continue
            summary = read_summary(path)
            if not fnmatch(summary["cell"], only) or not summary.get("summary"):
                continue
            flat = _flat(summary["config"])
            if key not in flat:
                raise CPMError(f"--sweep: {key!r} is not a config key (e.g. train.lr)")
            if any(flat.get(k) != v for k, v in where.items()):
                continue
            value = flat[key]
            value = tuple(value) if isinstance(value, list) else value
            cell = groups.setdefault(summary["cell"], {})
            if value in cell:
                raise CPMError(f"--sweep: {summary['cell']} has two runs with {key} = {value} (settings "
                               f"{cell[value][1]} and {folder.name}); keep one with --set KEY=VALUE")
            cell[value] = (summary, folder.name)
    if not groups:
        raise CPMError(f"{results_root / 'runs' / target}: no cell summaries match {only!r}")
    return groups


def _sweep_row(cell: str, by_value: dict[Any, tuple[dict, str]], values: list, key: str) -> tuple[str, str | None]:
    """A cell's row (PCK@0.2 / @0.1 at each value, the best value) and a note when its runs differ in more than
    ``key``."""
    configs = {v: {k: x for k, x in _flat(s["config"]).items() if k != key and k not in MACHINE_KEYS}
               for v, (s, _) in by_value.items()}
    first = next(iter(configs.values()))
    differing = sorted({k for c in configs.values() for k in set(c) | set(first) if c.get(k) != first.get(k)})
    note = f"{cell}: the runs also differ in {', '.join(differing)}." if differing else None
    scores = {v: _final(s, "0.2") for v, (s, _) in by_value.items()}
    best = max(scores, key=scores.get)
    tried = sorted(scores)
    edge = " (edge of the values tried)" if len(tried) > 2 and best in (tried[0], tried[-1]) else ""
    row = [f"{scores[v]:.1f} / {_final(by_value[v][0], '0.1'):.1f}" if v in by_value else "" for v in values]
    return f"| {cell} | " + " | ".join(row) + f" | {best}{edge} |", note
