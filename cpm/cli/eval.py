"""``cpm eval CHECKPOINT``: per-stage PCK of a checkpoint on its held-out split (`cpm.evaluation.evaluate`).

With ``--pose-sources [DATA]`` a synthetic-data checkpoint is measured on held-out frames of each pose source
instead, one per-stage table each, so that the gap between the poses it learned from and real motion is in view:

    procedural                the embedded pose prior (its hand-set ranges: data.pose_prior = "procedural")
    mocap held-out subjects   DATA/mocap/cmu, the CMU subjects held out of training (numbers ending in 1 or 6)
    K2HPD test                DATA/k2hpd/k2hpd_keypoints_test.mat, real 2D poses lifted to 3D
    LSP test poses            DATA/lsp:test, the poses of LSP's test images 1001-2000 (sport), lifted to 3D
    MPII validation poses     DATA/mpii:test, the 2017 complete poses of the 2958-person MPII validation split

Each source poses the frames of the checkpoint's held-out seed (``data.val_seed``, ``data.val_samples`` frames;
--set changes them). DATA defaults to ``../shared/data`` of the working folder or of the project; a source whose
files are not there is skipped with a note. A training config's bvh poses are the other subjects
(``data.bvh_subjects = "train"``) and its bank the K2HPD train split (or named training sets such as lsp:train,
`cpm.data.synthetic.photo_poses`), so none of these poses was trained on.

The end of ``cpm train`` prints the same tables for the run's best.pt on the first `TRAIN_END_FRAMES` held-out
frames of each source (`pose_sources_after_training`).

Wire it into a parser with ``add_eval_parser(subparsers)``; ``run_eval(args)`` runs it.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

from cpm.errors import CPMError

SHARED_DATA = Path("..") / "shared" / "data"  # DATA of --pose-sources, from the working folder or the project
TRAIN_END_FRAMES = 500  # held-out frames per pose source at the end of `cpm train` (at most data.val_samples)
# The pose keys every source sets, so that nothing of a checkpoint's own pose settings (a mixture) is left over.
# The procedural source is the hand-set prior (data.pose_prior = "procedural") whatever the checkpoint trained on.
_ONE_SOURCE = {"bvh_files": "", "bank_files": "", "val_bank_files": "", "bvh_subjects": "train",
               "pose_prior": "procedural", "pose_mix": {"procedural": 0.0, "bvh": 0.0, "bank": 0.0}}


def add_eval_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``cpm eval`` to a ``parser.add_subparsers()`` object."""
    evaluate = subparsers.add_parser(
        "eval", help="per-stage PCK of a checkpoint on its held-out split (or per pose source)",
        description=__doc__.split("\n\nWire")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    evaluate.add_argument("checkpoint")
    evaluate.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                          help="override a config value, e.g. --set data.val_samples=200 (repeatable)")
    evaluate.add_argument("--device", default="auto")
    evaluate.add_argument("--json", action="store_true", help="print the results as JSON")
    evaluate.add_argument("--predictions", metavar="MAT",
                          help="also write the last stage's keypoints (source pixels) as CPM's prediction_all "
                               "K x 2 x N, 1-based, the layout `cpm score` reads")
    evaluate.add_argument("--pose-sources", nargs="?", const="", metavar="DATA",
                          help="a synthetic-data checkpoint on each pose source: procedural, held-out mocap subjects "
                               "(DATA/mocap/cmu), K2HPD test (DATA/k2hpd); DATA defaults to ../shared/data")
    evaluate.add_argument("--no-progress", action="store_true")
    from cpm.cli.eval_coco import add_coco_arguments

    add_coco_arguments(evaluate)
    return evaluate


def run_eval(args: argparse.Namespace) -> int:
    from cpm.config import parse_override

    overrides: dict = {}
    for text in args.overrides:
        for section, values in parse_override(text).items():
            overrides.setdefault(section, {}).update(values)
    if args.coco is not None:
        from cpm.cli.eval_coco import run_coco

        if args.predictions or args.pose_sources is not None:
            raise CPMError("--coco scores every person box of a COCO file; not with --predictions or --pose-sources")
        return run_coco(args, overrides)
    if args.boxes or args.out or args.flip_test == "both":
        raise CPMError("--boxes, --out and --flip-test both go with --coco (cpm eval CKPT --coco ANNOTATIONS ...)")
    if args.flip_test != "config":  # on / off: eval.flip_test for the held-out split and every pose source
        overrides.setdefault("eval", {})["flip_test"] = args.flip_test == "on"
    if args.pose_sources is not None:
        if args.predictions:
            raise CPMError("--predictions writes the keypoints of one held-out split; not with --pose-sources")
        return _run_pose_sources(args, overrides)

    from cpm.evaluation.evaluate import evaluate_checkpoint
    from cpm.evaluation.report import format_stage_table

    if args.predictions and not Path(args.predictions).resolve().parent.is_dir():
        raise CPMError(f"{args.predictions}: the folder to write predictions into does not exist")
    results = evaluate_checkpoint(args.checkpoint, overrides=overrides, progress=not args.no_progress,
                                  device_name=args.device)
    if args.predictions:
        from cpm.data.datasets.matfiles import write_prediction_all

        write_prediction_all(args.predictions, results["predictions"][:, -1])
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, "best": results.get("best"), **_summary(results)}, indent=2))
    else:
        if results.get("best"):
            print(describe_best(args.checkpoint, results["best"]))
        print(format_stage_table(results))
    return 0


def find_shared_data(folder: str = "") -> Path | None:
    """``--pose-sources`` DATA: the folder given (CPMError if it is not one), else ``../shared/data`` of the working
    folder or of the project, else None."""
    if folder:
        if not Path(folder).is_dir():
            raise CPMError(f"--pose-sources {folder}: no such folder")
        return Path(folder)
    for candidate in (SHARED_DATA, Path(__file__).resolve().parents[2] / SHARED_DATA):
        if candidate.is_dir():
            return candidate
    return None


def pose_source_overrides(data: Path | None) -> tuple[dict[str, dict], list[str]]:
    """{source name: its ``data`` overrides} of the sources whose files are found under ``data``, and a note for
    each one that is skipped."""
    sources = {"procedural": dict(_ONE_SOURCE)}
    notes = []
    mocap = None if data is None else data / "mocap" / "cmu"
    if mocap is not None and mocap.is_dir() and any(mocap.glob("*.bvh")):
        sources["mocap held-out subjects"] = _ONE_SOURCE | {"pose_mix": {"procedural": 0.0, "bvh": 1.0, "bank": 0.0},
                                                            "bvh_files": str(mocap), "bvh_subjects": "held_out"}
    else:
        notes.append(f"mocap held-out subjects: skipped, no .bvh clips in {mocap or '../shared/data/mocap/cmu'}")
    k2hpd = None if data is None else data / "k2hpd" / "k2hpd_keypoints_test.mat"
    if k2hpd is not None and k2hpd.is_file():
        sources["K2HPD test"] = _ONE_SOURCE | {"pose_mix": {"procedural": 0.0, "bvh": 0.0, "bank": 1.0},
                                               "bank_files": str(k2hpd), "val_bank_files": str(k2hpd)}
    else:
        notes.append(f"K2HPD test: skipped, no {k2hpd or '../shared/data/k2hpd/k2hpd_keypoints_test.mat'}")
    from cpm.data.synthetic.photo_poses import NAMED_SETS

    for name, named in (("LSP test poses", "lsp:test"), ("MPII validation poses", "mpii:test")):
        file = NAMED_SETS[named.partition(":")[0]]["test"][0]
        if data is not None and (data / file).is_file():
            bank = f"{data}/{named}"  # the named set of this DATA folder
            sources[name] = _ONE_SOURCE | {"pose_mix": {"procedural": 0.0, "bvh": 0.0, "bank": 1.0},
                                           "bank_files": bank, "val_bank_files": bank}
        else:
            notes.append(f"{name}: skipped, no {data / file if data is not None else SHARED_DATA / file}")
    return sources, notes


def evaluate_pose_sources(checkpoint: str | Path, data: Path | None, *, overrides: dict | None = None,
                          progress: bool = True, device_name: str = "auto") -> tuple[dict[str, dict], list[str]]:
    """`cpm.evaluation.evaluate.evaluate_checkpoint` of a synthetic-data checkpoint on each pose source of
    `pose_source_overrides` (the ``overrides`` first, the source's pose keys over them): ({source: results},
    notes on the sources skipped)."""
    from cpm.config import config_from_dict
    from cpm.evaluation.evaluate import evaluate_checkpoint
    from cpm.runtime.checkpoint import load_checkpoint

    source = config_from_dict(load_checkpoint(checkpoint)["config"]).data.source
    if source != "synthetic":
        raise CPMError(f"--pose-sources: {checkpoint} was trained on data.source = {source!r}; pose sources pose "
                       "the synthetic frames")
    sources, notes = pose_source_overrides(data)
    results = {}
    for name, keys in sources.items():
        merged = copy.deepcopy(overrides or {})
        merged.setdefault("data", {}).update(keys)
        results[name] = evaluate_checkpoint(checkpoint, overrides=merged, progress=progress, device_name=device_name)
        results[name]["files"] = keys["bvh_files"] or keys["bank_files"]
    return results, notes


def format_pose_source_tables(results: dict[str, dict]) -> str:
    """A per-stage table (`cpm.evaluation.report.format_stage_table`) per pose source, then the final stage of
    each source in one table."""
    from cpm.evaluation.report import format_stage_table

    parts = []
    for name, result in results.items():
        where = f" ({result['files']})" if result.get("files") else ""
        parts.append(f"{name}{where}:\n\n{format_stage_table(result)}\n")
    thresholds = sorted(next(iter(results.values()))["pck"])
    lines = ["| pose source (final stage) | " + " | ".join(f"PCK@{a:g}" for a in thresholds) + " |",
             "|---|" + "---:|" * len(thresholds)]
    lines += [f"| {name} | " + " | ".join(f"{100 * result['pck'][a][-1]:.2f}" for a in thresholds) + " |"
              for name, result in results.items()]
    return "\n".join(parts + lines)


def pose_sources_after_training(run_dir: str | Path, folder: str = "", *, frames: int = TRAIN_END_FRAMES,
                                progress: bool = True) -> str:
    """What the end of ``cpm train`` prints about the pose sources: the per-stage tables of
    `format_pose_source_tables` for the run's best.pt (last.pt without one) on the first ``frames`` held-out frames
    of each source (at most ``data.val_samples``), on the run's ``train.device``, with a line per source skipped.
    ``folder`` is where the shared data is (`find_shared_data`). Where neither the mocap clips nor the K2HPD test
    split is found, only the notes (the procedural frames are those of the held-out table above); a run on a real
    dataset: ""."""
    from cpm.config import config_from_dict
    from cpm.runtime.checkpoint import load_checkpoint

    run_dir = Path(run_dir)
    checkpoint = run_dir / "best.pt" if (run_dir / "best.pt").is_file() else run_dir / "last.pt"
    config = config_from_dict(load_checkpoint(checkpoint)["config"])
    if config.data.source != "synthetic":
        return ""
    data = find_shared_data(folder)
    sources, notes = pose_source_overrides(data)
    lines = [f"pose sources: {note}" for note in notes]
    if len(sources) == 1:
        return "\n".join(lines)
    count = min(frames, config.data.val_samples)
    results, _ = evaluate_pose_sources(checkpoint, data, overrides={"data": {"val_samples": count}},
                                       progress=progress, device_name=config.train.device)
    frames_shown = f"its {count} held-out frames" if count == config.data.val_samples else (
        f"the first {count} of its {config.data.val_samples} held-out frames; `cpm eval {checkpoint} --pose-sources` "
        "measures them all")
    lines += [f"\nPer-stage PCK per pose source ({checkpoint}), each on {frames_shown}:\n",
              format_pose_source_tables(results)]
    return "\n".join(lines)


def _run_pose_sources(args: argparse.Namespace, overrides: dict) -> int:
    data = find_shared_data(args.pose_sources)
    results, notes = evaluate_pose_sources(args.checkpoint, data, overrides=overrides,
                                           progress=not args.no_progress, device_name=args.device)
    for note in notes:
        print(f"cpm eval: {note}", file=sys.stderr)
    best = next(iter(results.values())).get("best")
    if args.json:
        print(json.dumps({"checkpoint": args.checkpoint, "best": best,
                          "sources": {name: {"files": r["files"], **_summary(r)} for name, r in results.items()}},
                         indent=2))
        return 0
    if best:
        print(describe_best(args.checkpoint, best))
    print(f"Per-stage PCK per pose source ({args.checkpoint}):\n")
    print(format_pose_source_tables(results))
    return 0


def _summary(results: dict) -> dict:
    """The JSON fields of one evaluation."""
    return {
        "samples": results["samples"], "excluded": results.get("excluded", 0),
        "pck": {f"{a:g}": per_stage for a, per_stage in results["pck"].items()},
        "per_joint": {f"{a:g}": [None if v != v else v for v in per_joint.tolist()]
                      for a, per_joint in results["per_joint"].items()},
        "loss": results["loss"],
    }


def describe_best(checkpoint: str, best: dict) -> str:
    """What the training run chose the checkpoint by, in one line."""
    metric = best.get("metric", "?")
    what = "final-stage held-out loss" if metric == "loss" else f"final-stage PCK@{metric.partition('@')[2]}"
    value = best.get("value", float("nan"))
    shown = f"{value:.5f}" if metric == "loss" else f"{100 * value:.2f}"
    return f"{checkpoint}: chosen by train.best_metric = {metric} ({what} {shown} at epoch {best.get('epoch', '?')})\n"
