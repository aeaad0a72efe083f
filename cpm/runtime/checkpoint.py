"""Checkpoints: written atomically (temporary file, then rename), read with ``weights_only=True``.

A checkpoint is a dict: ``model`` (state dict), ``config`` (the resolved config as a dict, whose ``[model]``
section and skeleton rebuild the network), ``optimizer``, ``scheduler``, ``scaler``, ``epoch`` (epochs
completed), ``step``, ``best_metric``, ``data_order`` (``seed``, ``epoch``, ``batches``: the sampler's order
is a function of seed and epoch, and ``batches`` of the next epoch were already trained on when a stop
signal wrote the checkpoint mid-epoch), ``rng`` (Python, numpy, torch and CUDA generator states) and
``git_revision``.
``weights_only`` loading refuses pickled code, so a checkpoint from an untrusted source cannot run
anything.
"""

from __future__ import annotations

import pickle
import random
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cpm.config import config_from_dict
from cpm.errors import CheckpointError, CPMError, first_line
from cpm.io import atomic_write

REQUIRED_KEYS = ("model", "config")


def git_revision() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def rng_state() -> dict[str, Any]:
    """Generator states in forms ``weights_only`` loading accepts (tensors and plain Python values)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()  # noqa: NPY002 - global state, saved as is
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(tuple(v if not isinstance(v, list) else tuple(v) for v in state["python"]))
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),  # noqa: NPY002
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Write to a temporary file in the same folder and rename it over ``path``: a crash at any
    moment leaves either the old file or the new one, never a torn one."""
    with atomic_write(path) as file:
        torch.save(checkpoint, file)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``; any problem becomes a `CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; anything else is not a checkpoint
        raise CheckpointError(f"{path}: not a readable checkpoint (not a file written by torch.save)")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"GLOBAL ([\w.]+)", str(error))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(f"{path}: refused to load, not a plain-tensor checkpoint: it holds pickled code or "
                              f"objects{what}, which weights_only loading never runs") from None
    except Exception as error:  # noqa: BLE001 - whatever the bytes are, the answer is "not a checkpoint"
        raise CheckpointError(f"{path}: not a readable checkpoint ({first_line(error)})") from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED_KEYS):
        raise CheckpointError(f"{path}: not a cpm checkpoint (expected keys {', '.join(REQUIRED_KEYS)})")
    return checkpoint


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> None:
    """``load_state_dict`` whose mismatch error names the checkpoint and the first differing keys."""
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        detail = str(error).splitlines()[1].strip() if len(str(error).splitlines()) > 1 else str(error)
        raise CheckpointError(f"{path}: checkpoint does not fit this architecture ({detail[:200]})") from None


def load_matching_state(model: torch.nn.Module, path: str | Path) -> list[str]:
    """Copy the weights of the checkpoint at ``path`` whose names and shapes match ``model``'s (``train.init_from``:
    a T-stage model started from a (T-1)-stage one keeps stages 1..T-1). Returns the names copied; a checkpoint
    that shares no weight with the model is a `CheckpointError`."""
    state = load_checkpoint(path)["model"]
    own = model.state_dict()
    matching = {name: value for name, value in state.items()
                if name in own and tuple(own[name].shape) == tuple(value.shape)}
    if not matching:
        raise CheckpointError(f"{path}: no weight of this checkpoint fits the model (train.init_from)")
    model.load_state_dict(matching, strict=False)
    return sorted(matching)


def load_model(path: str | Path, device: torch.device | str = "cpu"):
    """Checkpoint -> (model in eval mode on ``device``, its `Config`). Any mismatch is a `CheckpointError`."""
    checkpoint = load_checkpoint(path)
    try:
        config = config_from_dict(checkpoint["config"])
    except CPMError as error:
        raise CheckpointError(f"{path}: {error}") from None
    try:
        from cpm.runtime.build import build_network  # the network of the config, as training built it

        model = build_network(config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot rebuild the model from its config ({error})") from None
    load_model_state(model, checkpoint["model"], path)
    return model.to(device).eval(), config
