"""Batches of a `PoseDataset`: each rank's share of each epoch, in an order that a run can resume mid-epoch.

Data order: `ShardedSampler` draws one permutation per epoch from (seed, epoch), the same for every world size,
and gives rank r every W-th index of it. The global batch j is then always permutation[j*B:(j+1)*B], on one
process or on W, so a run can resume mid-epoch, even on another number of processes, by skipping the first
``batches * B / W`` indices of each rank.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cpm.data.dataset import PoseDataset


class ShardedSampler(Sampler[int]):
    """Rank ``rank``'s share of one shuffled (or ordered) epoch, starting ``start`` indices into that share.

    The epoch's order is ``torch.randperm(n)`` from a generator seeded ``seed + epoch`` (as
    `torch.utils.data.DistributedSampler`), padded by repetition to a multiple of ``world_size``; rank r takes
    positions r, r + W, r + 2W, ... `set_start` skips the indices of batches a resumed run already trained on."""

    def __init__(self, size: int, *, world_size: int = 1, rank: int = 0, shuffle: bool = True, seed: int = 0) -> None:
        self.size, self.world_size, self.rank = size, world_size, rank
        self.shuffle, self.seed = shuffle, seed
        self.epoch = 0
        self.start = 0
        self.per_rank = -(-size // world_size)  # ceil

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_start(self, start: int) -> None:
        """Skip the first ``start`` indices of this rank's share of the current epoch (0 = the whole epoch)."""
        self.start = start

    def order(self) -> list[int]:
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(self.size, generator=generator).tolist()
        else:
            indices = list(range(self.size))
        padding = self.per_rank * self.world_size - self.size
        indices += (indices * (padding // max(self.size, 1) + 1))[:padding]
        return indices[self.rank::self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.order()[self.start:])

    def __len__(self) -> int:
        return max(0, self.per_rank - self.start)


class _EpochTaggedSampler(ShardedSampler):
    """`ShardedSampler` whose indices carry the epoch they belong to: (epoch, index)."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, indices = self.epoch, super().__iter__()
        return ((epoch, index) for index in indices)


class _AtEpoch(Dataset):
    """``dataset[(epoch, index)]`` is sample ``index`` of epoch ``epoch``, in whichever process reads it.

    Persistent DataLoader workers keep the copy of the dataset they started with, so an epoch set on the
    dataset in the main process (``set_epoch``) would never reach them; the epoch travels with each index."""

    def __init__(self, dataset: PoseDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = item
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


def resolve_workers(workers: int, device: torch.device) -> int:
    """``data.workers``, with -1 resolved for ``device``."""
    if workers >= 0:
        return workers
    return min(8, os.cpu_count() or 1) if device.type == "cuda" else 1


def make_loader(dataset: PoseDataset, *, batch_size: int, shuffle: bool, workers: int, device: torch.device,
                seed: int, drop_last: bool = False, world_size: int = 1, rank: int = 0) -> DataLoader:
    """``rank``'s share of each epoch, in an order that is a function of (seed, epoch) alone
    (``loader.sampler.set_epoch``; `cpm.training.distributed.ShardedSampler`), so a resumed run, and a run on any
    number of processes, sees the same global batches as an uninterrupted one. The sampler's epoch is also
    the dataset's: sample i of epoch e is ``dataset.set_epoch(e); dataset[i]``.

    With ``workers`` > 0 the workers persist from epoch to epoch (no new processes, no re-imports) and each
    keeps 4 batches in flight; on CUDA the batches come in pinned memory (asynchronous copies). ``workers = -1``
    (`resolve_workers`): one worker on a CPU, where the cores are busy training, and the cores (up to 8) on CUDA."""
    workers = resolve_workers(workers, device)
    sampler = _EpochTaggedSampler(len(dataset), world_size=world_size, rank=rank, shuffle=shuffle, seed=seed)
    return DataLoader(_AtEpoch(dataset), batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=device.type == "cuda", drop_last=drop_last, persistent_workers=workers > 0,
                      prefetch_factor=4 if workers else None)
