"""``cpm predict``: run a trained checkpoint on images, folders and videos; write JSON and overlays.

    cpm predict runs/default/best.pt frames/ clip.mp4 --out predictions --stages

For each input the person crop (`cpm.inference.predictor.person_crop`) is centred on its box (``--boxes FILE``: one
per image; ``--bbox``: one for all), on ``--center`` or on the image centre; its side is the box's longer side times
the config's ``data.crop_padding``, as in training, or the whole image (its longer side): a warning (one line) says
so when an image is not a square crop. Depth frames (a one-channel model) are read as they are stored: 8-bit
nearness, 16-bit millimetres, float ``.npy`` metres (``--depth`` names the encoding they must have), and made the
nearness gray of the checkpoint's ``data.depth`` range (`cpm.data.depth`). Every stage is decoded by the codec
(``--decoder``, default the config's ``eval.decoder``) and mapped back to original-image pixels through
the crop's inverse affine, as ``cpm eval`` does (`cpm.inference.predictor.predict_images`).

Outputs, per input ``<stem>.<ext>``: ``<stem>.json`` (joint names, x, y, confidence; every stage with
``--stages``; per-frame entries for a video), ``<stem>.overlay.png`` or ``<stem>.overlay.mp4`` (the
skeleton drawn, `cpm.viz.draw_skeleton`) and with ``--stages`` ``<stem>.stages.png`` (the belief-map
panel, `cpm.viz.belief_panel`; a video's first frame). The model's input channels decide the reading:
1 = grayscale, 3 = RGB. Everything is first written into a hidden folder inside ``--out`` and renamed
into place only when every input has succeeded, so a bad input leaves nothing half-written.

A bottom-up part-affinity-field checkpoint (``model.head = "paf"``) sees each whole image and finds every person in it
(`cpm.inference.predictor.predict_people_images`): ``<stem>.json`` lists the "people" as ``--people`` does (each with
"box", the box of its found joints, "score" and "joints", x and y null for a joint not found) and
``<stem>.overlay.png`` draws them all; ``--people``, ``--boxes``, ``--bbox``, ``--center``, ``--stages``,
``--decoder`` and ``--flip-test`` are refused, and so are videos.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from cpm.config import DEPTH_ENCODINGS
from cpm.errors import CPMError
from cpm.inference.boxes import box_for, read_boxes, read_people_boxes
from cpm.inference.images import captured_stderr, first_message
from cpm.skeleton import Skeleton

if TYPE_CHECKING:
    from cpm.inference.predictor import Predictor

# torch (through cpm.inference.predictor) and matplotlib (through cpm.viz) are imported where they are used, so that
# building the `cpm` command line, which imports this module, stays fast.

__all__ = ["collect_inputs", "predict_paths", "add_predict_parser", "run_predict"]

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm", ".npy"}
SQUARE = 0.1  # an image whose sides differ by more than this fraction is not a person crop
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
VIDEO_BATCH = 8  # frames per forward pass


def _joints(skeleton: Skeleton, keypoints: np.ndarray, confidence: np.ndarray) -> list[dict]:
    """(K, 2), (K,) -> [{"name", "x", "y", "confidence"}] * K."""
    return [{"name": name, "x": round(float(x), 4), "y": round(float(y), 4), "confidence": round(float(c), 5)}
            for name, (x, y), c in zip(skeleton.joint_names, keypoints, confidence, strict=True)]


def _crop(result: dict, b: int) -> dict:
    return {"center": [round(float(v), 4) for v in result["centers"][b]],
            "side": round(float(result["crop_sides"][b]), 4)}


def _entry(predictor: Predictor, result: dict, b: int, stages: bool) -> dict:
    entry = {"joints": _joints(predictor.skeleton, result["keypoints"][b, -1], result["confidence"][b, -1])}
    if stages:
        entry["stages"] = [_joints(predictor.skeleton, kp, c)
                           for kp, c in zip(result["keypoints"][b], result["confidence"][b], strict=True)]
    return entry


def _header(predictor: Predictor) -> dict:
    return {"checkpoint": str(predictor.checkpoint), "skeleton": predictor.skeleton.name,
            "decoder": predictor.decoder, "num_stages": predictor.model.num_stages}


def _write_rgb(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise CPMError(f"{path}: could not write the image")


def _write_panel(path: Path, predictor: Predictor, result: dict, title: str) -> None:
    from cpm.viz import belief_panel

    belief_panel(result["beliefs"][0], predictor.skeleton.joint_names, image=result["crops"][0],
                 title=title).savefig(path, dpi=80)


def _to_model_pixels(frame_bgr: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1:
        return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)


def _warn(line: str) -> None:
    """A decoder's complaint about a file it could read (a truncated JPEG decodes with a grey bottom)."""
    tqdm.write(f"warning: {line}", file=sys.stderr)


def is_crop(shape: tuple[int, ...]) -> bool:
    """Whether an image of ``shape`` looks like a person crop already: square to within `SQUARE`."""
    height, width = shape[:2]
    return abs(width - height) <= SQUARE * max(width, height)


def _open_video(path: Path) -> cv2.VideoCapture:
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # quiet FFmpeg while frames are read, too
    with captured_stderr() as messages:
        capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise CPMError(f"{path}: not a readable video, OpenCV cannot open it{first_message(messages)}")
    return capture


def _classify(path: Path, *, in_folder: bool) -> str | None:
    """-> "image" or "video"; None for a file in a folder that is neither. A bad named file is an error."""
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTENSIONS:
        capture = _open_video(path)
        with captured_stderr() as messages:
            readable = capture.read()[0]
        capture.release()
        if not readable:
            raise CPMError(f"{path}: not a readable video, no frame could be decoded{first_message(messages)}")
        return "video"
    if suffix == ".npy":
        return "image"
    if suffix in IMAGE_EXTENSIONS or not in_folder:
        if not cv2.haveImageReader(str(path)):
            raise CPMError(f"{path}: not an image or video that OpenCV can read")
        return "image"
    return None


def collect_inputs(inputs: Sequence[str | Path]) -> list[tuple[Path, str]]:
    """Files and folders (their images and videos, not recursive, sorted) -> [(path, "image" | "video")],
    each checked to be readable before anything is written."""
    items: list[tuple[Path, str]] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = [(f, kind) for f in sorted(path.iterdir())
                     if f.is_file() and (kind := _classify(f, in_folder=True)) is not None]
            if not found:
                raise CPMError(f"{path}: no images or videos in this folder")
            items += found
        elif path.is_file():
            items.append((path, _classify(path, in_folder=False)))
        else:
            raise CPMError(f"{path}: no such file or folder")
    stems: dict[str, Path] = {}
    for path, _ in items:
        if path.stem in stems:
            raise CPMError(f"{path}: its outputs would overwrite those of {stems[path.stem]} (same name {path.stem!r})")
        stems[path.stem] = path
    return items


def _predict_image(predictor: Predictor, path: Path, staging: Path, *, stages: bool, depth: str | None = None,
                   **crop) -> tuple[int, ...]:
    from cpm.inference.predictor import predict_images
    from cpm.viz import draw_skeleton

    image = predictor.read_image(path, depth=depth, warn=_warn)
    result = predict_images(predictor, [image], **crop)
    record = {"input": str(path), **_header(predictor), "width": image.shape[1], "height": image.shape[0],
              "crop": _crop(result, 0), **_entry(predictor, result, 0, stages)}
    (staging / f"{path.stem}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    overlay = draw_skeleton(image, result["keypoints"][0, -1], predictor.skeleton)
    _write_rgb(staging / f"{path.stem}.overlay.png", overlay)
    if stages:
        _write_panel(staging / f"{path.stem}.stages.png", predictor, result, path.name)
    return image.shape


def _predict_people(predictor: Predictor, path: Path, staging: Path, people: list, *, depth: str | None = None,
                    nms: float = 0.9) -> tuple[int, ...]:
    """Every person box of one image (``--people``): the model on each box's crop, the instances rescored and merged
    by OKS-NMS as `cpm.evaluation.topdown` does for COCO AP, every person drawn on one overlay."""
    from cpm.evaluation.topdown import merge_instances
    from cpm.inference.predictor import predict_images
    from cpm.skeleton import oks_sigmas
    from cpm.viz import draw_skeleton

    image = predictor.read_image(path, depth=depth, warn=_warn)
    record = {"input": str(path), **_header(predictor), "width": image.shape[1], "height": image.shape[0],
              "people": []}
    overlay = image
    if people:
        result = predict_images(predictor, [image] * len(people), boxes=[box for box, _ in people])
        meta = [(0, np.asarray(box, dtype=np.float64), score) for box, score in people]
        points, confidence = result["keypoints"][:, -1], result["confidence"][:, -1]
        for n, score in merge_instances(points, confidence, meta, oks_sigmas(predictor.skeleton), nms_threshold=nms):
            record["people"].append({"box": [round(float(v), 2) for v in people[n][0]], "box_score": people[n][1],
                                     "score": round(score, 5),
                                     "joints": _joints(predictor.skeleton, points[n], confidence[n])})
            overlay = draw_skeleton(overlay, points[n], predictor.skeleton)
    (staging / f"{path.stem}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    _write_rgb(staging / f"{path.stem}.overlay.png", overlay if record["people"] else np.dstack([image] * 3)
               if image.ndim == 2 else image)
    return image.shape


def _predict_people_paf(predictor: Predictor, path: Path, staging: Path, *, depth: str | None = None) -> None:
    """A paf model on one whole image: every person it finds, in the record layout of `_predict_people`."""
    from cpm.inference.predictor import predict_people_images
    from cpm.viz import draw_skeleton

    image = predictor.read_image(path, depth=depth, warn=_warn)
    record = {"input": str(path), **_header(predictor), "width": image.shape[1], "height": image.shape[0],
              "people": []}
    overlay = np.dstack([image] * 3) if image.ndim == 2 else image
    for person in predict_people_images(predictor, [image])[0]:
        keypoints = person["keypoints"]
        found = np.isfinite(keypoints[:, 0])
        low, high = keypoints[found, :2].min(axis=0), keypoints[found, :2].max(axis=0)
        joints = [{"name": name, "x": round(float(x), 4) if ok else None, "y": round(float(y), 4) if ok else None,
                   "confidence": round(float(c), 5)}
                  for name, (x, y, c), ok in zip(predictor.skeleton.joint_names, keypoints, found, strict=True)]
        record["people"].append({"box": [round(float(v), 2) for v in (*low, *(high - low))],
                                 "score": round(person["score"], 5), "joints": joints})
        overlay = draw_skeleton(overlay, keypoints, predictor.skeleton)
    (staging / f"{path.stem}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    _write_rgb(staging / f"{path.stem}.overlay.png", overlay)


def _refuse_for_paf(checkpoint: str | Path, items: list, **flags) -> None:
    """One line for the first flag or video that a bottom-up paf model has no use for."""
    for flag, value in flags.items():
        if value:
            raise CPMError(f"--{flag.replace('_', '-')}: {checkpoint} is a bottom-up part-affinity-field model that "
                           "finds every person in the whole image; it takes no boxes, centres or stage panels")
    videos = [path for path, kind in items if kind != "image"]
    if videos:
        raise CPMError(f"{videos[0]}: a video; cpm predict of a part-affinity-field model reads images only")


def _predict_video(predictor: Predictor, path: Path, staging: Path, *, stages: bool, progress: bool,
                   **crop) -> tuple[int, ...]:
    from cpm.inference.predictor import predict_images
    from cpm.viz import draw_skeleton

    capture = _open_video(path)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    overlay_path = staging / f"{path.stem}.overlay.mp4"
    writer, frames = None, []
    bar = tqdm(total=total, desc=path.name, unit="frame", disable=not progress, dynamic_ncols=True, leave=False)
    try:
        while True:
            batch = []
            while len(batch) < VIDEO_BATCH and (read := capture.read())[0]:
                batch.append(_to_model_pixels(read[1], predictor.in_channels))
            if not batch:
                break
            result = predict_images(predictor, batch, **crop)
            if writer is None:
                height, width = batch[0].shape[:2]  # (H, W) of the frames, written into the JSON
                writer = cv2.VideoWriter(str(overlay_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                if not writer.isOpened():
                    raise CPMError(f"{overlay_path.name}: OpenCV cannot write an mp4v video here")
                crop_geometry = _crop(result, 0)  # the same for every frame: one frame size
                if stages:
                    _write_panel(staging / f"{path.stem}.stages.png", predictor, result, f"{path.name}, frame 0")
            for b, image in enumerate(batch):
                frames.append({"frame": len(frames), **_entry(predictor, result, b, stages)})
                overlay = draw_skeleton(image, result["keypoints"][b, -1], predictor.skeleton)
                writer.write(cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))
            bar.update(len(batch))
    finally:
        bar.close()
        capture.release()
        if writer is not None:
            writer.release()
    if not frames:
        raise CPMError(f"{path}: not a readable video, no frame could be decoded")
    record = {"input": str(path), **_header(predictor), "width": width, "height": height, "fps": fps,
              "frames": len(frames), "crop": crop_geometry, "per_frame": frames}
    (staging / f"{path.stem}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    return (height, width)


def predict_paths(checkpoint: str | Path, inputs: Sequence[str | Path], *, out_dir: str | Path,
                  center: Sequence[float] | None = None, bbox: Sequence[float] | None = None,
                  decoder: str | None = None, stages: bool = False, device_name: str = "auto",
                  progress: bool = True, boxes: str | Path | None = None, depth: str | None = None,
                  flip_test: bool | None = None, people: str | Path | None = None) -> list[Path]:
    """Predict every input (see the module docstring); returns the files written, in ``out_dir``. ``boxes`` is a
    file of one box per input (`read_boxes`); ``depth`` the encoding depth inputs must be in (None: their dtype);
    ``flip_test`` True / False overrides the config's ``eval.flip_test``; ``people`` is a file of every person box of
    each image (`read_people_boxes`: all of them are predicted, merged by OKS-NMS at the config's ``eval.oks_nms``)."""
    from cpm.inference.predictor import load_predictor

    if sum(v is not None for v in (center, bbox, boxes, people)) > 1:
        raise CPMError("give one of --center, --bbox, --boxes and --people")
    if depth is not None and depth not in DEPTH_ENCODINGS:
        raise CPMError(f"--depth: {depth!r} is not one of {', '.join(DEPTH_ENCODINGS)}")
    if bbox is not None and (len(bbox) != 4 or min(bbox[2], bbox[3]) < 0 or max(bbox[2], bbox[3]) <= 0):
        raise CPMError(f"--bbox {bbox}: expected X,Y,W,H with a positive width or height")
    # a paf checkpoint refuses --decoder and --flip-test in load_predictor
    predictor = load_predictor(checkpoint, device_name=device_name, decoder=decoder, flip_test=flip_test)
    if predictor.bottom_up:
        _refuse_for_paf(checkpoint, [], people=people, boxes=boxes, bbox=bbox, center=center, stages=stages)
    elif stages and not predictor.has_beliefs:
        raise CPMError(f"--stages: {checkpoint} has a direct-regression head: no belief maps to draw")
    items = collect_inputs(inputs)
    if predictor.bottom_up:
        _refuse_for_paf(checkpoint, items)
    per_input = {}
    if boxes is not None:  # every input's box is found before anything is written
        table = read_boxes(boxes)
        per_input = {path: box_for(table, path, boxes) for path, _ in items}
    per_image_people: dict[Path, list] = {}
    if people is not None:  # every person box of every image, read before anything is written
        videos = [path for path, kind in items if kind != "image"]
        if videos:
            raise CPMError(f"--people: person boxes per image; {videos[0]} is a video")
        table = read_people_boxes(people)
        per_image_people = {path: next((table[key] for key in (str(path), path.as_posix(), path.name) if key in table),
                                       []) for path, _ in items}
        missing = [path for path, found in per_image_people.items() if not found]
        if len(missing) == len(items):
            raise CPMError(f"--people {people}: no box for any input (first {items[0][0].name})")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise CPMError(f"{out_dir}: --out exists and is not a folder")
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".cpm-predict-", dir=out_dir))
    except OSError as error:
        raise CPMError(f"{out_dir}: cannot write the --out folder ({error.strerror})") from None
    images = [path for path, kind in items if kind == "image"]
    not_crops: list[tuple[Path, tuple[int, ...]]] = []
    try:
        with tqdm(total=len(images), desc="images", unit="image", disable=not progress or len(images) < 2,
                  dynamic_ncols=True, leave=False) as bar:
            for path, kind in items:
                box = per_input.get(path, bbox)
                if predictor.bottom_up:  # the whole image is what the model learnt on: no crop warning
                    _predict_people_paf(predictor, path, staging, depth=depth)
                    bar.update()
                    continue
                if people is not None:
                    _predict_people(predictor, path, staging, per_image_people[path], depth=depth,
                                    nms=predictor.oks_nms)
                    bar.update()
                    continue
                if kind == "image":
                    shape = _predict_image(predictor, path, staging, stages=stages, depth=depth, center=center,
                                           bbox=box)
                    bar.update()
                else:
                    shape = _predict_video(predictor, path, staging, stages=stages, progress=progress, center=center,
                                           bbox=box)
                if box is None and not is_crop(shape):
                    not_crops.append((path, shape))
        written = []
        for staged in sorted(staging.iterdir()):
            os.replace(staged, out_dir / staged.name)
            written.append(out_dir / staged.name)
        if people is not None and missing:
            _warn(f"--people {people}: no box for {len(missing)} of {len(items)} images (first {missing[0].name}); "
                  "their JSON lists no people")
        if not_crops:
            _warn_not_crops(not_crops, len(items), predictor.crop_padding)
        return written
    except OSError as error:  # no space left, a quota, an I/O error: nothing of this call stays in out_dir
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        where = error.filename or out_dir
        raise CPMError(f"{where}: not written ({error.strerror or error})") from None
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _warn_not_crops(not_crops: list[tuple[Path, tuple[int, ...]]], total: int, crop_padding: float) -> None:
    """One line: these inputs were cropped whole, while the model learnt on crops around the person."""
    path, (height, width) = not_crops[0][0], not_crops[0][1][:2]
    which = (f"{path.name} ({width} x {height}) is" if len(not_crops) == 1 else
             f"{len(not_crops)} of {total} inputs (first {path.name}, {width} x {height}) are")
    print(f"warning: {which} not a person crop and no --bbox or --boxes was given: the model saw the whole "
          f"image, while it learnt on crops of {crop_padding:g}x the person; give --bbox X,Y,W,H or --boxes FILE",
          file=sys.stderr)


def _numbers(count: int, name: str):
    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != count or not all(math.isfinite(v) for v in values):
            raise argparse.ArgumentTypeError(f"expected {name}, e.g. {','.join(['10'] * count)}; got {text!r}")
        return values
    return parse


def add_predict_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``cpm predict`` to a ``parser.add_subparsers()`` object; ``run_predict(args)`` runs it."""
    parser = subparsers.add_parser("predict", help="keypoints, overlays and belief maps for images, folders, videos",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image, folder of images/videos, or video")
    parser.add_argument("--out", default="predictions", metavar="DIR", help="output folder (default: predictions)")
    person = parser.add_mutually_exclusive_group()
    person.add_argument("--center", type=_numbers(2, "X,Y"), metavar="X,Y",
                        help="person centre in image pixels (default: the image centre); the crop is the whole image")
    person.add_argument("--bbox", type=_numbers(4, "X,Y,W,H"), metavar="X,Y,W,H",
                        help="person box in image pixels: centre of the crop, side = max(W, H) x data.crop_padding")
    person.add_argument("--boxes", metavar="FILE",
                        help="one person box per input: JSON {name: [x, y, w, h]}, [{image, bbox}], COCO "
                             "(images + annotations' bbox), or CSV rows image,x,y,w,h")
    person.add_argument("--people", metavar="FILE",
                        help="every person box of each image (a COCO file, [{image, bbox, score}], or CSV rows "
                             "image,x,y,w,h[,score]): each box predicted, duplicates merged by OKS-NMS; the JSON "
                             "lists the people"),
    parser.add_argument("--depth", choices=DEPTH_ENCODINGS,
                        help="the encoding one-channel inputs must be in: nearness8 (8-bit, near = bright), "
                             "millimetres16 (16-bit mm), metres32 (float .npy); default: each file's own type")
    parser.add_argument("--decoder", metavar="NAME",
                        help="heatmap decoder, one of cpm.targets.codecs.DECODERS such as parabola or dark "
                             "(default: the config's eval.decoder)")
    parser.add_argument("--flip-test", action=argparse.BooleanOptionalAction, default=None,
                        help="average the crop's and its mirror's outputs before decoding (default: the config's "
                             "eval.flip_test)")
    parser.add_argument("--stages", action="store_true",
                        help="also every stage's keypoints in the JSON and a belief-map panel <stem>.stages.png")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, cuda:1...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run_predict(args: argparse.Namespace) -> int:
    written = predict_paths(args.checkpoint, args.inputs, out_dir=args.out, center=args.center, bbox=args.bbox,
                            decoder=args.decoder, stages=args.stages, device_name=args.device,
                            progress=not args.no_progress, boxes=args.boxes, depth=args.depth,
                            flip_test=args.flip_test, people=args.people)
    jsons = [path for path in written if path.suffix == ".json"]
    print(f"wrote {len(written)} files for {len(jsons)} inputs to {args.out}")
    return 0
