"""Tables and plots of the experiment grids (`cpm.experiments.grids`) from their run directories, without training.

``runs/<target>/<cell>-seed<s>/`` holds ``metrics.jsonl``, ``steps.jsonl``, ``summary.json`` (and for
compare-decoders ``decoders.json``); ``runs/<target>/experiment.json`` the budget, command and revision. Each
table cell is the mean ± sample standard deviation (ddof = 1) over the seeds of a grid cell, in percent for
PCK; ``n`` is the number of seeds. Writes ``<out>/<target>.md`` and ``<out>/<target>-*.png``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cpm.errors import CPMError
from cpm.evaluation.report import read_metrics

_SEEDED = re.compile(r"^(?P<cell>.+)-seed(?P<seed>\d+)$")


@dataclass
class RunRecord:
    name: str
    cell: str  # the name without -seed<s>
    seed: int
    final: dict  # the last line of metrics.jsonl
    steps: list[dict] = field(default_factory=list)  # steps.jsonl
    summary: dict | None = None
    decoders: dict | None = None


def _json_file(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CPMError(f"{path}: not JSON ({error.msg})") from None


def load_runs(folder: Path) -> dict[str, list[RunRecord]]:
    """{cell: its runs, one per seed} for every ``<cell>-seed<s>`` folder with a ``metrics.jsonl``."""
    cells: dict[str, list[RunRecord]] = {}
    for run_dir in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        match = _SEEDED.match(run_dir.name)
        if not match or not (run_dir / "metrics.jsonl").is_file():
            continue
        steps_path = run_dir / "steps.jsonl"
        steps = [json.loads(line) for line in steps_path.read_text(encoding="utf-8").splitlines() if line.strip()] \
            if steps_path.is_file() else []
        record = RunRecord(run_dir.name, match["cell"], int(match["seed"]), read_metrics(run_dir)[-1], steps,
                           _json_file(run_dir / "summary.json"), _json_file(run_dir / "decoders.json"))
        cells.setdefault(record.cell, []).append(record)
    return cells


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation (0 for one value), n) of the finite values."""
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return float("nan"), float("nan"), 0
    return float(np.mean(finite)), float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0, len(finite)


def format_mean_std(values: list[float], scale: float = 100.0) -> str:
    """"82.31 ± 1.20" (scaled, two decimals), one value without ±, "–" for none."""
    mean, std, n = mean_std(values)
    if n == 0:
        return "–"
    return f"{scale * mean:.2f}" if n == 1 else f"{scale * mean:.2f} ± {scale * std:.2f}"


def final_pck(run: RunRecord, threshold: str, stage: int | None = None) -> float:
    """Held-out PCK@threshold of ``stage`` (default: the last) after the final epoch."""
    stages = sorted(int(k.rsplit("stage", 1)[1]) for k in run.final if k.startswith(f"val/pck@{threshold}/stage"))
    if not stages:
        return float("nan")
    return run.final.get(f"val/pck@{threshold}/stage{stage or stages[-1]}", float("nan"))


def _header(folder: Path, title: str) -> tuple[list[str], list[str]]:
    """(lines under the title, closing lines with command and revision) from ``experiment.json``."""
    from cpm.training.checkpoint import git_revision

    note = _json_file(folder / "experiment.json") or {}
    overrides = ", ".join(f"{k}={v}" for k, v in note.get("overrides", {}).items())
    top = [f"# {title}", "",
           f"Budget: {note.get('description', 'unknown')}" + (f" (`{overrides}`)." if overrides else "."),
           "Synthetic depth frames; held-out PCK is torso-normalised, in %. Each cell: mean ± sample standard "
           "deviation over n seeds (one seed: the value alone).", ""]
    bottom = ["", f"Runs produced by `{note.get('command') or 'unknown'}` at revision "
              f"`{note.get('revision', 'unknown')}`, one folder per run in `{folder}`; tables and plots rebuilt "
              f"by `make report` (`python -m cpm.experiments report`) at revision `{git_revision()}`.", ""]
    return top, bottom


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _legend(ax, **kwargs) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _mean_curve(runs: list[RunRecord], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean over seeds of ``key`` in steps.jsonl, on the steps all seeds logged."""
    series = [{line["step"]: line[key] for line in run.steps if key in line} for run in runs]
    common = sorted(set.intersection(*(set(s) for s in series))) if series else []
    return np.array(common), np.array([np.mean([s[x] for s in series]) for x in common])


# ------------------------------------------------------------------------------------ ablate-supervision

REGIMES = {"T6-is": "joint, intermediate supervision", "T6-nois": "joint, last stage supervised only",
           "stagewise6": "stage-wise (stage t trained with 1..t-1 frozen)",
           "stagewise-joint": "stage-wise, then joint fine-tuning"}


def ablate_supervision_report(folder: Path, out: Path) -> Path:
    cells = load_runs(folder)

    def runs_of(stages: int, supervised: bool) -> list[RunRecord]:
        return cells.get(f"T{stages}-{'is' if supervised or stages == 1 else 'nois'}", [])

    top, bottom = _header(folder, "ablate-supervision: intermediate supervision and the number of stages")
    lines = top + ["Final held-out PCK of the last stage, with (IS) and without (last stage only) intermediate "
                   "supervision; with one stage the two are the same runs.", "",
                   "| stages | PCK@0.2 IS | PCK@0.2 last only | PCK@0.1 IS | PCK@0.1 last only | n |",
                   "|---:|---:|---:|---:|---:|---:|"]
    for stages in range(1, 7):
        on, off = runs_of(stages, True), runs_of(stages, False)
        if not on and not off:
            continue
        values = [format_mean_std([final_pck(r, a) for r in group]) for a in ("0.2", "0.1") for group in (on, off)]
        lines.append(f"| {stages} | " + " | ".join(values) + f" | {len(on)} / {len(off)} |")
    lines += _receptive_field_note(folder)
    regimes = {label: cells.get(cell, []) for cell, label in REGIMES.items()}
    lines += ["", "Six stages, the paper's training regimes (final PCK of the last stage):", "",
              "| regime | PCK@0.2 | PCK@0.1 | n |", "|---|---:|---:|---:|"]
    lines += [f"| {label} | {format_mean_std([final_pck(r, '0.2') for r in runs])} | "
              f"{format_mean_std([final_pck(r, '0.1') for r in runs])} | {len(runs)} |"
              for label, runs in regimes.items() if runs]
    lines += ["", "PCK@0.2 of every stage of the six-stage models:", "",
              "| stage | " + " | ".join(label for label, runs in regimes.items() if runs) + " |",
              "|---:|" + "---:|" * sum(bool(runs) for runs in regimes.values())]
    for stage in range(1, 7):
        lines.append(f"| {stage} | " + " | ".join(format_mean_std([final_pck(r, "0.2", stage) for r in runs])
                                                 for runs in regimes.values() if runs) + " |")
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for supervised, label in ((True, "intermediate supervision"), (False, "last stage only")):
        stats = [(t, *mean_std([final_pck(r, "0.2") for r in runs_of(t, supervised)])) for t in range(1, 7)]
        stats = [s for s in stats if s[3]]
        if stats:
            t, mean, std, _ = map(np.array, zip(*stats, strict=True))
            left.errorbar(t, 100 * mean, yerr=100 * std, marker="o", capsize=3, label=label)
    left.set(xlabel="stages T", ylabel="PCK@0.2 (%)", title="final stage")
    _legend(left)
    for label, runs in regimes.items():
        if runs:
            means = [100 * mean_std([final_pck(r, "0.2", s) for r in runs])[0] for s in range(1, 7)]
            right.plot(range(1, 7), means, marker="o", label=label)
    right.set(xlabel="stage", ylabel="PCK@0.2 (%)", title="per stage, six-stage models")
    _legend(right, fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "ablate-supervision.png", dpi=110)
    plt.close(figure)
    plots = ["ablate-supervision.png"]
    if any(r.steps for runs in regimes.values() for r in runs):
        figure, axes = plt.subplots(figsize=(6, 4))
        for label, runs in regimes.items():
            for stage, style in ((6, "-"), (1, ":")):
                steps, values = _mean_curve(runs, f"loss/stage{stage}")
                if len(steps):
                    axes.plot(steps, values, style, label=f"{label}, stage {stage}")
        axes.set(xlabel="step", ylabel="training loss (MSE)", yscale="log", title="six-stage models")
        _legend(axes, fontsize=6)
        figure.tight_layout()
        figure.savefig(out / "ablate-supervision-loss.png", dpi=110)
        plt.close(figure)
        plots.append("ablate-supervision-loss.png")
    gradients = _json_file(folder / "figure5.json")
    if gradients:
        _plot_gradients(gradients, out / "ablate-supervision-gradients.png", plt)
        plots.append("ablate-supervision-gradients.png")
        lines += ["", "Mean |gradient| of each layer's weights early in training, with and without intermediate "
                  "supervision, six stages (the paper's Fig. 5): `ablate-supervision-gradients.png`."]
    lines += [""] + [f"![{name}]({name})" for name in plots]
    return _write(out / "ablate-supervision.md", lines + bottom)


def _receptive_field_note(folder: Path) -> list[str]:
    """A sentence on the theoretical receptive field of each stage of the budget's six-stage model (`cpm rf`)
    against its input crop: the context later stages can add beyond stage 1's field."""
    from cpm.evaluation.receptive_field import theoretical_receptive_fields
    from cpm.experiments.runs import make_config
    from cpm.models import build_model
    from cpm.training.builders import model_kwargs

    note = _json_file(folder / "experiment.json") or {}
    try:
        config = make_config(note.get("overrides", {}) | {"model.stages": 6})
    except CPMError:
        return []
    fields = [field.size for field in theoretical_receptive_fields(build_model("heatmap", **model_kwargs(config)))]
    crop = config.data.input_size
    verdict = ("stage 1 already sees the whole crop, so later stages can add no image context, only the other "
               "joints' beliefs" if fields[0] >= crop else
               f"stage 1 sees {100 * fields[0] / crop:.0f} % of the crop side, stage 2 {100 * fields[1] / crop:.0f} %")
    return ["", f"Theoretical receptive field of stages 1..6 of this budget's model (`cpm rf`): "
            f"{', '.join(str(f) for f in fields)} px, on {crop} px crops: {verdict}."]


def _plot_gradients(data: dict, path: Path, plt) -> None:
    steps = list(next(iter(data.values()))["steps"])
    figure, axes = plt.subplots(1, len(steps), figsize=(5 * len(steps), 4), squeeze=False)
    for ax, step in zip(axes[0], steps, strict=True):
        for label, record in data.items():
            ax.plot(record["steps"][step], marker=".", label=f"{label} intermediate supervision")
        stages = next(iter(data.values()))["stages"]
        for index, stage in enumerate(stages):
            if index == 0 or stage != stages[index - 1]:
                ax.axvline(index - 0.5, color="grey", linewidth=0.5)
                ax.text(index, 1.0, f"{stage}", transform=ax.get_xaxis_transform(),
                        fontsize=7, va="top")
        ax.set(yscale="log", xlabel="layer (input to output; stage number on top)", ylabel="mean |gradient|",
               title=f"step {step}")
        _legend(ax, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
