"""Small shared pieces for the tests: a tiny model and the overrides of a seconds-long run."""

from pathlib import Path

from cpm.config import ModelConfig
from cpm.experiments.grids import SMOKE_MODEL

# The rows of `cpm eval --pose-sources` and of the end of `cpm train`, in their order.
POSE_SOURCES = ["procedural", "mocap held-out subjects", "K2HPD test", "LSP test poses", "MPII validation poses"]

# The smoke budget's CPM (its CPM-trunk settings): a seconds-long model.
TINY_MODEL = {key.removeprefix("model."): value for key, value in SMOKE_MODEL.items()
              if key.startswith("model.") and key not in ("model.vgg_cpm_widths", "model.regression_hidden")}


def tiny_overrides(tmp_path: Path, **extra: object) -> list[str]:
    """--set overrides for a seconds-long training run in tmp_path."""
    values = {
        "train.runs_dir": str(tmp_path / "runs"), "train.name": "tiny", "train.epochs": 1, "train.batch_size": 8,
        "train.log_every": 5, "train.warmup_steps": 2, "data.train_samples": 64, "data.val_samples": 16,
        "data.input_size": 64, "data.workers": 0, "eval.batch_size": 16,
        **{f"model.{k}": v for k, v in TINY_MODEL.items()}, **extra,
    }
    return [f"{key}={_toml(value)}" for key, value in values.items()]


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value) if not isinstance(value, list) else "[" + ", ".join(_toml(v) for v in value) + "]"


def tiny(**fields: object) -> ModelConfig:
    """The tiny model's config (`TINY_MODEL`) with ``fields`` changed."""
    return ModelConfig(**TINY_MODEL | fields)
