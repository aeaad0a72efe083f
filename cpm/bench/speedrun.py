"""``make speedrun``: time to accuracy of training recipes, measured side by side in one sitting.

    python -m cpm.bench.speedrun experiments/default.toml experiments/fast.toml [--set k=v] \\
        [--record experiments/results/speedrun.md --change "stride-4 maps on 96 px"]

Each recipe (a config, with the ``--set`` values) is trained in turn on this machine and evaluated after every epoch
as any run is. Its **time to target** is the wall time from the start of its run to the end of the first evaluation
whose final-stage PCK meets every target (``--target 0.2=0.93 --target 0.1=0.85`` by default: the ``make train``
figures on its 500 held-out frames), read from ``elapsed_seconds`` in ``metrics.jsonl``; its **images to target** the
training images up to that epoch. The first recipe is the reference of the sitting: every row gives its time
relative to the first one's, so a ratio is only ever taken between runs of one sitting on one machine.

``--record FILE`` appends the rows to a Markdown record (change, images and minutes to target, img/s, ratio, CPU
kind, command, revision), started with its header when the file does not exist yet.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from cpm.config import load_config
from cpm.errors import CPMError
from cpm.evaluation.report import read_metrics

DEFAULT_TARGETS = {0.2: 0.93, 0.1: 0.85}
RECORD_HEADER = ["# Speedrun: `make train` to its accuracy in less time", "",
                 "Each row: one recipe trained to final-stage PCK targets on the 500-frame held-out split; the ratio "
                 "is to the first recipe of the same sitting (`python -m cpm.bench.speedrun`, side by side on one "
                 "machine).", "",
                 "| change | config | images to target | img/s | minutes to target | ratio to the sitting's first | "
                 "CPU | command | revision |",
                 "|---|---|---:|---:|---:|---:|---|---|---|"]


@dataclass
class Outcome:
    """Where a run met its targets (``epoch`` None: it never did)."""

    epoch: int | None
    images: int | None
    seconds: float | None
    images_per_second: float  # mean training images/s over the run's epochs


def time_to_target(lines: list[dict], targets: dict[float, float], batch_size: int) -> Outcome:
    """The first evaluation line of a run's ``metrics.jsonl`` whose final-stage PCK meets every target, and the
    training images and wall seconds (``elapsed_seconds``) up to it."""
    rates = [line["images_per_second"] for line in lines if "images_per_second" in line]
    speed = sum(rates) / len(rates) if rates else float("nan")
    for line in lines:
        stages = [int(k.rsplit("stage", 1)[1]) for k in line if k.startswith("val/pck@") and "/stage" in k]
        if not stages:
            continue
        last = max(stages)
        missing = [a for a in targets if f"val/pck@{a:g}/stage{last}" not in line]
        if missing:
            raise CPMError(f"--target: PCK@{missing[0]:g} is not measured (add it to eval.pck_thresholds)")
        if all(line[f"val/pck@{a:g}/stage{last}"] >= value for a, value in targets.items()):
            if "elapsed_seconds" not in line:
                raise CPMError("metrics.jsonl: no elapsed_seconds (a run from before they were written)")
            return Outcome(line["epoch"], line["step"] * batch_size, line["elapsed_seconds"], speed)
    return Outcome(None, None, None, speed)


def cpu_kind() -> str:
    from cpm.device import cpu_has_native_bf16
    from cpm.experiments.runs import machine

    where = machine()
    return f"{where['cpu']}, {where['cores']} cores, {'native bf16' if cpu_has_native_bf16() else 'AVX2 fp32'}"


def speedrun(configs: list[str], overrides: list[str], targets: dict[float, float], *, runs_dir: str,
             progress: bool = True, log=print) -> list[tuple[str, Outcome, str]]:
    """Train each config in turn (into ``runs_dir``); -> [(config, outcome, run directory)]."""
    from cpm.training.loop import train

    outcomes = []
    for path in configs:
        name = Path(path).stem
        config = load_config(path, [*overrides, f'train.runs_dir="{runs_dir}"', f'train.name="speedrun-{name}"'])
        log(f"speedrun: training {path}")
        results = train(config, progress=progress, log=log)
        run_dir = Path(results["run_dir"])
        outcomes.append((path, time_to_target(read_metrics(run_dir), targets, config.train.batch_size), str(run_dir)))
    return outcomes


def format_rows(outcomes: list[tuple[str, Outcome, str]], *, change: str, cpu: str, command: str,
                revision: str) -> list[str]:
    """Record rows; the ratio is each recipe's minutes to target over the first recipe's."""
    reference = outcomes[0][1].seconds
    rows = []
    for index, (path, outcome, _) in enumerate(outcomes):
        label = (change or "recipe") if index else "reference of this sitting"
        if outcome.epoch is None:
            rows.append(f"| {label} | {path} | not reached | {outcome.images_per_second:.1f} | not reached | – | "
                        f"{cpu} | `{command}` | {revision} |")
            continue
        ratio = f"{outcome.seconds / reference:.2f}" if reference else "–"
        rows.append(f"| {label} | {path} | {outcome.images:,} | {outcome.images_per_second:.1f} | "
                    f"{outcome.seconds / 60:.1f} | {ratio} | {cpu} | `{command}` | {revision} |")
    return rows


def _parse_targets(texts: list[str]) -> dict[float, float]:
    targets = {}
    for text in texts:
        threshold, sep, value = text.partition("=")
        try:
            targets[float(threshold)] = float(value)
        except ValueError:
            raise CPMError(f"--target: expected THRESHOLD=PCK (e.g. 0.2=0.93), got {text!r}") from None
        if not sep or not 0 < float(value) <= 1:
            raise CPMError(f"--target: expected THRESHOLD=PCK with PCK in (0, 1], got {text!r}")
    return targets or dict(DEFAULT_TARGETS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpm.bench.speedrun", description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="+", help="the recipes; the first is the reference of this sitting")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="applied to every recipe (e.g. train.amp=\"off\" for the fp32 kind of run)")
    parser.add_argument("--target", action="append", default=[], metavar="THRESHOLD=PCK",
                        help="final-stage PCK to reach (repeatable; default 0.2=0.93 and 0.1=0.85)")
    parser.add_argument("--runs", default="runs", help="where the runs go (default runs/)")
    parser.add_argument("--record", type=Path, help="append the rows to this Markdown record")
    parser.add_argument("--change", default="", help="what the recipes after the first change (the record's label)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    from cpm.training.checkpoint import git_revision

    try:
        targets = _parse_targets(args.target)
        for path in args.configs:
            load_config(path, args.overrides)  # every recipe is checked before the first trains
        outcomes = speedrun(args.configs, args.overrides, targets, runs_dir=args.runs,
                            progress=not args.no_progress)
        command = shlex.join(["python", "-m", "cpm.bench.speedrun", *(sys.argv[1:] if argv is None else argv)])
        rows = format_rows(outcomes, change=args.change, cpu=cpu_kind(), command=command, revision=git_revision())
    except CPMError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print("\n".join(RECORD_HEADER[-2:] + rows))
    if args.record:
        existing = args.record.read_text(encoding="utf-8").rstrip("\n").splitlines() if args.record.is_file() else []
        from cpm.io import write_text_atomic

        write_text_atomic(args.record, "\n".join((existing or RECORD_HEADER) + rows) + "\n")
        print(f"appended {len(rows)} rows to {args.record}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
