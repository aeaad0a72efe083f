"""Process groups for ``torchrun`` and stop signals.

``torchrun --nproc_per_node=N -m cpm train CONFIG`` starts N processes with ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` set; `init_distributed` joins them into one process group
(NCCL on CUDA, gloo on CPU) and picks this rank's device. Without those variables (or with ``WORLD_SIZE=1``)
everything here is a no-op, so one code path serves one process and many.

Each rank reads its share of every epoch through `cpm.data.loader.ShardedSampler`.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import torch
import torch.distributed as dist

from cpm.errors import CPMError


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits: ``rank`` of ``world_size``, and the GPU index on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run directory, logs, TensorBoard events, checkpoints and progress bars."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise CPMError(f"{name}={os.environ[name]!r}: expected an integer (set by torchrun)") from None


def init_distributed(device: torch.device) -> tuple[DistributedContext, torch.device]:
    """Join the process group that torchrun's environment describes; -> (context, this rank's device).

    On CUDA each rank takes GPU ``LOCAL_RANK`` and talks NCCL; on CPU the ranks talk gloo."""
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistributedContext(), device
    context = DistributedContext(rank=_env_int("RANK", 0), world_size=world_size,
                                 local_rank=_env_int("LOCAL_RANK", 0))
    if device.type == "cuda":
        if context.local_rank >= torch.cuda.device_count():
            raise CPMError(f"LOCAL_RANK={context.local_rank}: this node has {torch.cuda.device_count()} GPUs")
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=context.rank, world_size=world_size,
                                **({"device_id": device} if device.type == "cuda" else {}))
    return context, device


def shutdown_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(value, context: DistributedContext):
    """Rank 0's ``value`` on every rank (a run directory name, for example)."""
    if not context.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def all_reduce_mean(values: dict[str, torch.Tensor], context: DistributedContext) -> dict[str, torch.Tensor]:
    """Mean over ranks of each scalar tensor: every rank then logs (and checks) the same losses."""
    if not context.enabled or not values:
        return values
    names = list(values)
    stacked = torch.stack([torch.as_tensor(values[name]).float() for name in names])  # (terms,)
    dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
    return {name: value / context.world_size for name, value in zip(names, stacked, strict=True)}


def any_rank(flag: bool, context: DistributedContext, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any (ranks agree to stop at the same step)."""
    if not context.enabled:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return bool(tensor.item() > 0)


class StopSignals:
    """While active, SIGTERM and SIGINT only set `requested` (the loop finishes its step, writes ``last.pt``
    and stops); a second signal acts as it did before (SIGINT raises KeyboardInterrupt, SIGTERM kills)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.received is not None

    def _handle(self, signum, frame) -> None:
        self.received = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))

    def __enter__(self) -> StopSignals:
        try:
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        except ValueError:  # not the main thread: signals stay as they are
            self._previous.clear()
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
