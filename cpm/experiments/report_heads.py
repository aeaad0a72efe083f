"""The compare-heads and compare-decoders tables and plots; `cpm.experiments.reports` holds the shared pieces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cpm.experiments.reports import (
    BASELINE_LABEL,
    RunRecord,
    _header,
    _legend,
    _mean_curve,
    _pyplot,
    _write,
    baseline_scores,
    final_pck,
    format_mean_std,
)
from cpm.experiments.stats import format_difference, paired_difference


def _summary_value(run: RunRecord, kind: str, threshold: str = "") -> float:
    if run.summary is None:
        return final_pck(run, threshold) if kind == "pck" else float("nan")
    if kind == "pck":
        return run.summary["pck"][threshold][-1]
    if kind == "epe":
        return run.summary["epe"][-1]
    fractions = list(run.summary["zero_fraction"].values())
    return float(np.mean(fractions)) if fractions else float("nan")


def _last_gain(run: RunRecord, threshold: str = "0.2") -> float:
    """Held-out PCK of the final evaluation minus the last one at or before three quarters of the final step (the
    gain over the last quarter of the images: epoch 4 minus epoch 3 of a 4-epoch run, 16 minus 12 of a 16-epoch one),
    how far the learning curve was from flat at the end of the budget, comparable across budgets. NaN without an
    evaluation that early."""
    epochs = [m for m in run.data.get("metrics", []) if any(k.startswith(f"val/pck@{threshold}/") for k in m)]
    if len(epochs) < 2:
        return float("nan")
    key = f"val/pck@{threshold}/stage{_last_stage(epochs[-1])}"
    earlier = [m for m in epochs[:-1] if 4 * m["step"] <= 3 * epochs[-1]["step"]]
    return epochs[-1][key] - earlier[-1][key] if earlier else float("nan")


def _split_heads_cell(cell: str) -> tuple[str, str]:
    head, _, backbone = cell.rpartition("-")
    return head, backbone


def _parameters(run: RunRecord) -> int:
    """Parameters of the cell's network, rebuilt from its saved config."""
    from cpm.config import config_from_dict
    from cpm.runtime.build import build_network

    return sum(p.numel() for p in build_network(config_from_dict(run.data["config"])).parameters())


def _pdj_auc(run: RunRecord) -> float:
    """Area under the PDJ curve over its thresholds, normalised to [0, 1]."""
    if run.summary is None or not run.summary.get("pdj"):
        return float("nan")
    x, y = np.asarray(run.summary["pdj"]["thresholds"]), np.asarray(run.summary["pdj"]["rate"])
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def _images(run: RunRecord) -> int:
    config = run.data["config"]
    return int(config["train"]["epochs"] * config["data"]["train_samples"])


def _maps(run: RunRecord) -> str:
    config = run.data["config"]
    side = config["data"]["input_size"] // config["model"]["stride"]
    return f"{side}x{side}"


def _crop(run: RunRecord) -> int:
    return int(run.data["config"]["data"]["input_size"])


def _by_seed_value(runs: list[RunRecord], threshold: str) -> dict[int, float]:
    return {r.seed: _summary_value(r, "pck", threshold) for r in runs}


def _heads_differences(cells: dict[str, list[RunRecord]]) -> list[str]:
    """Per backbone or map stride: the better heatmap head (by mean PCK@0.1) minus every other head, same seed."""
    lines = ["", "Paired differences, per backbone / map stride: the heatmap head with the higher mean PCK@0.1 there "
             "minus each other head (same seed), points of PCK with the 95 % t-interval; an interval that holds 0 "
             "detects no difference at this budget.", "",
             "| backbone | heatmap head | minus | PCK@0.1 | PCK@0.2 | n |", "|---|---|---|---:|---:|---:|"]
    by_backbone: dict[str, dict[str, list[RunRecord]]] = {}
    for cell, runs in cells.items():
        head, backbone = _split_heads_cell(cell)
        by_backbone.setdefault(backbone, {})[head] = runs
    for backbone, heads in by_backbone.items():
        heatmaps = [h for h in heads if h.startswith("heatmap")]
        if not heatmaps:
            continue
        best = max(heatmaps, key=lambda h: np.nanmean([_summary_value(r, "pck", "0.1") for r in heads[h]]))
        for other, runs in heads.items():
            if other == best:
                continue
            cells_text = []
            n = 0
            for threshold in ("0.1", "0.2"):
                left, right = _by_seed_value(heads[best], threshold), _by_seed_value(runs, threshold)
                seeds = sorted(set(left) & set(right))
                difference = paired_difference([left[s] for s in seeds], [right[s] for s in seeds])
                cells_text.append(format_difference(difference))
                n = difference.n
            lines.append(f"| {backbone} | {best} | {other} | {cells_text[0]} | {cells_text[1]} | {n} |")
    return lines


def _plot_resolution(cells: dict[str, list[RunRecord]], path: Path, plt) -> bool:
    """PCK@0.1 and PCK@0.2 against the belief-map size (the ``-s<stride>`` cells) for each head; mean ± std."""
    series: dict[str, list[tuple[int, list[float], list[float]]]] = {}
    for cell, runs in cells.items():
        head, backbone = _split_heads_cell(cell)
        if not (backbone.startswith("s") and backbone[1:].isdigit()):
            continue
        side = runs[0].data["config"]["data"]["input_size"] // runs[0].data["config"]["model"]["stride"]
        series.setdefault(head, []).append((side, [_summary_value(r, "pck", "0.1") for r in runs],
                                            [_summary_value(r, "pck", "0.2") for r in runs]))
    if not any(len(points) > 1 for points in series.values()):
        return False
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for head, points in sorted(series.items()):
        points.sort()
        sides = [p[0] for p in points]
        for ax, column in zip(axes, (1, 2), strict=True):
            means = [100 * np.nanmean(p[column]) for p in points]
            stds = [100 * np.nanstd(p[column], ddof=1) if len(p[column]) > 1 else 0.0 for p in points]
            ax.errorbar(sides, means, yerr=stds, marker="o", capsize=3, label=head)
    for ax, name in zip(axes, ("PCK@0.1", "PCK@0.2"), strict=True):
        ax.set(xscale="log", xlabel="belief-map side (cells)", ylabel=f"held-out {name} (%)",
               title=f"{name} against map resolution")
        sides = sorted({p[0] for points in series.values() for p in points})
        ax.set_xticks(sides, [f"{s}x{s}" for s in sides])
        ax.minorticks_off()
        _legend(ax, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _plot_learning_curves(cells: dict[str, list[RunRecord]], path: Path, plt) -> None:
    """Held-out final-stage PCK@0.1 and @0.2 against training images, per head (mean over seeds), one row per
    backbone / stride."""
    backbones = sorted({_split_heads_cell(c)[1] for c in cells})
    figure, axes = plt.subplots(len(backbones), 2, figsize=(10, 3.2 * len(backbones)), squeeze=False)
    for row, backbone in enumerate(backbones):
        for cell, runs in cells.items():
            head, cell_backbone = _split_heads_cell(cell)
            if cell_backbone != backbone:
                continue
            batch = runs[0].data["config"]["train"]["batch_size"]
            for ax, threshold in zip(axes[row], ("0.1", "0.2"), strict=True):
                curves = [{m["step"] * batch: m.get(f"val/pck@{threshold}/stage{_last_stage(m)}") for m in
                           r.data["metrics"]} for r in runs]
                common = sorted(set.intersection(*(set(c) for c in curves)))
                ax.plot(common, [100 * np.mean([c[x] for c in curves]) for x in common], marker=".", label=head)
                ax.set(xlabel="training images", ylabel=f"held-out PCK@{threshold} (%)",
                       title=f"{backbone}: PCK@{threshold} against images")
        for ax in axes[row]:
            _legend(ax, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _last_stage(metrics: dict) -> int:
    return max(int(k.rsplit("stage", 1)[1]) for k in metrics if k.startswith("val/pck@") and "stage" in k)


def compare_heads_report(cells: dict[str, list[RunRecord]], note: dict, out: Path, setting: str, *,
                         extra_folder: Path | None = None, margin: float | None = None,
                         config_path: str | None = None, **_: object) -> Path:
    stem = f"compare-heads-{setting}"
    everything = [r for runs in cells.values() for r in runs]
    top, bottom = _header(note, "compare-heads: heatmap, regression and integral heads", everything)
    baseline = baseline_scores(extra_folder) if extra_folder is not None else None
    rows = [_heads_row(cell, runs) for cell, runs in cells.items()]
    if baseline:  # the training crops' mean pose in every held-out crop: what a head that ignores the image scores
        rows.append(f"| {BASELINE_LABEL} | – | – | {baseline['0.05']:.1f} | {baseline['0.1']:.1f} | "
                    f"{baseline['0.2']:.1f} | – | – | – | 0 | – | – | – | – |")
    lines = top + _HEADS_INTRO + rows + _heads_differences(cells)
    if margin is not None:  # the study's config states its decision rule ([grid] margin)
        from cpm.experiments.decision import heads_decision_section

        lines += heads_decision_section(cells, margin, config=config_path or "?",
                                        final_pck=lambda run, threshold: _summary_value(run, "pck", threshold))
    plt = _pyplot()
    plots = []
    if cells:
        plots = _plot_heads(cells, out, stem, plt)
        _plot_learning_curves(cells, out / f"{stem}-curves.png", plt)
        plots.append(f"{stem}-curves.png")
        if _plot_resolution(cells, out / f"{stem}-resolution.png", plt):
            plots.append(f"{stem}-resolution.png")
    lines += [""] + [f"![{name}]({name})" for name in plots]
    _write_heads_json(note, cells, out / f"{stem}.json")
    return _write(out / f"{stem}.md", lines + bottom)


_HEADS_INTRO = [
    "Rows `<head>-s<stride>`: one-stage heads on the same trunk and stage 1, differing only in the last layer and "
    "loss (`grids.HEAD_VARIANTS`), at map strides 4, 8 and 16; rows `<head>-vgg16` and `-fourconv`: the baseline FC "
    "regressor (L2) and a heatmap head on its backbones (`grids.SEED_CELLS`; VGG16 at lr 2e-4).",
    "Last-stage held-out scores. EPE: mean end-point error in source-frame pixels (256 x 212 frames). AUC: area "
    "under the PDJ curve (detection rate against the normalised distance), normalised to its threshold range. Zero "
    "fraction: the mean over layers of the fraction of weights with |w| <= 1 % of the layer's largest "
    "(`cpm.training.summaries.zero_fractions`). Last-quarter gain: PCK@0.2 of the final evaluation minus the one at "
    "three quarters of the images (points; epoch 4 minus 3 of a 4-epoch run, 16 minus 12 of a 16-epoch one): a head "
    "still gaining several points over the last quarter had not flattened at this budget.", "",
    "| head | backbone | maps of the crop | PCK@0.05 | PCK@0.1 | PCK@0.2 | last-quarter gain @0.2 | "
    "EPE (px) | PDJ AUC (%) | parameters | images | lr | zero fraction (%) | n |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]


def _heads_row(cell: str, runs: list[RunRecord]) -> str:
    """One cell's row of the compare-heads table: its scores over seeds, size, images and learning rates."""
    head, backbone = _split_heads_cell(cell)
    lrs = sorted({r.data["config"]["train"]["lr"] for r in runs})
    images = sorted({_images(r) for r in runs})
    return f"| {head} | {backbone} | {_maps(runs[0])} of {_crop(runs[0])} px | " + " | ".join([
        format_mean_std([_summary_value(r, "pck", "0.05") for r in runs]),
        format_mean_std([_summary_value(r, "pck", "0.1") for r in runs]),
        format_mean_std([_summary_value(r, "pck", "0.2") for r in runs]),
        format_mean_std([_last_gain(r) for r in runs]),
        format_mean_std([_summary_value(r, "epe") for r in runs], scale=1.0),
        format_mean_std([_pdj_auc(r) for r in runs]),
        f"{_parameters(runs[0]):,}",
        ", ".join(f"{n:,}" for n in images),
        ", ".join(f"{lr:g}" for lr in lrs),
        format_mean_std([_summary_value(r, "zero") for r in runs]),
    ]) + f" | {len(runs)} |"


def _plot_heads(cells: dict[str, list[RunRecord]], out: Path, stem: str, plt) -> list[str]:
    """PDJ curves, training loss and per-layer weight sparsity of every head, one panel per backbone; the files."""
    backbones = sorted({_split_heads_cell(c)[1] for c in cells})
    plots = [f"{stem}-pdj.png", f"{stem}-loss.png", f"{stem}-sparsity.png"]
    pdj, losses, sparsity = (plt.subplots(1, len(backbones), figsize=(5 * len(backbones), 4), squeeze=False)
                             for _ in range(3))
    for column, backbone in enumerate(backbones):
        for cell, runs in cells.items():
            head, cell_backbone = _split_heads_cell(cell)
            if cell_backbone != backbone:
                continue
            with_summary = [r.summary for r in runs if r.summary]
            if with_summary:
                rate = np.mean([s["pdj"]["rate"] for s in with_summary], axis=0)
                pdj[1][0, column].plot(with_summary[0]["pdj"]["thresholds"], 100 * rate, label=head)
                layers = np.mean([list(s["zero_fraction"].values()) for s in with_summary], axis=0)
                sparsity[1][0, column].plot(100 * layers, marker=".", label=head)
            steps, values = _mean_curve(runs, "loss")
            if len(steps):
                losses[1][0, column].plot(steps, values, label=head)
        pdj[1][0, column].set(xlabel="normalised distance a (x torso)", ylabel="detection rate (%)",
                              title=f"PDJ, {backbone}", ylim=(0, 100))
        losses[1][0, column].set(xlabel="step", ylabel="training loss (own units)", yscale="log",
                                 title=f"training loss, {backbone}")
        sparsity[1][0, column].set(xlabel="layer (input to output)", ylabel="zero fraction (%)",
                                   title=f"weight sparsity, {backbone}")
    for (figure, axes), name in zip((pdj, losses, sparsity), plots, strict=True):
        for ax in axes[0]:
            _legend(ax, fontsize=7)
        figure.tight_layout()
        figure.savefig(out / name, dpi=110)
        plt.close(figure)
    return plots


def _write_heads_json(note: dict, cells: dict[str, list[RunRecord]], path: Path) -> None:
    """``compare-heads-<setting>.json``: every cell's per-seed scores and mean PDJ curve (read by notebooks/02)."""
    rows = []
    for cell, runs in cells.items():
        head, backbone = _split_heads_cell(cell)
        summaries = [r.summary for r in runs if r.summary]
        rows.append({"cell": cell, "head": head, "backbone": backbone, "seeds": [r.seed for r in runs],
                     "pck@0.2": [_summary_value(r, "pck", "0.2") for r in runs],
                     "pck@0.1": [_summary_value(r, "pck", "0.1") for r in runs],
                     "pck@0.05": [r.summary["pck"]["0.05"][-1] if r.summary else float("nan") for r in runs],
                     "epe": [_summary_value(r, "epe") for r in runs],
                     "pdj_auc": [_pdj_auc(r) for r in runs], "parameters": _parameters(runs[0]),
                     "images": [_images(r) for r in runs], "lr": [r.data["config"]["train"]["lr"] for r in runs],
                     "maps": _maps(runs[0]), "input_size": _crop(runs[0]),
                     "pdj_thresholds": summaries[0]["pdj"]["thresholds"] if summaries else [],
                     "pdj_rate": np.mean([s["pdj"]["rate"] for s in summaries], axis=0).tolist() if summaries else []})
    data = {"budget": note.get("description", "unknown"), "command": note.get("command"),
            "revision": note.get("revision"), "cells": rows}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def compare_decoders_report(cells: dict[str, list[RunRecord]], note: dict, out: Path, setting: str,
                            **_: object) -> Path:
    runs = [r for group in cells.values() for r in group if r.decoders]
    top, bottom = _header(note, "compare-decoders: belief maps to coordinates, on the same trained models", runs)
    lines = top + ["Last-stage held-out scores of the same heatmap models under each decoder (`eval.decoder`). "
                   "EPE in source-frame pixels.", "",
                   "| decoder | PCK@0.05 | PCK@0.1 | PCK@0.2 | EPE (px) | n |", "|---|---:|---:|---:|---:|---:|"]
    decoders = list(runs[0].decoders) if runs else []
    for name in decoders:
        scores = [r.decoders[name] for r in runs if name in r.decoders]
        lines.append(f"| {name} | " + " | ".join(format_mean_std([s["pck"][a][-1] for s in scores])
                                                 for a in ("0.05", "0.1", "0.2"))
                     + f" | {format_mean_std([s['epe'][-1] for s in scores], scale=1.0)} | {len(scores)} |")
    return _write(out / f"compare-decoders-{setting}.md", lines + bottom)
