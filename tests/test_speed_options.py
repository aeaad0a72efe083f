"""The speed options compute what the plain code computes: activation checkpointing of the refinement stages,
torch.compile, channels-last + bf16 autocast, and the DataLoader's persistent workers."""

import os

import pytest
import torch
from torch.utils.data import Dataset

from cpm.config import load_config
from cpm.data.loader import make_loader
from cpm.device import autocast, compile_model
from cpm.errors import CPMError
from cpm.models import ConvolutionalPoseMachine
from cpm.runtime.build import build_network
from cpm.targets.losses import stage_weights_for, staged_heatmap_loss
from tests.helpers import tiny

CPU = torch.device("cpu")


def tiny_pair(stages: int = 4, **options) -> tuple[ConvolutionalPoseMachine, ConvolutionalPoseMachine]:
    """Two tiny models with the same weights: a plain one and one built with ``options``."""
    torch.manual_seed(0)
    plain = ConvolutionalPoseMachine(tiny(stages=stages))
    other = ConvolutionalPoseMachine(tiny(stages=stages, **options))
    other.load_state_dict(plain.state_dict())
    return plain, other


def batch(size: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """image (B, 1, 64, 64), centre map (B, 1, 8, 8), targets (B, 16, 8, 8), weights (B, 15)."""
    generator = torch.Generator().manual_seed(1)
    return (torch.randn(size, 1, 64, 64, generator=generator), torch.rand(size, 1, 8, 8, generator=generator),
            torch.rand(size, 16, 8, 8, generator=generator), torch.ones(size, 15))


def outputs_and_gradients(model: torch.nn.Module, image, center_map, targets, weights, *, dtype=None):
    model.train()
    with autocast(CPU, dtype):
        beliefs = model(image, center_map)
    loss = staged_heatmap_loss(beliefs, targets, weights, stage_weights_for(len(beliefs)))["loss"]
    model.zero_grad(set_to_none=True)
    loss.backward()
    return [b.detach().float() for b in beliefs], {name: p.grad.clone() for name, p in model.named_parameters()}


def count_saved_tensors(model: torch.nn.Module, image, center_map) -> int:
    count = 0

    def pack(tensor):
        nonlocal count
        count += 1
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model.train()
        model(image, center_map)
    return count


def test_checkpointed_stages_give_the_plain_outputs_and_gradients():
    plain, checkpointed = tiny_pair(checkpoint_stages=True)
    expected_beliefs, expected_grads = outputs_and_gradients(plain, *batch())
    beliefs, grads = outputs_and_gradients(checkpointed, *batch())
    for got, expected in zip(beliefs, expected_beliefs, strict=True):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert grads.keys() == expected_grads.keys()
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name], rtol=1e-6, atol=1e-9, msg=name)


def test_checkpointed_stages_keep_fewer_activations_for_backward():
    plain, checkpointed = tiny_pair(checkpoint_stages=True)
    image, center_map, _, _ = batch()
    # The 3 refinement stages keep only their inputs; the plain model keeps every conv input and ReLU output.
    assert count_saved_tensors(checkpointed, image, center_map) < count_saved_tensors(plain, image, center_map) - 20
    with torch.no_grad():  # evaluation: no recomputation, the same beliefs
        checkpointed.eval(), plain.eval()
        for got, expected in zip(checkpointed(image, center_map), plain(image, center_map), strict=True):
            torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_checkpoint_stages_config_reaches_the_model_only_when_on():
    assert build_network(load_config(None)).checkpoint_stages is False
    assert build_network(load_config(None, ["model.checkpoint_stages=true"])).checkpoint_stages is True


def test_channels_last_bf16_step_matches_fp32_within_bf16_tolerance():
    plain, fast = tiny_pair()
    fast = fast.to(memory_format=torch.channels_last)
    image, center_map, targets, weights = batch()
    expected_beliefs, expected_grads = outputs_and_gradients(plain, image, center_map, targets, weights)
    beliefs, grads = outputs_and_gradients(fast, image.contiguous(memory_format=torch.channels_last), center_map,
                                           targets, weights, dtype=torch.bfloat16)
    # bf16 keeps 8 bits of mantissa (~0.4 % per rounding); the error grows with the depth a value passes through.
    for got, expected in zip(beliefs, expected_beliefs, strict=True):
        assert (got - expected).abs().max() <= 0.05 * expected.abs().max()  # measured: <= 2.3 %
    for name, grad in grads.items():  # deepest (first layers' weights): 19 % of the norm, cosine 0.983
        expected = expected_grads[name]
        assert (grad - expected).norm() <= 0.3 * expected.norm(), name
        assert torch.nn.functional.cosine_similarity(grad.flatten(), expected.flatten(), dim=0) >= 0.97, name
    every, expected_every = torch.cat([g.flatten() for g in grads.values()]), torch.cat(
        [g.flatten() for g in expected_grads.values()])
    assert (every - expected_every).norm() <= 0.05 * expected_every.norm()


def test_compiled_model_matches_eager():
    """Forward and backward of a 2-stage tiny model (inductor needs about 20 s for it on 2 cores)."""
    plain, compiled = tiny_pair(stages=2)
    try:
        compiled = compile_model(compiled, CPU)
    except CPMError as error:
        pytest.skip(f"inductor cannot compile on this machine: {error}")
    expected_beliefs, expected_grads = outputs_and_gradients(plain, *batch())
    beliefs, grads = outputs_and_gradients(compiled, *batch())
    for got, expected in zip(beliefs, expected_beliefs, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected_grads[name.removeprefix("_orig_mod.")], rtol=1e-3, atol=1e-5)


def test_compile_that_cannot_build_kernels_fails_with_one_line(monkeypatch):
    def broken_compile(*_args, **_kwargs):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\nmore detail")

    monkeypatch.setattr(torch, "compile", broken_compile)
    with pytest.raises(CPMError, match=r"^train\.compile: .*No working C\+\+ compiler found\); set train\.compile") \
            as raised:
        compile_model(torch.nn.Linear(2, 2), CPU)
    assert "\n" not in str(raised.value)


class EpochEcho(Dataset):
    """Sample i of epoch e is {"epoch": e, "index": i}."""

    def __init__(self, size: int) -> None:
        self.size, self.epoch = size, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"epoch": torch.tensor(self.epoch), "index": torch.tensor(index)}


def read_epochs(workers: int, epochs: int = 3) -> list[list[tuple[int, int]]]:
    loader = make_loader(EpochEcho(6), batch_size=4, shuffle=True, workers=workers, device=CPU, seed=0)
    assert loader.persistent_workers == (workers > 0) and not loader.pin_memory
    seen = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        seen.append([(int(e), int(i)) for b in loader for e, i in zip(b["epoch"], b["index"], strict=True)])
    return seen


def test_persistent_workers_read_the_samples_of_the_current_epoch():
    in_process, in_workers = read_epochs(workers=0), read_epochs(workers=2)
    assert in_workers == in_process
    for epoch, samples in enumerate(in_workers):
        assert sorted(i for _, i in samples) == list(range(6))
        assert {e for e, _ in samples} == {epoch}  # workers started in epoch 0 still render epoch 1, 2
    assert [i for _, i in in_workers[0]] != [i for _, i in in_workers[1]]  # a new order every epoch


def test_automatic_workers_are_one_on_a_cpu_and_the_cores_on_cuda():
    from cpm.config import Config
    from cpm.data.loader import resolve_workers

    assert Config().data.workers == -1
    assert resolve_workers(-1, torch.device("cpu")) == 1
    assert resolve_workers(-1, torch.device("cuda")) == min(8, os.cpu_count() or 1)
    assert resolve_workers(3, torch.device("cuda")) == 3 and resolve_workers(0, torch.device("cpu")) == 0
