"""Small shared pieces for the tests: a tiny model and the overrides of a seconds-long run."""

from pathlib import Path

TINY_MODEL = {
    "trunk_widths": [4, 8, 8], "trunk_kernel": 3, "feature_channels": 4, "stage1_width": 8,
    "stage1_kernel": 3, "stage_width": 8, "stage_kernel": 3,
}


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
