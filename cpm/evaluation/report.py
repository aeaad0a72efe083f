"""Tables and plots from run directories, without training: ``cpm report RUN_DIR --out experiments/results/NAME``.

Reads ``metrics.jsonl`` (one line per evaluation) and ``config.toml`` of a run and writes

- ``NAME.md``: the final per-stage PCK table, the training throughput, and the command and git revision
  that produced the run (from the checkpoint), so the numbers can be traced;
- ``NAME.png``: final-stage PCK and per-stage validation loss against the epoch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from cpm.errors import CPMError


def read_metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise CPMError(f"{path}: not found (is {run_dir} a run directory?)")
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        try:
            lines.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise CPMError(f"{path}:{number}: not a JSON line ({error.msg})") from None
    if not lines:
        raise CPMError(f"{path}: no evaluations recorded")
    return lines


def flatten_metrics(results: dict, prefix: str = "val") -> dict[str, float]:
    flat: dict[str, float] = {}
    for threshold, per_stage in results["pck"].items():
        for t, value in enumerate(per_stage, start=1):
            flat[f"{prefix}/pck@{threshold:g}/stage{t}"] = value
    for t, value in enumerate(results["loss"], start=1):
        flat[f"{prefix}/loss/stage{t}"] = value
    return flat


def format_stage_table(results: dict) -> str:
    """Markdown table: one row per stage, one column per PCK threshold (torso-normalised)."""
    thresholds = sorted(results["pck"])
    header = "| stage | " + " | ".join(f"PCK@{a:g}" for a in thresholds) + " |"
    rule = "|---:|" + "---:|" * len(thresholds)
    rows = [
        f"| {t + 1} | " + " | ".join(f"{100 * results['pck'][a][t]:.2f}" for a in thresholds) + " |"
        for t in range(len(results["pck"][thresholds[0]]))
    ]
    if "samples" not in results:
        return "\n".join([header, rule, *rows])
    note = f"\n{results['samples']} held-out samples, torso-normalised PCK in %"
    if results.get("excluded"):
        note += f"; {results['excluded']} samples excluded (zero torso)"
    return "\n".join([header, rule, *rows]) + note


def stage_results(metrics: dict) -> dict:
    """The inverse of `flatten_metrics`: one ``metrics.jsonl`` line -> {"pck": {threshold: [per stage]},
    "loss": [per stage]} (plus "samples" when the line has it), what `format_stage_table` reads."""
    pck: dict[float, dict[int, float]] = {}
    loss: dict[int, float] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "val" and parts[1].startswith("pck@") and parts[2].startswith("stage"):
            pck.setdefault(float(parts[1][4:]), {})[int(parts[2][5:])] = value
        elif len(parts) == 3 and parts[:2] == ["val", "loss"] and parts[2].startswith("stage"):
            loss[int(parts[2][5:])] = value
    return {"pck": {a: [v[t] for t in sorted(v)] for a, v in sorted(pck.items())},
            "loss": [loss[t] for t in sorted(loss)],
            **({"samples": metrics["samples"]} if "samples" in metrics else {})}


def plot_run(lines: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [line["epoch"] for line in lines]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    styles = ["--", "-", ":", "-."]  # one line style per threshold, one colour per stage
    results = [stage_results(line) for line in lines]
    for a, style in zip(results[-1]["pck"], styles * 4, strict=False):
        for t in range(len(results[-1]["pck"][a])):
            values = [100 * result["pck"][a][t] for result in results]
            left.plot(epochs, values, marker="o", color=f"C{t}", linestyle=style, label=f"PCK@{a:g}, stage {t + 1}")
    left.set(xlabel="epoch", ylabel="PCK (%)", title="held-out PCK per stage", xticks=epochs)
    left.legend(fontsize=7)
    stages = len(results[-1]["loss"])
    for t in range(stages):
        right.plot(epochs, [result["loss"][t] for result in results], marker="o", color=f"C{t}",
                   label=f"stage {t + 1}")
    right.set(xlabel="epoch", ylabel="MSE", yscale="log", title="held-out loss per stage", xticks=epochs)
    right.legend(fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(run_dir: str | Path, out: str | Path, *, command: str = "", seconds: float | None = None) -> Path:
    """Write ``out``.md and ``out``.png for ``run_dir``; returns the Markdown path."""
    run_dir, out = Path(run_dir), Path(out)
    lines = read_metrics(run_dir)
    final = lines[-1]
    revision = "unknown"
    last = run_dir / "last.pt"
    if last.is_file():
        from cpm.runtime.checkpoint import load_checkpoint

        revision = load_checkpoint(last).get("git_revision", "unknown")
    if not out.parent.is_dir():
        raise CPMError(f"{out.parent}: output folder does not exist")
    samples = sum(line.get("images_per_second", 0) * line.get("train_seconds", 0) for line in lines)
    train_seconds = sum(line.get("train_seconds", 0) for line in lines)
    relative = os.path.relpath(run_dir.resolve())
    shown = run_dir.name if relative.startswith("..") else relative  # no machine paths in a committed report
    text = [
        f"# {run_dir.name}: per-stage PCK on the held-out split",
        "",
        format_stage_table(stage_results(final)),
        "",
        f"Torso-normalised PCK (%) of each stage after epoch {final['epoch']} (step {final['step']}).",
        f"Training: {train_seconds / 60:.1f} min in the training loop, {samples / max(train_seconds, 1e-9):.0f} img/s"
        + (f"; {seconds / 60:.1f} min for the whole command." if seconds else "."),
        "",
        f"![curves]({out.with_suffix('.png').name})",
        "",
        f"Produced by `{command or 'cpm train ...'}` at revision `{revision}`; "
        f"run directory `{shown}` (config in `config.toml`). Rebuild with `cpm report {shown} --out {out}`.",
        "",
    ]
    markdown = out.with_suffix(".md")
    plot_run(lines, out.with_suffix(".png"), run_dir.name)
    markdown.write_text("\n".join(text), encoding="utf-8")
    return markdown
