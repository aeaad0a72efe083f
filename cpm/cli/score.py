"""``cpm score``: PCK / PCKh / PDJ / PCP / AUC / EPE of a prediction file (`cpm.evaluation.protocols`)."""

from __future__ import annotations

import argparse
import json

from cpm.evaluation import protocols
from cpm.evaluation.protocols import PROTOCOLS, format_table, score


def add_score_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``cpm score`` to a ``parser.add_subparsers()`` object; ``run_score(args)`` runs it."""
    parser = subparsers.add_parser("score", help="score a prediction .mat file against ground truth, as the papers did",
                                   description=protocols.__doc__.split("\n\n")[0])
    parser.add_argument("--gt", required=True, metavar="FILE", help="ground truth: LSP, LSPET, FLIC or MPII .mat")
    parser.add_argument("--pred", required=True, metavar="FILE",
                        help="predictions: CPM prediction_all .mat (Kx2xN, 1-based) or Tompson's MPII keypointsAll")
    parser.add_argument("--protocol", required=True, choices=list(PROTOCOLS))
    parser.add_argument("--threshold", type=float, help="override the protocol's threshold a")
    parser.add_argument("--plot", metavar="PNG", help="also write the PCK / PDJ curves per group to this PNG")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    return parser


def run_score(args: argparse.Namespace) -> int:
    result = score(args.gt, args.pred, args.protocol, threshold=args.threshold, plot=args.plot)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0
