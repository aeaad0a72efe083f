"""Where a training step's time goes, layer by layer: ``python -m cpm.bench.layers CONFIG [--fp32] [--nchw]``.

Every convolution of the config's model is timed alone, forward and backward, on an input of the shape it sees in
the step (batch ``train.batch_size`` at ``data.input_size``), in the step's precision and memory layout: its
multiply-adds, milliseconds, achieved GFLOP/s, the share of the ceiling (a large 9x9 convolution timed in the same
rotation, `cpm.bench.timing.ceiling_conv`) and its share of the whole step, which is timed alongside. The convolutions
together against the whole step shows what the rest costs (activations, pooling, the loss, the optimiser). Times are
medians of calls taken in turn (`cpm.bench.timing.timed_alternately`), so a change in the machine's load falls on
every row alike; compare rows of one run only.

    python -m cpm.bench.layers experiments/default.toml            # the step as `make train` runs it
    python -m cpm.bench.layers experiments/default.toml --fp32      # fp32 on a CPU with bf16 too
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from cpm.bench.timing import CEILING_FLOPS, TrainStep, ceiling_conv, timed_alternately
from cpm.config import load_config
from cpm.device import autocast
from cpm.errors import CPMError


def conv_inputs(step: TrainStep) -> list[tuple[str, torch.nn.Conv2d, torch.Size]]:
    """(name, layer, input shape) of every convolution, in the order one forward pass calls them."""
    seen: list[tuple[str, torch.nn.Conv2d, torch.Size]] = []
    handles = []
    for name, module in step.model.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            handles.append(module.register_forward_pre_hook(
                lambda layer, args, name=name: seen.append((name, layer, args[0].shape))))
    try:
        with torch.no_grad(), autocast(step.device, step.dtype):
            step.model(step.image, step.center_map)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def conv_step(layer: torch.nn.Conv2d, shape: torch.Size, step: TrainStep, *,
              input_gradient: bool) -> tuple[Callable[[], None], int]:
    """A forward and backward pass of ``layer`` alone on a random input of ``shape``, with the weights' gradient and,
    with ``input_gradient`` (every layer but those that read the image), the input's, as inside the network; and its
    FLOPs."""
    x = torch.randn(shape, device=step.device)
    if step.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x.requires_grad_(input_gradient)

    def run() -> None:
        layer.zero_grad(set_to_none=True)
        with autocast(step.device, step.dtype):
            out = layer(x)
        out.float().sum().backward()

    out = [(shape[2 + i] + 2 * layer.padding[i] - layer.dilation[i] * (layer.kernel_size[i] - 1) - 1)
           // layer.stride[i] + 1 for i in (0, 1)]
    macs = (shape[0] * layer.out_channels * out[0] * out[1] * layer.in_channels // layer.groups
            * layer.kernel_size[0] * layer.kernel_size[1])
    return run, (3 if input_gradient else 2) * 2 * macs  # forward, weight gradient and the input's


def layer_table(config_path: str, *, fp32: bool = False, nchw: bool = False, seconds: float = 1.0,
                overrides: tuple[str, ...] = ()) -> str:
    config = load_config(config_path, list(overrides))
    device = torch.device("cpu")
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    step = TrainStep(config, batch=config.train.batch_size, device=device, fast=not nchw, fp32=fp32)
    layers = conv_inputs(step)
    functions: dict[str, Callable[[], object]] = {"step": step,
                                                  "ceiling": ceiling_conv(device, step.dtype)}
    flops = {}
    for name, layer, shape in layers:
        reads_image = shape[1:] == step.image.shape[1:]
        functions[name], flops[name] = conv_step(layer, shape, step, input_gradient=not reads_image)
    times = timed_alternately(functions, seconds=seconds, device=device)
    ceiling = CEILING_FLOPS / times["ceiling"]
    precision = "bf16" if step.dtype is not None else "fp32"
    layout = "channels-last" if step.channels_last else "NCHW"
    lines = [f"{config_path}: batch {step.batch} at {config.data.input_size} px, {precision}, {layout}, "
             f"{torch.get_num_threads()} threads; ceiling (9x9 conv, 128 -> 128, forward) {ceiling / 1e9:.0f} GFLOP/s; "
             f"whole step {1e3 * times['step']:.1f} ms ({step.batch / times['step']:.0f} img/s)", "",
             "| layer | input | kernel | GFLOP (fwd + bwd) | ms | GFLOP/s | of the ceiling | of the step |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    total = 0.0
    for name, layer, shape in layers:
        seconds_ = times[name]
        total += seconds_
        lines.append(f"| {name} | {shape[1]} x {shape[2]} x {shape[3]} | {layer.kernel_size[0]}x{layer.kernel_size[1]}"
                     f" -> {layer.out_channels} | {flops[name] / 1e9:.2f} | {1e3 * seconds_:.2f} | "
                     f"{flops[name] / seconds_ / 1e9:.0f} | {100 * flops[name] / seconds_ / ceiling:.0f} % | "
                     f"{100 * seconds_ / times['step']:.0f} % |")
    conv_flops = sum(flops.values())
    lines.append(f"| all convolutions | | | {conv_flops / 1e9:.2f} | {1e3 * total:.1f} | "
                 f"{conv_flops / total / 1e9:.0f} | {100 * conv_flops / total / ceiling:.0f} % | "
                 f"{100 * total / times['step']:.0f} % |")
    rest = 1e3 * max(times["step"] - total, 0.0)
    lines += ["", "The rest of the step (activations, pooling, loss, optimiser; the convolutions alone sum to "
              f"{1e3 * total:.1f} of its {1e3 * times['step']:.1f} ms): {rest:.1f} ms."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cpm.bench.layers", description=__doc__.split("\n\n")[0])
    parser.add_argument("config")
    parser.add_argument("--fp32", action="store_true", help="fp32 even where the CPU computes bf16")
    parser.add_argument("--nchw", action="store_true", help="NCHW model and inputs (default channels-last, fp32 then)")
    parser.add_argument("--seconds", type=float, default=1.0, help="at least this long timing each row")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        print(layer_table(args.config, fp32=args.fp32, nchw=args.nchw,
                          seconds=args.seconds, overrides=tuple(args.overrides)))
    except CPMError as error:
        print(f"python -m cpm.bench.layers: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
