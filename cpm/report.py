"""Tables and plots from run directories, without training: ``cpm report RUN_DIR --out experiments/results/NAME``.

Reads ``metrics.jsonl`` (one line per evaluation) and ``config.toml`` of a run and writes

- ``NAME.md``: the final per-stage PCK table, the training throughput, and the command and git revision
  that produced the run (from the checkpoint), so the numbers can be traced;
- ``NAME.png``: final-stage PCK and per-stage validation loss against the epoch.
"""

from __future__ import annotations

import json
import re
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


def _per_stage(metrics: dict, prefix: str) -> list[float]:
    pattern = re.compile(re.escape(prefix) + r"/stage(\d+)$")
    found = {int(m.group(1)): value for key, value in metrics.items() if (m := pattern.match(key))}
    return [found[t] for t in sorted(found)]


def thresholds_of(metrics: dict) -> list[str]:
    return sorted({key.split("/")[1][4:] for key in metrics if key.startswith("val/pck@")}, key=float)


def stage_table(metrics: dict) -> str:
    thresholds = thresholds_of(metrics)
    columns = {a: _per_stage(metrics, f"val/pck@{a}") for a in thresholds}
    stages = len(next(iter(columns.values())))
    lines = ["| stage | " + " | ".join(f"PCK@{a}" for a in thresholds) + " |",
             "|---:|" + "---:|" * len(thresholds)]
    lines += [f"| {t + 1} | " + " | ".join(f"{100 * columns[a][t]:.2f}" for a in thresholds) + " |"
              for t in range(stages)]
    return "\n".join(lines)


def plot_run(lines: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [line["epoch"] for line in lines]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    styles = ["--", "-", ":", "-."]  # one line style per threshold, one colour per stage
    for a, style in zip(thresholds_of(lines[-1]), styles * 4, strict=False):
        for t in range(len(_per_stage(lines[-1], f"val/pck@{a}"))):
            values = [100 * _per_stage(line, f"val/pck@{a}")[t] for line in lines]
            left.plot(epochs, values, marker="o", color=f"C{t}", linestyle=style, label=f"PCK@{a}, stage {t + 1}")
    left.set(xlabel="epoch", ylabel="PCK (%)", title="held-out PCK per stage", xticks=epochs)
    left.legend(fontsize=7)
    stages = len(_per_stage(lines[-1], "val/loss"))
    for t in range(stages):
        right.plot(epochs, [_per_stage(line, "val/loss")[t] for line in lines], marker="o", color=f"C{t}",
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
        from cpm.checkpoint import load_checkpoint

        revision = load_checkpoint(last).get("git_revision", "unknown")
    if not out.parent.is_dir():
        raise CPMError(f"{out.parent}: output folder does not exist")
    samples = sum(line.get("images_per_second", 0) * line.get("train_seconds", 0) for line in lines)
    train_seconds = sum(line.get("train_seconds", 0) for line in lines)
    text = [
        f"# {run_dir.name}: per-stage PCK on the held-out split",
        "",
        stage_table(final),
        "",
        f"Torso-normalised PCK (%) of each stage after epoch {final['epoch']} (step {final['step']}).",
        f"Training: {train_seconds / 60:.1f} min in the training loop, {samples / max(train_seconds, 1e-9):.0f} img/s"
        + (f"; {seconds / 60:.1f} min for the whole command." if seconds else "."),
        "",
        f"![curves]({out.name}.png)",
        "",
        f"Produced by `{command or 'cpm train ...'}` at revision `{revision}`; "
        f"run directory `{run_dir}` (config in `config.toml`). Rebuild with `cpm report {run_dir} --out {out}`.",
        "",
    ]
    markdown = out.with_suffix(".md")
    plot_run(lines, out.with_suffix(".png"), run_dir.name)
    markdown.write_text("\n".join(text), encoding="utf-8")
    return markdown
