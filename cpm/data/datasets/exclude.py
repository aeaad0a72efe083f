"""``data.exclude``: samples to leave out of a real dataset, e.g. the labels ``cpm data check`` flagged.

The file is either the CSV that ``cpm data check --out`` writes (header ``index, image, reasons, details``;
``index`` is the sample's dataset index and ``image``, when not empty, must be that sample's image) or plain
text with one entry per line: a sample index (an integer) or an image path, relative to ``data.root`` or to its
``images/`` folder, or absolute. Blank lines and lines starting with ``#`` are skipped. The list's own path is
taken as given (a relative one from the working directory, like ``data.pose_files``).

Indices number the samples of ``data.annotations`` as its reader returns them, the numbering of ``cpm data
check --annotations`` and of each sample's ``index``. An image path drops every sample of that image (all the
people of an MPII or COCO image), in ``data.annotations`` and in ``data.val_annotations``. A missing or
unreadable file, a bad line, an index past the last sample, an image that matches no sample, and a CSV row whose
image is not the one of its index raise `ConfigError` naming ``data.exclude``, the file and the line.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cpm.data.datasets.samples import ImageSamples
from cpm.errors import ConfigError

KEY = "data.exclude"
_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class Entry:
    """One line of an exclude list: a sample ``index``, an ``image`` path, or both (a `cpm data check` row)."""

    line: int
    index: int | None = None
    image: str = ""


def read_exclude_list(path: str | Path) -> list[Entry]:
    """The entries of an exclude list (either format), in file order."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{KEY}: {path}: no such file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{KEY}: {path}: cannot read the exclude list ({error})") from None
    first = next((line for line in lines if line.strip()), "")
    if "index" in (cell.strip() for cell in next(csv.reader([first]), [])):
        return _csv_entries(path, lines)
    entries = []
    for number, raw in enumerate(lines, start=1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        if _INTEGER.fullmatch(text):
            entries.append(Entry(number, index=_index(text, path, number)))
        else:
            entries.append(Entry(number, image=text))
    return entries


def _csv_entries(path: Path, lines: list[str]) -> list[Entry]:
    start = next(n for n, line in enumerate(lines) if line.strip())
    reader = csv.DictReader(lines[start:])
    entries = []
    for row in reader:
        number = start + reader.line_num
        index = (row.get("index") or "").strip()
        if not _INTEGER.fullmatch(index):
            raise ConfigError(f"{KEY}: {path}: line {number}: index {index!r} is not a sample index")
        entries.append(Entry(number, index=_index(index, path, number), image=(row.get("image") or "").strip()))
    return entries


def _index(text: str, path: Path, line: int) -> int:
    index = int(text)
    if index < 0:
        raise ConfigError(f"{KEY}: {path}: line {line}: {index} is not a sample index (0, 1, 2, ...)")
    return index


def excluded_indices(entries: Sequence[Entry], datasets: Sequence[ImageSamples | None], *, root: str | Path,
                     path: str | Path) -> list[set[int]]:
    """For each of ``datasets`` (None: absent), the dataset indices ``entries`` drop from it. Index entries count
    the samples of ``datasets[0]``; image entries match any of them. ``root`` is ``data.root``, ``path`` the
    exclude list (for the messages)."""
    root = Path(os.path.abspath(root))
    bases = [root, root / "images", root.resolve(), (root / "images").resolve()]
    lookups = [_image_lookup(dataset, bases) if dataset is not None else {} for dataset in datasets]
    first = datasets[0]
    size = len(first.images) if first is not None else 0
    dropped: list[set[int]] = [set() for _ in datasets]
    for entry in entries:
        where = f"{KEY}: {path}: line {entry.line}"
        if entry.index is not None:
            if entry.index >= size:
                raise ConfigError(f"{where}: index {entry.index} matches no sample ({size} samples in the dataset, "
                                  f"0..{size - 1})")
            if entry.image and not _same_image(entry.image, first.images[entry.index], bases):
                raise ConfigError(f"{where}: sample {entry.index} is {first.images[entry.index]}, not "
                                  f"{entry.image}; the list was written for another dataset")
            dropped[0].add(entry.index)
            continue
        key = _entry_key(entry.image)
        hits = [lookup.get(key, ()) for lookup in lookups]
        if not any(hits):
            raise ConfigError(f"{where}: image {entry.image!r} matches no sample under {root}")
        for found, indices in zip(dropped, hits, strict=True):
            found.update(indices)
    return dropped


def _absolute(path: str | Path) -> Path:
    return Path(os.path.abspath(path))


def _relative_keys(image: Path, bases: Sequence[Path]) -> list[str]:
    image = _absolute(image)
    return [image.as_posix()] + [image.relative_to(base).as_posix() for base in bases if image.is_relative_to(base)]


def _image_lookup(dataset: ImageSamples, bases: Sequence[Path]) -> dict[str, list[int]]:
    """Every way an entry may name a sample's image (absolute, relative to a base) -> the dataset indices."""
    lookup: dict[str, list[int]] = {}
    seen: dict[Path, list[str]] = {}
    for n, image in enumerate(dataset.images):
        if image not in seen:
            seen[image] = _relative_keys(image, bases)
        for key in set(seen[image]):
            lookup.setdefault(key, []).append(n)
    return lookup


def _entry_key(image: str) -> str:
    path = Path(image)
    if path.is_absolute():
        return _absolute(path).as_posix()
    return Path(os.path.normpath(path)).as_posix()


def _same_image(written: str, image: Path, bases: Sequence[Path]) -> bool:
    """Whether a CSV's ``image`` names ``image``: the same path, or one ending in its path under ``data.root``
    (the dataset may have moved since the list was written)."""
    parts = Path(os.path.normpath(written)).parts
    keys = _relative_keys(image, bases)
    return any(parts[-len(Path(key).parts):] == Path(key).parts for key in keys if key)
