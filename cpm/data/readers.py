"""Dataset readers: annotation files -> sequences of samples that `cpm.data.dataset.PoseDataset` consumes.

A reader returns an `ImageSamples` (images with keypoints; each image is read with OpenCV only when the
sample is asked for) or, for keypoint-only data (K2HPD), a `KeypointSet`. A sample is::

    {"image": (H, W) or (H, W, 3) RGB uint8, "keypoints": (K, 3) float32 [x, y, v],
     "center": (2,) float32, "scale": float, "index": int}

x, y are 0-based pixels (MATLAB's 1-based coordinates minus 1); v is 0 unlabeled, 1 labeled but occluded,
2 labeled and visible. ``center`` and ``scale`` are the centre and the longer side of the labeled joints'
bounding box, as the synthetic renderer gives them, so ``data.crop_padding`` means the same for every source.

Formats: `read_list` (a CSV or JSON list a user writes), `read_lsp` (LSP 3x14xN, 1 = occluded, and
LSP-extended 14x3xN, 1 = visible), `read_mpii_json` (the HRNet / mmpose list with center, scale, joints,
joints_vis), `read_mpii_mat` (the official ``RELEASE`` struct), `read_flic` (``examples.mat``),
`read_coco` (COCO keypoints JSON; also J-HMDB's COCO-style files), `read_k2hpd` (keypoints only),
`read_itop` (HDF5 labels and depth maps; needs h5py). Bad input raises `CPMError` with one line naming
the file or key: a missing image, a path outside the dataset root, NaN coordinates, a wrong joint count,
an empty dataset, a JSON entry without a key.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from cpm.data.matfiles import load_mat, read_ground_truth
from cpm.errors import CPMError
from cpm.skeleton import COCO_17, FLIC_10, ITOP_15, JHMDB_15, K2HPD_19, LSP_14, MPII_16, map_to_default

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def person_box(keypoints: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (2,) and longer side of the labeled (v > 0) joints' bounding box; all joints if none is labeled."""
    labeled = keypoints[keypoints[:, 2] > 0, :2]
    points = labeled if len(labeled) else keypoints[:, :2]
    lo, hi = points.min(0), points.max(0)
    return ((lo + hi) / 2).astype(np.float32), float(max((hi - lo).max(), 1.0))


def check_keypoints(keypoints: np.ndarray, num_joints: int, where: str) -> np.ndarray:
    """(N, K, 3) float32, finite, K = num_joints, v in {0, 1, 2}; else CPMError naming ``where``."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    if keypoints.ndim != 3 or keypoints.shape[2] != 3:
        raise CPMError(f"{where}: keypoints have shape {keypoints.shape}, expected (N, K, 3)")
    if keypoints.shape[1] != num_joints:
        raise CPMError(f"{where}: {keypoints.shape[1]} joints per sample, expected {num_joints}")
    good = (np.isfinite(keypoints[..., :2]).all(axis=-1) | (keypoints[..., 2] == 0)) & np.isfinite(keypoints[..., 2])
    if not good.all():
        n = int(np.argwhere(~good)[0, 0])
        raise CPMError(f"{where}: NaN or infinite coordinates of a labeled joint (sample {n})")
    if not np.isin(keypoints[..., 2], (0.0, 1.0, 2.0)).all():
        raise CPMError(f"{where}: visibility flags must be 0, 1 or 2")
    keypoints[..., :2] = np.where(np.isfinite(keypoints[..., :2]), keypoints[..., :2], 0.0)
    return keypoints.astype(np.float32)


def resolve_image(root: Path, name: str, where: str) -> Path:
    """``root / name``, which must exist and stay inside ``root`` (no ``..`` or absolute escapes)."""
    path = (root / name).resolve()
    if not path.is_relative_to(root.resolve()):
        raise CPMError(f"{where}: image path {name!r} leaves the dataset root {root}")
    if not path.is_file():
        raise CPMError(f"{where}: image {name!r} not found under {root}")
    return path


def load_image(path: Path) -> np.ndarray:
    """An image file -> (H, W) grayscale or (H, W, 3) RGB uint8; 16-bit files are scaled to 8 bits."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise CPMError(f"{path}: not a readable image")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    return image


class ImageSamples(Sequence):
    """Images (read lazily) with keypoints ``(N, K, 3)`` of ``skeleton``. ``to_default()`` maps them to ITOP_15."""

    def __init__(self, images: Sequence[Path], keypoints: np.ndarray, *, skeleton: str, where: str,
                 num_joints: int | None = None, indices: Sequence[int] | None = None) -> None:
        if len(images) == 0:
            raise CPMError(f"{where}: no samples")
        self.keypoints = check_keypoints(keypoints, num_joints or np.shape(keypoints)[1], where)
        if len(images) != len(self.keypoints):
            raise CPMError(f"{where}: {len(images)} images for {len(self.keypoints)} annotations")
        self.images = list(images)
        self.skeleton = skeleton
        self.where = where
        self.indices = list(range(len(self.images))) if indices is None else list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.subset(range(len(self))[i])
        n = self.indices[i]
        keypoints = self.keypoints[n]
        center, scale = person_box(keypoints)
        return {"image": load_image(self.images[n]), "keypoints": keypoints, "center": center, "scale": scale,
                "index": n}

    def subset(self, positions: Sequence[int]) -> ImageSamples:
        """The samples at ``positions`` (of this sequence), sharing the arrays."""
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.indices = [self.indices[p] for p in positions]
        return view

    def exclude(self, indices: Sequence[int]) -> ImageSamples:
        """Without the samples whose dataset index is in ``indices`` (e.g. `cpm.data.cleaning.read_exclude`)."""
        dropped = set(indices)
        return self.subset([p for p, n in enumerate(self.indices) if n not in dropped])

    def to_default(self) -> ImageSamples:
        """The same samples with keypoints in the default ITOP_15 order (unmapped joints unlabeled)."""
        view = self.subset(range(len(self)))
        view.keypoints = map_to_default(self.keypoints, self.skeleton).astype(np.float32)
        view.skeleton = ITOP_15.name
        return view


@dataclass
class KeypointSet:
    """Keypoints without images: ``keypoints`` (N, K, 3) of ``skeleton``."""

    keypoints: np.ndarray
    skeleton: str

    def __len__(self) -> int:
        return len(self.keypoints)

    def to_default(self) -> KeypointSet:
        return KeypointSet(map_to_default(self.keypoints, self.skeleton), ITOP_15.name)


def _image_root(path: Path, image_root: str | Path | None) -> Path:
    if image_root is not None:
        root = Path(image_root)
    else:
        root = path.parent / "images" if (path.parent / "images").is_dir() else path.parent
    if not root.is_dir():
        raise CPMError(f"{root}: image folder not found")
    return root


def _read_json(path: Path):
    if not path.is_file():
        raise CPMError(f"{path}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CPMError(f"{path}: invalid JSON ({error})") from None


def _key(entry: dict, key: str, where: str):
    if not isinstance(entry, dict) or key not in entry:
        raise CPMError(f"{where}: missing key {key!r}")
    return entry[key]


def read_list(path: str | Path, *, image_root: str | Path | None = None, skeleton: str = ITOP_15.name,
              num_joints: int | None = None) -> ImageSamples:
    """A user's own list. CSV: one row per image, ``image, x0, y0, v0, x1, y1, v1, ...`` (a header row whose
    second cell is not a number is skipped). JSON: ``[{"image": "a.png", "keypoints": [[x, y, v], ...]}, ...]``.
    Coordinates are 0-based pixels, v in {0, 1, 2}. Images are relative to ``image_root`` (default: the
    list's folder, or its ``images/`` subfolder)."""
    path = Path(path)
    root = _image_root(path, image_root)
    names, rows = [], []
    if path.suffix.lower() == ".json":
        entries = _read_json(path)
        if not isinstance(entries, list):
            raise CPMError(f"{path}: expected a JSON list of {{image, keypoints}} entries")
        for n, entry in enumerate(entries):
            names.append(str(_key(entry, "image", f"{path}: entry {n}")))
            rows.append(np.asarray(_key(entry, "keypoints", f"{path}: entry {n}"), dtype=np.float64).reshape(-1))
    else:
        if not path.is_file():
            raise CPMError(f"{path}: no such file")
        with path.open(newline="", encoding="utf-8") as file:
            for line, row in enumerate(csv.reader(file), start=1):
                if not row or (line == 1 and len(row) > 1 and not _is_number(row[1])):
                    continue
                try:
                    rows.append(np.array([float(v) for v in row[1:]]))
                except ValueError:
                    raise CPMError(f"{path}: line {line}: coordinates must be numbers") from None
                names.append(row[0].strip())
    if not rows:
        raise CPMError(f"{path}: no samples")
    widths = {len(row) for row in rows}
    if len(widths) != 1 or widths.pop() % 3:
        raise CPMError(f"{path}: every sample needs the same number of joints, each x, y, v")
    keypoints = np.stack(rows).reshape(len(rows), -1, 3)
    images = [resolve_image(root, name, f"{path}: sample {n}") for n, name in enumerate(names)]
    return ImageSamples(images, keypoints, skeleton=skeleton, where=str(path), num_joints=num_joints)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_lsp(root: str | Path, *, joints: str = "joints.mat") -> ImageSamples:
    """LSP (``joints`` 3x14xN, 1 = occluded; images ``im0001.jpg``) or LSP-extended (14x3xN, 1 = visible,
    unannotated joints unlabeled; images ``im00001.jpg``), told apart by the array's shape (cpm.data.matfiles).
    Images in ``root/images`` (or ``root``)."""
    root = Path(root)
    truth = read_ground_truth(root / joints)
    if truth.layout not in ("lsp", "lspet"):
        raise CPMError(f"{root / joints}: a {truth.layout} file, not LSP or LSP-extended joints")
    folder = root / "images" if (root / "images").is_dir() else root
    digits = 4 if truth.layout == "lsp" else 5
    images = [resolve_image(folder, f"im{n + 1:0{digits}d}.jpg", str(root / joints))
              for n in range(len(truth.keypoints))]
    return ImageSamples(images, truth.keypoints, skeleton=LSP_14.name, where=str(root / joints), num_joints=14)


def read_mpii_json(path: str | Path, *, image_root: str | Path | None = None) -> ImageSamples:
    """HRNet's / mmpose's MPII list ``[{"image", "center", "scale", "joints": 16x[x, y], "joints_vis": 16}]``,
    1-based MATLAB pixels. ``joints_vis`` 1 -> v = 2, 0 -> unlabeled (the list keeps no occlusion flag)."""
    path = Path(path)
    entries = _read_json(path)
    if not isinstance(entries, list):
        raise CPMError(f"{path}: expected a JSON list of MPII entries")
    root = _image_root(path, image_root)
    images, keypoints = [], []
    for n, entry in enumerate(entries):
        where = f"{path}: entry {n}"
        images.append(resolve_image(root, str(_key(entry, "image", where)), where))
        joints = np.asarray(_key(entry, "joints", where), dtype=np.float64)
        visible = np.asarray(_key(entry, "joints_vis", where), dtype=np.float64).reshape(-1)
        if joints.shape != (16, 2) or visible.shape != (16,):
            raise CPMError(f"{where}: joints must be 16 x [x, y] with 16 joints_vis, got {joints.shape}")
        keypoints.append(np.concatenate([joints - 1, 2.0 * (visible[:, None] > 0)], axis=1))
    return ImageSamples(images, np.array(keypoints).reshape(-1, 16, 3), skeleton=MPII_16.name, where=str(path),
                        num_joints=16)


def read_mpii_mat(path: str | Path, *, image_root: str | Path, train_only: bool = True) -> ImageSamples:
    """The official ``mpii_human_pose_v1_u12_1.mat``: ``RELEASE.annolist`` (image.name, annorect with
    annopoints.point x, y, id, is_visible) and ``RELEASE.img_train``; one sample per annotated person."""
    path = Path(path)
    mat = load_mat(path)
    if "RELEASE" not in mat:
        raise CPMError(f"{path}: no variable 'RELEASE'; not the official MPII annotation file")
    release = mat["RELEASE"].ravel()[0]
    try:
        annolist, train = release["annolist"].ravel(), release["img_train"].ravel()
    except (ValueError, KeyError):
        raise CPMError(f"{path}: RELEASE has no annolist or img_train") from None
    root = Path(image_root)
    images, keypoints = [], []
    for n, entry in enumerate(annolist):
        if train_only and not (n < len(train) and train[n] == 1):
            continue
        name = str(np.asarray(entry["image"].ravel()[0]["name"]).ravel()[0])
        rects = entry["annorect"].ravel() if entry["annorect"].size else ()
        for rect in rects:
            names = rect.dtype.names or ()
            if "annopoints" not in names or rect["annopoints"].size == 0:
                continue
            points = rect["annopoints"].ravel()[0]["point"].ravel()
            person = np.zeros((16, 3))
            for point in points:
                joint = int(np.asarray(point["id"]).ravel()[0])
                x, y = float(np.asarray(point["x"]).ravel()[0]), float(np.asarray(point["y"]).ravel()[0])
                flag = np.asarray(point["is_visible"]).ravel() if "is_visible" in point.dtype.names else []
                occluded = len(flag) > 0 and str(flag[0]) in ("0", "0.0")
                person[joint] = [x - 1, y - 1, 1.0 if occluded else 2.0]
            images.append(resolve_image(root, name, f"{path}: annolist entry {n + 1}"))
            keypoints.append(person)
    if not keypoints:
        raise CPMError(f"{path}: no annotated people")
    return ImageSamples(images, np.array(keypoints), skeleton=MPII_16.name, where=str(path), num_joints=16)


# FLIC's 29 landmarks in examples.mat ``coords`` (2 x 29, NaN where absent) -> the 10 of FLIC_10.
FLIC_29_TO_10 = (16, 17, 3, 4, 5, 9, 0, 1, 2, 6)


def read_flic(path: str | Path, *, image_root: str | Path | None = None, split: str = "all") -> ImageSamples:
    """FLIC's ``examples.mat``: a struct array with ``filepath``, ``coords`` (2 x 29, 1-based) and
    ``istrain`` / ``istest``; keypoints in ``FLIC_10`` order (nose, neck = mid-shoulder, arms, hips)."""
    path = Path(path)
    mat = load_mat(path)
    if "examples" not in mat:
        raise CPMError(f"{path}: no variable 'examples'; not FLIC's examples.mat")
    examples = mat["examples"].ravel()
    root = _image_root(path, image_root)
    images, keypoints = [], []
    for n, example in enumerate(examples):
        names = example.dtype.names or ()
        for key in ("filepath", "coords"):
            if key not in names:
                raise CPMError(f"{path}: examples({n + 1}) has no field {key!r}")
        if split != "all" and int(np.asarray(example[f"is{split}"]).ravel()[0]) != 1:
            continue
        coords = np.asarray(example["coords"], dtype=np.float64)
        if coords.shape != (2, 29):
            raise CPMError(f"{path}: examples({n + 1}).coords has shape {coords.shape}, expected 2x29")
        xy = coords.T[list(FLIC_29_TO_10)] - 1
        labeled = np.isfinite(xy).all(axis=1)
        keypoints.append(np.concatenate([np.nan_to_num(xy), 2.0 * labeled[:, None]], axis=1))
        name = str(np.asarray(example["filepath"]).ravel()[0])
        images.append(resolve_image(root, name, f"{path}: examples({n + 1})"))
    return ImageSamples(images, np.array(keypoints).reshape(-1, 10, 3), skeleton=FLIC_10.name, where=str(path),
                        num_joints=10)


def read_coco(path: str | Path, *, image_root: str | Path | None = None) -> ImageSamples:
    """COCO keypoints JSON (``images``, ``annotations`` with ``keypoints`` [x, y, v] * K, ``categories``), one
    sample per annotated person (crowds and people without keypoints are left out). COCO's v is this project's.
    The skeleton is told from the category's keypoint names: COCO 17 or J-HMDB 15 (mmpose's J-HMDB files)."""
    path = Path(path)
    data = _read_json(path)
    for key in ("images", "annotations", "categories"):
        _key(data, key, str(path))
    names = tuple(_key(data["categories"][0], "keypoints", f"{path}: categories[0]")) if data["categories"] else ()
    skeletons = {COCO_17.joint_names: COCO_17, JHMDB_15.joint_names: JHMDB_15}
    if names not in skeletons:
        raise CPMError(f"{path}: categories[0].keypoints is neither the COCO 17 nor the J-HMDB 15 joint list")
    skeleton = skeletons[names]
    files = {}
    for n, image in enumerate(data["images"]):
        files[_key(image, "id", f"{path}: images[{n}]")] = _key(image, "file_name", f"{path}: images[{n}]")
    root = _image_root(path, image_root)
    images, keypoints = [], []
    for n, annotation in enumerate(data["annotations"]):
        where = f"{path}: annotations[{n}]"
        values = np.asarray(_key(annotation, "keypoints", where), dtype=np.float64)
        if annotation.get("iscrowd", 0) or not (values[2::3] > 0).any():
            continue
        if values.size != 3 * skeleton.num_joints:
            raise CPMError(f"{where}: {values.size // 3} keypoints, expected {skeleton.num_joints}")
        image_id = _key(annotation, "image_id", where)
        if image_id not in files:
            raise CPMError(f"{where}: image_id {image_id} is not in images")
        images.append(resolve_image(root, files[image_id], where))
        keypoints.append(values.reshape(-1, 3))
    return ImageSamples(images, np.array(keypoints).reshape(-1, skeleton.num_joints, 3), skeleton=skeleton.name,
                        where=str(path), num_joints=skeleton.num_joints)


def read_k2hpd(path: str | Path, *, default_skeleton: bool = True) -> KeypointSet:
    """K2HPD keypoints ``N x 19 x 2`` (the only variable of ``k2hpd_keypoints_{train,test}.mat``), 1-based, all
    labeled -> (N, 15, 3) in ITOP_15 order (image-left taken as the person's right), or (N, 19, 3) as stored."""
    mat = load_mat(path)
    arrays = {k: v for k, v in mat.items() if not k.startswith("__")}
    if len(arrays) != 1:
        raise CPMError(f"{path}: expected one keypoint array, found {', '.join(arrays) or 'nothing'}")
    (key, values), = arrays.items()
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 3 or values.shape[1:] != (19, 2):
        raise CPMError(f"{path}: {key!r} has shape {values.shape}, expected N x 19 x 2 (K2HPD)")
    if len(values) == 0:
        raise CPMError(f"{path}: no samples")
    keypoints = np.concatenate([values - 1, np.full(values.shape[:2] + (1,), 2.0)], axis=2)
    keypoints = check_keypoints(keypoints, 19, f"{path}: {key}")
    result = KeypointSet(keypoints, K2HPD_19.name)
    return result.to_default() if default_skeleton else result


def read_itop(labels: str | Path, depth: str | Path, *, valid_only: bool = True) -> ImageSamples:
    """ITOP (Haque et al. 2016): ``*_labels.h5`` (``image_coordinates`` N x 15 x 2, ``visible_joints``,
    ``is_valid``) and ``*_depth_map.h5`` (``data`` N x 240 x 320 metres). Depth becomes 8-bit gray with the
    synthetic renderer's convention (`cpm.data.synthetic.depth_to_gray`, 0 = no reading)."""
    try:
        import h5py
    except ImportError:
        raise CPMError(f"{labels}: reading ITOP HDF5 files needs h5py (pip install h5py)") from None
    for path in (labels, depth):
        if not Path(path).is_file():
            raise CPMError(f"{path}: no such file")
    with h5py.File(labels, "r") as file:
        for key in ("image_coordinates", "visible_joints", "is_valid"):
            if key not in file:
                raise CPMError(f"{labels}: no dataset {key!r}")
        coords = np.asarray(file["image_coordinates"], dtype=np.float64)
        visible = np.asarray(file["visible_joints"])
        valid = np.asarray(file["is_valid"]).astype(bool)
    frames = np.flatnonzero(valid) if valid_only else np.arange(len(valid))
    keypoints = np.concatenate([coords, np.where(visible > 0, 2.0, 1.0)[..., None]], axis=2)[frames]
    samples = _ItopSamples(Path(depth), frames, keypoints, where=str(labels))
    return samples


class _ItopSamples(ImageSamples):
    """ITOP frames come from one HDF5 array, not from image files."""

    def __init__(self, depth: Path, frames: np.ndarray, keypoints: np.ndarray, *, where: str) -> None:
        super().__init__([depth] * len(frames), keypoints, skeleton=ITOP_15.name, where=where, num_joints=15)
        self.frames = frames

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.subset(range(len(self))[i])
        import h5py

        from cpm.data.synthetic import depth_to_gray

        n = self.indices[i]
        with h5py.File(self.images[n], "r") as file:
            metres = np.asarray(file["data"][int(self.frames[n])], dtype=np.float32)
        image = (depth_to_gray(metres) + 0.5).astype(np.uint8)
        image[(metres <= 0) | ~np.isfinite(metres)] = 0
        center, scale = person_box(self.keypoints[n])
        return {"image": image, "keypoints": self.keypoints[n], "center": center, "scale": scale, "index": n}


READERS = {"list": read_list, "lsp": read_lsp, "mpii": read_mpii_json, "mpii_mat": read_mpii_mat,
           "flic": read_flic, "coco": read_coco}


def open_dataset(source: str, *, root: str | Path, annotations: str = "") -> ImageSamples:
    """The reader for config ``data.source``: ``root`` is the dataset folder, ``annotations`` the file in it
    (LSP: the joints file, default joints.mat; ITOP: ``labels.h5,depth.h5``)."""
    root = Path(root)
    if source == "lsp":
        return read_lsp(root, joints=annotations or "joints.mat")
    if source == "itop":
        labels, _, depth = annotations.partition(",")
        return read_itop(root / labels, root / depth)
    if source == "mpii_mat":
        return read_mpii_mat(root / annotations, image_root=root / "images")
    return READERS[source](root / annotations, image_root=root / "images" if (root / "images").is_dir() else root)


def split_dataset(*, source: str, root: str | Path, annotations: str = "", val_annotations: str = "",
                  val_samples: int, skeleton: str) -> tuple[ImageSamples, ImageSamples]:
    """Training and held-out samples of a real dataset, with keypoints in ``skeleton`` order (the reader's own
    skeleton, or the default ITOP_15 through `cpm.skeleton.TO_ITOP_15`). Without ``val_annotations`` the last
    ``val_samples`` samples are held out (for LSP's 2000 images and val_samples = 1000: its standard split).
    Missing paths raise ConfigError naming the config key."""
    from cpm.errors import ConfigError

    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"data.root: {root}: no such folder")
    for key, name in (("data.annotations", annotations), ("data.val_annotations", val_annotations)):
        for part in filter(None, name.split(",")):
            if not (root / part).is_file():
                raise ConfigError(f"{key}: {root / part}: no such file")
    samples = open_dataset(source, root=root, annotations=annotations)
    if val_annotations:
        train, val = samples, open_dataset(source, root=root, annotations=val_annotations)
    else:
        if not 0 < val_samples < len(samples):
            raise ConfigError(f"data.val_samples: {val_samples} held out of {len(samples)} samples in {root}; "
                              "leave some to train on")
        train, val = samples[:len(samples) - val_samples], samples[len(samples) - val_samples:]
    if skeleton == samples.skeleton:
        return train, val
    if skeleton == ITOP_15.name:
        return train.to_default(), val.to_default()
    raise ConfigError(f"data.skeleton: data.source = {source!r} gives {samples.skeleton} keypoints; "
                      f"set data.skeleton to {samples.skeleton!r} or {ITOP_15.name!r}")
