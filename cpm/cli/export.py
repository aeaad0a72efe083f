"""``cpm export``: ONNX export of a checkpoint, checked against PyTorch (`cpm.inference.export`)."""

from __future__ import annotations

import argparse

from cpm.inference import export
from cpm.inference.export import TOLERANCE, export_onnx


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``cpm export`` to a ``parser.add_subparsers()`` object; ``run_export(args)`` runs it."""
    parser = subparsers.add_parser("export", help="export a checkpoint to ONNX, checked in ONNX Runtime",
                                   description=export.__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--onnx", required=True, metavar="FILE", help="where to write the .onnx file")
    parser.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")
    parser.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=None,
                        help="the graph averages the crop's and its mirror's outputs (default: the config's "
                             "eval.flip_test)")
    return parser


def run_export(args: argparse.Namespace) -> int:
    result = export_onnx(args.checkpoint, args.onnx, opset=args.opset, flip_test=args.flip_test)

    def describe(shapes: dict[str, list]) -> str:
        return ", ".join(f"{name} ({', '.join(map(str, shape))})" for name, shape in shapes.items())

    print(f"wrote {result['path']} (opset {result['opset']})")
    print(f"  inputs:  {describe(result['inputs'])}")
    print(f"  outputs: {describe(result['outputs'])}")
    if result.get("notes"):  # what a caller feeds and reads, also in the file's metadata_props
        print(f"  input:   {result['notes']['cpm.input']}")
        print(f"  joints:  {result['notes']['cpm.joint_names']} ({result['notes']['cpm.skeleton']})")
        if "cpm.outputs" in result["notes"]:  # an RLE head's (K, 4) outputs
            print(f"  stages:  {result['notes']['cpm.outputs']}")
        if result["notes"].get("cpm.flip_test") == "1":
            print("  flip test: every output is the mean of the crop's and its mirror's (cpm.flip_test = 1)")
    print(f"ONNX Runtime vs PyTorch (fp32, batch of {result['check_batch']}): max abs difference "
          f"{result['max_abs_difference']:.3g} (tolerance {TOLERANCE:g})")
    return 0
