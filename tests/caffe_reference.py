"""The released CPM networks as Caffe defines them, for tests, with no Caffe and no protoc: Caffe's own
``caffe.proto`` compiled here into protobuf message classes (`official_messages`), a deploy ``.prototxt`` read
with them (`read_prototxt`), a ``.caffemodel`` of random weights written through them (`random_caffemodel`),
and a NumPy forward pass that interprets the definition layer by layer (`forward`).

Nothing here imports the project: the converter (`cpm.inference.caffe`) is checked against this, not against
itself. ``../shared/caffe`` (beside the checkout) holds the definitions (`SHARED_CAFFE`).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

SHARED_CAFFE = Path(__file__).resolve().parents[1].parent / "shared" / "caffe"

_SCALARS = {"double", "float", "int32", "int64", "uint32", "uint64", "sint32", "sint64", "fixed32", "fixed64",
            "sfixed32", "sfixed64", "bool", "string", "bytes"}
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[A-Za-z_][\w.]*|-?[\d.]+(?:[eE][-+]?\d+)?|\S')


def _tokens(text: str) -> list[str]:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    return _TOKEN.findall(text)


def compile_proto(text: str, name: str = "caffe.proto"):
    """A proto2 schema (messages, enums, nested ones, scalar / message / enum fields with ``default`` and ``packed``
    options: what ``caffe.proto`` uses) -> a ``FileDescriptorProto``."""
    from google.protobuf import descriptor_pb2

    field_type = descriptor_pb2.FieldDescriptorProto
    tokens, position = _tokens(text), 0
    file = descriptor_pb2.FileDescriptorProto(name=name, syntax="proto2")
    messages: set[str] = set()
    enums: set[str] = set()
    pending: list[tuple[str, object, str]] = []  # (scope, field, type name) resolved once every name is known

    def take(expected: str | None = None) -> str:
        nonlocal position
        token = tokens[position]
        position += 1
        if expected is not None and token != expected:
            raise ValueError(f"{name}: expected {expected!r}, got {token!r} (token {position})")
        return token

    def enum(container, scope: str) -> None:
        proto = container.add(name=take())
        enums.add(f"{scope}.{proto.name}")
        take("{")
        while tokens[position] != "}":
            value_name = take()
            take("=")
            proto.value.add(name=value_name, number=int(take()))
            while take() != ";":
                pass
        take("}")

    def message(container, scope: str) -> None:
        proto = container.add(name=take())
        full = f"{scope}.{proto.name}"
        messages.add(full)
        take("{")
        while tokens[position] != "}":
            token = take()
            if token == "message":
                message(proto.nested_type, full)
            elif token == "enum":
                enum(proto.enum_type, full)
            elif token in ("optional", "repeated", "required"):
                label = {"optional": field_type.LABEL_OPTIONAL, "repeated": field_type.LABEL_REPEATED,
                         "required": field_type.LABEL_REQUIRED}[token]
                kind, field_name = take(), take()
                take("=")
                field = proto.field.add(name=field_name, number=int(take()), label=label)
                if kind in _SCALARS:
                    field.type = getattr(field_type, f"TYPE_{kind.upper()}")
                else:
                    pending.append((full, field, kind))
                if tokens[position] == "[":
                    take("[")
                    while True:
                        option = take()
                        take("=")
                        value = take()
                        if option == "default":
                            field.default_value = value.strip("\"'")
                        elif option == "packed":
                            field.options.packed = value == "true"
                        elif option == "deprecated":
                            field.options.deprecated = value == "true"
                        if take() == "]":
                            break
                take(";")
            else:
                raise ValueError(f"{name}: cannot read {token!r} in message {full}")
        take("}")

    while position < len(tokens):
        token = take()
        if token == "syntax":
            take("=")
            take()
            take(";")
        elif token == "package":
            file.package = take()
            take(";")
        elif token == "message":
            message(file.message_type, f".{file.package}")
        elif token == "enum":
            enum(file.enum_type, f".{file.package}")
        else:
            raise ValueError(f"{name}: cannot read {token!r} at the top level")
    for scope, field, kind in pending:  # the innermost scope that declares the name, as protoc resolves it
        parts = scope.split(".")
        for depth in range(len(parts), 0, -1):
            candidate = ".".join(parts[:depth] + [kind])
            if candidate in messages or candidate in enums:
                field.type = field_type.TYPE_MESSAGE if candidate in messages else field_type.TYPE_ENUM
                field.type_name = candidate
                break
        else:
            raise ValueError(f"{name}: field {field.name} of {scope}: unknown type {kind}")
    return file


_CLASSES: dict[str, type] = {}


def official_messages() -> dict[str, type]:
    """Message classes of ``../shared/caffe/caffe.proto`` by name ("NetParameter", "LayerParameter", ...)."""
    if _CLASSES:
        return _CLASSES
    from google.protobuf import descriptor_pool, message_factory

    file = compile_proto((SHARED_CAFFE / "caffe.proto").read_text(encoding="utf-8"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    for proto in file.message_type:
        descriptor = pool.FindMessageTypeByName(f"{file.package}.{proto.name}")
        _CLASSES[proto.name] = message_factory.GetMessageClass(descriptor)
    return _CLASSES


def read_prototxt(path: str | Path):
    """A deploy ``.prototxt`` -> its ``caffe.NetParameter`` (text format, read with the official schema)."""
    from google.protobuf import text_format

    return text_format.Parse(Path(path).read_text(encoding="utf-8"), official_messages()["NetParameter"]())


def _first(values, default: int) -> int:
    return int(values[0]) if len(values) else default


def blob_shapes(net) -> dict[str, list[tuple[int, ...]]]:
    """{layer name: [weight shape, bias shape]} of every Convolution of ``net``, its input channels followed through
    the graph from the ``input_dim`` of ``data`` (Slice, Pooling, ReLU, Dropout, Concat, Convolution)."""
    channels = {net.input[0]: int(net.input_dim[1])}
    shapes = {}
    for layer in net.layer:
        bottoms = [channels[b] for b in layer.bottom]
        if layer.type == "Slice":
            points = [0, *layer.slice_param.slice_point, bottoms[0]]
            channels.update({top: points[i + 1] - points[i] for i, top in enumerate(layer.top)})
        elif layer.type == "Concat":
            channels[layer.top[0]] = sum(bottoms)
        elif layer.type == "Convolution":
            param = layer.convolution_param
            kernel = _first(param.kernel_size, 1)
            shapes[layer.name] = [(param.num_output, bottoms[0] // (param.group or 1), kernel, kernel),
                                  (param.num_output,)]
            channels[layer.top[0]] = param.num_output
        elif layer.type in ("Pooling", "ReLU", "Dropout"):
            channels[layer.top[0]] = bottoms[0]
        else:
            raise ValueError(f"layer {layer.name}: type {layer.type} is not interpreted here")
    return shapes


def random_weights(net, seed: int = 0) -> dict[str, list[np.ndarray]]:
    """Uniform weights of variance 2 / fan-in (activations stay O(1) through every layer) and small biases, for every
    Convolution of ``net``, in the definition's order."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, (weight, bias) in blob_shapes(net).items():
        bound = np.float32(np.sqrt(3 * 2 / int(np.prod(weight[1:]))))  # U(-b, b) has variance b^2 / 3
        weights[name] = [rng.random(weight, dtype=np.float32) * (2 * bound) - bound,
                         rng.random(bias, dtype=np.float32) * np.float32(0.2) - np.float32(0.1)]
    return weights


def write_caffemodel(net, weights: dict[str, list[np.ndarray]], path: str | Path) -> Path:
    """``net`` (a NetParameter) with ``weights`` as each layer's blobs, as Caffe saves a trained net: every layer of
    the definition, those with weights carrying them (``shape`` + packed ``data``). Every message is serialized by the
    official schema's classes; only the float payloads are appended as their wire bytes (protobuf's encoding: key,
    byte count, little-endian float32s), since adding millions of floats from Python takes minutes."""
    messages = official_messages()
    net_numbers = messages["NetParameter"].DESCRIPTOR.fields_by_name
    layer_number = messages["LayerParameter"].DESCRIPTOR.fields_by_name["blobs"].number
    data_number = messages["BlobProto"].DESCRIPTOR.fields_by_name["data"].number
    head = messages["NetParameter"]()
    head.CopyFrom(net)
    del head.layer[:]
    chunks = [head.SerializeToString()]
    for layer in net.layer:
        parts = [layer.SerializeToString()]
        for array in weights.get(layer.name, []):
            blob = messages["BlobProto"]()
            blob.shape.dim.extend(array.shape)
            payload = blob.SerializeToString() + _field(data_number, np.ascontiguousarray(array, "<f4").tobytes())
            parts.append(_field(layer_number, payload))
        chunks.append(_field(net_numbers["layer"].number, b"".join(parts)))
    Path(path).write_bytes(b"".join(chunks))
    return Path(path)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (a message, or a packed repeated scalar) as protobuf writes it."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


# --- the forward pass ----------------------------------------------------------------------------------------

def _convolution(x: np.ndarray, layer, blobs) -> np.ndarray:
    param = layer.convolution_param
    pad, stride = _first(param.pad, 0), _first(param.stride, 1)
    if _first(param.dilation, 1) != 1 or (param.group or 1) != 1:
        raise ValueError(f"layer {layer.name}: dilation and groups are not interpreted here")
    weight = np.asarray(blobs[0], dtype=np.float64)
    kernel = weight.shape[-1]
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    windows = sliding_window_view(padded, (kernel, kernel), axis=(1, 2))[:, ::stride, ::stride]  # (C, H, W, k, k)
    out = np.tensordot(weight, windows, axes=([1, 2, 3], [0, 3, 4]))  # (out, H, W)
    if param.bias_term:
        out += np.asarray(blobs[1], dtype=np.float64)[:, None, None]
    return out


def _pooling(x: np.ndarray, layer) -> np.ndarray:
    """Caffe's PoolingLayer: ceil((H + 2 pad - k) / s) + 1 outputs (one fewer if the last window would start in the
    padding); MAX over the window's cells inside the input, AVE dividing by the window's cells inside the padded
    input."""
    param = layer.pooling_param
    kernel, stride, pad = param.kernel_size, param.stride or 1, param.pad
    channels, height, width = x.shape

    def count(size: int) -> int:
        n = -(-(size + 2 * pad - kernel) // stride) + 1
        return n - 1 if pad and (n - 1) * stride >= size + pad else n

    rows, cols = count(height), count(width)
    out = np.empty((channels, rows, cols))
    for i in range(rows):
        for j in range(cols):
            top, left = i * stride - pad, j * stride - pad
            bottom, right = min(top + kernel, height + pad), min(left + kernel, width + pad)
            area = (bottom - top) * (right - left)
            window = x[:, max(top, 0):min(bottom, height), max(left, 0):min(right, width)]
            if param.pool == param.MAX:
                out[:, i, j] = window.max(axis=(1, 2))
            elif param.pool == param.AVE:
                out[:, i, j] = window.sum(axis=(1, 2)) / area
            else:
                raise ValueError(f"layer {layer.name}: pooling method {param.pool} is not interpreted here")
    return out


def forward(net, weights: dict[str, list[np.ndarray]], data: np.ndarray) -> dict[str, np.ndarray]:
    """Run the definition ``net`` on ``data`` (C, H, W) (one image: the input blob ``data``, float64) -> every blob
    by name. Deploy-time semantics: Dropout passes its input through."""
    blobs = {net.input[0]: np.asarray(data, dtype=np.float64)}
    for layer in net.layer:
        inputs = [blobs[b] for b in layer.bottom]
        if layer.type == "Slice":
            if layer.slice_param.axis != 1:
                raise ValueError(f"layer {layer.name}: only channel slices are interpreted here")
            outputs = np.split(inputs[0], list(layer.slice_param.slice_point), axis=0)
        elif layer.type == "Concat":
            if layer.concat_param.axis != 1:
                raise ValueError(f"layer {layer.name}: only channel concatenation is interpreted here")
            shapes = {i.shape[1:] for i in inputs}
            if len(shapes) != 1:
                raise ValueError(f"layer {layer.name}: Caffe cannot concatenate blobs of sizes {sorted(shapes)}")
            outputs = [np.concatenate(inputs, axis=0)]
        elif layer.type == "Convolution":
            outputs = [_convolution(inputs[0], layer, weights[layer.name])]
        elif layer.type == "Pooling":
            outputs = [_pooling(inputs[0], layer)]
        elif layer.type == "ReLU":
            outputs = [np.maximum(inputs[0], 0) + layer.relu_param.negative_slope * np.minimum(inputs[0], 0)]
        elif layer.type == "Dropout":
            outputs = [inputs[0]]
        else:
            raise ValueError(f"layer {layer.name}: type {layer.type} is not interpreted here")
        blobs.update(zip(layer.top, outputs, strict=True))
    return blobs


def belief_layers(net) -> list[str]:
    """The Convolutions whose output is a stage's beliefs: as wide as the net's last layer (parts + background)."""
    convolutions = [layer for layer in net.layer if layer.type == "Convolution"]
    width = convolutions[-1].convolution_param.num_output
    return [layer.name for layer in convolutions if layer.convolution_param.num_output == width]
