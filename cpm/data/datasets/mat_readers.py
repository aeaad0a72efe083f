"""Readers of MATLAB datasets: LSP / LSP-extended, the official MPII release, FLIC's ``examples.mat``,
J-HMDB's per-clip ``joint_positions.mat`` and K2HPD's keypoints. The arrays are read by `cpm.data.datasets.matfiles`;
coordinates come out 0-based (MATLAB's 1-based values minus 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cpm.data.datasets.matfiles import load_mat, read_ground_truth, read_jhmdb_joints
from cpm.data.datasets.samples import ImageSamples, KeypointSet, check_keypoints, image_folder, resolve_image
from cpm.errors import CPMError
from cpm.skeleton import FLIC_10, JHMDB_15, K2HPD_19, LSP_14, MPII_16

# J-HMDB as released: <root>/joint_positions/<class>/<clip>/joint_positions.mat, and the clip's frames
# <root>/Rename_Images/<class>/<clip>/00001.png, 00002.png, ... (frame t of pos_img is image t).
JHMDB_JOINTS, JHMDB_IMAGES, JHMDB_FILE = "joint_positions", "Rename_Images", "joint_positions.mat"
# The skeleton's joints in the file's order (the same order, matched by name).


def read_lsp(root: str | Path, *, joints: str = "joints.mat") -> ImageSamples:
    """LSP (``joints`` 3x14xN, 1 = occluded; images ``im0001.jpg``) or LSP-extended (14x3xN, 1 = visible,
    unannotated joints unlabeled; images ``im00001.jpg``), told apart by the array's shape (cpm.data.datasets.matfiles).
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


def read_mpii_mat(path: str | Path, *, image_root: str | Path, train_only: bool = True) -> ImageSamples:
    """The official ``mpii_human_pose_v1_u12_1.mat``: ``RELEASE.annolist`` (image.name, annorect with
    annopoints.point x, y, id, is_visible, objpos and scale) and ``RELEASE.img_train``; one sample per annotated
    person, its objpos and scale kept as the annotated position."""
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
    images, keypoints, annotated = [], [], []
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
            annotated.append(_objpos_scale(rect))
    if not keypoints:
        raise CPMError(f"{path}: no annotated people")
    return ImageSamples(images, np.array(keypoints), skeleton=MPII_16.name, where=str(path), num_joints=16,
                        annotated=np.array(annotated))


def _objpos_scale(rect) -> list[float]:
    """An MPII annorect's objpos (0-based) and scale, NaN where it has none."""
    names = rect.dtype.names or ()
    try:
        objpos = rect["objpos"].ravel()[0]
        x, y = (float(np.asarray(objpos[key]).ravel()[0]) - 1 for key in ("x", "y"))
        return [x, y, float(np.asarray(rect["scale"]).ravel()[0])] if "scale" in names else [x, y, np.nan]
    except (KeyError, IndexError, ValueError, TypeError):
        return [np.nan] * 3


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
    root = image_folder(path, image_root)
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


def read_jhmdb(root: str | Path, *, clips: str | Path = "") -> ImageSamples:
    """J-HMDB: every frame of every clip is a sample, keypoints (`JHMDB_15`) from the clip's
    ``joint_positions/<class>/<clip>/joint_positions.mat``, image ``Rename_Images/<class>/<clip>/%05d.png``
    (frame 1 is 00001.png). All clips in sorted order, or those of ``clips``: a text file in ``root`` with one
    ``<class>/<clip>`` per line (blank lines and ``#`` comments skipped)."""
    root = Path(root)
    joints = root / JHMDB_JOINTS
    if clips:
        listing = root / clips
        if not listing.is_file():
            raise CPMError(f"{listing}: no such file")
        lines = (line.split("#")[0].strip() for line in listing.read_text(encoding="utf-8").splitlines())
        names = [line.strip("/") for line in lines if line]
        if not names:
            raise CPMError(f"{listing}: no clips listed")
        where = str(listing)
    else:
        names = sorted(p.parent.relative_to(joints).as_posix() for p in joints.glob(f"*/*/{JHMDB_FILE}"))
        if not names:
            raise CPMError(f"{root}: no {JHMDB_JOINTS}/<class>/<clip>/{JHMDB_FILE} files (J-HMDB)")
        where = str(joints)
    images, keypoints = [], []
    for name in names:
        if ".." in Path(name).parts or Path(name).is_absolute():
            raise CPMError(f"{where}: clip {name!r} leaves the dataset root {root}")
        clip = read_jhmdb_clip(joints / name / JHMDB_FILE, images=root / JHMDB_IMAGES / name)
        images.extend(clip.images)
        keypoints.append(clip.keypoints)
    return ImageSamples(images, np.concatenate(keypoints), skeleton=JHMDB_15.name, where=where, num_joints=15)


def read_jhmdb_clip(path: str | Path, *, images: str | Path) -> ImageSamples:
    """One J-HMDB ``joint_positions.mat`` (``pos_img`` 2 x 15 x T, 1-based): T samples, frame t's image
    ``images / f"{t:05d}.png"`` for t = 1..T."""
    keypoints = read_jhmdb_joints(path)  # the file's joint order is JHMDB_15's
    folder = Path(images)
    files = [resolve_image(folder, f"{t + 1:05d}.png", f"{path}: frame {t + 1}") for t in range(len(keypoints))]
    return ImageSamples(files, keypoints, skeleton=JHMDB_15.name, where=str(path), num_joints=15)


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
