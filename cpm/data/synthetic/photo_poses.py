"""The 2D pose sets of the shared data as banks of the ``bank`` pose source, by name and split.

``data.bank_files`` and ``data.val_bank_files`` hold one or more comma-separated entries, each a file (a K2HPD
keypoint .mat, a .npy of (N, 15, 2+) ITOP_15 keypoints) or a named set ``[DATA/]name:split``, e.g.
``"k2hpd:train,lsp:train,lspet:train"`` to train on and ``"lsp:test"`` to hold out. DATA is the shared-data folder:
the entry's own folder when it has one (``/mnt/data/lsp:test``), else ``../shared/data`` of the working folder, else
of the project (where the configs' bank paths point). The named sets (`NAMED_SETS`):

    k2hpd:train  k2hpd/k2hpd_keypoints_train.mat   55,943 depth-frame poses (read as the file itself)
    k2hpd:test   k2hpd/k2hpd_keypoints_test.mat    39,732
    lsp:train    lsp/lsp-joints-PC.mat, images 1-1000 (person-centric labels)
    lsp:test     lsp/lsp-joints-PC.mat, images 1001-2000
    lspet:train  lspet400/joints.mat (LSP-extended, 14x3xN, 1 = visible): all of it is training data
    mpii:test    mpii/tompson_valid_detections.mat: the 2958-person validation split, held out only

Each photo set maps to ITOP_15 through its own table (`JOINT_TABLES`): an ITOP joint is a weighted mean of the
set's joints. Limbs, shoulders and hips are the same joints; the neck is LSP's neck and MPII's upper neck (both at
chin height); the torso is midway between the neck and the hips' midpoint; the head, which ITOP marks at the head's
centre, lies on the line from the neck to the annotated head top, `HEAD_ALONG` of the way (where its median
distance from the neck, in neck-to-hips lengths, is K2HPD's: 0.24).

A pose with an unlabeled joint that its table reads (LSPET's unannotated joints, MPII's absent points) is left out
of the bank: a lifted pose needs every joint, and a guessed one would be drawn as if real. Occluded joints keep
their annotated place. That leaves all 2000 LSP poses, 141 of the 400 LSPET poses and 2017 of the 2958 MPII poses;
a bank's ``rows`` say which rows of its file it holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cpm.errors import ConfigError, CPMError

SHARED_DATA = Path("..") / "shared" / "data"
# name -> split -> (file under DATA, the first and last + 1 of its rows, None: all)
NAMED_SETS: dict[str, dict[str, tuple[str, tuple[int, int] | None]]] = {
    "k2hpd": {"train": ("k2hpd/k2hpd_keypoints_train.mat", None), "test": ("k2hpd/k2hpd_keypoints_test.mat", None)},
    "lsp": {"train": ("lsp/lsp-joints-PC.mat", (0, 1000)), "test": ("lsp/lsp-joints-PC.mat", (1000, 2000))},
    "lspet": {"train": ("lspet400/joints.mat", None)},
    "mpii": {"test": ("mpii/tompson_valid_detections.mat", None)},
}
KNOWN = ", ".join(f"{name}:{split}" for name, splits in NAMED_SETS.items() for split in splits)
_NAMED = re.compile(r"^[A-Za-z0-9_]+:[A-Za-z0-9_]+$")

HEAD_ALONG = {"lsp": 0.6, "mpii": 0.45}  # the head's place from the neck (0) to the head top (1)


def _table(neck: int, head_top: int, along: float, joints: tuple[int, ...]) -> tuple[dict[int, float], ...]:
    """ITOP_15 order: head, neck, then ``joints`` for the shoulders, elbows, hands (right, left each), torso, then
    hips, knees, feet; ``joints`` = (r/l shoulder, r/l elbow, r/l wrist, r/l hip, r/l knee, r/l ankle)."""
    rs, ls, re_, le, rw, lw, rh, lh, rk, lk, ra, la = joints
    torso = {neck: 0.5, rh: 0.25, lh: 0.25}
    return ({neck: 1.0 - along, head_top: along}, {neck: 1.0}, {rs: 1.0}, {ls: 1.0}, {re_: 1.0}, {le: 1.0},
            {rw: 1.0}, {lw: 1.0}, torso, {rh: 1.0}, {lh: 1.0}, {rk: 1.0}, {lk: 1.0}, {ra: 1.0}, {la: 1.0})


# LSP / LSPET: 0 r-ankle, 1 r-knee, 2 r-hip, 3 l-hip, 4 l-knee, 5 l-ankle, 6 r-wrist, 7 r-elbow, 8 r-shoulder,
# 9 l-shoulder, 10 l-elbow, 11 l-wrist, 12 neck, 13 head top. MPII: the same legs, 6 pelvis, 7 thorax, 8 upper neck,
# 9 head top, 10 r-wrist, 11 r-elbow, 12 r-shoulder, 13 l-shoulder, 14 l-elbow, 15 l-wrist.
LSP_TO_ITOP = _table(12, 13, HEAD_ALONG["lsp"], (8, 9, 7, 10, 6, 11, 2, 3, 1, 4, 0, 5))
MPII_TO_ITOP = _table(8, 9, HEAD_ALONG["mpii"], (12, 13, 11, 14, 10, 15, 2, 3, 1, 4, 0, 5))
JOINT_TABLES = {"lsp": LSP_TO_ITOP, "lspet": LSP_TO_ITOP, "mpii": MPII_TO_ITOP}  # k2hpd: its reader's mapping


@dataclass(frozen=True)
class BankEntry:
    """One entry of a bank's files: ``path`` and, for a named set, its ``name``, ``split`` and ``rows``."""

    path: Path
    name: str = ""
    split: str = ""
    rows: tuple[int, int] | None = None


def shared_data_folder() -> Path:
    """``../shared/data`` of the working folder, else of the project (the working folder's when neither is)."""
    for candidate in (SHARED_DATA, Path(__file__).resolve().parents[3] / SHARED_DATA):
        if candidate.is_dir():
            return candidate
    return SHARED_DATA


def is_named(files: str) -> bool:
    """Whether ``files`` holds a named-set entry (``[DATA/]name:split``)."""
    return any(_named_text(entry) for entry in _split(files))


def bank_entries(files: str | Path, key: str = "data.bank_files") -> list[BankEntry]:
    """The entries of ``files`` (see the module docstring). ConfigError naming ``key`` for a name or split that is
    not known (and is no file) and for no entry at all; files need not exist yet (`missing_file`)."""
    if isinstance(files, Path) or Path(files).is_file():  # one file, whatever its name
        return [BankEntry(Path(files))]
    entries = []
    for text in _split(files):
        if not _named_text(text):
            entries.append(BankEntry(Path(text)))
            continue
        folder, name_split = (Path(text).parent, Path(text).name) if Path(text).name != text else (
            shared_data_folder(), text)
        name, _, split = name_split.partition(":")
        if split not in NAMED_SETS.get(name, {}):
            raise ConfigError(f"{key}: {text!r} is neither a file nor a known pose set (known: {KNOWN})")
        file, rows = NAMED_SETS[name][split]
        entries.append(BankEntry(folder / file, name, split, rows))
    if not entries:
        raise ConfigError(f"{key}: no bank file or pose set named (known sets: {KNOWN})")
    return entries


def missing_file(files: str, key: str = "data.bank_files") -> str | None:
    """The first file of ``files`` that is not there (None: all are); ConfigError for a bad name."""
    return next((str(entry.path) for entry in bank_entries(files, key) if not entry.path.exists()), None)


def held_out_files(files: str, key: str = "data.bank_files") -> str | None:
    """The test splits of a list with named entries (``k2hpd:train,lsp:train,lspet:train`` ->
    ``k2hpd:test,lsp:test``): each named entry's test split (sets without one, such as lspet, are left out), each
    file entry's test file beside it (`cpm.data.synthetic.sources.held_out_bank`'s rule). None without a named
    entry; ConfigError naming data.val_bank_files where no entry has a test split."""
    texts = _split(files)
    if not any(_named_text(text) for text in texts):
        return None
    held_out = []
    for text, entry in zip(texts, bank_entries(files, key), strict=True):
        if entry.name:
            if "test" in NAMED_SETS[entry.name] and entry.split != "test":
                held_out.append(text[: len(text) - len(entry.split)] + "test")
            elif entry.split == "test":
                held_out.append(text)
            continue
        stem, found, rest = entry.path.name.rpartition("train")
        if found and (entry.path.parent / f"{stem}test{rest}").is_file():
            held_out.append(str(entry.path.parent / f"{stem}test{rest}"))
    if not held_out:
        raise ConfigError(f"data.val_bank_files: no test split of {key} = {files!r} for the held-out split; name the "
                          f"held-out bank (known sets: {KNOWN})")
    return ",".join(held_out)


def read_named(entry: BankEntry) -> tuple[np.ndarray, np.ndarray]:
    """A named photo set (not k2hpd, which is read as its file) -> its complete poses in ITOP_15 (N, 15, 2) and
    their rows in the file (N,), 0-based."""
    from cpm.data.datasets.matfiles import read_ground_truth

    truth = read_ground_truth(entry.path)
    if truth.layout != entry.name:
        raise CPMError(f"{entry.path}: a {truth.layout} file, not the joints of {entry.name}:{entry.split}")
    keypoints = truth.keypoints  # (N, K, 3)
    start, stop = entry.rows or (0, len(keypoints))
    if len(keypoints) < stop:
        raise CPMError(f"{entry.path}: {len(keypoints)} poses, {entry.name}:{entry.split} is rows {start + 1}-{stop}")
    weights = table_matrix(JOINT_TABLES[entry.name], keypoints.shape[1])  # (15, K)
    rows = np.arange(start, stop)
    complete = (keypoints[rows][..., 2] > 0)[:, (weights > 0).any(axis=0)].all(axis=1)
    rows = rows[complete]
    if not len(rows):
        raise CPMError(f"{entry.path}: no pose of {entry.name}:{entry.split} has all its joints labeled")
    return to_itop(keypoints[rows], entry.name), rows


def table_matrix(table: tuple[dict[int, float], ...], num_joints: int) -> np.ndarray:
    """A joint table as a (15, K) matrix of weights."""
    weights = np.zeros((len(table), num_joints))
    for joint, parts in enumerate(table):
        for source, weight in parts.items():
            weights[joint, source] = weight
    return weights


def to_itop(keypoints: np.ndarray, name: str) -> np.ndarray:
    """(N, K, 2+) keypoints of named set ``name`` (lsp, lspet, mpii) -> (N, 15, 2) ITOP_15 by its table."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    weights = table_matrix(JOINT_TABLES[name], keypoints.shape[-2])
    return np.einsum("jk,nkc->njc", weights, keypoints[..., :2])


def _split(files: str) -> list[str]:
    return [text.strip() for text in str(files).split(",") if text.strip()]


def _named_text(text: str) -> bool:
    return bool(_NAMED.match(Path(text).name)) and not Path(text).is_file()
