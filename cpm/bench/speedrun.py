"""``make speedrun``: time to accuracy of training recipes, measured side by side in one sitting.

    python -m cpm.bench.speedrun experiments/four-stages.toml experiments/default.toml [--set k=v] \\
        [--record experiments/results/speedrun.md --change "stride-4 maps on 96 px"]

Each recipe (a config, with the ``--set`` values) is trained in turn on this machine and evaluated after every epoch
as any run is. Its **time to target** is the wall time from the start of its run to the end of the first evaluation
whose final-stage PCK meets every target, read from ``elapsed_seconds`` in ``metrics.jsonl``; its **images to
target** the training images up to that epoch. The first recipe is the reference of the sitting: by default the
targets are its own final-stage PCK@0.1 and PCK@0.2 at the end of its run (the same accuracy, whatever the kind of
CPU: the procedural recipe, ``experiments/procedural.toml``, ends at 85.51 / 93.76 in bf16 and 84.72 / 93.75 in
fp32), or ``--target 0.2=0.93`` (repeatable)
fixes them; every row gives its time relative to the first one's, so a ratio is only ever taken between runs of one
sitting on one machine.

``--recipe-set N:SECTION.KEY=VALUE`` (repeatable) gives the N-th recipe a value of its own (1 is the reference), so
one config can be timed against itself with one thing changed:

    python -m cpm.bench.speedrun experiments/default.toml experiments/default.toml experiments/default.toml \
        --set train.amp=off --recipe-set 2:train.channels_last=false --recipe-set 3:train.compile=true

``--record FILE`` appends the rows to a Markdown record (change, images and minutes to target, img/s, ratio, CPU
kind, command, revision), started with its header when the file does not exist yet.

``--screen RUN_DIR ...`` trains nothing: it tabulates finished runs (candidates trained beside other work, say) by
images, with their final-stage PCK after each evaluation, where each met the targets, and what its config changes
from the reference recipe (``--reference``, `experiments/default.toml`); images to target do not depend on the
machine's speed, so a screen picks the candidates worth a timed sitting. ``--out FILE`` writes it.
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from cpm.config import load_config
from cpm.errors import CPMError
from cpm.evaluation.report import read_metrics

REFERENCE_THRESHOLDS = (0.1, 0.2)  # without --target: the reference run's final figures at these
RECORD_HEADER = ["# Speedrun: `make train` to its accuracy in less time", "",
                 "Each row: one recipe trained to final-stage PCK targets on the 500-frame held-out split (by "
                 "default the final figures of the sitting's first recipe); the ratio is to the first recipe of the "
                 "same sitting (`python -m cpm.bench.speedrun`, side by side on one machine).", "",
                 "| change | config | targets (final-stage PCK %) | images to target | img/s | minutes to target | "
                 "ratio to the sitting's first | CPU | command | revision |",
                 "|---|---|---|---:|---:|---:|---:|---|---|---|"]


@dataclass
class Outcome:
    """Where a run met its targets (``epoch`` None: it never did)."""

    epoch: int | None
    images: int | None
    seconds: float | None
    images_per_second: float  # mean training images/s over the run's epochs


def final_stage_pck(line: dict, thresholds, where: str = "--target") -> dict[float, float] | None:
    """{threshold: final-stage PCK} of one ``metrics.jsonl`` line; None for a line without an evaluation, and a
    `CPMError` (prefixed ``where``) for a threshold that was not measured."""
    stages = [int(k.rsplit("stage", 1)[1]) for k in line if k.startswith("val/pck@") and "/stage" in k]
    if not stages:
        return None
    keys = {a: f"val/pck@{a:g}/stage{max(stages)}" for a in thresholds}
    missing = [a for a, key in keys.items() if key not in line]
    if missing:
        raise CPMError(f"{where}: PCK@{missing[0]:g} is not measured (add it to eval.pck_thresholds)")
    return {a: line[key] for a, key in keys.items()}


def time_to_target(lines: list[dict], targets: dict[float, float], batch_size: int) -> Outcome:
    """The first evaluation line of a run's ``metrics.jsonl`` whose final-stage PCK meets every target, and the
    training images and wall seconds (``elapsed_seconds``) up to it."""
    rates = [line["images_per_second"] for line in lines if "images_per_second" in line]
    speed = sum(rates) / len(rates) if rates else float("nan")
    for line in lines:
        if meets(line, targets):
            if "elapsed_seconds" not in line:
                raise CPMError("metrics.jsonl: no elapsed_seconds (a run from before they were written)")
            return Outcome(line["epoch"], line["step"] * batch_size, line["elapsed_seconds"], speed)
    return Outcome(None, None, None, speed)


def cpu_kind(amp: str = "auto") -> str:
    """The CPU and the precision a recipe with ``train.amp = amp`` trains in on it: "native bf16" (bf16 autocast on
    AVX512-BF16 or AMX), "AVX2 fp32" (a CPU without them), or "fp32 on a native-bf16 CPU"; with oneDNN's ISA cap
    when ``ONEDNN_MAX_CPU_ISA`` is set (AVX2 imitates an AVX2-only CPU on a newer one)."""
    import torch

    from cpm.device import cpu_has_native_bf16, resolve_amp
    from cpm.experiments.runs import machine

    where, native = machine(), cpu_has_native_bf16()
    precision = "bf16" if resolve_amp(amp, torch.device("cpu")) == torch.bfloat16 else "fp32"
    kind = f"native {precision}" if native and precision == "bf16" else (
        f"{precision} on a native-bf16 CPU" if native else f"AVX2 {precision}")
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return f"{where['cpu']}, {where['cores']} cores, {kind}" + (f", ONEDNN_MAX_CPU_ISA={cap}" if cap else "")


def final_figures(lines: list[dict], thresholds=REFERENCE_THRESHOLDS) -> dict[float, float]:
    """The final-stage PCK at ``thresholds`` of a run's last evaluation (its ``metrics.jsonl`` lines)."""
    for line in reversed(lines):
        pck = final_stage_pck(line, thresholds, "the reference run (or give --target)")
        if pck is not None:
            return pck
    raise CPMError("the reference run has no evaluation to take its figures from")


def meets(line: dict, targets: dict[float, float]) -> bool:
    """Whether a ``metrics.jsonl`` line's final-stage PCK meets every target."""
    pck = final_stage_pck(line, targets)
    return pck is not None and all(pck[a] >= value for a, value in targets.items())


def speedrun(configs: list[str], overrides: list[str], targets: dict[float, float] | None, *, runs_dir: str,
             progress: bool = True, log=print, stop_at_target: bool = False,
             recipe_sets: dict[int, list[str]] | None = None
             ) -> tuple[list[tuple[str, Outcome, str]], dict[float, float]]:
    """Train each config in turn (into ``runs_dir``); -> ([(recipe, outcome, run directory)], targets). Without
    ``targets``, the first run's final figures (`final_figures`) are the targets of all. ``stop_at_target``: a run
    ends at the first evaluation that meets the targets (the reference too when ``targets`` are given).
    ``recipe_sets``: {recipe number from 1: overrides of that recipe alone}; such a recipe is named by its config and
    those overrides, and its run directory by its number."""
    from cpm.training.loop import train

    outcomes = []
    for number, path in enumerate(configs, start=1):
        own = list((recipe_sets or {}).get(number, []))
        name = Path(path).stem + (f"-{number}" if own else "")
        config = load_config(path, [*overrides, *own, f'train.runs_dir="{runs_dir}"', f'train.name="speedrun-{name}"'])
        recipe = " ".join([path, *own])
        log(f"speedrun: training {recipe}")
        until = functools.partial(meets, targets=targets) if stop_at_target and targets is not None else None
        results = train(config, progress=progress, log=log, until=until)
        run_dir = Path(results["run_dir"])
        lines = read_metrics(run_dir)
        if targets is None:
            targets = final_figures(lines)
            log("speedrun: targets, the reference's final figures: "
                + ", ".join(f"PCK@{a:g} >= {100 * v:.2f}" for a, v in targets.items()))
        outcomes.append((recipe, time_to_target(lines, targets, config.train.batch_size), str(run_dir)))
    return outcomes, targets


def format_rows(outcomes: list[tuple[str, Outcome, str]], *, change: str, cpu: str, command: str,
                revision: str, targets: dict[float, float]) -> list[str]:
    """Record rows; the ratio is each recipe's minutes to target over the first recipe's."""
    reference = outcomes[0][1].seconds
    goal = ", ".join(f"@{a:g} >= {100 * v:.2f}" for a, v in sorted(targets.items()))
    rows = []
    for index, (path, outcome, _) in enumerate(outcomes):
        label = (change or "recipe") if index else "reference of this sitting"
        if outcome.epoch is None:
            rows.append(f"| {label} | {path} | {goal} | not reached | {outcome.images_per_second:.1f} | not reached "
                        f"| – | {cpu} | `{command}` | {revision} |")
            continue
        ratio = f"{outcome.seconds / reference:.2f}" if reference else "–"
        rows.append(f"| {label} | {path} | {goal} | {outcome.images:,} | {outcome.images_per_second:.1f} | "
                    f"{outcome.seconds / 60:.1f} | {ratio} | {cpu} | `{command}` | {revision} |")
    return rows


def config_changes(run_config, reference) -> str:
    """The keys whose values ``run_config`` changes from ``reference`` (both `Config`), machine keys aside:
    ``model.stage_kernel = 5, train.lr = 0.003``; "none" for the reference recipe itself."""
    from cpm.config import toml_value
    from cpm.experiments.runs import MACHINE_KEYS

    ours, theirs = run_config.to_dict(), reference.to_dict()
    changed = [f"{section}.{key} = {toml_value(value)}" for section, values in ours.items()
               for key, value in values.items()
               if f"{section}.{key}" not in MACHINE_KEYS and theirs.get(section, {}).get(key) != value]
    return ", ".join(changed) or "none"


def screen_rows(run_dirs: list[Path], targets: dict[float, float], reference: str | Path) -> list[str]:
    """One row per evaluation of each finished run: images so far, final-stage PCK at the targets' thresholds,
    whether every target is met, and (on the run's first row) what its config changes from ``reference``."""
    base = load_config(reference)
    thresholds = sorted(targets)
    rows = [f"| run | changes from `{reference}` | images | " + " | ".join(f"PCK@{a:g}" for a in thresholds)
            + " | targets met |", "|---|---|---:|" + "---:|" * len(thresholds) + "---|"]
    for run_dir in run_dirs:
        config = load_config(run_dir / "config.toml")
        changes = config_changes(config, base)
        named = False  # the run's name and changes on its first row
        for line in read_metrics(run_dir):
            pck = final_stage_pck(line, thresholds, str(run_dir))
            if pck is None:
                continue
            met = all(pck[a] >= targets[a] for a in thresholds)
            rows.append(f"| {'' if named else run_dir.name} | {'' if named else changes} | "
                        f"{line['step'] * config.train.batch_size:,} | "
                        + " | ".join(f"{100 * pck[a]:.2f}" for a in thresholds) + f" | {'yes' if met else 'no'} |")
            named = True
    return rows


def _parse_recipe_sets(texts: list[str], recipes: int) -> dict[int, list[str]]:
    """``["2:train.compile=true", ...]`` -> {2: ["train.compile=true"], ...}; N must name one of the recipes."""
    sets: dict[int, list[str]] = {}
    for text in texts:
        number, sep, override = text.partition(":")
        if not sep or not number.strip().isdigit() or "=" not in override:
            raise CPMError(f"--recipe-set: expected N:SECTION.KEY=VALUE, got {text!r}")
        if not 1 <= int(number) <= recipes:
            raise CPMError(f"--recipe-set {text!r}: there is no recipe {int(number)} (recipes 1 to {recipes})")
        sets.setdefault(int(number), []).append(override)
    return sets


def _parse_targets(texts: list[str]) -> dict[float, float] | None:
    targets = {}
    for text in texts:
        threshold, sep, value = text.partition("=")
        try:
            targets[float(threshold)] = float(value)
        except ValueError:
            raise CPMError(f"--target: expected THRESHOLD=PCK (e.g. 0.2=0.93), got {text!r}") from None
        if not sep or not 0 < float(value) <= 1:
            raise CPMError(f"--target: expected THRESHOLD=PCK with PCK in (0, 1], got {text!r}")
    return targets or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpm.bench.speedrun", description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", help="the recipes; the first is the reference of this sitting")
    parser.add_argument("--screen", nargs="+", type=Path, metavar="RUN_DIR",
                        help="train nothing: tabulate these finished runs by images to target")
    parser.add_argument("--reference", default="experiments/default.toml",
                        help="--screen: the recipe whose changes each run's row names (default %(default)s)")
    parser.add_argument("--out", type=Path, help="--screen: write the table to this Markdown file")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="applied to every recipe (e.g. train.amp=\"off\" for the fp32 kind of run)")
    parser.add_argument("--target", action="append", default=[], metavar="THRESHOLD=PCK",
                        help="final-stage PCK to reach (repeatable; default: the first recipe's final PCK@0.1 "
                             "and PCK@0.2; with --screen, the first run's)")
    parser.add_argument("--runs", default="runs", help="where the runs go (default runs/)")
    parser.add_argument("--record", type=Path, help="append the rows to this Markdown record")
    parser.add_argument("--change", default="", help="what the recipes after the first change (the record's label)")
    parser.add_argument("--stop-at-target", action="store_true",
                        help="end each run at its first evaluation that meets the targets (the reference too when "
                             "--target is given) instead of training all its epochs")
    parser.add_argument("--recipe-set", dest="recipe_sets", action="append", default=[], metavar="N:SECTION.KEY=VALUE",
                        help="a value for the N-th recipe alone (1 is the reference), e.g. "
                             "2:train.channels_last=false; a config may then be given more than once (repeatable)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    from cpm.runtime.checkpoint import git_revision

    if bool(args.configs) == bool(args.screen):
        parser.error("give the recipes to train, or --screen RUN_DIR ... (not both)")
    try:
        targets = _parse_targets(args.target)
        if args.screen:
            return _screen(args, targets)
        recipe_sets = _parse_recipe_sets(args.recipe_sets, len(args.configs))
        for number, path in enumerate(args.configs, start=1):  # every recipe is checked before the first trains
            load_config(path, [*args.overrides, *recipe_sets.get(number, [])])
        revision = git_revision()  # the code that trains, not what the checkout holds when the last run ends
        outcomes, targets = speedrun(args.configs, args.overrides, targets, runs_dir=args.runs,
                                     progress=not args.no_progress, stop_at_target=args.stop_at_target,
                                     recipe_sets=recipe_sets)
        cap = os.environ.get("ONEDNN_MAX_CPU_ISA")  # part of the command: it sets what the CPU runs
        command = (f"ONEDNN_MAX_CPU_ISA={shlex.quote(cap)} " if cap else "") + shlex.join(
            ["python", "-m", "cpm.bench.speedrun", *(sys.argv[1:] if argv is None else argv)])
        amp = load_config(args.configs[0], args.overrides).train.amp
        rows = format_rows(outcomes, change=args.change, cpu=cpu_kind(amp), command=command, revision=revision,
                           targets=targets)
    except CPMError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    print("\n".join(RECORD_HEADER[-2:] + rows))
    if args.record:
        existing = args.record.read_text(encoding="utf-8").rstrip("\n").splitlines() if args.record.is_file() else []
        from cpm.io import write_text_atomic

        write_text_atomic(args.record, "\n".join((existing or RECORD_HEADER) + rows) + "\n")
        print(f"appended {len(rows)} rows to {args.record}")
    return 0


def _screen(args: argparse.Namespace, targets: dict[float, float]) -> int:
    from cpm.io import write_text_atomic
    from cpm.runtime.checkpoint import git_revision

    targets = targets or final_figures(read_metrics(args.screen[0]))
    rows = screen_rows(args.screen, targets, args.reference)
    command = shlex.join(["python", "-m", "cpm.bench.speedrun", *sys.argv[1:]])
    goal = " and ".join(f"PCK@{a:g} >= {100 * v:.2f}" for a, v in sorted(targets.items()))
    goal += "" if args.target else f", the final figures of {args.screen[0].name}"
    text = "\n".join([
        "# Speedrun screen: candidate recipes by images to target", "",
        f"Final-stage PCK (%) on each run's held-out split after every evaluation, against the targets ({goal}). "
        "Images to target do not depend on how fast the machine ran (these runs may have shared it), so no time "
        "is given: a candidate worth it is timed side by side with the reference (`make speedrun`).", "",
        *rows, "", f"Written by `{command}` at revision `{git_revision()}`.", ""])
    print(text, end="")
    if args.out:
        write_text_atomic(args.out, text)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
