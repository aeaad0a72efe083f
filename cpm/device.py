"""Where and in which precision a model runs: device choice, autocast dtype, ``torch.compile``."""

from __future__ import annotations

import contextlib

import torch

from cpm.errors import CPMError, first_line


def resolve_device(name: str) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CPMError(f"train.device: unknown device {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CPMError(f"train.device: {name!r} requested but CUDA is not available")
    return device


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 convolutions are then several times faster than fp32 on the CPU."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.amp`` on ``device``; None means full fp32."""
    if amp == "off":
        return None
    if amp == "fp16":
        if device.type != "cuda":
            raise CPMError("train.amp: fp16 needs a CUDA device (use bf16 or off)")
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None or device.type not in ("cuda", "cpu"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def compile_model(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``torch.compile(model)`` (TorchInductor), once a one-line function has been compiled and run on ``device``:
    inductor builds C++ (CPU) or Triton (CUDA) kernels, and where it cannot, ``train.compile`` fails here with
    one line instead of a long traceback at the first step."""
    try:
        probe = torch.compile(lambda x: torch.relu(x) * 2, dynamic=False)
        probe(torch.ones(8, device=device))
    except Exception as error:  # noqa: BLE001 - whatever breaks inside inductor, the user gets one line
        raise CPMError(f"train.compile: torch.compile cannot build kernels for {device} on this machine "
                       f"({first_line(error)}); set train.compile = false") from None
    return torch.compile(model)
