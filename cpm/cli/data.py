"""``cpm data``: look at the data, measure how real it is, and find bad labels.

    cpm data render --source procedural --n 64 --out sheet.png      a contact sheet with the skeletons drawn
    cpm data render --source bvh --files ../shared/data/mocap/cmu --out bvh.png
    cpm data realism --real ../shared/data/k2hpd/k2hpd_keypoints_test.mat --bvh ... --bank ...
    cpm data realism --real ... --config mixture.toml --set data.pose_prior=\"fitted\"   a config's pose source
    cpm data fit-prior --k2hpd K2HPD_TRAIN.mat --bvh CMU --out cpm/data/synthetic/fitted_prior.py   the fitted prior
    cpm data check --source lsp --root DATASET --out flags.csv       label checks, one CSV row per flag
    cpm data check --synthetic 2000                                  precision / recall on injected errors
    cpm data render-scenes scenes --scenes 500 --people 1-5          depth frames of several people, a COCO file

Wire it into a parser with ``add_data_parser(subparsers)``; ``run_data(args)`` runs it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cpm.data.quality.cleaning import (
    REASONS,
    check_labels,
    format_measure,
    inject_errors,
    measure,
    synthetic_clean_keypoints,
    write_flags,
)
from cpm.errors import CPMError
from cpm.viz import contact_sheet, write_png


def synthetic_samples(source: str, files: str | None, *, seed: int, n: int) -> list[dict]:
    """``n`` rendered samples of pose source ``source`` (procedural, bvh, bank)."""
    from cpm.data.synthetic.frames import render_sample
    from cpm.data.synthetic.sources import pose_sampler

    if source == "procedural":
        return [render_sample(seed, i) for i in range(n)]
    if not files:
        raise CPMError(f"--source {source} needs --files (a .bvh file or folder, or a keypoint .mat)")
    poses = pose_sampler(source, files, key="--files")
    return [render_sample(seed, i, poses) for i in range(n)]


def add_data_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``cpm data {render, realism, fit-prior, check, render-scenes}`` to a ``parser.add_subparsers()`` object."""
    parser = subparsers.add_parser("data", help="render, compare and check pose data",
                                   description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="data_command", required=True)

    render = commands.add_parser("render", help="contact sheet of synthetic samples with skeletons drawn")
    render.add_argument("--source", choices=("procedural", "bvh", "bank"), default="procedural")
    render.add_argument("--files", help="bvh: a .bvh file or folder; bank: a keypoint .mat (K2HPD)")
    render.add_argument("--n", type=int, default=64)
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--columns", type=int, default=8)
    render.add_argument("--out", required=True, metavar="PNG")

    realism = commands.add_parser("realism", help="pose statistics of each source against real K2HPD poses")
    realism.add_argument("--real", required=True, metavar="MAT", help="K2HPD keypoints (k2hpd_keypoints_test.mat)")
    realism.add_argument("--reference", metavar="MAT", help="another real set to show the floor (K2HPD train)")
    realism.add_argument("--bvh", metavar="PATH", help="also the bvh source from this file or folder")
    realism.add_argument("--bank", metavar="MAT", help="also the bank source from this keypoint file")
    realism.add_argument("--config", action="append", default=[], metavar="TOML",
                         help="also the pose source of this config: its data.pose_mix, data.pose_prior or files "
                              "(repeatable; --set applies to each, and alone to the defaults)")
    realism.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                         help="a config value of the --config rows, e.g. --set data.pose_mix.bank=1 (repeatable)")
    realism.add_argument("--n", type=int, default=4000, help="synthetic poses per source")
    realism.add_argument("--seed", type=int, default=0)

    fit = commands.add_parser("fit-prior", help="fit the joint angles of data.pose_prior = \"fitted\" to real poses")
    fit.add_argument("--k2hpd", required=True, metavar="MAT", help="K2HPD keypoints to lift (the train split)")
    fit.add_argument("--bvh", metavar="PATH", help="CMU clips (a folder of SUBJECT_CLIP.bvh): their training subjects")
    fit.add_argument("--mocap-share", type=float, default=None, metavar="W",
                     help="the mocap frames' share of the fit (default 0.25; 0 without --bvh)")
    fit.add_argument("--step", type=int, default=1, help="every STEP-th K2HPD pose (default all)")
    fit.add_argument("--out", required=True, metavar="PY",
                     help="the table module to write (cpm/data/synthetic/fitted_prior.py is the one used)")

    check = commands.add_parser("check", help="flag suspicious labels (CSV with reasons)")
    check.add_argument("--source", default="lsp", help="a reader of cpm.data.datasets (lsp, list, mpii, coco, ...)")
    check.add_argument("--root", help="dataset folder")
    check.add_argument("--annotations", default="", help="annotation file in --root")
    check.add_argument("--keypoints", metavar="MAT", help="keypoints only: a K2HPD keypoint .mat")
    check.add_argument("--synthetic", type=int, metavar="N",
                       help="measure precision / recall on N synthetic samples with injected label errors")
    check.add_argument("--out", metavar="CSV", help="write the flags here")
    check.add_argument("--sheet", metavar="PNG", help="contact sheet of up to 64 flagged samples")
    check.add_argument("--seed", type=int, default=0)

    scenes = commands.add_parser("render-scenes", help="synthetic depth frames of several people, as a COCO keypoints "
                                 "file (OUT/annotations.json) and 8-bit PNGs (OUT/images/)")
    scenes.add_argument("out", metavar="OUT", help="the folder to write (refused if it exists, unless --force)")
    scenes.add_argument("--scenes", type=int, required=True, metavar="N", help="how many frames")
    scenes.add_argument("--seed", type=int, default=0, help="the stream: frame i is a pure function of (seed, i)")
    scenes.add_argument("--people", default="1-5", metavar="LOW-HIGH", help="people per frame (default 1-5; 3: three)")
    scenes.add_argument("--no-furniture", action="store_true", help="people alone in front of the wall")
    scenes.add_argument("--config", metavar="TOML", help="its data.pose_mix (and pose files, data.pose_prior) poses "
                        "the people, as training frames are posed; default the procedural prior")
    scenes.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a config value, e.g. --set data.pose_mix.bvh=1 (repeatable)")
    scenes.add_argument("--force", action="store_true", help="replace OUT if it exists")
    scenes.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def run_data(args: argparse.Namespace) -> int:
    if args.data_command == "render":
        if args.n < 1:
            raise CPMError("--n must be >= 1")
        samples = synthetic_samples(args.source, args.files, seed=args.seed, n=args.n)
        write_png(args.out, contact_sheet(samples, columns=args.columns))
        print(f"wrote {args.out}: {args.n} {args.source} samples")
        return 0
    if args.data_command == "realism":
        from cpm.config import load_config
        from cpm.data.quality.realism import format_table, realism_report

        if args.n < 1:
            raise CPMError("--n must be >= 1")
        paths = args.config or ([None] if args.overrides else [])
        configs = {_config_name(path, args.overrides): load_config(path, args.overrides) for path in paths}
        rows = realism_report(real=args.real, reference=args.reference, bvh=args.bvh, bank=args.bank,
                              n=args.n, seed=args.seed, configs=configs)
        print(format_table(rows))
        return 0

    if args.data_command == "fit-prior":
        return run_fit_prior(args)
    if args.data_command == "render-scenes":
        return run_render_scenes(args)
    return run_check(args)


def people_range(text: str) -> tuple[int, int]:
    """``--people``: "LOW-HIGH" or "N" -> (low, high) with 1 <= low <= high; CPMError otherwise."""
    low, _, high = text.partition("-")
    try:
        people = (int(low), int(high or low))
    except ValueError:
        people = (0, 0)
    if not 1 <= people[0] <= people[1]:
        raise CPMError(f"--people {text}: expected LOW-HIGH (or N) with 1 <= LOW <= HIGH, e.g. 1-5")
    return people


def run_render_scenes(args: argparse.Namespace) -> int:
    """``cpm data render-scenes``: frames of `cpm.data.synthetic.crowd.render_crowd` written into a temporary folder
    beside OUT (images/NNNNNN.png, then annotations.json, `cpm.data.datasets.coco_files.write_coco`), which then
    takes OUT's name: an interrupted run leaves no OUT and no temporary folder."""
    import os
    import shutil
    import tempfile

    import cv2
    from tqdm import tqdm

    from cpm.data.datasets.coco_files import write_coco
    from cpm.data.synthetic.camera import FRAME_HEIGHT, FRAME_WIDTH
    from cpm.data.synthetic.crowd import render_crowd
    from cpm.skeleton import ITOP_15

    if args.scenes < 1:
        raise CPMError(f"--scenes {args.scenes}: must be >= 1")
    people = people_range(args.people)
    out = Path(args.out)
    if out.exists() and not args.force:
        raise CPMError(f"{out}: already exists (--force replaces it)")
    try:
        out.resolve().parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CPMError(f"{out}: cannot make the folder to write it into ({error.strerror})") from None
    pose_source = None
    if args.config or args.overrides:
        from cpm.config import load_config
        from cpm.data.synthetic.sources import config_pose_source, drop_missing_pose_files

        pose_source = config_pose_source(drop_missing_pose_files(load_config(args.config, args.overrides)).data)
    digits = max(6, len(str(args.scenes - 1)))
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}-", suffix=".tmp", dir=out.resolve().parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        work.chmod(0o777 & ~umask)  # a folder as any other, not mkdtemp's owner-only one
        (work / "images").mkdir()
        images, annotations, total = [], [], 0
        for index in tqdm(range(args.scenes), desc="scenes", unit="frame", disable=args.no_progress,
                          dynamic_ncols=True, leave=False):
            frame = render_crowd(args.seed, index, pose_source, people, furniture=not args.no_furniture)
            name = f"{index:0{digits}d}.png"
            if not cv2.imwrite(str(work / "images" / name), frame["image"]):
                raise CPMError(f"{out}: cannot write {name}")
            images.append({"id": index, "file_name": name, "width": FRAME_WIDTH, "height": FRAME_HEIGHT})
            annotations.append([{"keypoints": k, "bbox": b, "area": a}
                                for k, b, a in zip(frame["keypoints"], frame["boxes"], frame["areas"], strict=True)])
            total += len(frame["keypoints"])
        write_coco(work / "annotations.json", images, annotations, ITOP_15)
        old = None
        if out.exists():  # --force: the old folder goes only once the new one is whole
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}-old-", dir=out.resolve().parent))
            os.replace(out, old / out.name)
        os.replace(work, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except OSError as error:
        raise CPMError(f"{out}: not written ({error.strerror or error})") from None
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {out}: {args.scenes} frames, {total} people annotated ({out / 'annotations.json'}, "
          f"{out / 'images'})")
    return 0


def run_fit_prior(args: argparse.Namespace) -> int:
    """``cpm data fit-prior``: fit `cpm.data.synthetic.prior`'s table and write it as a module."""
    from cpm.data.synthetic.prior import DEFAULT_SHARE, fit_prior, write_table

    share = args.mocap_share if args.mocap_share is not None else (DEFAULT_SHARE if args.bvh else 0.0)
    if not 0 <= share < 1 or (share > 0 and not args.bvh):
        raise CPMError(f"--mocap-share: {share:g} must be in [0, 1), and 0 without --bvh")
    if args.step < 1:
        raise CPMError("--step must be >= 1")
    if not Path(args.out).resolve().parent.is_dir():
        raise CPMError(f"{args.out}: the folder to write the table into does not exist")
    table = fit_prior(args.k2hpd, args.bvh, mocap_share=share, step=args.step)
    command = " ".join(["cpm data fit-prior", f"--k2hpd {args.k2hpd}", *([f"--bvh {args.bvh}"] if args.bvh else []),
                        f"--mocap-share {share:g}", *([f"--step {args.step}"] if args.step > 1 else []),
                        f"--out {args.out}"])
    write_table(table, args.out, command=command)
    poses = table["poses"]
    print(f"wrote {args.out}: {len(table['angles'])} joint angles and the yaw fitted to {poses['k2hpd']} K2HPD poses "
          f"and {poses['mocap']} mocap frames (share {share:g}); shoulder drop {table['shoulder_drop']:g} degrees, "
          f"torso joint at {table['torso_along']:g} of the spine")
    return 0


def _config_name(path: str | None, overrides: list[str]) -> str:
    """The name of a ``--config`` row: the file (or "defaults") and its ``--set`` values."""
    return " ".join([path or "defaults", *(f"--set {o}" for o in overrides)])


def run_check(args: argparse.Namespace) -> int:
    """``cpm data check``: synthetic measurement, a keypoint file, or a dataset read by cpm.data.datasets.readers."""
    if args.synthetic:
        keypoints, sizes = synthetic_clean_keypoints(args.synthetic, seed=args.seed)
        corrupted, kinds = inject_errors(keypoints, sizes=sizes, fraction=0.1, rng=np.random.default_rng(args.seed))
        print(format_measure(measure(check_labels(corrupted, sizes=sizes), kinds)))
        return 0
    samples = None
    if args.keypoints:
        from cpm.data.datasets.mat_readers import read_k2hpd

        keypoints = read_k2hpd(args.keypoints).keypoints
        sizes, names = np.tile([256, 212], (len(keypoints), 1)), [""] * len(keypoints)
    elif args.root:
        from cpm.data.datasets.readers import open_dataset

        samples = open_dataset(args.source, root=args.root, annotations=args.annotations).to_default()
        keypoints = samples.keypoints[samples.indices]
        sizes = np.array([samples[i]["image"].shape[1::-1] for i in range(len(samples))])
        names = [str(samples.images[i]) for i in samples.indices]
    else:
        raise CPMError("cpm data check: give --root (a dataset), --keypoints (a keypoint .mat) or --synthetic N")
    flags = check_labels(keypoints, sizes=sizes)
    count = sum(bool(f) for f in flags)
    print(f"{count} of {len(flags)} samples flagged ({100 * count / len(flags):.1f} %)")
    for reason in REASONS:
        print(f"  {reason}: {sum(reason in f for f in flags)}")
    if args.out:
        write_flags(args.out, flags, names)
        print(f"wrote {args.out}")
    if args.sheet and samples is not None and count:
        shown = [samples[i] for i, f in enumerate(flags) if f][:64]
        write_png(args.sheet, contact_sheet(shown))
        print(f"wrote {args.sheet}")
    return 0
