"""Running the cells of an experiment grid (`cpm.experiments.grids`): configs from dotted overrides, skip / resume of
finished and interrupted runs, and the ``summary.json`` / ``decoders.json`` the report tables read."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cpm.experiments.grids import Run

REPORT_THRESHOLDS = [0.05, 0.1, 0.2]


def make_config(overrides: dict[str, Any]):
    """Defaults (or the TOML file named by the key ``config``) + dotted ``overrides`` -> a validated `Config` (a
    bad key is a `ConfigError` naming it)."""
    from cpm.config import Config, apply, load_config, validate

    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        if key != "config":
            section, _, name = key.partition(".")
            nested.setdefault(section, {})[name] = value
    base = load_config(overrides["config"]) if overrides.get("config") else Config()
    return validate(apply(base, nested, source="experiment"))


def is_finished(run_dir: Path, epochs: int) -> bool:
    """True when ``metrics.jsonl`` holds the final epoch."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return False
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    try:
        return bool(lines) and json.loads(lines[-1]).get("epoch") == epochs
    except json.JSONDecodeError:
        return False


def summarize(results: dict, *, torso: tuple[int, int], state: dict) -> dict:
    """What the tables need from one evaluation: PCK at `REPORT_THRESHOLDS` and EPE per stage, the last stage's
    PDJ curve, per-layer zero fractions of the weights."""
    from cpm.evaluation.metrics import PDJ_THRESHOLDS, epe, pck, pdj_curve, torso_size
    from cpm.training.summaries import zero_fractions

    predicted, truth = results["predictions"], results["ground_truth"]  # (N, T, K, 2), (N, K, 3)
    normaliser = torso_size(truth, torso)
    stages = range(predicted.shape[1])
    return {
        "samples": int(results["samples"]),
        "pck": {f"{a:g}": [pck(predicted[:, t], truth, normaliser, a).mean for t in stages] for a in REPORT_THRESHOLDS},
        "epe": [epe(predicted[:, t], truth).mean for t in stages],
        "pdj": {"thresholds": PDJ_THRESHOLDS.tolist(), "rate": pdj_curve(predicted[:, -1], truth, torso).mean.tolist()},
        "zero_fraction": zero_fractions(state),
    }


def _summary_from_checkpoint(run_dir: Path, *, device: str, decoder: str | None = None) -> dict:
    from cpm.config import config_from_dict
    from cpm.evaluation.evaluate import evaluate_checkpoint
    from cpm.skeleton import get_skeleton
    from cpm.training.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(run_dir / "last.pt")
    config = config_from_dict(checkpoint["config"])
    overrides = {"eval": {"pck_thresholds": REPORT_THRESHOLDS} | ({"decoder": decoder} if decoder else {})}
    results = evaluate_checkpoint(run_dir / "last.pt", overrides=overrides, progress=False, device_name=device)
    return summarize(results, torso=get_skeleton(config.data.skeleton).torso, state=checkpoint["model"])


def run_grid(target: str, runs: Sequence[Run], *, budget: dict[str, Any], root: Path, device: str = "auto",
             log: Callable[[str], None] = print) -> list[Path]:
    """Train every run not finished yet; write ``summary.json`` beside each. Returns the run directories."""
    from cpm.training.loop import train

    experiment_dir = root / target
    done = []
    started = time.perf_counter()
    for index, run in enumerate(runs, start=1):
        run_dir = experiment_dir / run.name
        overrides = budget | run.overrides | {"train.runs_dir": str(experiment_dir), "train.name": run.name,
                                              "train.device": device}
        if run.after:
            overrides["train.init_from"] = str(experiment_dir / run.after / "last.pt")
        config = make_config(overrides)
        if is_finished(run_dir, config.train.epochs):
            log(f"[{index}/{len(runs)}] {run.name}: finished before, skipped")
        else:
            log(f"[{index}/{len(runs)}] {run.name} ({time.perf_counter() - started:.0f} s into {target})")
            if (run_dir / "last.pt").is_file():
                train(config, resume=run_dir / "last.pt", progress=False, log=lambda *_: None)
            else:
                if run_dir.exists():  # started, but stopped before its first checkpoint: nothing to keep
                    shutil.rmtree(run_dir)
                train(config, progress=False, log=lambda *_: None)
        if not (run_dir / "summary.json").is_file():
            (run_dir / "summary.json").write_text(json.dumps(_summary_from_checkpoint(run_dir, device=device)))
        done.append(run_dir)
    return done


def evaluate_decoders(run_dirs: Sequence[Path], *, device: str = "auto", log: Callable[[str], None] = print) -> None:
    """``decoders.json`` in each run: the summary of its last.pt under every decoder (`DECODERS`)."""
    from cpm.targets.codecs import DECODERS

    for run_dir in run_dirs:
        path = run_dir / "decoders.json"
        if path.is_file():
            continue
        log(f"decoders of {run_dir.name}")
        scores = {name: _summary_from_checkpoint(run_dir, device=device, decoder=name) for name in DECODERS}
        path.write_text(json.dumps(scores))
