"""``make bench``: speed of every part of the pipeline, measured side by side in one run.

Prints one Markdown table:

- the machine's ceilings: fp32 and bf16 throughput of a large 9x9 convolution (channels-last);
- the training step of each config: images/s and achieved FLOP/s (counted by
  ``torch.utils.flop_counter``) for the plain way (fp32, NCHW) and the way ``cpm train`` runs it
  (channels-last, bf16 autocast where the device has it), the speed-up, and the share of the ceiling;
- the data pipeline: samples/s of render + crop + augment in one worker against what the fast
  training step consumes;
- target generation (``HeatmapCodec.encode``) and decoding per batch;
- inference latency per image.

Shared machines are noisy: compare ratios within one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from cpm.config import load_config
from cpm.engine import autocast, cpu_has_native_bf16, resolve_device
from cpm.losses import stage_weights_for, staged_heatmap_loss
from cpm.models import build_model
from cpm.train import build_codec, build_datasets, model_kwargs


def timed(function: Callable[[], object], *, seconds: float = 3.0, warmup: int = 2, device: torch.device) -> float:
    """Median seconds per call over at least ``seconds`` of calls (at least 3 calls)."""
    for _ in range(warmup):
        function()
    times: list[float] = []
    while sum(times) < seconds or len(times) < 3:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def conv_ceiling(device: torch.device, dtype: torch.dtype | None, *, seconds: float) -> float:
    """FLOP/s of a 9x9 conv 128 -> 128 on 46x46 maps (the paper's trunk layer), batch 8, channels-last."""
    conv = torch.nn.Conv2d(128, 128, 9, padding=4).to(device, memory_format=torch.channels_last)
    x = torch.randn(8, 128, 46, 46, device=device).contiguous(memory_format=torch.channels_last)
    flops = 2 * 8 * 128 * 128 * 81 * 46 * 46

    def run() -> None:
        with torch.no_grad(), autocast(device, dtype):
            conv(x)

    return flops / timed(run, seconds=seconds, device=device)


class TrainStep:
    """One optimiser step of a config's model on a fixed batch (synthetic inputs of the right shapes)."""

    def __init__(self, config_path: str | None, overrides: list[str], *, batch: int, device: torch.device,
                 fast: bool) -> None:
        config = load_config(config_path, overrides)
        self.config, self.device, self.batch = config, device, batch
        kwargs = model_kwargs(config)
        self.model = build_model(config.model.head, **kwargs).to(device)
        self.channels_last = fast
        self.dtype = torch.bfloat16 if fast and (device.type == "cuda" or cpu_has_native_bf16()) else None
        if fast:
            self.model = self.model.to(memory_format=torch.channels_last)
        codec = build_codec(config)
        size = config.data.input_size
        self.image = torch.randn(batch, kwargs["in_channels"], size, size, device=device)
        if fast:
            self.image = self.image.contiguous(memory_format=torch.channels_last)
        keypoints = torch.rand(batch, kwargs["num_joints"], 3, device=device) * (size - 1)
        keypoints[..., 2] = 2
        self.targets, self.weights = codec.encode(keypoints)
        self.center_map = codec.center_map(torch.full((batch, 2), (size - 1) / 2, device=device))
        self.stage_weights = stage_weights_for(config.model.stages)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-5)
        self.parameters = sum(p.numel() for p in self.model.parameters())

    def __call__(self) -> None:
        with autocast(self.device, self.dtype):
            beliefs = self.model(self.image, self.center_map)
        loss = staged_heatmap_loss(beliefs, self.targets, self.weights, self.stage_weights)["loss"]
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def flops(self) -> int:
        with FlopCounterMode(display=False) as counter:
            self()
        return counter.get_total_flops()


def data_rate(config_path: str | None, overrides: list[str], *, seconds: float) -> float:
    """Training samples/s (render + crop + augment + to tensor) in this one process = one worker."""
    train_set, _ = build_datasets(load_config(config_path, overrides))
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        train_set[count % len(train_set)]
        count += 1
    return count / (time.perf_counter() - start)


def run(configs: list[str], *, seconds: float, device_name: str) -> str:
    device = resolve_device(device_name)
    torch.manual_seed(0)
    rows: list[tuple[str, str]] = []
    ceiling32 = conv_ceiling(device, None, seconds=seconds)
    rows.append(("ceiling: 9x9 conv, fp32", f"{ceiling32 / 1e9:.0f} GFLOP/s"))
    fast_dtype = torch.bfloat16 if device.type == "cuda" or cpu_has_native_bf16() else None
    ceiling_fast = ceiling32
    if fast_dtype is not None:
        ceiling_fast = conv_ceiling(device, fast_dtype, seconds=seconds)
        rows.append(("ceiling: 9x9 conv, bf16", f"{ceiling_fast / 1e9:.0f} GFLOP/s"))

    for config_path in configs:
        name = Path(config_path).stem
        config = load_config(config_path)
        batch = 2 if config.data.input_size >= 256 else config.train.batch_size
        per_image = {}
        for fast in (False, True):
            step = TrainStep(config_path, [], batch=batch, device=device, fast=fast)
            flops = step.flops()
            seconds_per_step = timed(step, seconds=seconds, device=device)
            per_image[fast] = batch / seconds_per_step
            label = "channels-last + bf16" if fast and step.dtype is not None else (
                "channels-last" if fast else "plain fp32 NCHW")
            achieved = flops / seconds_per_step
            ceiling = ceiling_fast if fast else ceiling32
            rows.append((f"train step, {name} ({step.parameters / 1e6:.2f}M params, batch {batch}), {label}",
                         f"{per_image[fast]:.2f} img/s, {achieved / 1e9:.0f} GFLOP/s "
                         f"({100 * achieved / ceiling:.0f} % of ceiling)"))
        rows.append((f"train step, {name}: speed-up over plain", f"{per_image[True] / per_image[False]:.2f}x"))
        if name == "default":
            samples = data_rate(config_path, [], seconds=seconds)
            rows.append(("data: render + crop + augment, one worker", f"{samples:.0f} samples/s"))
            rows.append(("data: one worker / what the fast step consumes", f"{samples / per_image[True]:.2f}x"))
            codec = build_codec(config)
            size = config.data.input_size
            keypoints = torch.rand(batch, 15, 3, device=device) * (size - 1)
            keypoints[..., 2] = 2
            encode_s = timed(lambda codec=codec, k=keypoints: codec.encode(k), seconds=seconds, device=device)
            heatmaps, _ = codec.encode(keypoints)
            decode_s = timed(lambda codec=codec, h=heatmaps: codec.decode(h), seconds=seconds, device=device)
            rows.append((f"targets: encode batch of {batch}", f"{1e3 * encode_s:.2f} ms"))
            rows.append((f"decode (parabola): batch of {batch}", f"{1e3 * decode_s:.2f} ms"))
        model = TrainStep(config_path, [], batch=1, device=device, fast=True)
        model.model.eval()

        def infer(step: TrainStep = model) -> None:
            with torch.no_grad(), autocast(device, step.dtype):
                step.model(step.image, step.center_map)

        rows.append((f"inference, {name}, batch 1", f"{1e3 * timed(infer, seconds=seconds, device=device):.1f} ms"))

    header = (f"Machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
              f"device {device}, torch {torch.__version__}")
    lines = [header, "", "| measurement | result |", "|---|---:|", *(f"| {a} | {b} |" for a, b in rows)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cpm.bench", description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", default=["experiments/default.toml"])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    print(run(args.configs, seconds=args.seconds, device_name=args.device))


if __name__ == "__main__":
    main()
