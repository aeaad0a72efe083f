"""``make bench-accuracy``: the accuracy cost of bf16 autocast, from fp32 and bf16 runs of one config.

One config is trained twice with the same seeds, ``train.amp = "off"`` (fp32) and ``train.amp = "bf16"``, and
the final stage's PCK of both is printed.

    python -m cpm.bench.accuracy experiments/default.toml     # two `make train` runs
    make bench-accuracy [CONFIG=...] [ARGS='--set train.epochs=1']

Both runs start from the same weights and see the same samples in the same order (``train.seed``,
``data.seed``); only the arithmetic of the forward pass differs (`cpm.device.autocast`). Everything else is
the config's, channels-last included. The runs are ``runs/<train.name>-amp-off`` and ``-amp-bf16``.

``--reuse-bf16 RUN_DIR`` takes the bf16 side from a finished run (e.g. the ``make train`` run, whose
``train.amp = "auto"`` is bf16 on a CPU with native bf16) instead of training it again: its ``config.toml`` must
equal the config in everything but the run's name, folder and ``train.amp``; its ``last.pt`` is evaluated again
and its training speed and time are read from its ``metrics.jsonl``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cpm.config import Config, load_config
from cpm.errors import CPMError
from cpm.evaluation.evaluate import evaluate_checkpoint
from cpm.evaluation.report import read_metrics
from cpm.training.loop import train

_IGNORED = {("train", "name"), ("train", "runs_dir"), ("train", "amp")}


def _comparable(config: Config) -> dict:
    return {(section, key): value for section, table in config.to_dict().items() for key, value in table.items()
            if (section, key) not in _IGNORED}


def reuse_run(run_dir: str | Path, config: Config, *, progress: bool = True) -> tuple[dict, float, float]:
    """(evaluation results of ``run_dir/last.pt``, training images/s, training seconds) of a finished bf16 run
    trained with ``config`` (but for name, folder and ``train.amp``)."""
    from cpm.device import cpu_has_native_bf16

    run_dir = Path(run_dir)
    for name in ("config.toml", "metrics.jsonl", "last.pt"):
        if not (run_dir / name).is_file():
            raise CPMError(f"--reuse-bf16: {run_dir / name}: no such file")
    theirs = load_config(run_dir / "config.toml")
    if theirs.train.amp not in ("bf16", "auto") or (theirs.train.amp == "auto" and not cpu_has_native_bf16()):
        raise CPMError(f"--reuse-bf16: {run_dir}: trained with train.amp = {theirs.train.amp!r}, not bf16")
    ours, other = _comparable(config), _comparable(theirs)
    differ = sorted(f"{s}.{k}" for s, k in ours if ours[(s, k)] != other.get((s, k)))
    if differ:
        raise CPMError(f"--reuse-bf16: {run_dir}: its config differs in {', '.join(differ)}")
    lines = read_metrics(run_dir)
    if lines[-1].get("epoch") != config.train.epochs:
        raise CPMError(f"--reuse-bf16: {run_dir}: the run did not finish its {config.train.epochs} epochs")
    results = evaluate_checkpoint(run_dir / "last.pt", progress=progress) | {"run_dir": str(run_dir)}
    return results, *_speed_and_time(lines)


def _speed_and_time(lines: list[dict]) -> tuple[float, float]:
    """(training images/s of the last epoch, seconds in the training loop) of a run's ``metrics.jsonl`` lines."""
    return lines[-1]["images_per_second"], sum(line.get("train_seconds", 0.0) for line in lines)


def accuracy_table(config_path: str | None, overrides: list[str] | tuple[str, ...] = (), *, progress: bool = True,
                   log=print, reuse_bf16: str | Path | None = None) -> str:
    """Train ``config_path`` (+ ``overrides``) with ``train.amp`` off and bf16; -> a Markdown table of the
    final stage's PCK at each ``eval.pck_thresholds``, training images/s and time in the training loop (no
    evaluation) of both runs."""
    name = load_config(config_path, overrides).train.name
    results, seconds, speeds = {}, {}, {}
    for amp in ("bf16", "off") if reuse_bf16 else ("off", "bf16"):  # a run that cannot be reused stops at once
        config = load_config(config_path, [*overrides, f'train.amp="{amp}"', f'train.name="{name}-amp-{amp}"'])
        if amp == "bf16" and reuse_bf16:
            log(f"bf16: evaluating the finished run {reuse_bf16}")
            results[amp], speeds[amp], seconds[amp] = reuse_run(reuse_bf16, config, progress=progress)
            continue
        log(f"training {config_path or 'the defaults'} with train.amp = {amp}")
        results[amp] = train(config, progress=progress, log=log)
        speeds[amp], seconds[amp] = _speed_and_time(read_metrics(Path(results[amp]["run_dir"])))
    thresholds = sorted(results["off"]["pck"])
    header = ("| train.amp | " + " | ".join(f"final-stage PCK@{a:g}" for a in thresholds)
              + " | train images/s | training time | run |")
    rule = "|---|" + "---:|" * len(thresholds) + "---:|---:|---|"
    rows = []
    for amp, label in (("off", "off (fp32)"), ("bf16", "bf16")):
        pck = " | ".join(f"{100 * results[amp]['pck'][a][-1]:.2f}" for a in thresholds)
        rows.append(f"| {label} | {pck} | {speeds[amp]:.1f} | {seconds[amp] / 60:.1f} min | "
                    f"{results[amp]['run_dir']} |")
    difference = " | ".join(f"{100 * (results['bf16']['pck'][a][-1] - results['off']['pck'][a][-1]):+.2f}"
                            for a in thresholds)
    rows.append(f"| bf16 - fp32 (points) | {difference} | {speeds['bf16'] / speeds['off']:.2f}x | | |")
    samples = results["off"]["samples"]
    return "\n".join([header, rule, *rows, "", f"{samples} held-out samples, torso-normalised PCK in %; "
                      f"config {config_path or 'defaults'} {' '.join(overrides)}".rstrip()])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpm.bench.accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="experiments/default.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--reuse-bf16", metavar="RUN_DIR", help="take the bf16 side from this finished run")
    args = parser.parse_args(argv)
    try:
        print(accuracy_table(args.config, args.overrides, progress=not args.no_progress, reuse_bf16=args.reuse_bf16))
    except CPMError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
