"""Dataset readers: annotation files -> sequences of samples that `cpm.data.dataset.PoseDataset` consumes.

A reader returns an `ImageSamples` (images with keypoints; each image is read with OpenCV only when the
sample is asked for) or, for keypoint-only data (K2HPD), a `KeypointSet` (both in `cpm.data.datasets.samples`, which
describes a sample). x, y are 0-based pixels (MATLAB's 1-based coordinates minus 1); v is 0 unlabeled,
1 labeled but occluded, 2 labeled and visible.

Formats: `read_list` (a CSV or JSON list a user writes), `read_lsp` (LSP 3x14xN, 1 = occluded, and
LSP-extended 14x3xN, 1 = visible), `read_mpii_json` (the HRNet / mmpose list with center, scale, joints,
joints_vis), `read_mpii_mat` (the official ``RELEASE`` struct), `read_flic` (``examples.mat``),
`read_coco` (COCO keypoints JSON; also mmpose's COCO-style J-HMDB files), `read_jhmdb` (J-HMDB's own
per-clip ``joint_positions.mat``, one sample per frame), `read_k2hpd` (keypoints only), `read_itop` (HDF5
labels and depth maps; needs h5py). Bad input raises `CPMError` with one line naming the file or key: a
missing image, a path outside the dataset root, NaN coordinates, a wrong joint count, an empty dataset, a JSON
entry without a key. This module gathers them (`cpm.data.datasets.json_readers`, `cpm.data.datasets.mat_readers`,
`cpm.data.datasets.itop`) and opens the dataset a config names (`open_dataset`, `split_dataset`), leaving out the
samples of ``data.exclude`` (`cpm.data.datasets.exclude`).
"""

from __future__ import annotations

from pathlib import Path

from cpm.data.datasets.exclude import excluded_indices, read_exclude_list
from cpm.data.datasets.itop import read_itop
from cpm.data.datasets.json_readers import read_coco, read_list, read_mpii_json
from cpm.data.datasets.mat_readers import (
    read_flic,
    read_jhmdb,
    read_lsp,
    read_mpii_mat,
)
from cpm.data.datasets.samples import ImageSamples
from cpm.data.depth import DepthSpec
from cpm.errors import ConfigError
from cpm.skeleton import get_skeleton

READERS = {"list": read_list, "lsp": read_lsp, "mpii": read_mpii_json, "mpii_mat": read_mpii_mat,
           "flic": read_flic, "coco": read_coco}


def open_dataset(source: str, *, root: str | Path, annotations: str = "", skeleton: str | None = None) -> ImageSamples:
    """The reader for config ``data.source``: ``root`` is the dataset folder, ``annotations`` the file in it
    (LSP: the joints file, default joints.mat; ITOP: ``labels.h5,depth.h5``; J-HMDB: a list of
    ``<class>/<clip>`` lines, default all clips). A ``list`` holds keypoints of ``skeleton`` (default ITOP-15),
    whose joint count every row must have."""
    root = Path(root)
    if source == "list":
        image_root = root / "images" if (root / "images").is_dir() else root
        return read_list(root / annotations, image_root=image_root, skeleton=skeleton or "itop15", check_joints=True)
    if source == "lsp":
        return read_lsp(root, joints=annotations or "joints.mat")
    if source == "itop":
        labels, _, depth = annotations.partition(",")
        return read_itop(root / labels, root / depth)
    if source == "jhmdb":
        return read_jhmdb(root, clips=annotations)
    if source == "mpii_mat":
        return read_mpii_mat(root / annotations, image_root=root / "images")
    if source == "coco":
        return read_coco(root / annotations, image_root=coco_image_folder(root, annotations), skeleton=skeleton)
    return READERS[source](root / annotations, image_root=root / "images" if (root / "images").is_dir() else root)


def coco_image_folder(root: Path, annotations: str) -> Path | None:
    """Where a COCO file's images are: ``root/images``; else COCO's own layout, ``annotations/person_keypoints_
    val2017.json`` beside ``val2017/``; else (None) the file's folder or its ``images/`` subfolder, as
    ``cpm data render-scenes`` writes them."""
    if (root / "images").is_dir():
        return root / "images"
    split = Path(annotations).stem.rpartition("_")[2]  # person_keypoints_val2017 -> val2017
    if split and (root / split).is_dir():
        return root / split
    return None


def split_dataset(*, source: str, root: str | Path, annotations: str = "", val_annotations: str = "",
                  val_samples: int, skeleton: str, exclude: str | Path = "",
                  depth=None) -> tuple[ImageSamples, ImageSamples]:
    """Training and held-out samples of a real dataset, with keypoints in ``skeleton`` order (the reader's own
    skeleton; another with the same joint names, or a subset of them; or the default ITOP_15 through
    `cpm.skeleton.TO_ITOP_15` or a declared skeleton's ``to_itop15``). ``depth`` (config ``data.depth``) is the
    encoding and near / far range of one-channel files (`cpm.data.depth`). Without ``val_annotations`` the last
    ``val_samples`` samples are held out (for LSP's 2000 images and val_samples = 1000: its standard split).
    ``exclude`` (config ``data.exclude``) lists samples to leave out (`cpm.data.datasets.exclude`); the split is made
    first, so leaving samples out never moves one from one side to the other. Missing paths raise ConfigError
    naming the config key."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"data.root: {root}: no such folder")
    for key, name in (("data.annotations", annotations), ("data.val_annotations", val_annotations)):
        for part in filter(None, name.split(",")):
            if not (root / part).is_file():
                raise ConfigError(f"{key}: {root / part}: no such file")
    entries = read_exclude_list(exclude) if exclude else []
    samples = open_dataset(source, root=root, annotations=annotations, skeleton=skeleton)
    held_out = open_dataset(source, root=root, annotations=val_annotations, skeleton=skeleton) if val_annotations \
        else None
    if held_out is not None:
        train, val = samples, held_out
    else:
        if not 0 < val_samples < len(samples):
            raise ConfigError(f"data.val_samples: {val_samples} held out of {len(samples)} samples in {root}; "
                              "leave some to train on")
        train, val = samples[:len(samples) - val_samples], samples[len(samples) - val_samples:]
    if entries:
        dropped = excluded_indices(entries, [samples, held_out], root=root, path=exclude)
        train, val = train.exclude(dropped[0]), val.exclude(dropped[1] if held_out is not None else dropped[0])
        for name, part in (("training", train), ("held-out", val)):
            if not len(part):
                raise ConfigError(f"data.exclude: {exclude}: leaves no {name} samples")
    if depth is not None:
        train.depth = val.depth = DepthSpec.of(depth)
    if skeleton == samples.skeleton:
        return train, val
    try:
        return train.to_skeleton(skeleton), val.to_skeleton(skeleton)
    except ValueError:
        have, want = get_skeleton(samples.skeleton), get_skeleton(skeleton)
        raise ConfigError(f"data.skeleton: {samples.where} holds {have.name} keypoints ({have.num_joints} joints); "
                          f"data.skeleton {want.name!r} has {want.num_joints} joints, and no mapping between them "
                          f"(set data.skeleton = {have.name!r}, or declare joints named as the file's)") from None
