"""Where the synthetic frames' poses come from: the procedural prior, motion capture (``bvh``), a bank of real 2D
poses lifted to 3D (``bank``), or a mixture of them (`PoseMix`; one source alone is a mixture of one), as a
`cpm.config.DataConfig`'s ``pose_mix`` asks (`config_pose_source`).

Splits: a config's bvh poses come from the training subjects of the clips (``data.bvh_subjects = "train"``, the
default; `cpm.data.synthetic.bvh.held_out_subject` keeps the others for evaluation), and its bank is the file it
names, the K2HPD *train* split for training, or named training sets (``k2hpd:train,lsp:train,lspet:train``,
`cpm.data.synthetic.photo_poses`). The held-out split of a mixture (`held_out_pose_source`, what best.pt
is chosen on) draws its bvh poses from the held-out subjects and its bank poses from ``data.val_bank_files``, by
default the test split beside the training bank (`held_out_bank`); ``cpm eval --pose-sources`` measures a
checkpoint on the held-out subjects, on the K2HPD *test* split and on the LSP and MPII test poses.
"""

from __future__ import annotations

import functools
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from cpm.errors import ConfigError, CPMError

if TYPE_CHECKING:
    from collections.abc import Callable

    from cpm.config import Config, DataConfig

MIX_SOURCES = ("procedural", "bvh", "bank")  # the names of data.pose_mix, in the order their shares of [0, 1) take
_INVERSE_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0
_PICK_STREAM = 0x6D6978  # the offset of a seed's picks comes from the generator [seed, 0, _PICK_STREAM]


class PoseSource(Protocol):
    """``source(rng, height)`` -> (15, 3) body-frame joints (see `cpm.data.synthetic.body.pose_joints`) for a body
    of ``height`` metres; ``needs_yaw``: whether the renderer still turns the body (False when the pose comes in its
    camera view)."""

    needs_yaw: bool

    def __call__(self, rng: np.random.Generator, height: float) -> np.ndarray: ...


class PoseMix:
    """A mixture of pose sources: ``weights`` {name: weight >= 0} of `MIX_SOURCES` (normalised to sum 1),
    ``sources`` {name: pose source} for the names with a weight (``procedural``: None or absent for the renderer's
    own prior, or a prior such as `cpm.data.synthetic.prior.FittedPrior`).

    Sample ``index`` of stream ``seed`` takes the source whose share of [0, 1) holds u = frac(o + index / phi),
    with o drawn once from the seed and phi the golden ratio (an additive recurrence): a pure function of
    (seed, index), and any N consecutive indices hold each source N x its weight times, within 2 samples. The
    rest of the sample is drawn from (seed, index) as without a mixture, so that the procedural samples of a
    mixture are those of the procedural stream."""

    def __init__(self, weights: dict[str, float], sources: dict[str, PoseSource | None]) -> None:
        unknown = sorted(set(weights) - set(MIX_SOURCES))
        if unknown:
            raise CPMError(f"pose mixture: unknown source {unknown[0]!r} (known: {', '.join(MIX_SOURCES)})")
        if any(not math.isfinite(w) or w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
            raise CPMError(f"pose mixture: weights must be finite, >= 0 and not all 0, got {weights}")
        self.names = tuple(name for name in MIX_SOURCES if weights.get(name, 0) > 0)
        missing = [name for name in self.names if name != "procedural" and sources.get(name) is None]
        if missing:
            raise CPMError(f"pose mixture: no pose source given for {missing[0]!r}")
        total = sum(weights[name] for name in self.names)
        self.weights = {name: weights[name] / total for name in self.names}
        self.bounds = np.cumsum([self.weights[name] for name in self.names])
        self.sources = {name: sources.get(name) for name in self.names}

    def pick(self, seed: int, index: int) -> str:
        """The name of the source of sample ``index`` of stream ``seed``."""
        u = (_offset(seed) + index * _INVERSE_GOLDEN) % 1.0
        return self.names[min(int(np.searchsorted(self.bounds, u, side="right")), len(self.names) - 1)]

    def source(self, seed: int, index: int) -> PoseSource | None:
        """The pose source of sample ``index`` of stream ``seed`` (None: the procedural prior)."""
        return self.sources[self.pick(seed, index)]


@functools.lru_cache(maxsize=64)
def _offset(seed: int) -> float:
    return float(np.random.default_rng([seed, 0, _PICK_STREAM]).random())


def pose_sampler(kind: str, files: str, *, subjects: str = "all", key: str = "") -> PoseSource:
    """A pose source from files: ``bvh`` (`cpm.data.synthetic.bvh.BVHPoses` of a file or folder, the clips of
    ``subjects``) or ``bank`` (`cpm.data.synthetic.bank.BankPoses` of a keypoint .mat or .npy, a named set such as
    ``lsp:train`` or several comma-separated: `cpm.data.synthetic.photo_poses`); the files must exist (ConfigError
    naming ``key``, the config key that named them; by default ``data.<kind>_files``)."""
    key = key or f"data.{kind}_files"
    missing = _missing_file(kind, files, key)
    if missing is not None:
        raise ConfigError(f"{key}: {missing}: no such file or folder")
    if kind == "bvh":
        from cpm.data.synthetic.bvh import BVHPoses

        return BVHPoses(files, subjects=subjects)
    if kind == "bank":
        from cpm.data.synthetic.bank import BankPoses

        return BankPoses(files, key=key)
    raise ConfigError(f"pose source {kind!r}: not one of bvh, bank")


def mixture_weights(data: DataConfig) -> dict[str, float]:
    """``data.pose_mix`` as {source name: weight} of `MIX_SOURCES`; all 0: the procedural prior alone."""
    return {name: getattr(data.pose_mix, name) for name in MIX_SOURCES}


def config_pose_source(data: DataConfig) -> PoseSource | PoseMix | None:
    """The pose source of a config's synthetic frames: with ``data.pose_mix`` all 0, the procedural prior alone:
    None (the renderer draws the pose itself, `cpm.data.synthetic.body.sample_pose`) or
    `cpm.data.synthetic.prior.FittedPrior` with ``data.pose_prior = "fitted"``; else the `PoseMix` of
    ``data.pose_mix`` with its procedural poses from that prior, its bvh poses from ``data.bvh_files`` and its bank
    from ``data.bank_files`` (one source alone: a mixture of one, each sample posed by it). bvh poses are the clips
    of ``data.bvh_subjects``."""
    weights = mixture_weights(data)
    if not any(weights.values()):
        return procedural_prior(data)
    files = {"bvh": data.bvh_files, "bank": data.bank_files}
    sources = {name: pose_sampler(name, files[name], subjects=data.bvh_subjects)
               for name in ("bvh", "bank") if weights[name] > 0}
    sources["procedural"] = procedural_prior(data)
    return PoseMix(weights, sources)


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def drop_missing_pose_files(config: Config, log: Callable[[str], None] = _to_stderr) -> Config:
    """With ``data.missing_pose_files = "procedural"``, ``config`` without the mixture sources whose files are not
    there (``data.bvh_files``, ``data.bank_files``, the held-out bank): their weight goes to the procedural prior,
    said in one line per source to ``log`` (default: stderr). The returned config is the mixture a run draws (its
    config.toml). Otherwise, or when every file is there, ``config`` itself.

    Every entry point that reads a config and builds its datasets calls this once, before
    `cpm.runtime.build.build_datasets` (which builds the config as it stands): `cpm.training.loop.train`,
    ``cpm eval``, ``cpm rf``, the benchmarks and the experiment drivers."""
    data = config.data
    weights = mixture_weights(data)
    if data.missing_pose_files != "procedural" or not any(weights.values()):
        return config
    gone = []
    for name in ("bvh", "bank"):
        files = [getattr(data, f"{name}_files")] if weights[name] > 0 else []
        if name == "bank" and files and _missing_file("bank", files[0], "data.bank_files") is None:
            try:
                files.append(held_out_bank(data))
            except ConfigError:
                if _named(data.bank_files) and not data.val_bank_files:
                    raise
                files.append(data.val_bank_files or "its test split")
        keys = (f"data.{name}_files", "data.val_bank_files")
        missing = [missing for f, key in zip(files, keys, strict=False)
                   if (missing := _missing_file(name, f, key)) is not None]
        if missing:
            gone.append(name)
            log(f"data.pose_mix.{name}: {missing[0]} is not there; its weight {weights[name]:g} goes to the "
                "procedural prior (data.missing_pose_files = 'procedural')")
    if not gone:
        return config
    from cpm.config import config_from_dict

    table = config.to_dict()
    mix = table["data"]["pose_mix"]
    for name in gone:
        mix["procedural"] += mix[name]
        mix[name] = 0.0
        table["data"][f"{name}_files"] = ""
        if name == "bank":
            table["data"]["val_bank_files"] = ""
    if not (mix["bvh"] or mix["bank"]):  # procedural alone: the plain procedural stream, as without a mixture
        mix["procedural"] = 0.0
    return config_from_dict(table)


def _named(files: str) -> bool:
    from cpm.data.synthetic.photo_poses import is_named

    return is_named(files)


def _missing_file(kind: str, files: str, key: str) -> str | None:
    """The first file of ``files`` (``data.<kind>_files``) that is not there, None when all are: a path, or the
    entries of a bank's list (ConfigError for a bad set name, which no missing data excuses)."""
    if kind != "bank" or (not _named(files) and "," not in files):
        return None if Path(files).exists() else files
    from cpm.data.synthetic.photo_poses import missing_file

    return missing_file(files, key)


def procedural_prior(data: DataConfig) -> PoseSource | None:
    """The procedural poses of ``data.pose_prior``: None (the hand-set prior of `cpm.data.synthetic.body`, drawn by
    the renderer itself) or the fitted prior."""
    if data.pose_prior == "fitted":
        from cpm.data.synthetic.prior import FittedPrior

        return FittedPrior()
    return None


def describe_pose_source(data: DataConfig) -> str:
    """A config's pose source in a few words, for tables: ``procedural`` (``procedural (fitted prior)``), one
    source alone with its files (``bank (FILE)``), or the shares of a mixture (``mixture: procedural 0.50, bvh
    0.25, bank 0.25``)."""
    weights = mixture_weights(data)
    total = sum(weights.values())
    procedural = "procedural" if data.pose_prior == "procedural" else f"procedural ({data.pose_prior} prior)"
    drawn = [name for name, weight in weights.items() if weight]
    if not drawn or drawn == ["procedural"]:
        return procedural
    if len(drawn) == 1:
        return f"{drawn[0]} ({getattr(data, f'{drawn[0]}_files')})"
    return "mixture: " + ", ".join(f"{procedural if name == 'procedural' else name} {weights[name] / total:.2f}"
                                   for name in drawn)


def held_out_pose_source(data: DataConfig, train_source: PoseSource | PoseMix | None) -> PoseSource | PoseMix | None:
    """The pose source of a config's held-out split, given its training one (``train_source``, what
    `config_pose_source` made): a mixture draws the same shares of the sources, its bvh poses from the held-out
    subjects (``data.bvh_subjects = "train"``; "held_out" and "all" read what training reads) and its bank poses
    from `held_out_bank`, so that no pose of the held-out split was trained on; the procedural prior alone is
    ``train_source`` itself."""
    if not isinstance(train_source, PoseMix):
        return train_source
    sources: dict[str, PoseSource | None] = {"procedural": train_source.sources.get("procedural")}  # one prior
    if "bvh" in train_source.names:
        subjects = "held_out" if data.bvh_subjects == "train" else data.bvh_subjects
        if subjects != data.bvh_subjects:
            from cpm.data.synthetic.bvh import bvh_paths, select_clips

            if not select_clips(bvh_paths(data.bvh_files), subjects):  # the training subjects' clips were read
                raise ConfigError(f"data.bvh_files: {data.bvh_files} has no clip of a held-out subject (numbers "
                                  "ending in 1 or 6) for the held-out split; data.bvh_subjects = \"all\" reads "
                                  "every clip for both")
            sources["bvh"] = pose_sampler("bvh", data.bvh_files, subjects=subjects, key="data.bvh_files")
        else:  # the clips training reads (held_out or all): the same poses, read once
            sources["bvh"] = train_source.sources["bvh"]
    if "bank" in train_source.names:
        sources["bank"] = pose_sampler("bank", held_out_bank(data), key="data.val_bank_files")
    return PoseMix(train_source.weights, sources)


def held_out_bank(data: DataConfig) -> str:
    """The bank file of a mixture's held-out split: ``data.val_bank_files``, else the test split beside
    ``data.bank_files`` (the file whose name has "test" for its last "train": k2hpd_keypoints_train.mat ->
    k2hpd_keypoints_test.mat; named sets: each one's test split, ``k2hpd:train,lsp:train,lspet:train`` ->
    ``k2hpd:test,lsp:test``, `cpm.data.synthetic.photo_poses.held_out_files`). ConfigError naming
    ``data.val_bank_files`` where there is none: the held-out split is never drawn from the training bank unless a
    config names that file there itself."""
    if data.val_bank_files:
        return data.val_bank_files
    if _named(data.bank_files):
        from cpm.data.synthetic.photo_poses import held_out_files

        return held_out_files(data.bank_files)
    path = Path(data.bank_files)
    stem, found, rest = path.name.rpartition("train")
    if found and (path.parent / f"{stem}test{rest}").is_file():
        return str(path.parent / f"{stem}test{rest}")
    raise ConfigError(f"data.val_bank_files: no test split beside data.bank_files = {str(path)!r} (a file named as it "
                      "with \"test\" for \"train\") for the held-out split; name the held-out bank (data.bank_files "
                      "itself to validate on training poses)")
