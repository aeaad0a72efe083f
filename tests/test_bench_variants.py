"""python -m cpm.bench.variants: a config against its variants, steps timed side by side."""

from __future__ import annotations

import pytest
import torch

from cpm.bench.variants import main, parse_variant, variant_rows
from cpm.errors import CPMError
from tests.helpers import TINY_MODEL


def tiny_config(tmp_path):
    from cpm.config import toml_value

    path = tmp_path / "tiny.toml"
    model = "\n".join(f"{key} = {toml_value(value)}" for key, value in TINY_MODEL.items())
    path.write_text(f"[data]\ninput_size = 64\n\n[model]\n{model}\n\n[train]\nbatch_size = 2\n")
    return str(path)


def test_parse_variant():
    assert parse_variant("s=model.trunk_strided_levels=1; train.batch_size=4") == (
        "s", ["model.trunk_strided_levels=1", "train.batch_size=4"])
    for bad in ("s", "=model.stages=2", "s=", "s=model.stages"):
        with pytest.raises(CPMError, match="--variant: expected NAME=SECTION.KEY=VALUE"):
            parse_variant(bad)


def test_rows_give_each_variant_its_multiply_adds_and_speed_up(tmp_path, capsys):
    config = tiny_config(tmp_path)
    rows = variant_rows(config, [("strided", ["model.trunk_strided_levels=1"])], batch=2, seconds=0.01,
                        device=torch.device("cpu"), fp32=True)
    assert len(rows) == 2 and rows[0].startswith("| as is | – |") and rows[0].endswith("| 1.00x |")
    assert rows[1].startswith("| strided | model.trunk_strided_levels=1 |")
    # the strided first level does its convolution on a quarter of the positions: fewer multiply-adds
    as_is, strided = (float(row.split("|")[5]) for row in rows)
    assert strided < as_is
    assert main([config, "--variant", "two=model.stages=2", "--seconds", "0.01", "--fp32"]) == 0
    out = capsys.readouterr().out
    assert "| two | model.stages=2 |" in out and "timed alternately" in out
    for argv, message in (([config], "give at least one variant"),
                          ([config, "--variant", "x=model.nonsense=1"], "nonsense")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2 and message in capsys.readouterr().err
