"""The compare-heads and compare-decoders tables and plots; `cpm.experiments.reports` holds the shared pieces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cpm.experiments.reports import (
    RunRecord,
    _header,
    _legend,
    _mean_curve,
    _pyplot,
    _write,
    final_pck,
    format_mean_std,
)


def _summary_value(run: RunRecord, kind: str, threshold: str = "") -> float:
    if run.summary is None:
        return final_pck(run, threshold) if kind == "pck" else float("nan")
    if kind == "pck":
        return run.summary["pck"][threshold][-1]
    if kind == "epe":
        return run.summary["epe"][-1]
    fractions = list(run.summary["zero_fraction"].values())
    return float(np.mean(fractions)) if fractions else float("nan")


def _split_heads_cell(cell: str) -> tuple[str, str]:
    head, _, backbone = cell.rpartition("-")
    return head, backbone


def compare_heads_report(cells: dict[str, list[RunRecord]], note: dict, out: Path, setting: str, **_: object) -> Path:
    stem = f"compare-heads-{setting}"
    everything = [r for runs in cells.values() for r in runs]
    top, bottom = _header(note, "compare-heads: heatmap, regression and integral heads", everything)
    lines = top + ["Rows `<head>-s<stride>`: one-stage heads on the same trunk and stage 1, differing only in the "
                   "last layer and loss (`grids.HEAD_VARIANTS`), at map strides 4, 8 and 16; rows `<head>-vgg16` "
                   "and `-fourconv`: the baseline FC regressor (L2) and a heatmap head on its backbones "
                   "(`grids.SEED_CELLS`; VGG16 at lr 2e-4).",
                   "Last-stage held-out scores. EPE: mean end-point error in source-frame pixels (256 x 212 "
                   "frames). Zero fraction: the mean over layers of the fraction of weights with |w| <= 1 % of "
                   "the layer's largest (`cpm.training.summaries.zero_fractions`).", "",
                   "| head | backbone | PCK@0.2 | PCK@0.1 | EPE (px) | zero fraction (%) | n |",
                   "|---|---|---:|---:|---:|---:|---:|"]
    for cell, runs in cells.items():
        head, backbone = _split_heads_cell(cell)
        lines.append(f"| {head} | {backbone} | " + " | ".join([
            format_mean_std([_summary_value(r, "pck", "0.2") for r in runs]),
            format_mean_std([_summary_value(r, "pck", "0.1") for r in runs]),
            format_mean_std([_summary_value(r, "epe") for r in runs], scale=1.0),
            format_mean_std([_summary_value(r, "zero") for r in runs]),
        ]) + f" | {len(runs)} |")
    plt = _pyplot()
    backbones = sorted({_split_heads_cell(c)[1] for c in cells})
    plots = []
    if backbones:
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
    lines += [""] + [f"![{name}]({name})" for name in plots]
    _write_heads_json(note, cells, out / f"{stem}.json")
    return _write(out / f"{stem}.md", lines + bottom)


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
