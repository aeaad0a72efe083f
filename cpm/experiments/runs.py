"""Running the cells of an experiment grid: each cell's config (the user's config, the budget's overlay, the user's
``--set`` and the cell's own overrides, in that order), its run directory keyed by a hash of that config, and the
small JSON summary that is committed beside the tables so that a grid can be finished over several sittings and
machines.

    runs/<target>/<setting>/<cell>-<hash>/              the training run (not committed)
    experiments/results/runs/<target>/<setting>/<cell>-<hash>.json   its summary (committed)

A cell whose summary exists is done; one whose ``last.pt`` holds its final epoch is summarised (its records cut
back to that checkpoint first); one with a run directory resumes from its ``last.pt``; a run directory whose saved
config has another hash is never resumed into. A summary is written whole or not at all, so a grid killed at any
moment and started again trains and summarises each cell once, with the records of one uninterrupted run.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cpm.config import MOVED_KEYS, Config, apply, config_from_dict, load_config, resolve
from cpm.errors import CheckpointError, CPMError
from cpm.io import fault_point, last_of_each, read_jsonl, remove_orphaned_temporaries, write_text_atomic

REPORT_THRESHOLDS = [0.05, 0.1, 0.2]
# Keys that say where or how a run executes, not what it computes: left out of a cell's hash.
MACHINE_KEYS = frozenset({"train.runs_dir", "train.name", "train.device", "train.threads", "train.log_every",
                          "train.checkpoint_every", "train.init_from", "data.workers", "data.root", "eval.batch_size",
                          "data.prerender"})  # where and how fast a run executes, not what it trains
MAX_STEP_POINTS = 200  # training-loss points kept in a summary


@dataclass
class Run:
    """One cell of a grid, named ``<cell>-seed<s>``; ``overrides`` are dotted keys; ``after`` names the cell whose
    ``last.pt`` initialises this one (stage-wise training)."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    after: str | None = None


def dotted_to_nested(overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    nested: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        section, _, name = key.partition(".")
        if not name:
            raise CPMError(f"{key}: an override is section.key=value")
        nested.setdefault(section, {})[name] = value
    return nested


def current_names(overrides: dict[str, Any]) -> dict[str, Any]:
    """Dotted ``overrides`` with each key that moved (`cpm.config.MOVED_KEYS`) under its new name; of two keys that
    name one setting, the later one wins, as when one layer of overrides is laid over another."""
    return {MOVED_KEYS.get(key, key): value for key, value in overrides.items()}


def make_config(overrides: dict[str, Any], base: Config | str | Path | None = None) -> Config:
    """``base`` (a `Config`, a TOML file, or the defaults; the key ``config`` in ``overrides`` names a file too) +
    dotted ``overrides`` -> a validated `Config` (a bad key is a `ConfigError` naming it)."""
    overrides = dict(overrides)
    path = overrides.pop("config", None)
    if isinstance(base, Config):
        config = config_from_dict(base.to_dict())
    else:
        config = load_config(path or base) if (path or base) else Config()
    return resolve(apply(config, dotted_to_nested(overrides), source="experiment"))


def config_hash(config: Config) -> str:
    """8 hex digits of the SHA-256 of what the resolved config changes from the defaults, without `MACHINE_KEYS`,
    each key under the name it had when the first cells were committed (`hash_layout`): a new config key with a
    default that keeps today's behaviour, or a key moved to another section, leaves every committed cell's hash as
    it was."""
    table, defaults = hash_layout(config.to_dict()), hash_layout(Config().to_dict())
    changed = {f"{section}.{key}": value for section, values in table.items() for key, value in values.items()
               if f"{section}.{key}" not in MACHINE_KEYS and defaults.get(section, {}).get(key) != value}
    return hashlib.sha256(json.dumps(changed, sort_keys=True).encode()).hexdigest()[:8]


def hash_layout(table: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A config's table (`Config.to_dict`) with each key of `cpm.config.MOVED_KEYS` back under its old name, the
    layout a cell's hash is taken in."""
    legacy = {section: dict(values) for section, values in table.items()}
    for old, new in MOVED_KEYS.items():
        (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
        if new_key in legacy.get(new_section, {}):
            legacy.setdefault(old_section, {})[old_key] = legacy[new_section].pop(new_key)
    return {section: values for section, values in legacy.items() if values}


@dataclass
class Cell:
    """A grid cell resolved for one setting: its config, hash, run directory and summary file."""

    run: Run
    config: Config
    hash: str
    run_dir: Path
    summary_path: Path

    @property
    def name(self) -> str:
        return self.run.name


def resolve_cells(runs: Sequence[Run], *, base: Config, layers: Sequence[dict[str, Any]], runs_root: Path,
                  results_root: Path, device: str) -> list[Cell]:
    """Each run's config: ``base``, then each overlay of ``layers`` (the budget, the user's ``--set``), then the run's
    overrides; a run's seed sets both ``train.seed`` and ``data.seed`` (init, data order and training frames)."""
    cells, by_name = [], {}
    for run in runs:
        overrides: dict[str, Any] = {}
        for layer in layers:
            overrides |= current_names(layer)
        overrides = current_names(overrides | run.overrides)
        if "train.seed" in run.overrides:
            overrides["data.seed"] = run.overrides["train.seed"]
        overrides |= {"train.device": device}
        config = make_config(overrides, base)
        digest = config_hash(config)
        run_dir = kept_run(runs_root / f"{run.name}-{digest}")
        config.train.runs_dir, config.train.name = str(run_dir.parent), run_dir.name
        if run.after:
            if run.after not in by_name:
                raise CPMError(f"{run.name}: starts from {run.after}, which is not in the grid before it")
            config.train.init_from = str(by_name[run.after].run_dir / "last.pt")
        cell = Cell(run, config, digest, run_dir, kept_run(results_root / f"{run.name}-{digest}.json"))
        cells.append(cell)
        by_name[run.name] = cell
    return cells


def kept_run(path: Path) -> Path:
    """Where a cell's summary or run directory ``path`` is kept: ``path`` itself when it exists, else the same
    name (the same cell and config hash: the same run) in another setting folder of the same config stem, e.g.
    ``supervision`` and ``supervision+7dacf8`` (a file at one length and its pilot's ``--set train.epochs=...`` at
    twice it, which is the file's own length once the pilot doubles it). A run is trained and committed once,
    wherever it was first asked for; a request that finds it elsewhere reads it (or resumes it) there and does not
    train it again. ``path`` when no folder holds it (the cell is to train there)."""
    if path.exists():
        return path
    stem = path.parent.name.split("+")[0]
    found = sorted(other for other in path.parent.parent.glob(f"{glob.escape(stem)}*/{glob.escape(path.name)}")
                   if other.parent.name.split("+")[0] == stem)
    return found[0] if found else path


def is_finished(run_dir: Path, epochs: int) -> bool:
    """True when ``last.pt`` holds the final epoch (the checkpoint, not the logs, says what was trained: a row of
    metrics.jsonl may be ahead of it or, for a moment, behind). A last.pt that cannot be read is a `CPMError`
    naming it."""
    from cpm.runtime.checkpoint import load_checkpoint

    path = run_dir / "last.pt"
    if not path.is_file():
        return False
    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as error:
        raise CPMError(f"{error}; remove {run_dir} to train the cell again") from None
    return checkpoint["epoch"] >= epochs and not checkpoint.get("data_order", {}).get("batches", 0)


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


def evaluate_run(run_dir: Path, *, device: str, decoder: str | None = None) -> dict:
    """`summarize` of ``last.pt`` re-evaluated on its held-out split (with ``decoder`` if given)."""
    from cpm.evaluation.evaluate import evaluate_checkpoint
    from cpm.runtime.checkpoint import load_checkpoint
    from cpm.skeleton import get_skeleton

    checkpoint = load_checkpoint(run_dir / "last.pt")
    config = config_from_dict(checkpoint["config"])
    overrides = {"eval": {"pck_thresholds": REPORT_THRESHOLDS} | ({"decoder": decoder} if decoder else {})}
    results = evaluate_checkpoint(run_dir / "last.pt", overrides=overrides, progress=False, device_name=device)
    return summarize(results, torso=get_skeleton(config.data.skeleton).torso, state=checkpoint["model"])


def machine() -> dict[str, Any]:
    """Where a cell ran: CPU model and kind (bf16 or AVX2 fp32), cores, torch version, CUDA device."""
    import torch

    from cpm.device import cpu_has_native_bf16

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as file:
            cpu = next((line.split(":", 1)[1].strip() for line in file if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpu": cpu, "cpu_bf16": cpu_has_native_bf16(), "cores": os.cpu_count(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def _thin(steps: list[dict], limit: int = MAX_STEP_POINTS) -> list[dict]:
    if len(steps) <= limit:
        return steps
    every = -(-len(steps) // limit)
    return steps[::every] + ([steps[-1]] if (len(steps) - 1) % every else [])


def write_summary(cell: Cell, *, target: str, setting: str, wall_seconds: float, device: str,
                  decoders: Sequence[str] = ()) -> dict:
    """The committed summary of a finished cell: resolved config, revision, per-epoch metrics, training-loss points,
    the `summarize` scores (and under each decoder of ``decoders``), wall time and machine. The wall time is the
    run's own ``run_seconds`` (all its sittings, each to its last checkpoint: a cell stopped and resumed counts what
    one sitting would have taken), or ``wall_seconds`` for a checkpoint that does not carry it. The run's
    records are first cut back to its last.pt (`cpm.training.loop.align_records`)."""
    from cpm.runtime.checkpoint import load_checkpoint
    from cpm.training.loop import align_records

    run_dir = cell.run_dir
    checkpoint = load_checkpoint(run_dir / "last.pt")
    align_records(run_dir, checkpoint)
    steps_path = run_dir / "steps.jsonl"
    data = {
        "target": target, "setting": setting, "cell": cell.name, "hash": cell.hash,
        "config": checkpoint["config"], "revision": checkpoint.get("git_revision", "unknown"),
        "metrics": read_jsonl(run_dir / "metrics.jsonl"),
        "steps": _thin(read_jsonl(steps_path)) if steps_path.is_file() else [],
        "summary": evaluate_run(run_dir, device=device),
        "wall_seconds": round(checkpoint.get("run_seconds", wall_seconds), 1), "machine": machine(),
        "train_seconds": round(sum(line.get("train_seconds", 0.0) for line in read_jsonl(run_dir / "metrics.jsonl")),
                               1),
    }
    if decoders:
        data["decoders"] = {name: evaluate_run(run_dir, device=device, decoder=name) for name in decoders}
    write_text_atomic(cell.summary_path, json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


def is_cell_summary(path: Path) -> bool:
    """Whether ``path`` is a cell summary, ``<cell>-<hash>.json`` (not grid.json, figure5.json beside them)."""
    return re.fullmatch(r".+-[0-9a-f]{8}\.json", path.name) is not None


def read_summary(path: Path) -> dict:
    """A cell summary; one that is not whole JSON (cut short) is a `CPMError` naming it and what to do."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CPMError(f"{path}: not a readable cell summary ({error}); restore it (git checkout), or remove it to "
                       "summarise or train the cell again") from None
    if not isinstance(data, dict):
        raise CPMError(f"{path}: not a cell summary (a JSON {type(data).__name__}, not an object)")
    return data


def dedupe_summary(data: dict, path: Path | str = "summary") -> tuple[dict, int, int]:
    """A cell summary with each epoch of its per-epoch metrics and each step of its loss curve once, the last one
    written (`cpm.io.last_of_each`): a sitting killed after its last checkpoint had logged work that the resumed
    sitting did again from that checkpoint, and only the resumed rows lead to the final weights. Returns
    ``(summary, epochs dropped, steps dropped)``; ``train_seconds`` is summed again over the epochs kept."""
    metrics = last_of_each(data.get("metrics", []), "epoch", path=path)
    steps = last_of_each(data.get("steps", []), "step", path=path)
    dropped = (len(data.get("metrics", [])) - len(metrics), len(data.get("steps", [])) - len(steps))
    repaired = dict(data)
    if metrics != data.get("metrics", []):
        repaired["metrics"] = metrics
        repaired["train_seconds"] = round(sum(line.get("train_seconds", 0.0) for line in metrics), 1)
    if steps != data.get("steps", []):
        repaired["steps"] = steps
    return repaired, *dropped


def repair_summaries(results_root: Path, log: Callable[[str], None] = print) -> list[tuple[Path, int, int]]:
    """`dedupe_summary` on every cell summary under ``<results_root>/runs/``, rewriting those it changes (a one-off
    for summaries written before resumed runs cut their logs back). Returns (path, epochs, steps dropped) of each."""
    changed = []
    for path in sorted((results_root / "runs").rglob("*.json")):
        if not is_cell_summary(path):
            continue
        data = read_summary(path)
        repaired, epochs, steps = dedupe_summary(data, path)
        if repaired != data:
            write_text_atomic(path, json.dumps(repaired, indent=1, sort_keys=True) + "\n")
            log(f"{path}: {epochs} duplicated epochs and {steps} duplicated loss-curve steps removed")
            changed.append((path, epochs, steps))
    log(f"{len(changed)} cell summaries repaired under {results_root / 'runs'}")
    return changed


def _saved_hash(run_dir: Path) -> str | None:
    path = run_dir / "config.toml"
    if not path.is_file():
        return None
    return config_hash(load_config(path))


def run_cells(cells: Sequence[Cell], *, target: str, setting: str, device: str, progress: bool = True,
              decoders: Sequence[str] = (), log: Callable[[str], None] = print) -> list[dict]:
    """Train every cell without a summary (resuming an interrupted run), write its summary; print cells done / to
    do and an ETA from the cells measured in this sitting. Returns the summaries of all cells."""
    from cpm.training.loop import train

    for folder in sorted({cell.summary_path.parent for cell in cells}):
        for orphan in remove_orphaned_temporaries(folder) if folder.is_dir() else []:
            log(f"{orphan}: removed (a write cut short by a stopped process)")
    todo = [cell for cell in cells if not cell.summary_path.is_file()]
    for cell in cells:  # a summary cut short is named before anything trains
        if cell.summary_path.is_file():
            read_summary(cell.summary_path)
    log(f"{target} / {setting}: {len(cells) - len(todo)} of {len(cells)} cells done, {len(todo)} to do")
    durations: list[float] = []
    for index, cell in enumerate(todo, start=1):
        fault_point("cell")
        eta = ""
        if durations:
            eta = f", about {sum(durations) / len(durations) * (len(todo) - index + 1) / 60:.0f} min left"
        log(f"[{index}/{len(todo)}] {cell.name} ({cell.hash}){eta}")
        started = time.perf_counter()
        if not is_finished(cell.run_dir, cell.config.train.epochs):
            saved = _saved_hash(cell.run_dir)
            if saved is not None and saved != cell.hash:
                raise CPMError(f"{cell.run_dir}: its config.toml has hash {saved}, not {cell.hash}; remove the "
                               f"folder or pass the settings it was run with")
            if cell.run.after and not (Path(cell.config.train.init_from)).is_file():
                raise CPMError(f"{cell.name}: needs {cell.config.train.init_from} (the checkpoint of {cell.run.after})"
                               f"; train the chain in one sitting, e.g. --only '*-seed0'")
            log_file = cell.run_dir / "train.log"

            def cell_log(message: str, log_file: Path = log_file) -> None:
                if not progress:
                    log(f"    {message}")
                if log_file.parent.is_dir():
                    with open(log_file, "a", encoding="utf-8") as file:
                        file.write(message + "\n")

            if (cell.run_dir / "last.pt").is_file():
                train(None, resume=cell.run_dir / "last.pt", progress=progress, log=cell_log)
            else:
                if cell.run_dir.exists():  # stopped before its first checkpoint: nothing to keep
                    shutil.rmtree(cell.run_dir)
                train(cell.config, progress=progress, log=cell_log)
        seconds = time.perf_counter() - started
        durations.append(seconds)
        fault_point("cell-trained")
        write_summary(cell, target=target, setting=setting, wall_seconds=seconds, device=device, decoders=decoders)
        log(f"    {cell.name}: done in {seconds / 60:.1f} min -> {cell.summary_path}")
    return [read_summary(cell.summary_path) for cell in cells if cell.summary_path.is_file()]
