"""``cpm convert-caffe``: the released Caffe CPM weights -> a checkpoint (`cpm.inference.caffe`).

    cpm convert-caffe pose_iter_395000.caffemodel --config experiments/caffe_lsp.toml --set data.root=LSP --out lsp.pt

Every blob is mapped by layer name onto the network the config builds, every shape is checked and no blob may be left
over; a bad or foreign file stops with one line and nothing written. The checkpoint holds the config, so ``cpm eval``,
``cpm predict`` and ``cpm export`` read it like a trained one.
"""

from __future__ import annotations

import argparse


def add_convert_caffe_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``cpm convert-caffe`` to a ``parser.add_subparsers()`` object; ``run_convert_caffe(args)`` runs it."""
    parser = subparsers.add_parser("convert-caffe", help="convert a released Caffe CPM .caffemodel to a checkpoint",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("caffemodel", help="the .caffemodel file (the LSP or an MPII person net)")
    parser.add_argument("--config", required=True, help="TOML of the released net (experiments/caffe_lsp.toml, ...)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override a config value, e.g. --set model.stages=6 (repeatable)")
    parser.add_argument("--out", required=True, metavar="PT", help="where to write the checkpoint")
    return parser


def run_convert_caffe(args: argparse.Namespace) -> int:
    from cpm.config import load_config
    from cpm.inference.caffe import convert_caffemodel

    config = load_config(args.config, args.overrides)
    result = convert_caffemodel(args.caffemodel, config, args.out)
    print(f"wrote {result['out']}: {result['layers']} convolutions, {result['parameters']:,} parameters "
          f"(sha256 of the .caffemodel {result['sha256'][:12]}...)")
    return 0
