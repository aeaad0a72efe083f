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

from cpm.config import toml_value
from cpm.errors import CPMError
from cpm.experiments.stats import (
    PairedDifference,
    conclusion,
    format_difference,
    paired_difference,
    pck_standard_error,
)
from cpm.io import write_text_atomic
from cpm.skeleton import get_skeleton

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
    data: dict = field(default_factory=dict)  # the whole cell summary


def _json_file(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CPMError(f"{path}: not JSON ({error.msg})") from None


def load_runs(summaries: list[dict]) -> dict[str, list[RunRecord]]:
    """{cell: its runs, one per seed} from committed cell summaries (`cpm.experiments.runs.write_summary`)."""
    cells: dict[str, list[RunRecord]] = {}
    for data in summaries:
        match = _SEEDED.match(data["cell"])
        if not match or not data.get("metrics"):
            continue
        record = RunRecord(data["cell"], match["cell"], int(match["seed"]), data["metrics"][-1], data.get("steps", []),
                           data.get("summary"), data.get("decoders"), data)
        cells.setdefault(record.cell, []).append(record)
    for runs in cells.values():
        runs.sort(key=lambda run: run.seed)
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


def machine_label(where: dict, amp: str) -> str:
    """A cell summary's machine and the precision its run trained in (``train.amp``): e.g. "AMD EPYC (fp32, native
    bf16 CPU, 2 cores)"; on a GPU its name."""
    native = bool(where.get("cuda") or where.get("cpu_bf16"))
    precision = "fp32" if amp == "off" or (amp == "auto" and not native) else ("fp16" if amp == "fp16" else "bf16")
    kind = "" if where.get("cuda") else f", {'native' if where.get('cpu_bf16') else 'no native'} bf16 CPU"
    return f"{where.get('cuda') or where.get('cpu', '?')} ({precision}{kind}, {where.get('cores', '?')} cores)"


def _header(note: dict, title: str, runs: list[RunRecord]) -> tuple[list[str], list[str]]:
    """(lines under the title, closing lines with command and revisions) from the grid's note and its cells."""
    sets = ", ".join(f"{k}={toml_value(v)}" for k, v in (note.get("sets") or {}).items())
    base = note.get("config") or "the defaults (cpm/config.py)"
    machines = {machine_label(run.data.get("machine", {}), ((run.data.get("config") or {}).get("train") or {})
                              .get("amp", "auto")) for run in runs}
    hours = sum(r.data.get("train_seconds", 0.0) for r in runs) / 3600
    samples = sorted({r.summary["samples"] for r in runs if r.summary})
    joints = {get_skeleton(r.data["config"]["data"]["skeleton"]).num_joints for r in runs if r.data.get("config")}
    scores = [r.summary["pck"]["0.2"][-1] for r in runs if r.summary and "0.2" in r.summary.get("pck", {})]
    error = ""
    if samples and scores:
        p = float(np.mean(scores))
        se = pck_standard_error(p, samples[0], max(joints) if joints else 15)
        error = (f" At {samples[0]} frames the binomial standard error of a PCK near the table's mean PCK@0.2 "
                 f"({100 * p:.0f} %) is {100 * se:.2f} points (a lower bound: the joints of a frame are correlated).")
    top = [f"# {title}", "",
           f"Setting `{note.get('setting', '?')}`: {base}, budget {note.get('budget', '?')} "
           f"({note.get('description', '')})" + (f", with `{sets}`" if sets else "") + ".",
           f"{len(runs)} runs, {hours:.1f} h of training in all, on {', '.join(sorted(machines)) or 'unknown'}. "
           f"Held-out PCK is torso-normalised, in %, on {', '.join(map(str, samples)) or '?'} frames." + error +
           " Each cell: mean ± sample standard deviation over seeds (a seed sets the init, the data order and the "
           "training frames); differences are paired by seed, with a 95 % t-interval in brackets.", ""]
    revisions = sorted({r.data.get("revision", "unknown") for r in runs})
    target = runs[0].data.get("target", "?") if runs else "?"
    bottom = ["", f"Runs produced by `{note.get('command') or 'unknown'}` (the whole grid; with `--only GLOB` "
              "it trains the cells matching GLOB, as a grid filled in pieces is run) at revision(s) "
              f"{', '.join(f'`{r}`' for r in revisions)}; one summary per run in "
              f"`experiments/results/runs/{target}/{note.get('setting', '?')}/`; this file was rebuilt from them by "
              "`make report` (`python -m cpm.experiments report`).", ""]
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

REGIMES = {"T4-is": "joint, intermediate supervision", "T4-nois": "joint, last stage supervised only",
           "stagewise4": "stage-wise (stage t trained with 1..t-1 frozen)",
           "stagewise-joint": "stage-wise, then joint fine-tuning",
           "T4-is-adamw": "joint, intermediate supervision, AdamW", "T4-nois-adamw": "joint, last stage only, AdamW"}
# The paper's stage-wise regime at T = 3 (cpm.experiments.grids: every phase on the whole budget, then joint
# fine-tuning), against joint training on the budget (equal final images) and on four budgets (equal total images).
PAPER_REGIMES = {"T3-is": "joint, intermediate supervision (1 budget)",
                 "paper-stagewise3": "stage-wise, each phase 1 budget (3 budgets)",
                 "paper-stagewise-joint": "stage-wise, then joint fine-tuning (4 budgets)",
                 "paper-joint-x4": "joint, intermediate supervision (4 budgets)"}


def _by_seed(runs: list[RunRecord], threshold: str, stage: int | None = None) -> dict[int, float]:
    return {r.seed: final_pck(r, threshold, stage) for r in runs}


def _paired(a: list[RunRecord], b: list[RunRecord], threshold: str, a_stage: int | None = None,
            b_stage: int | None = None) -> PairedDifference:
    left, right = _by_seed(a, threshold, a_stage), _by_seed(b, threshold, b_stage)
    seeds = sorted(set(left) & set(right))
    return paired_difference([left[s] for s in seeds], [right[s] for s in seeds])


def _runs_of(cells: dict[str, list[RunRecord]], stages: int, supervised: bool) -> list[RunRecord]:
    """The runs of the T = ``stages`` cell with or without intermediate supervision (one stage: the same runs)."""
    return cells.get(f"T{stages}-{'is' if supervised or stages == 1 else 'nois'}", [])


def ablate_supervision_report(cells: dict[str, list[RunRecord]], note: dict, out: Path, setting: str, *,
                              extra_folder: Path, cells_config: list | None = None, margin: float | None = None,
                              config_path: str | None = None, **_: object) -> Path:
    stem = f"ablate-supervision-{setting}" if setting else "ablate-supervision"
    everything = [r for runs in cells.values() for r in runs]
    top, bottom = _header(note, "ablate-supervision: intermediate supervision and the number of stages", everything)
    stage_counts = sorted({int(c[1:].split("-")[0]) for c in cells if c.startswith("T")})
    lines = top + _receptive_field_note(cells) + _supervision_table(cells, stage_counts,
                                                                     baseline_scores(extra_folder))
    lines += ["", "What the intervals say (generated from the table):", ""]
    lines += [f"- {s}" for s in _supervision_sentences(cells, stage_counts)]
    lines += _regimes_table(cells) + _stage_table(cells, [t for t in stage_counts if t > 1])
    if margin is not None:  # the study's config states its decision rule ([grid] margin)
        from cpm.experiments.decision import decision_section

        lines += decision_section(cells, margin, config=config_path or "?", final_pck=final_pck,
                                  stage_counts=stage_counts)
    plt = _pyplot()
    plots = [_plot_stages(cells, stage_counts, out / f"{stem}.png", plt),
             _plot_supervision_curves(cells, out / f"{stem}-curves.png", plt)]
    gradients = _json_file(extra_folder / "figure5.json")
    if gradients:
        plot_gradients(gradients, out / f"{stem}-gradients.png", plt)
        plots.append(f"{stem}-gradients.png")
        lines += ["", "Mean |gradient| of each layer's weights early in training, with and without intermediate "
                  "supervision, under each init (the paper's Fig. 5): " + gradient_sentence(gradients)]
    lines += [""] + [f"![{name}]({name})" for name in plots]
    return _write(out / f"{stem}.md", lines + bottom)


def baseline_scores(folder: Path) -> dict[str, float] | None:
    """The mean pose's PCK (%) by threshold ("0.05", "0.1", "0.2") from a setting folder's ``baseline.json``
    (`cpm.experiments.baselines`), or None where there is none."""
    data = _json_file(folder / "baseline.json")
    if not data:
        return None
    return {key.removeprefix("pck@"): 100 * value for key, value in data["mean_pose"].items()}


BASELINE_LABEL = "mean pose (no image)"


def _supervision_table(cells: dict[str, list[RunRecord]], stage_counts: list[int],
                       baseline: dict[str, float] | None = None) -> list[str]:
    """Final PCK of the last stage per T, with and without intermediate supervision, and their paired difference."""
    lines = [
        "Final held-out PCK of the last stage, with (IS) and without (last stage only) intermediate supervision; "
        "with one stage the two are the same runs. IS − last only: the paired difference (points).", "",
        "| stages | PCK@0.2 IS | PCK@0.2 last only | IS − last only @0.2 | PCK@0.1 IS | PCK@0.1 last only | "
        "IS − last only @0.1 | n |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for stages in stage_counts:
        on, off = _runs_of(cells, stages, True), _runs_of(cells, stages, False)
        row = [f"| {stages}"]
        for a in ("0.2", "0.1"):
            row += [format_mean_std([final_pck(r, a) for r in on]), format_mean_std([final_pck(r, a) for r in off])]
            row.append(format_difference(_paired(on, off, a)) if stages > 1 else "–")
        lines.append(" | ".join(row) + f" | {len(on)} / {len(off)} |")
    if baseline:  # the training crops' mean pose in every held-out crop: what a model that ignores the image scores
        lines.append(f"| {BASELINE_LABEL} | {baseline['0.2']:.1f} | – | – | {baseline['0.1']:.1f} | – | – | – |")
    return lines


def _supervision_sentences(cells: dict[str, list[RunRecord]], stage_counts: list[int]) -> list[str]:
    """What the paired intervals say: IS against last only per T, each T against one stage, the AdamW pair and
    the stage-wise regimes against joint IS (PCK@0.2)."""
    sentences = [conclusion("IS", "last only", _paired(_runs_of(cells, t, True), _runs_of(cells, t, False), "0.2"),
                            what=f"PCK@0.2, T = {t}") for t in stage_counts if t > 1]
    one = _runs_of(cells, 1, True)
    for stages in stage_counts[1:]:
        for supervised, label in ((True, "IS"), (False, "last only")):
            sentences.append(conclusion(f"T = {stages} ({label})", "T = 1",
                                        _paired(_runs_of(cells, stages, supervised), one, "0.2"), what="PCK@0.2"))
    if cells.get("T4-is-adamw"):
        sentences.append(conclusion("IS", "last only", _paired(cells["T4-is-adamw"], cells.get("T4-nois-adamw", []),
                                                               "0.2"), what="PCK@0.2, T = 4, AdamW"))
    for regime in ("stagewise4", "stagewise-joint"):
        if cells.get(regime):
            sentences.append(conclusion(REGIMES[regime], "joint IS", _paired(cells[regime], cells.get("T4-is", []),
                                                                             "0.2"), what="PCK@0.2, T = 4"))
    if cells.get("paper-stagewise-joint"):
        for other, at in (("T3-is", "equal final images"), ("paper-joint-x4", "equal total images")):
            sentences.append(conclusion("stage-wise then joint", PAPER_REGIMES[other],
                                        _paired(cells["paper-stagewise-joint"], cells.get(other, []), "0.1"),
                                        what=f"PCK@0.1, T = 3, {at}"))
    return sentences


def _regimes_table(cells: dict[str, list[RunRecord]]) -> list[str]:
    """The four-stage training regimes of `REGIMES` that ran: final PCK of the last stage."""
    regimes = {label: cells.get(cell, []) for cell, label in REGIMES.items()}
    lines = ["", "Four stages, the paper's training regimes at equal images (stage-wise phases each train on an "
             "equal share of the joint run's frames) and the optimiser (final PCK of the last stage):", "",
             "| regime | PCK@0.2 | PCK@0.1 | n |", "|---|---:|---:|---:|"]
    lines += [f"| {label} | {format_mean_std([final_pck(r, '0.2') for r in runs])} | "
              f"{format_mean_std([final_pck(r, '0.1') for r in runs])} | {len(runs)} |"
              for label, runs in regimes.items() if runs]
    if not any(cells.get(cell) for cell in PAPER_REGIMES if cell != "T3-is"):
        return lines
    lines += ["", "Three stages, stage-wise as the paper trained it (each phase and the joint fine-tuning on the whole "
              "budget of images) against joint training (final PCK of the last stage):", "",
              "| regime | PCK@0.2 | PCK@0.1 | n |", "|---|---:|---:|---:|"]
    return lines + [f"| {label} | {format_mean_std([final_pck(r, '0.2') for r in cells.get(cell, [])])} | "
                    f"{format_mean_std([final_pck(r, '0.1') for r in cells.get(cell, [])])} | "
                    f"{len(cells.get(cell, []))} |" for cell, label in PAPER_REGIMES.items() if cells.get(cell)]


def _stage_table(cells: dict[str, list[RunRecord]], multi: list[int]) -> list[str]:
    """PCK@0.2 of every stage of each multi-stage model (T in ``multi``), with and without IS."""
    if not multi:
        return []
    lines = ["", "PCK@0.2 of every stage of each multi-stage model (IS / last only):", "",
             "| stage | " + " | ".join(f"T = {t} IS | T = {t} last only" for t in multi) + " |",
             "|---:|" + "---:|---:|" * len(multi)]
    for stage in range(1, max(multi) + 1):
        row = []
        for t in multi:
            for supervised in (True, False):
                row.append(format_mean_std([final_pck(r, "0.2", stage) for r in _runs_of(cells, t, supervised)])
                           if stage <= t else "")
        lines.append(f"| {stage} | " + " | ".join(row) + " |")
    return lines


def _plot_stages(cells: dict[str, list[RunRecord]], stage_counts: list[int], path: Path, plt) -> str:
    """Final-stage PCK@0.2 against T (left) and every stage's PCK@0.2 of each multi-stage model (right)."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for supervised, label in ((True, "intermediate supervision"), (False, "last stage only")):
        stats = [(t, *mean_std([final_pck(r, "0.2") for r in _runs_of(cells, t, supervised)])) for t in stage_counts]
        stats = [s for s in stats if s[3]]
        if stats:
            t, mean, std, _ = map(np.array, zip(*stats, strict=True))
            left.errorbar(t, 100 * mean, yerr=100 * std, marker="o", capsize=3, label=label)
    left.set(xlabel="stages T", ylabel="PCK@0.2 (%)", title="final stage")
    _legend(left)
    for t in (t for t in stage_counts if t > 1):
        for supervised, style in ((True, "-"), (False, ":")):
            runs = _runs_of(cells, t, supervised)
            if runs:
                means = [100 * mean_std([final_pck(r, "0.2", s) for r in runs])[0] for s in range(1, t + 1)]
                right.plot(range(1, t + 1), means, style, marker="o", label=f"T = {t} {'IS' if supervised else 'last'}")
    right.set(xlabel="stage", ylabel="PCK@0.2 (%)", title="per stage")
    _legend(right, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path.name


def _plot_supervision_curves(cells: dict[str, list[RunRecord]], path: Path, plt) -> str:
    """Held-out PCK@0.2 per epoch of the T = 4 runs: IS, last only, stage-wise then joint."""
    figure, axes = plt.subplots(figsize=(6, 4))
    for cell, style in (("T4-is", "-"), ("T4-nois", ":"), ("stagewise-joint", "--")):
        for r in cells.get(cell, []):
            epochs = [line["epoch"] for line in r.data.get("metrics", [])]
            values = [100 * final_pck(RunRecord("", "", 0, line), "0.2") for line in r.data.get("metrics", [])]
            if epochs:
                axes.plot(epochs, values, style, marker=".", label=f"{cell} seed {r.seed}")
    axes.set(xlabel="epoch", ylabel="held-out PCK@0.2 (%)", title="learning curves, T = 4")
    _legend(axes, fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path.name


def stage_gradient(record: dict, step: str, stage: str) -> float | None:
    """Mean |gradient| of the layers of ``stage`` ("1", "2", ... or "trunk") at the recorded ``step`` of a Fig. 5
    record; None when the record has no layer of that stage."""
    values = [g for g, s in zip(record["steps"][step], record["stages"], strict=True) if s == stage]
    return float(np.mean(values)) if values else None


def gradient_sentence(data: dict) -> str:
    """Mean |gradient| of stage 1's layers at the first recorded step, with and without IS, per init."""
    parts = []
    for init, records in data.items():
        values = {}
        for label, record in records.items():
            first = next(iter(record["steps"]))
            mean = stage_gradient(record, first, "1")
            values[label] = float("nan") if mean is None else mean
        parts.append(f"`{init}` init: stage 1 mean |gradient| {values.get('with', float('nan')):.2g} with IS, "
                     f"{values.get('without', float('nan')):.2g} without, at step {first}")
    return "; ".join(parts) + "."


def _receptive_field_note(cells: dict[str, list[RunRecord]]) -> list[str]:
    """The theoretical receptive field of each stage of the deepest model against its crop (`cpm rf`)."""
    from cpm.config import config_from_dict
    from cpm.evaluation.receptive_field import theoretical_receptive_fields
    from cpm.runtime.build import build_network

    deepest = max((r for runs in cells.values() for r in runs if r.data.get("config")),
                  key=lambda r: r.data["config"]["model"]["stages"], default=None)
    if deepest is None:
        return []
    config = config_from_dict(deepest.data["config"])
    fields = [field.size for field in theoretical_receptive_fields(build_network(config))]
    crop = config.data.input_size
    person = crop / config.data.crop_padding
    cells_side = crop // config.model.stride
    return [f"Geometry: {crop} px crops, person ~{person:.0f} px ({person / crop:.2f} of the crop), stride "
            f"{config.model.stride} ({cells_side} x {cells_side} maps), label sigma {config.targets.sigma:g} cells. "
            f"Theoretical receptive field of stages 1..{len(fields)} (`cpm rf`): {', '.join(map(str, fields))} px "
            f"= {', '.join(f'{f / crop:.2f}' for f in fields)} of the crop.", ""]


def plot_gradients(data: dict, path: Path, plt) -> None:
    """One panel per (init, recorded step): mean |gradient| per layer, with and without IS."""
    panels = [(init, step) for init, records in data.items() for step in next(iter(records.values()))["steps"]]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4), squeeze=False)
    for ax, (init, step) in zip(axes[0], panels, strict=True):
        records = data[init]
        for label, record in records.items():
            ax.plot(record["steps"][step], marker=".", label=f"{label} IS")
        stages = next(iter(records.values()))["stages"]
        for index, stage in enumerate(stages):
            if index == 0 or stage != stages[index - 1]:
                ax.axvline(index - 0.5, color="grey", linewidth=0.5)
                ax.text(index, 1.0, f"{stage}", transform=ax.get_xaxis_transform(), fontsize=7, va="top")
        ax.set(yscale="log", xlabel="layer (input to output; stage on top)", ylabel="mean |gradient|",
               title=f"{init} init, step {step}")
        _legend(ax, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _write(path: Path, lines: list[str]) -> Path:
    return write_text_atomic(path, "\n".join(lines))
