"""Every committed experiment config loads as `cpm train` reads it, and its grid tables parse."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomllib

from cpm.config import load_config, resolve
from cpm.experiments.grids import cell_overrides, grid_seeds

CONFIGS = sorted((Path(__file__).resolve().parents[1] / "experiments").rglob("*.toml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda path: str(path.relative_to(path.parents[1])))
def test_the_config_loads_and_its_grid_tables_parse(path):
    source = tomllib.loads(path.read_text()).get("data", {}).get("source", "synthetic")
    # a real dataset's folder is the user's (make train DATA=...)
    resolve(load_config(path, [] if source == "synthetic" else ["data.root=data"]))
    cell_overrides(path)
    seeds = grid_seeds(path)
    assert seeds is None or len(seeds) == len(set(seeds)) > 0


def test_the_sgd_arm_differs_from_the_main_arm_only_in_training():
    main, sgd = (load_config(Path("experiments") / name).to_dict() for name in ("supervision.toml",
                                                                                 "supervision-sgd.toml"))
    assert {section for section in main if main[section] != sgd[section]} == {"train"}
    assert (sgd["train"]["optimizer"], sgd["train"]["schedule"], sgd["train"]["epochs"]) == ("sgd", "step",
                                                                                               main["train"]["epochs"])
