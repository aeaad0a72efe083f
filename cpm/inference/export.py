"""``cpm export``: a checkpoint -> an ONNX file, checked against PyTorch in ONNX Runtime.

    cpm export runs/default/best.pt --onnx cpm.onnx

The graph has a dynamic batch axis. Inputs: ``image`` (batch, C, N, N), normalised as in training
(``(pixel / 255 - 0.5) / 0.5``), and, when the model uses one, ``center_map`` (batch, 1, h, w) — or
(batch, 1, N, N) for a ``center_pool`` model — a Gaussian at the person centre (`cpm.runtime.build.build_codec`'s
``center_map`` makes it). Outputs: ``stage1`` .. ``stageT``, every stage's belief maps (batch, K[+1], h, w);
for a coordinate head (``model.head`` = regression or integral) every stage's (batch, K, 2) coordinates,
normalised to the crop as `cpm.targets.codecs.RegressionCodec` decodes them; an RLE head
(``model.regression_loss = "rle"``) outputs (batch, K, 4): those coordinates, then its scale σx, σy in (0, 1)
(normalised units; a joint's confidence is 1 - mean σ). The RLE flow trains the head and is not in the graph.

The export traces the model with `torch.onnx.export` (the torch.export-based exporter, `onnxscript`), runs
the result in ONNX Runtime on a batch of another size than the traced one (so the batch axis is shown to be
dynamic) and compares every output with PyTorch in fp32. The file is written only when the largest absolute
difference is within ``tolerance`` (1e-4), through a temporary file renamed into place.

The file's metadata (``metadata_props``) says what a caller must feed and read: ``cpm.skeleton`` and
``cpm.joint_names`` (the order of the K channels), ``cpm.input`` (how pixels are normalised and, for a one-channel
model, the depth encoding of `cpm.data.depth`: nearness gray over ``data.depth``'s near / far range) and
``cpm.crop_padding``.

With flip test (``--flip-test``; default the checkpoint's ``eval.flip_test``) the graph holds both passes, the crop's
and its mirror's (mirrored image and centre map in, mirror's outputs mirrored back, left / right joints swapped),
and their average (`cpm.targets.flip.FlipTest`): every output is the flip-tested one, the check compares it with
PyTorch's flip-tested output, and the metadata says ``cpm.flip_test`` = ``1``.

A bottom-up part-affinity-field model (``model.head = "paf"``) takes only ``image``: the whole image, its longer side
fitted to N, centred, padded with ``data.pad_value`` (`cpm.data.bottomup`). Each ``stageT`` output is
(batch, K[+1] + 2L, h, w): the confidence maps S, then the x, y fields of every limb (`cpm.targets.paf.PafCodec`'s
order); the metadata adds ``cpm.head`` = ``paf``, ``cpm.limbs`` (``j1-j2`` joint indices, comma-separated),
``cpm.background`` and ``cpm.stride``. It has no flip test (``--flip-test`` is refused).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from cpm.errors import CPMError, first_line
from cpm.io import atomic_write

__all__ = ["export_onnx"]

TOLERANCE = 1e-4
TRACE_BATCH, CHECK_BATCH = 2, 3


def _stages_as_tuple(model, uses_center_map: bool):
    """ONNX outputs are a flat tuple: ``model(image[, center_map])`` -> (stage1, ..., stageT)."""
    import torch

    class StagesAsTuple(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, image: torch.Tensor, center_map: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
            return tuple(self.model(image, center_map if uses_center_map else None))

    return StagesAsTuple().eval()


def _example_inputs(model, codec, input_size: int, batch: int, uses_center_map: bool, generator) -> dict:
    """Random images in the normalised range [-1, 1] and centre maps at random points near the crop middle."""
    import torch

    inputs = {"image": torch.rand(batch, model.in_channels, input_size, input_size, generator=generator) * 2 - 1}
    if uses_center_map:
        centers = (input_size - 1) / 2 + (torch.rand(batch, 2, generator=generator) - 0.5) * input_size / 4
        inputs["center_map"] = codec.center_map(centers)  # (B, 1, h, w), or (B, 1, N, N) for center_pool
    return inputs


def _serialise(wrapper, inputs: dict, output_names: list[str], opset: int | None) -> bytes:
    import torch

    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes are for its authors, not for this command's user
        program = torch.onnx.export(
            wrapper, tuple(inputs.values()), None, input_names=list(inputs), output_names=output_names,
            dynamic_shapes={name: {0: batch} for name in inputs}, dynamo=True, external_data=False,
            opset_version=opset, verbose=False,
        )
    return program.model_proto.SerializeToString()


def export_onnx(checkpoint: str | Path, onnx_path: str | Path, *, opset: int | None = None,
                tolerance: float = TOLERANCE, flip_test: bool | None = None) -> dict:
    """Export ``checkpoint`` to ``onnx_path`` (flip-tested with ``flip_test``, None: the config's
    ``eval.flip_test``); returns {"path", "inputs": {name: shape}, "outputs": {name: shape},
    "max_abs_difference", "check_batch", "opset"}. Raises `CPMError` (and writes nothing) when the
    ONNX packages are missing, the folder does not exist, or ONNX Runtime disagrees with PyTorch."""
    try:
        import onnx
        import onnxruntime
    except ImportError as error:
        raise CPMError(f"ONNX export needs the onnx extra ({error.name} is missing): "
                       "pip install 'cpm-pose[onnx]'") from None
    import torch

    from cpm.runtime.build import build_codec
    from cpm.runtime.checkpoint import load_model

    onnx_path = Path(onnx_path)
    if not onnx_path.parent.is_dir():
        raise CPMError(f"{onnx_path}: the folder to write the ONNX file into does not exist")
    model, config = load_model(checkpoint, "cpu")
    model.float()
    codec, size = build_codec(config), config.data.input_size
    uses_center_map = bool(getattr(model, "use_center_map", False) and model.num_stages > 1)  # regression: none
    if config.model.head == "paf":  # mirroring would also have to negate and swap the limbs' fields
        if flip_test:
            raise CPMError(f"--flip-test: {checkpoint} is a part-affinity-field model; its export has no flip test")
        flip_test = False
    flip_test = bool(config.eval.flip_test if flip_test is None else flip_test)
    if flip_test:
        from cpm.skeleton import get_skeleton
        from cpm.targets.flip import FlipTest

        wrapper = _stages_as_tuple(FlipTest(model, get_skeleton(config.data.skeleton).flip_permutation),
                                   uses_center_map)
    else:
        wrapper = _stages_as_tuple(model, uses_center_map)
    output_names = [f"stage{t}" for t in range(1, model.num_stages + 1)]
    generator = torch.Generator().manual_seed(0)
    traced = _example_inputs(model, codec, size, TRACE_BATCH, uses_center_map, generator)
    try:
        data = _serialise(wrapper, traced, output_names, opset)
    except Exception as error:  # noqa: BLE001 - an exporter failure on this model is reported, not a traceback
        raise CPMError(f"{checkpoint}: ONNX export failed ({first_line(error)})") from None

    proto = onnx.load_from_string(data)
    notes = export_notes(config, model.in_channels, flip_test=flip_test)
    onnx.helper.set_model_props(proto, notes)
    data = proto.SerializeToString()
    onnx.checker.check_model(proto)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    check = _example_inputs(model, codec, size, CHECK_BATCH, uses_center_map, generator)
    onnx_outputs = session.run(output_names, {name: value.numpy() for name, value in check.items()})
    with torch.no_grad():
        torch_outputs = wrapper(*check.values())
    difference = max(float(np.abs(a - b.numpy()).max()) for a, b in zip(onnx_outputs, torch_outputs, strict=True))
    if not difference <= tolerance:
        raise CPMError(f"{checkpoint}: ONNX Runtime differs from PyTorch by {difference:.3g} (> {tolerance:g}); "
                       f"{onnx_path} not written")

    with atomic_write(onnx_path) as file:
        file.write(data)

    def shapes(values) -> dict[str, list]:
        return {v.name: [d if isinstance(d, int) else str(d) for d in v.shape] for v in values}

    return {"path": str(onnx_path), "inputs": shapes(session.get_inputs()), "outputs": shapes(session.get_outputs()),
            "max_abs_difference": difference, "check_batch": CHECK_BATCH, "notes": notes,
            "opset": next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))}


def export_notes(config, in_channels: int, *, flip_test: bool = False) -> dict[str, str]:
    """What the ONNX file's metadata says about its input and outputs (see the module docstring)."""
    from cpm.data.depth import DepthSpec
    from cpm.skeleton import get_skeleton

    skeleton = get_skeleton(config.data.skeleton)
    scale = getattr(config.data, "input_scale", "unit")
    pixels = "(pixel / 255 - 0.5) / 0.5" if scale == "unit" else f"data.input_scale = {scale!r}"
    what = DepthSpec.of(config.data.depth).describe() if in_channels == 1 else "RGB"
    notes = {"cpm.skeleton": skeleton.name, "cpm.joint_names": ",".join(skeleton.joint_names),
             "cpm.input": f"{what}; image = {pixels}", "cpm.crop_padding": f"{config.data.crop_padding:g}"}
    if config.model.head == "regression" and config.model.regression_loss == "rle":
        notes["cpm.outputs"] = ("(batch, K, 4): x, y normalised to the crop ((2 * pixel + 1) / N - 1), then RLE's "
                                "scale sigma_x, sigma_y; confidence = 1 - mean(sigma)")
    if config.model.head == "paf":  # every stage: [S, L] of cpm.targets.paf.PafCodec
        notes["cpm.head"] = "paf"
        notes["cpm.limbs"] = ",".join(f"{a}-{b}" for a, b in skeleton.limbs)
        notes["cpm.background"] = "1" if config.targets.background else "0"
        notes["cpm.stride"] = str(config.model.stride)
        notes["cpm.input"] += "; the whole image, its longer side fitted to the input, centred"
        notes["cpm.outputs"] = "(batch, K[+1] + 2L, h, w): confidence maps S, then x, y fields of each limb"
    if flip_test:  # the outputs are the mean of the crop's and its mirror's (cpm.targets.flip)
        notes["cpm.flip_test"] = "1"
    return notes
