"""Readers (and one writer) for the MATLAB annotation and prediction files the pose literature ships.

Every reader returns keypoints ``(N, K, 3)`` float64: x, y in 0-based pixels (MATLAB's 1-based values minus 1)
and the visibility flag v of this project (0 unlabeled, 1 labeled but occluded, 2 labeled and visible).
Bad input -- a missing or unreadable file, a missing variable, a wrong shape, NaN -- raises ``CPMError`` with
one line that names the file and the problem.

Layouts (N samples):

- LSP ``joints`` 3 x 14 x N (Johnson & Everingham 2010; also bearpaw/eval_pose's ``lsp-joints-PC/OC.mat``):
  x, y, flag with **1 = occluded, 0 = visible**.
- LSPET ``joints`` 14 x 3 x N (Johnson & Everingham 2011): x, y, flag with **1 = visible**. The joints with
  flag 0 are not annotated at all: in the stored files their x or y is negative (the other one exactly 0), off
  the image, so they become v = 0 (unlabeled), not v = 1.
- FLIC ``joints`` 2 x 10 x N (eval_pose's ``flic-joints-test-oc.mat``), order ``FLIC_10``; all labeled.
  Observer-centric: the "left" shoulder/hip is always the one on the image's right (true for all 1016 test
  images), i.e. the person's left for a person facing the camera.
- CPM predictions ``prediction_all`` K x 2 x N, 1-based (shihenw/convolutional-pose-machines-release,
  ``testing/src/run_benchmark.m``); LSP order for LSP, ``CPM_FLIC_9`` for FLIC.
- MPII, Tompson et al.'s 2958-person validation split (``tompson_valid_detections.mat``): ``annolist`` is a
  1 x N struct array with one field ``annorect`` (a 1 x 1 struct) holding ``x1, y1, x2, y2`` (the head box),
  ``annopoints.point`` (1 x P structs with ``x, y, id`` (0..15, ``MPII_16`` order) and ``is_visible``: 1,
  0, '1', '0' or empty), ``scale`` and ``objpos``. Joints absent from ``point`` are unlabeled (v = 0);
  ``is_visible`` 0 gives v = 1, 1 or empty v = 2 (every annotated point counts in PCKh). ``keypointsAll``
  (1 x N cells of 14 x 2) are Tompson et al.'s detections in the order of ``output_joints`` (MPII without
  pelvis and thorax); ``RELEASE_img_index`` / ``RELEASE_person_index`` point into the MPII release.
- J-HMDB ``joint_positions.mat``, one per clip (Jhuang et al. 2013): ``pos_img`` 2 x 15 x T, the puppet joints
  of each of the clip's T frames in ``JHMDB_15`` order (1-based pixels; a one-frame clip is stored as 2 x 15),
  beside ``pos_world``, ``scale`` and ``viewpoint``, which are not read. Every joint is labeled (v = 2), also
  the few placed outside the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cpm.errors import CPMError, first_line
from cpm.io import atomic_write
from cpm.skeleton import FLIC_10, LSP_14, MPII_16

LSP_14_NAMES = LSP_14.joint_names
MPII_16_NAMES = MPII_16.joint_names
FLIC_10_NAMES = FLIC_10.joint_names  # J-HMDB's puppet joints are JHMDB_15 (its "face" is the skeleton's head)
# The original CPM's FLIC output; its "Head" is FLIC's nose.
CPM_FLIC_9 = ("left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
              "left_hip", "right_hip", "nose")
FLIC_10_TO_CPM_9 = tuple(FLIC_10_NAMES.index(name) for name in CPM_FLIC_9)
# Tompson's 14 detections (output_joints: rank rkne rhip lhip lkne lank neck head rwri relb rsho lsho lelb lwri).
TOMPSON_14_TO_MPII_16 = (0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14, 15)


@dataclass
class GroundTruth:
    keypoints: np.ndarray  # (N, K, 3) 0-based pixels, v in {0, 1, 2}
    joint_names: tuple[str, ...]
    layout: str  # "lsp", "lspet", "flic" or "mpii"
    head_boxes: np.ndarray | None = None  # (N, 4) x1, y1, x2, y2 in 0-based pixels (MPII)


@dataclass
class MPIIValidation:
    keypoints: np.ndarray  # (N, 16, 3)
    head_boxes: np.ndarray  # (N, 4)
    detections: np.ndarray  # (N, 16, 2) Tompson et al.'s detections, NaN for pelvis and thorax
    image_index: np.ndarray  # (N,) 1-based index into the MPII release's annolist
    person_index: np.ndarray  # (N,) 1-based index into that image's annorect


def load_mat(path: str | Path) -> dict:
    """scipy.io.loadmat with errors that name the file."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise CPMError(f"{path}: no such file")
    try:
        return loadmat(path)
    except NotImplementedError:
        raise CPMError(f"{path}: MATLAB v7.3 (HDF5) files are not supported; save with -v7") from None
    except Exception as error:  # scipy raises ValueError, TypeError, MatReadError... for corrupt files
        raise CPMError(f"{path}: not a readable MATLAB file ({first_line(error)})") from None


def _variable(mat: dict, path: str | Path, key: str, dims: int) -> np.ndarray:
    if key not in mat:
        found = ", ".join(k for k in mat if not k.startswith("__")) or "nothing"
        raise CPMError(f"{path}: no variable {key!r} (found: {found})")
    value = mat[key]
    if value.dtype.kind not in "biuf" or value.ndim != dims:
        raise CPMError(f"{path}: {key!r} is a {value.dtype} array of shape {value.shape}, expected numbers in "
                       f"{dims} dimensions")
    values = value.astype(np.float64)
    if not np.isfinite(values).all():
        raise CPMError(f"{path}: {key!r} holds {int((~np.isfinite(values)).sum())} NaN or infinite values")
    return values


def _shape_error(path, key, shape, expected) -> CPMError:
    return CPMError(f"{path}: {key!r} has shape {'x'.join(map(str, shape))}, expected {expected}")


def _flags(path, flags: np.ndarray, allowed=(0.0, 1.0)) -> None:
    if not np.isin(flags, allowed).all():
        raise CPMError(f"{path}: visibility flags must be 0 or 1, found {sorted(set(np.unique(flags)) - {0, 1})}")


def read_lsp_joints(path: str | Path) -> np.ndarray:
    """LSP ``joints`` 3 x 14 x N (flag 1 = occluded) -> (N, 14, 3)."""
    return _lsp(load_mat(path), path)


def _lsp(mat: dict, path) -> np.ndarray:
    joints = _variable(mat, path, "joints", 3)
    if joints.shape[:2] != (3, 14):
        raise _shape_error(path, "joints", joints.shape, "3x14xN (LSP)")
    joints = joints.transpose(2, 1, 0)  # (N, 14, 3)
    _flags(path, joints[..., 2])
    v = np.where(joints[..., 2] == 1, 1.0, 2.0)
    return np.concatenate([joints[..., :2] - 1, v[..., None]], axis=-1)


def read_lspet_joints(path: str | Path) -> np.ndarray:
    """LSPET ``joints`` 14 x 3 x N (flag 1 = visible, 0 = not annotated) -> (N, 14, 3)."""
    return _lspet(load_mat(path), path)


def _lspet(mat: dict, path) -> np.ndarray:
    joints = _variable(mat, path, "joints", 3)
    if joints.shape[:2] != (14, 3):
        raise _shape_error(path, "joints", joints.shape, "14x3xN (LSPET)")
    joints = joints.transpose(2, 0, 1)  # (N, 14, 3)
    _flags(path, joints[..., 2])
    v = np.where(joints[..., 2] == 1, 2.0, 0.0)
    return np.concatenate([joints[..., :2] - 1, v[..., None]], axis=-1)


def read_flic_joints(path: str | Path) -> np.ndarray:
    """FLIC ``joints`` 2 x 10 x N in ``FLIC_10`` order -> (N, 10, 3), all visible."""
    return _flic(load_mat(path), path)


def _flic(mat: dict, path) -> np.ndarray:
    joints = _variable(mat, path, "joints", 3)
    if joints.shape[:2] != (2, 10):
        raise _shape_error(path, "joints", joints.shape, "2x10xN (FLIC)")
    xy = joints.transpose(2, 1, 0) - 1  # (N, 10, 2)
    return np.concatenate([xy, np.full(xy.shape[:2] + (1,), 2.0)], axis=-1)


def read_jhmdb_joints(path: str | Path) -> np.ndarray:
    """J-HMDB ``pos_img`` 2 x 15 x T (or 2 x 15 for one frame) in ``JHMDB_15`` order -> (T, 15, 3), all labeled."""
    mat = load_mat(path)
    stored = mat.get("pos_img")
    positions = _variable(mat, path, "pos_img", 2 if getattr(stored, "ndim", 3) == 2 else 3)
    if positions.ndim == 2:
        positions = positions[:, :, None]  # MATLAB drops the trailing 1 of a one-frame clip
    if positions.shape[:2] != (2, 15) or positions.shape[2] == 0:
        raise _shape_error(path, "pos_img", positions.shape, "2x15xT (J-HMDB)")
    xy = positions.transpose(2, 1, 0) - 1  # (T, 15, 2)
    return np.concatenate([xy, np.full(xy.shape[:2] + (1,), 2.0)], axis=-1)


def read_prediction_all(path: str | Path) -> np.ndarray:
    """CPM ``prediction_all`` K x 2 x N, 1-based -> (N, K, 2) 0-based."""
    return _prediction_all(load_mat(path), path)


def _prediction_all(mat: dict, path) -> np.ndarray:
    predictions = _variable(mat, path, "prediction_all", 3)
    if predictions.shape[1] != 2:
        raise _shape_error(path, "prediction_all", predictions.shape, "Kx2xN")
    return predictions.transpose(2, 0, 1) - 1


def write_prediction_all(path: str | Path, keypoints: np.ndarray) -> Path:
    """Write (N, K, 2) 0-based keypoints as CPM's ``prediction_all`` K x 2 x N, 1-based, so that models trained
    here are scored like the original. Written to a temporary file and renamed: never half-written."""
    from scipy.io import savemat

    keypoints = np.asarray(keypoints, dtype=np.float64)
    path = Path(path)
    if keypoints.ndim != 3 or keypoints.shape[-1] != 2:
        raise CPMError(f"{path}: keypoints must be (N, K, 2), got {keypoints.shape}")
    if not np.isfinite(keypoints).all():
        raise CPMError(f"{path}: {int((~np.isfinite(keypoints)).sum())} keypoint coordinates are NaN or infinite")
    with atomic_write(path) as file:
        savemat(file, {"prediction_all": keypoints.transpose(1, 2, 0) + 1})  # (K, 2, N)
    return path


def _scalar(struct, name: str) -> float | None:
    value = struct[name] if name in (struct.dtype.names or ()) else None
    if value is None or np.size(value) == 0:
        return None
    return float(np.asarray(value).ravel()[0])


def read_mpii_tompson(path: str | Path) -> MPIIValidation:
    """Tompson et al.'s MPII validation struct -> 16-joint keypoints, head boxes and their detections."""
    return _mpii(load_mat(path), path)


def _mpii(mat: dict, path) -> MPIIValidation:
    for key in ("annolist", "keypointsAll"):
        if key not in mat:
            raise CPMError(f"{path}: no variable {key!r}; not an MPII annolist file")
    annolist = mat["annolist"].ravel()
    n = len(annolist)
    if n == 0:
        raise CPMError(f"{path}: annolist is empty, no people to score")
    keypoints = np.zeros((n, 16, 3))  # (N, 16, 3), v = 0 until a point is found
    head_boxes = np.zeros((n, 4))  # (N, 4)
    for i, entry in enumerate(annolist):
        try:
            rect = entry["annorect"].ravel()[0]
            box = [_scalar(rect, name) for name in ("x1", "y1", "x2", "y2")]
            points = rect["annopoints"].ravel()[0]["point"].ravel() if rect["annopoints"].size else ()
        except (IndexError, KeyError, ValueError, TypeError):
            raise CPMError(f"{path}: annolist entry {i + 1} has no annorect with a head box and points") from None
        if any(value is None for value in box):
            raise CPMError(f"{path}: annolist entry {i + 1} has no head box x1, y1, x2, y2")
        head_boxes[i] = np.asarray(box) - 1
        for point in points:
            joint, x, y = _scalar(point, "id"), _scalar(point, "x"), _scalar(point, "y")
            if joint is None or x is None or y is None or not 0 <= joint < 16:
                raise CPMError(f"{path}: annolist entry {i + 1} has a point without a valid id, x and y")
            visible = point["is_visible"] if "is_visible" in point.dtype.names else np.array([])
            occluded = np.size(visible) > 0 and str(np.asarray(visible).ravel()[0]) in ("0", "0.0")
            keypoints[i, int(joint)] = [x - 1, y - 1, 1.0 if occluded else 2.0]
    if not (np.isfinite(keypoints).all() and np.isfinite(head_boxes).all()):
        raise CPMError(f"{path}: NaN or infinite coordinates in annolist")
    cells = mat["keypointsAll"].ravel()
    if len(cells) != n or any(np.shape(cell) != (14, 2) for cell in cells):
        raise CPMError(f"{path}: keypointsAll must hold {n} arrays of 14x2 detections")
    detections = np.full((n, 16, 2), np.nan)  # (N, 16, 2)
    detections[:, TOMPSON_14_TO_MPII_16] = np.stack([np.asarray(c, np.float64) for c in cells]) - 1
    index = {key: mat[key].ravel().astype(np.int64) if key in mat else np.zeros(n, np.int64)
             for key in ("RELEASE_img_index", "RELEASE_person_index")}
    return MPIIValidation(keypoints, head_boxes, detections, index["RELEASE_img_index"], index["RELEASE_person_index"])


def read_ground_truth(path: str | Path) -> GroundTruth:
    """Any of the ground-truth layouts above, told apart by their variables and shapes."""
    mat = load_mat(path)
    if "annolist" in mat:
        mpii = _mpii(mat, path)
        return GroundTruth(mpii.keypoints, MPII_16_NAMES, "mpii", mpii.head_boxes)
    shape = mat["joints"].shape[:2] if "joints" in mat and mat["joints"].ndim == 3 else None
    if shape == (3, 14):
        return GroundTruth(_lsp(mat, path), LSP_14_NAMES, "lsp")
    if shape == (14, 3):
        return GroundTruth(_lspet(mat, path), LSP_14_NAMES, "lspet")
    if shape == (2, 10):
        return GroundTruth(_flic(mat, path), FLIC_10_NAMES, "flic")
    found = ", ".join(f"{k} {'x'.join(map(str, v.shape))}" for k, v in mat.items() if not k.startswith("__"))
    raise CPMError(f"{path}: not a known ground-truth layout (LSP joints 3x14xN, LSPET 14x3xN, FLIC 2x10xN, "
                   f"MPII annolist); found {found or 'nothing'}")


def read_predictions(path: str | Path) -> np.ndarray:
    """(N, K, 2) predictions from a CPM ``prediction_all`` file or Tompson's MPII detections (``keypointsAll``)."""
    mat = load_mat(path)
    if "prediction_all" in mat:
        return _prediction_all(mat, path)
    if "keypointsAll" in mat:
        return _mpii(mat, path).detections
    found = ", ".join(k for k in mat if not k.startswith("__")) or "nothing"
    raise CPMError(f"{path}: no predictions (expected 'prediction_all' Kx2xN or 'keypointsAll'); found {found}")
