"""Timing helpers of `cpm.bench.speed`: alternating timers, the convolution ceiling, and one training step of a config
run the plain way (fp32, NCHW) or the fast way (channels-last, bf16 autocast where the device has it)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from cpm.config import Config
from cpm.device import autocast, cpu_has_native_bf16
from cpm.runtime.build import build_codec, build_loss, build_network, build_stage_weights
from cpm.training.step import train_step


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable[[], object], *, seconds: float = 3.0, warmup: int = 2, device: torch.device) -> float:
    """Median seconds per call over at least ``seconds`` of calls (at least 3 calls)."""
    return timed_alternately({"f": function}, seconds=seconds, warmup=warmup, device=device)["f"]


def timed_alternately(functions: dict[str, Callable[[], object]], *, seconds: float, warmup: int = 1,
                      device: torch.device) -> dict[str, float]:
    """Median seconds per call of each function, called in turn (a, b, a, b, ...) until each has run at least
    ``seconds`` and 3 times (one that has is left out of the later turns): a change of the machine's load then
    falls on all of them alike."""
    for function in functions.values():
        for _ in range(warmup):
            function()
    times: dict[str, list[float]] = {name: [] for name in functions}

    def done(name: str) -> bool:
        return sum(times[name]) >= seconds and len(times[name]) >= 3

    while not all(done(name) for name in functions):
        for name, function in functions.items():
            if done(name):
                continue
            sync(device)
            start = time.perf_counter()
            function()
            sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


def fast_dtype(device: torch.device) -> torch.dtype | None:
    """bf16 where the device computes it natively (CUDA, CPUs with AVX512-BF16 or AMX), else fp32 (None)."""
    return torch.bfloat16 if device.type == "cuda" or cpu_has_native_bf16() else None


CEILING_FLOPS = 2 * 8 * 128 * 128 * 81 * 46 * 46


def ceiling_conv(device: torch.device, dtype: torch.dtype | None) -> Callable[[], None]:
    """A 9x9 conv 128 -> 128 on 46x46 maps (the paper's trunk layer), batch 8, channels-last: CEILING_FLOPS a call."""
    conv = torch.nn.Conv2d(128, 128, 9, padding=4).to(device, memory_format=torch.channels_last)
    x = torch.randn(8, 128, 46, 46, device=device).contiguous(memory_format=torch.channels_last)

    def run() -> None:
        with torch.no_grad(), autocast(device, dtype):
            conv(x)

    return run


class TrainStep:
    """One optimiser step of a config's model on a fixed batch (random images, keypoints and centre).

    ``fast=False``: fp32, NCHW. ``fast=True``: channels-last model and inputs, bf16 autocast where the
    device has it (`fast_dtype`), unless ``fp32``. AdamW at a tiny learning rate, so every step computes the same
    thing."""

    def __init__(self, config: Config, *, batch: int, device: torch.device, fast: bool, fp32: bool = False) -> None:
        self.device, self.batch = device, batch
        self.model = build_network(config).to(device)
        self.channels_last = fast
        self.dtype = fast_dtype(device) if fast and not fp32 else None
        if fast:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.codec = build_codec(config)
        size = config.data.input_size
        self.image = torch.randn(batch, self.model.in_channels, size, size, device=device)
        if fast:
            self.image = self.image.contiguous(memory_format=torch.channels_last)
        keypoints = torch.rand(batch, self.model.num_joints, 3, device=device) * (size - 1)
        keypoints[..., 2] = 2
        self.targets, self.weights = self.codec.encode(keypoints)
        self.center_map = self.codec.center_map(torch.full((batch, 2), (size - 1) / 2, device=device))
        self.stage_weights = build_stage_weights(config)
        self.loss_fn = build_loss(config, self.model)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-5)
        self.scaler = torch.amp.GradScaler(device.type, enabled=False)
        self.parameters = sum(p.numel() for p in self.model.parameters())

    @property
    def label(self) -> str:
        if not self.channels_last:
            return "plain fp32 NCHW"
        return "channels-last + bf16" if self.dtype is not None else "channels-last"

    def run(self, image: torch.Tensor, center_map: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> None:
        train_step(self.model, image, center_map, targets, weights, optimizer=self.optimizer, loss_fn=self.loss_fn,
                   stage_weights=self.stage_weights, device=self.device, scaler=self.scaler, amp_dtype=self.dtype)

    def __call__(self) -> None:
        self.run(self.image, self.center_map, self.targets, self.weights)

    def flops(self) -> int:
        with FlopCounterMode(display=False) as counter:
            self()
        return counter.get_total_flops()
