"""torchrun-style training on CPU with gloo: two processes with the global batch split between them train the
same weights as one process, and evaluate to the same metrics."""

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from cpm.config import load_config
from cpm.data.loader import ShardedSampler
from cpm.errors import CPMError
from cpm.runtime.checkpoint import load_checkpoint
from cpm.training.loop import train
from tests.helpers import tiny_overrides


def quiet(*_args, **_kwargs):
    pass


def ddp_overrides(tmp_path, **extra) -> list[str]:
    """4 fp32 deterministic steps of a global batch of 8 on the CPU."""
    return tiny_overrides(tmp_path, **{
        "data.train_samples": 32, "train.log_every": 1, "train.deterministic": True, "train.threads": 1,
        "train.amp": "off", "train.device": "cpu", **extra,
    })


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rank_main(rank: int, world_size: int, port: int, tmp_path) -> None:
    """What torchrun would start: the process group comes from the environment variables."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)  # joined here, so train() keeps it
    try:
        try:
            train(load_config(None, ddp_overrides(tmp_path, **{"train.batch_size": 9, "train.name": "odd"})),
                  progress=False, log=quiet)
            odd_batch = "no error"
        except CPMError as error:
            odd_batch = str(error)
        # each rank renders the block ahead (data.prerender): still the one process's batches
        results = train(load_config(None, ddp_overrides(tmp_path, **{"train.name": "ddp", "data.prerender": True})),
                        progress=False, log=quiet)
        report = {"odd_batch": odd_batch, "run_dir": results["run_dir"], "loss": results["loss"],
                  "pck": {f"{a:g}": v for a, v in results["pck"].items()}}
        (tmp_path / f"rank{rank}.json").write_text(json.dumps(report))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_train_the_same_weights_as_one(tmp_path):
    mp.spawn(rank_main, args=(2, free_port(), tmp_path), nprocs=2, join=True)
    try:
        single = train(load_config(None, ddp_overrides(tmp_path, **{"train.name": "single"})), progress=False,
                       log=quiet)
    finally:
        torch.use_deterministic_algorithms(False)  # the run turned it on for this whole test process
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]

    assert all("train.batch_size: the global batch 9 does not divide among 2 processes" in r["odd_batch"]
               for r in ranks)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ddp", "single"]  # rank 0 alone writes
    assert ranks[0]["run_dir"] == ranks[1]["run_dir"] == str(tmp_path / "runs" / "ddp")
    distributed = load_checkpoint(tmp_path / "runs" / "ddp" / "last.pt")
    one = load_checkpoint(tmp_path / "runs" / "single" / "last.pt")
    assert distributed["step"] == one["step"] == 4
    for name, value in one["model"].items():
        torch.testing.assert_close(distributed["model"][name], value, rtol=1e-4, atol=1e-6)

    # Every rank evaluates the whole split with the same weights: metrics identical on both ranks, and the
    # same PCK as one process (its weights differ only by float rounding).
    assert ranks[0]["pck"] == ranks[1]["pck"] == {f"{a:g}": v for a, v in single["pck"].items()}
    assert ranks[0]["loss"] == ranks[1]["loss"] == pytest.approx(single["loss"], rel=1e-4)

    # The logged losses are the mean over ranks: the loss of the global batch.
    logged = [json.loads(line) for line in (tmp_path / "runs" / "ddp" / "steps.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (tmp_path / "runs" / "single" / "steps.jsonl").read_text().splitlines()]
    assert [line["step"] for line in logged] == [1, 2, 3, 4]
    assert [line["loss"] for line in logged] == pytest.approx([line["loss"] for line in expected], rel=1e-4)


@pytest.mark.parametrize("world_size", [2, 4])
def test_sharded_global_batches_are_the_single_process_batches(world_size):
    batch, size = 8, 40
    single = ShardedSampler(size, seed=3)
    single.set_epoch(2)
    order = single.order()
    shards = []
    for rank in range(world_size):
        sampler = ShardedSampler(size, world_size=world_size, rank=rank, seed=3)
        sampler.set_epoch(2)
        shards.append(sampler.order())
    per_rank = batch // world_size
    for j in range(size // batch):
        global_batch = sorted(i for shard in shards for i in shard[j * per_rank:(j + 1) * per_rank])
        assert global_batch == sorted(order[j * batch:(j + 1) * batch])


def test_sharded_sampler_skips_exactly_the_consumed_batches_and_pads_evenly():
    sampler = ShardedSampler(10, world_size=3, rank=1, seed=0)
    sampler.set_epoch(1)
    full = list(sampler)
    assert len(full) == len(sampler) == 4  # 10 indices padded to 12, 4 per rank
    sampler.set_start(2)
    assert list(sampler) == full[2:] and len(sampler) == 2
    another_epoch = ShardedSampler(10, world_size=3, rank=1, seed=0)
    another_epoch.set_epoch(2)
    assert list(another_epoch) != full
    ordered = ShardedSampler(5, world_size=2, rank=0, shuffle=False)
    assert list(ordered) == [0, 2, 4]
