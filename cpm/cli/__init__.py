"""The ``cpm`` command: ``cpm train CONFIG``, ``cpm eval CHECKPOINT``, ``cpm score``, ``cpm config CONFIG``,
``cpm rf CONFIG`` (per-stage receptive fields), ``cpm predict CHECKPOINT INPUT...``, ``cpm export CHECKPOINT`` and
``cpm data {render,realism,fit-prior,check}``, ``cpm report RUN_DIR``, ``cpm convert-caffe MODEL.caffemodel``.

Bad input (a missing file, an unknown config key, a file that is not a checkpoint) ends the command
with one line on stderr naming the file or key, and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cpm.cli.convert_caffe import add_convert_caffe_parser, run_convert_caffe
from cpm.cli.data import add_data_parser, run_data
from cpm.cli.eval import add_eval_parser, run_eval
from cpm.cli.export import add_export_parser, run_export
from cpm.cli.predict import add_predict_parser, run_predict
from cpm.cli.score import add_score_parser, run_score
from cpm.errors import CPMError


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. --set train.epochs=2 (repeatable)")


DEFAULT_CONFIG = Path("experiments") / "default.toml"  # what `cpm train` without a config trains (make train's)
# Training images per second on 2 cores of each recipe's model (its file in experiments/), by the kind of CPU, from
# the table of experiments/results/make-train-timings.md (make train in a fresh clone, nothing else running; AMD EPYC
# CPUs): procedural.toml with AVX512-BF16 at 0def65d, AVX2 only at 5a0be23; four-stages.toml (the pose mixture, one
# trunk, 5x5 refinement kernels) AVX2 only, in the training loop of its run there; default.toml (two stages, frames
# rendered ahead and reused for 3 epochs) with AVX512-BF16 at b01e520, the rendering included. A kind without a
# measured figure gets no expected time.
CPU_TRAIN_RATES: dict[str, dict[str, float]] = {
    "procedural.toml": {"native bf16": 67.0, "AVX2 fp32": 27.0},
    "four-stages.toml": {"AVX2 fp32": 33.0},
    "default.toml": {"native bf16": 336.0},
}


def _version() -> str:
    from cpm import __version__

    return f"cpm {__version__}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cpm", description="Convolutional Pose Machines in PyTorch")
    parser.add_argument("--version", action="version", version=_version())
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a model from a TOML config")
    train.add_argument("config", nargs="?",
                       help=f"TOML file (only what differs from the defaults); default {DEFAULT_CONFIG}")
    _add_set(train)
    train.add_argument("--resume", metavar="LAST_PT", help="continue the run that wrote this last.pt")
    train.add_argument("--no-progress", action="store_true", help="no progress bars")
    pose_sources = train.add_mutually_exclusive_group()
    pose_sources.add_argument("--pose-sources", default="", metavar="DATA",
                              help="where the shared data is for the per-pose-source tables at the end of a "
                                   "synthetic-data run (held-out mocap subjects, K2HPD test); default ../shared/data")
    pose_sources.add_argument("--no-pose-sources", action="store_true",
                              help="end without the per-pose-source tables")

    add_eval_parser(commands)
    add_score_parser(commands)
    add_predict_parser(commands)
    add_export_parser(commands)
    add_data_parser(commands)
    add_convert_caffe_parser(commands)

    rf = commands.add_parser("rf", help="per-stage theoretical and effective receptive fields, as a Markdown table")
    rf.add_argument("config", nargs="?", help="TOML file (only what differs from the defaults)")
    _add_set(rf)
    rf.add_argument("--samples", type=int, default=4, help="held-out frames the effective RF is averaged over")
    rf.add_argument("--threshold", type=float, default=0.01,
                    help="fraction of the peak gradient that bounds the effective RF (default 0.01)")
    rf.add_argument("--checkpoint", metavar="PT",
                    help="measure the trained model of this checkpoint (instead of CONFIG's freshly initialised one)")
    rf.add_argument("--theoretical-only", action="store_true",
                    help="skip the effective RF (no held-out frames, no backward pass)")

    report = commands.add_parser("report", help="Markdown table and PNG curves of a run directory (no training)")
    report.add_argument("run_dir")
    report.add_argument("--out", required=True, metavar="PATH",
                        help="writes PATH.md and PATH.png, e.g. experiments/results/default")
    report.add_argument("--command", dest="run_command", default="",
                        help="the command that produced the run, quoted in the table")

    show = commands.add_parser("config", help="print the resolved config (defaults + file + --set)")
    show.add_argument("config", nargs="?")
    _add_set(show)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the command ``args`` names; returns its exit status."""
    return COMMANDS[args.command](args)


def run_report(args: argparse.Namespace) -> int:
    from cpm.evaluation.report import write_report

    print(f"wrote {write_report(args.run_dir, args.out, command=args.run_command)}")
    return 0


def run_config(args: argparse.Namespace) -> int:
    from cpm.config import load_config

    print(load_config(args.config, args.overrides, reject_ignored=True).to_toml(), end="")
    return 0


def run_rf(args: argparse.Namespace) -> int:
    from cpm.evaluation.receptive_field import receptive_field_report

    if args.samples < 1 or not 0 < args.threshold < 1:
        raise CPMError("--samples must be >= 1 and --threshold in (0, 1)")
    print(receptive_field_report(args.config, args.overrides, checkpoint=args.checkpoint, samples=args.samples,
                                 threshold=args.threshold, effective=not args.theoretical_only))
    return 0


def run_train(args: argparse.Namespace) -> int:
    """``cpm train``: train a config (or resume a run), then print the per-stage table and, for synthetic data, the
    table per pose source."""
    from cpm.config import load_config, parse_override
    from cpm.evaluation.report import format_stage_table
    from cpm.training.loop import TrainingInterrupted, train

    if args.pose_sources and not Path(args.pose_sources).is_dir():  # said before training, not after
        raise CPMError(f"--pose-sources {args.pose_sources}: no such folder")
    if args.resume:  # the run's saved config; --set may extend it (train.epochs) or change how it runs
        if args.config:
            raise CPMError(f"cpm train: give a config or --resume, not both ({args.config}, {args.resume})")
        overrides: dict = {}
        for text in args.overrides:
            for section, values in parse_override(text).items():
                overrides.setdefault(section, {}).update(values)
        config = None
    else:
        config, overrides = load_config(_train_config(args.config), args.overrides, reject_ignored=True), None
        _print_cpu_kind(config)
    try:
        results = train(config, resume=args.resume, progress=not args.no_progress, overrides=overrides)
    except TrainingInterrupted as stop:  # SIGTERM / SIGINT: last.pt written after a whole step
        print(f"cpm train: stopped by {stop}", file=sys.stderr)
        return 128 + stop.signum
    if results["rank"] != 0:  # under torchrun, rank 0 alone prints
        return 0
    if results["pck"]:
        print(f"\nPer-stage PCK on the held-out split ({results['run_dir']}):\n")
        print(format_stage_table(results))
    else:  # a paf model: training decodes no keypoints (grouping does), its held-out loss per stage
        print(f"\nPer-stage loss on the held-out split ({results['run_dir']}, {results['samples']} images):\n")
        print("| stage | loss |\n|---:|---:|\n" + "\n".join(f"| {t} | {loss:.5f} |"
                                                      for t, loss in enumerate(results["loss"], start=1)))
    if not args.no_pose_sources:  # the generalisation gap: held-out mocap subjects, K2HPD test poses
        from cpm.cli.eval import pose_sources_after_training

        text = pose_sources_after_training(results["run_dir"], args.pose_sources, progress=not args.no_progress)
        if text:
            print(text)
    from cpm.cli.eval_coco import coco_ap_after_training  # many people: AP of the held-out scenes' boxes

    text = coco_ap_after_training(results["run_dir"], progress=not args.no_progress)
    if text:
        print(text)
    return 0


# Each command of `build_parser` and the function that runs it.
COMMANDS = {"train": run_train, "eval": run_eval, "score": run_score, "predict": run_predict, "export": run_export,
            "data": run_data, "convert-caffe": run_convert_caffe, "rf": run_rf, "report": run_report,
            "config": run_config}


def _train_config(path: str | None) -> str:
    """``cpm train`` without a config trains experiments/default.toml (what ``make train`` trains), found in the
    working folder or beside the package; without one it refuses, so that there is one default run."""
    if path is not None:
        return path
    for candidate in (DEFAULT_CONFIG, Path(__file__).resolve().parents[2] / DEFAULT_CONFIG):
        if candidate.is_file():
            print(f"cpm train: no config given: training {candidate}")
            return str(candidate)
    raise CPMError(f"no config given and no {DEFAULT_CONFIG} here: cpm train CONFIG.toml (cpm config prints every "
                   "key with its default)")


def cpu_kind() -> str:
    """"native bf16" (AVX512-BF16 or AMX: bf16 autocast) or "AVX2 fp32" (bf16 would be emulated: fp32)."""
    from cpm.device import cpu_has_native_bf16

    return "native bf16" if cpu_has_native_bf16() else "AVX2 fp32"


def _print_cpu_kind(config) -> None:
    """On a CPU, say which kind it is (what train.amp = auto does there) and, for the make-train model, how long
    the run should take at the rate measured on 2 cores of that kind."""
    from cpm.device import resolve_device

    try:
        device = resolve_device(config.train.device)
    except CPMError:
        return  # train() names the bad device
    if device.type != "cpu":
        return
    kind, amp = cpu_kind(), config.train.amp
    precision = "bf16" if amp == "bf16" or (amp == "auto" and kind == "native bf16") else "fp32"
    line = f"cpm train: CPU with {kind}, training in {precision} (train.amp = {amp!r})"
    if amp == "auto" and kind != "native bf16":
        measured = CPU_TRAIN_RATES["procedural.toml"]  # the one model measured on both kinds
        line += f", about {measured['native bf16'] / measured[kind]:.1f}x slower than on a CPU with native bf16"
    measured_setup = amp == "auto" and config.data.source == "synthetic" and config.train.threads != 1
    rate = _recipe_rate(config, kind) if measured_setup else None  # the rates are of two threads, not one
    if rate:
        images = config.data.train_samples * config.train.epochs
        line += (f"; expected about {images / rate / 60:.0f} min for {images:,} images at the {rate:.0f} img/s "
                 "measured on 2 cores of this kind")
    print(line)


def _recipe_rate(config, kind: str) -> float | None:
    """The measured training rate (`CPU_TRAIN_RATES`) of the recipe in experiments/ whose model and input size
    ``config`` has, on this kind of CPU; None where none matches or none was measured."""
    from cpm.config import load_config

    folders = (DEFAULT_CONFIG.parent, Path(__file__).resolve().parents[2] / DEFAULT_CONFIG.parent)
    for name, rates in CPU_TRAIN_RATES.items():
        path = next((folder / name for folder in folders if (folder / name).is_file()), None)
        recipe = load_config(path) if path else None
        if recipe and config.model == recipe.model and config.data.input_size == recipe.data.input_size:
            return rates.get(kind)
    return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except CPMError as error:
        print(f"cpm {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cpm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
