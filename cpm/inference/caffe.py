"""The released Caffe CPM weights (``.caffemodel``) -> a checkpoint that ``cpm eval``, ``cpm predict`` and
``cpm export`` use (``cpm convert-caffe``), with no Caffe install.

A ``.caffemodel`` is a serialized Caffe ``NetParameter`` protocol buffer. `caffe_messages` declares the few messages
and fields the weights live in (Caffe's field numbers, from its ``caffe.proto``) and the ``protobuf`` package reads
them; every other field of the file is skipped::

    NetParameter      name = 1, layers = 2 (V1LayerParameter, old files), layer = 100 (LayerParameter)
    LayerParameter    name = 1, type = 2, blobs = 7           V1LayerParameter  name = 4, blobs = 6
    BlobProto         num = 1, channels = 2, height = 3, width = 4 (old shapes), data = 5 (packed float),
                      shape = 7 (BlobShape: dim = 1, packed int64), double_data = 8 (packed double)

`convert_caffemodel` maps every blob by layer name onto the network a config builds (`caffe_layer_names`: the
names of the released prototxts, training/genProto.py and model/_trained_MPI/pose_deploy_resize.prototxt), checks
every shape and that no blob is left over, and writes the checkpoint atomically: a bad or foreign file raises
`cpm.errors.CPMError` naming it, and nothing is written. Three things change on the way, each because the released
nets differ from this project's conventions, not its layers:

* the first convolution's input channels are reversed: Caffe's data layer feeds OpenCV's BGR images, this project RGB;
* the belief channels (the output of every stage and the belief input of every refinement stage) are reordered from
  the released nets' part order into that of ``data.skeleton``, background last: ``CAFFE_PARTS`` (head, neck, right
  shoulder ... left ankle) for the 14-part LSP and MPII nets, whose parts ``lsp14`` has; ``FLIC_PARTS`` (left
  shoulder ... right hip, head: FLIC's nose) for the 9-part FLIC net, whose parts experiments/caffe_flic.toml's
  ``flic9`` skeleton has;
* nothing else: the stage inputs' concatenation order is the config's (``model.beliefs_first``), which must be the
  released net's, [features, beliefs, centre] for the LSP/FLIC nets and [beliefs, features, centre] for the VGG MPII
  net, and is checked here.

The released nets read (pixel - 128) / 256 (``data.input_scale = "caffe"``) and round their pools up
(``model.caffe_pooling``). One config per released definition (testing/config.m pairs the weights with them):
`experiments/caffe_lsp.toml` the 9x9 centre-map net (LEEDS_PC pose_iter_395000, MPI pose_iter_630000 and
pose_iter_985000_addLEEDS), `experiments/caffe_mpii.toml` the VGG-19 net (MPI pose_iter_320000),
`experiments/caffe_flic.toml` the FLIC net (pose_iter_40000).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cpm.config import Config
from cpm.errors import CPMError, first_line
from cpm.skeleton import get_skeleton

__all__ = ["CAFFE_PARTS", "FLIC_PARTS", "caffe_layer_names", "caffe_messages", "convert_caffemodel",
           "read_caffemodel", "write_caffemodel"]

# The part order of the released 14-part nets (testing/config.m, part_str), as this project's joint names.
CAFFE_PARTS = ("head_top", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow",
               "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle")
# The FLIC net's 9 parts (config.m model 4: Lsho, Lelb, Lwri, Rsho, Relb, Rwri, Lhip, Rhip, head; run_benchmark.m
# scores "head" against FLIC's nose).
FLIC_PARTS = ("left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist", "left_hip",
              "right_hip", "nose")
_INSTALL = "the protobuf package reads .caffemodel files: pip install 'cpm[caffe]'"
_MESSAGES: dict[str, Any] = {}


def caffe_messages() -> dict[str, Any]:
    """The message classes of the minimal schema: {"NetParameter", "LayerParameter", "V1LayerParameter",
    "BlobProto", "BlobShape"} (built once; `CPMError` without the protobuf package)."""
    if _MESSAGES:
        return _MESSAGES
    try:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
    except ImportError:
        raise CPMError(_INSTALL) from None
    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="cpm_caffe_minimal.proto", package="cpm_caffe", syntax="proto2")

    def message(name: str, fields: Sequence[tuple]) -> None:
        proto = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name, packed in fields:
            entry = proto.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                entry.type_name = f".cpm_caffe.{type_name}"
            if packed:
                entry.options.packed = True

    optional, repeated = field.LABEL_OPTIONAL, field.LABEL_REPEATED
    message("BlobShape", [("dim", 1, field.TYPE_INT64, repeated, "", True)])
    message("BlobProto", [("num", 1, field.TYPE_INT32, optional, "", False),
                          ("channels", 2, field.TYPE_INT32, optional, "", False),
                          ("height", 3, field.TYPE_INT32, optional, "", False),
                          ("width", 4, field.TYPE_INT32, optional, "", False),
                          ("data", 5, field.TYPE_FLOAT, repeated, "", True),
                          ("shape", 7, field.TYPE_MESSAGE, optional, "BlobShape", False),
                          ("double_data", 8, field.TYPE_DOUBLE, repeated, "", True)])
    message("LayerParameter", [("name", 1, field.TYPE_STRING, optional, "", False),
                               ("type", 2, field.TYPE_STRING, optional, "", False),
                               ("blobs", 7, field.TYPE_MESSAGE, repeated, "BlobProto", False)])
    message("V1LayerParameter", [("name", 4, field.TYPE_STRING, optional, "", False),
                                 ("blobs", 6, field.TYPE_MESSAGE, repeated, "BlobProto", False)])
    message("NetParameter", [("name", 1, field.TYPE_STRING, optional, "", False),
                             ("layers", 2, field.TYPE_MESSAGE, repeated, "V1LayerParameter", False),
                             ("layer", 100, field.TYPE_MESSAGE, repeated, "LayerParameter", False)])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    for name in ("NetParameter", "LayerParameter", "V1LayerParameter", "BlobProto", "BlobShape"):
        descriptor = pool.FindMessageTypeByName(f"cpm_caffe.{name}")
        if hasattr(message_factory, "GetMessageClass"):
            _MESSAGES[name] = message_factory.GetMessageClass(descriptor)
        else:  # protobuf < 4.21
            _MESSAGES[name] = message_factory.MessageFactory(pool).GetPrototype(descriptor)
    return _MESSAGES


def write_caffemodel(path: str | Path, layers: Mapping[str, Sequence[np.ndarray]], *, name: str = "",
                     legacy_shapes: bool = False) -> None:
    """Write ``{layer name: [blob arrays]}`` as a ``.caffemodel`` of `caffe_messages` (the tests make small released-
    style files with it). ``legacy_shapes`` writes num/channels/height/width instead of ``shape``, as old files."""
    messages = caffe_messages()
    net = messages["NetParameter"](name=name)
    for layer_name, blobs in layers.items():
        layer = net.layer.add(name=layer_name, type="Convolution")
        for array in blobs:
            array = np.asarray(array, dtype=np.float32)
            blob = layer.blobs.add()
            if legacy_shapes:
                blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - array.ndim) + array.shape
            else:
                blob.shape.dim.extend(array.shape)
            blob.data.extend(array.ravel().tolist())
    Path(path).write_bytes(net.SerializeToString())


def _blob_array(blob, where: str) -> np.ndarray:
    if len(blob.shape.dim):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:  # old files: always 4-D, a bias is (1, 1, 1, n) (`_fitted` drops the leading ones)
        shape = tuple(int(v) for v in (blob.num, blob.channels, blob.height, blob.width))
    values = blob.data if len(blob.data) else blob.double_data
    array = np.asarray(values, dtype=np.float32)
    if array.size != int(np.prod(shape)):
        raise CPMError(f"{where} holds {array.size} values for its shape {shape}")
    return array.reshape(shape)


def _fitted(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``array`` reshaped to ``shape`` when the two agree but for leading ones (old 4-D blob shapes), else None."""
    def core(dims: tuple[int, ...]) -> tuple[int, ...]:
        dims = tuple(dims)
        while len(dims) > len(shape) and dims[0] == 1:
            dims = dims[1:]
        return dims

    return array.reshape(shape) if core(array.shape) == tuple(shape) else None


def read_caffemodel(path: str | Path) -> dict[str, list[np.ndarray]]:
    """A ``.caffemodel`` -> {layer name: [blob arrays, float32]} of the layers that have weights, in file order."""
    path = Path(path)
    if not path.is_file():
        raise CPMError(f"{path}: no such file")
    net = caffe_messages()["NetParameter"]()
    try:
        net.ParseFromString(path.read_bytes())
    except Exception as error:  # noqa: BLE001 - whatever the bytes are, the answer is "not a Caffe model"
        raise CPMError(f"{path}: not a .caffemodel, it does not parse as a Caffe NetParameter "
                       f"({first_line(error)})") from None
    layers: dict[str, list[np.ndarray]] = {}
    for layer in [*net.layer, *net.layers]:
        if not len(layer.blobs):
            continue
        if layer.name in layers:
            raise CPMError(f"{path}: two layers named {layer.name!r} have weights")
        layers[layer.name] = [_blob_array(blob, f"{path}: layer {layer.name!r} blob {i}")
                              for i, blob in enumerate(layer.blobs)]
    if not layers:
        raise CPMError(f"{path}: not a trained .caffemodel: no layer with weights in it")
    return layers


def _vgg_names(backbone: nn.Module) -> list[str]:
    """conv1_1, conv1_2, conv2_1, ... for the VGG layers, conv4_3_CPM, ... for the CPM convs after them."""
    names, block, index = [], 1, 0
    for layer in backbone.children():
        if isinstance(layer, nn.MaxPool2d):
            block, index = block + 1, 0
        elif isinstance(layer, nn.Conv2d):
            index += 1
            names.append(f"conv{block}_{index}")
        elif isinstance(layer, nn.Sequential):  # conv_block: the CPM convs
            index += 1
            names.append(f"conv{block}_{index}_CPM")
    return names


def _convs(module: nn.Module, prefix: str) -> list[str]:
    return [f"{prefix}.{name}" for name, m in module.named_modules() if isinstance(m, nn.Conv2d)]


def caffe_layer_names(model: nn.Module) -> list[tuple[str, str, str]]:
    """[(Caffe layer name, this model's conv module name, role)] for every convolution of ``model`` (a
    `cpm.models.ConvolutionalPoseMachine` of the released LSP/FLIC or VGG MPII design). ``role`` is ``image`` (reads
    the image), ``beliefs`` (writes a stage's beliefs), ``stage_input`` (reads [features, beliefs, centre]) or ``""``.
    """
    pairs: list[tuple[str, str, str]] = []
    refinements = len(model.stages)
    if model.image_features_stage1 is not None:  # the LSP / FLIC nets: two trunks (genProto.py's names)
        trunk1 = _convs(model.image_features_stage1, "image_features_stage1")
        levels = len(trunk1)
        pairs += [(f"conv{i}_stage1", name, "image" if i == 1 else "") for i, name in enumerate(trunk1, start=1)]
        head = _convs(model.stage1, "stage1")
        pairs += [(f"conv{levels + i}_stage1", name, "beliefs" if i == len(head) else "")
                  for i, name in enumerate(head, start=1)]
        if refinements:
            trunk2 = _convs(model.image_features, "image_features")
            pairs += [(f"conv{i}_stage2", name, "image" if i == 1 else "") for i, name in enumerate(trunk2, start=1)]
        for k in range(refinements):
            for name in _convs(model.project[k], f"project.{k}"):  # stage 2 continues the trunk's numbering
                pairs.append((f"conv{levels + 1}_stage2" if k == 0 else f"conv1_stage{k + 2}", name, ""))
    else:  # the VGG MPII net: one trunk (pose_deploy_resize.prototxt's names)
        trunk = [f"image_features.{name}" for name, m in model.image_features.named_modules()
                 if isinstance(m, nn.Conv2d)]
        pairs += [(caffe, name, "image" if i == 0 else "")
                  for i, (caffe, name) in enumerate(zip(_vgg_names(model.image_features), trunk, strict=True))]
        head = _convs(model.stage1, "stage1")
        pairs += [(f"conv5_{i}_CPM", name, "beliefs" if i == len(head) else "") for i, name in enumerate(head, start=1)]
    for k in range(refinements):
        convs = _convs(model.stages[k], f"stages.{k}")
        pairs += [(f"Mconv{i}_stage{k + 2}", name, "stage_input" if i == 1 else "beliefs" if i == len(convs) else "")
                  for i, name in enumerate(convs, start=1)]
    return pairs


def _check_released_design(config: Config) -> None:
    """The config must build a network of the released nets' design; each difference named by its key."""
    m, t = config.model, config.targets
    if m.head != "heatmap" or m.backbone not in ("cpm", "vgg19"):
        raise CPMError(f"model.backbone = {m.backbone!r}, model.head = {m.head!r}: the released Caffe CPMs are "
                       "heatmap nets on the cpm (LSP, FLIC) or vgg19 (MPII) trunk")
    wanted = {"model.in_channels": (m.in_channels, 3), "model.batch_norm": (m.batch_norm, False),
              "model.center_map": (m.center_map, True), "targets.center_pool": (t.center_pool, True),
              "targets.background": (t.background, True),
              "model.beliefs_first": (m.beliefs_first, m.backbone == "vgg19"),
              "model.caffe_pooling": (m.caffe_pooling, True)}
    for key, (value, expected) in wanted.items():
        if value != expected:
            raise CPMError(f"{key} = {value!r}: the released {m.backbone} net has {expected!r}")


def _belief_order(skeleton_name: str) -> np.ndarray:
    """Caffe belief channel c -> this model's channel ``order[c]``; the background stays last. The released part
    order is the one (`CAFFE_PARTS`, `FLIC_PARTS`) whose parts are exactly the skeleton's joints."""
    skeleton = get_skeleton(skeleton_name)
    for parts in (CAFFE_PARTS, FLIC_PARTS):
        if skeleton.num_joints == len(parts) and set(parts) <= set(skeleton.joint_names):
            return np.array([*(skeleton.index(name) for name in parts), len(parts)])
    raise CPMError(f"data.skeleton = {skeleton_name!r}: the released LSP and MPII nets predict "
                   f"{', '.join(CAFFE_PARTS)} (data.skeleton = 'lsp14'), the FLIC net {', '.join(FLIC_PARTS)} "
                   "(experiments/caffe_flic.toml's skeleton)")


def convert_caffemodel(path: str | Path, config: Config, out: str | Path) -> dict[str, Any]:
    """Read the ``.caffemodel`` at ``path``, map it onto the network of ``config`` and write a checkpoint to ``out``.
    Returns {"out", "layers", "parameters", "sha256"}. Any mismatch raises `CPMError` before anything is written."""
    from cpm.runtime.build import build_network
    from cpm.runtime.checkpoint import git_revision, save_checkpoint

    path, out = Path(path), Path(out)
    if not out.resolve().parent.is_dir():
        raise CPMError(f"{out}: the folder to write the checkpoint into does not exist")
    _check_released_design(config)
    order = _belief_order(config.data.skeleton)
    layers = read_caffemodel(path)
    model = build_network(config)
    state = {key: value.clone() for key, value in model.state_dict().items()}
    channels = model.out_channels
    pairs = caffe_layer_names(model)
    for caffe_name, module_name, role in pairs:
        if caffe_name not in layers:
            raise CPMError(f"{path}: no layer {caffe_name!r}, which the config's network needs (model.stages = "
                           f"{config.model.stages}, model.backbone = {config.model.backbone!r})")
        blobs = layers[caffe_name]
        if len(blobs) != 2:
            raise CPMError(f"{path}: layer {caffe_name!r} has {len(blobs)} blobs, a convolution with bias has 2")
        expected = tuple(state[f"{module_name}.weight"].shape)
        if role == "beliefs" and blobs[0].shape[:1] != expected[:1]:
            raise CPMError(f"{path}: layer {caffe_name!r} predicts {blobs[0].shape[0] - 1} parts + background; "
                           f"data.skeleton = {config.data.skeleton!r} has {expected[0] - 1} (the released nets: "
                           f"{len(CAFFE_PARTS)} parts for LSP and MPII: experiments/caffe_lsp.toml, caffe_mpii.toml; "
                           f"{len(FLIC_PARTS)} for FLIC, experiments/caffe_flic.toml)")
        weight, bias = _fitted(blobs[0], expected), _fitted(blobs[1], expected[:1])
        if weight is None or bias is None:
            raise CPMError(f"{path}: layer {caffe_name!r} has weights {blobs[0].shape} and bias {blobs[1].shape}, "
                           f"the config's network expects {expected} and {expected[:1]}")
        if role == "image":
            weight = weight[:, ::-1]  # BGR -> RGB
        elif role == "beliefs":
            weight, bias = weight[np.argsort(order)], bias[np.argsort(order)]
        elif role == "stage_input":  # reorder the belief block of the concatenated input
            start = 0 if config.model.beliefs_first else weight.shape[1] - channels - int(config.model.center_map)
            index = np.arange(weight.shape[1])
            index[start:start + channels] = start + np.argsort(order)
            weight = weight[:, index]
        state[f"{module_name}.weight"] = torch.from_numpy(np.ascontiguousarray(weight))
        state[f"{module_name}.bias"] = torch.from_numpy(np.ascontiguousarray(bias))
    used = {caffe for caffe, _, _ in pairs}
    extra = [name for name in layers if name not in used]
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise CPMError(f"{path}: layers with weights that the config's network has no place for: {shown} "
                       f"(model.stages = {config.model.stages}?)")
    model.load_state_dict(state)
    checkpoint = {"model": model.state_dict(), "config": config.to_dict(),
                  "git_revision": git_revision(), "epoch": 0, "step": 0,
                  "converted_from": {"caffemodel": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}}
    save_checkpoint(checkpoint, out)
    return {"out": out, "layers": len(pairs), "parameters": sum(p.numel() for p in model.parameters()),
            "sha256": checkpoint["converted_from"]["sha256"]}
