"""Training-step speed of one config against variants of it, timed side by side in one process.

    python -m cpm.bench.variants experiments/default.toml \\
        --variant strided-1=model.trunk_strided_levels=1 --variant strided-3=model.trunk_strided_levels=3

Each variant is the config with its ``KEY=VALUE`` overrides (several joined by ``;``). One optimiser step of each
(`cpm.bench.timing.TrainStep`, channels-last, bf16 where the CPU or GPU computes it; ``--fp32`` for fp32) is timed in
turn, a, b, c, a, b, c, ... (`timed_alternately`), so a change of the machine's load falls on all alike; the table
gives the median time per step, images per second, forward multiply-adds per frame and the speed-up over the config
as it is. Speed only: whether a variant keeps the accuracy is a training run's question (`make speedrun`).
"""

from __future__ import annotations

import argparse
import sys

import torch

from cpm.config import load_config
from cpm.device import resolve_device
from cpm.errors import CPMError


def parse_variant(text: str) -> tuple[str, list[str]]:
    """``"name=section.key=value;section.key=value"`` -> (name, overrides)."""
    name, sep, rest = text.partition("=")
    overrides = [part.strip() for part in rest.split(";") if part.strip()]
    if not sep or not name or not overrides or any("=" not in part for part in overrides):
        raise CPMError(f"--variant: expected NAME=SECTION.KEY=VALUE[;SECTION.KEY=VALUE], got {text!r}")
    return name, overrides


def variant_rows(config_path: str, variants: list[tuple[str, list[str]]], *, batch: int, seconds: float,
                 device: torch.device, fp32: bool = False) -> list[str]:
    """Markdown rows: variant, its overrides, ms per step, img/s, forward multiply-adds per frame, speed-up."""
    from cpm.bench.timing import TrainStep, timed_alternately
    from cpm.evaluation.receptive_field import stage_multiply_adds

    configs = {"as is": load_config(config_path)}
    for name, overrides in variants:
        configs[name] = load_config(config_path, overrides)  # every variant checked before anything is timed
    steps = {}
    for name, config in configs.items():
        torch.manual_seed(0)
        steps[name] = TrainStep(config, batch=batch, device=device, fast=True, fp32=fp32)
    times = timed_alternately(steps, seconds=seconds, device=device)
    given = dict(variants)
    rows = []
    for name, step in steps.items():
        macs = stage_multiply_adds(step.model, step.image[:1], step.center_map[:1])[-1]
        rows.append(f"| {name} | {'; '.join(given.get(name, [])) or '–'} | {1000 * times[name]:.1f} | "
                    f"{batch / times[name]:.0f} | {macs / 1e6:.2f} | {times['as is'] / times[name]:.2f}x |")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpm.bench.variants", description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=SECTION.KEY=VALUE[;...]",
                        help="a variant of the config (repeatable)")
    parser.add_argument("--batch", type=int, default=0, help="batch size (default: the config's train.batch_size)")
    parser.add_argument("--seconds", type=float, default=5.0, help="at least this long timing each variant")
    parser.add_argument("--fp32", action="store_true", help="fp32 even where the device computes bf16")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        variants = [parse_variant(text) for text in args.variant]
        if not variants:
            raise CPMError("--variant: give at least one variant to time against the config")
        device = resolve_device(args.device)
        batch = args.batch or load_config(args.config).train.batch_size
        rows = variant_rows(args.config, variants, batch=batch, seconds=args.seconds, device=device, fp32=args.fp32)
    except CPMError as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    from cpm.bench.speed import machine_description

    precision = "fp32" if args.fp32 else "the fast precision (bf16 where the device computes it)"
    print("\n".join([machine_description(device), "",
                     f"{args.config}: one training step at batch {batch}, channels-last, {precision}; steps timed "
                     "alternately in one process", "",
                     "| variant | overrides | ms / step | img/s | forward multiply-adds / frame (M) | speed-up |",
                     "|---|---|---:|---:|---:|---:|", *rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
