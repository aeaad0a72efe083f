"""``make bench-accuracy``: the accuracy cost of bf16 autocast, from fp32 and bf16 runs of one config.

One config is trained twice with the same seeds, ``train.amp = "off"`` (fp32) and ``train.amp = "bf16"``, and
the final stage's PCK of both is printed.

    python -m cpm.bench_accuracy experiments/default.toml     # two `make train` runs
    make bench-accuracy [CONFIG=...] [ARGS='--set train.epochs=1']

Both runs start from the same weights and see the same samples in the same order (``train.seed``,
``data.seed``); only the arithmetic of the forward pass differs (`cpm.engine.autocast`). Everything else is
the config's, channels-last included. The runs are ``runs/<train.name>-amp-off`` and ``-amp-bf16``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cpm.config import load_config
from cpm.errors import CPMError
from cpm.train import train


def accuracy_table(config_path: str | None, overrides: list[str] | tuple[str, ...] = (), *, progress: bool = True,
                   log=print) -> str:
    """Train ``config_path`` (+ ``overrides``) with ``train.amp`` off and bf16; -> a Markdown table of the
    final stage's PCK at each ``eval.pck_thresholds``, training images/s and wall time of both runs."""
    name = load_config(config_path, overrides).train.name
    results, seconds, speeds = {}, {}, {}
    for amp in ("off", "bf16"):
        config = load_config(config_path, [*overrides, f'train.amp="{amp}"', f'train.name="{name}-amp-{amp}"'])
        log(f"training {config_path or 'the defaults'} with train.amp = {amp}")
        start = time.perf_counter()
        results[amp] = train(config, progress=progress, log=log)
        seconds[amp] = time.perf_counter() - start
        lines = (Path(results[amp]["run_dir"]) / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
        speeds[amp] = json.loads(lines[-1])["images_per_second"]
    thresholds = sorted(results["off"]["pck"])
    header = ("| train.amp | " + " | ".join(f"final-stage PCK@{a:g}" for a in thresholds)
              + " | train images/s | wall time | run |")
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
    parser = argparse.ArgumentParser(prog="python -m cpm.bench_accuracy", description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="experiments/default.toml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        print(accuracy_table(args.config, args.overrides, progress=not args.no_progress))
    except CPMError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
