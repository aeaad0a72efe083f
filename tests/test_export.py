"""``cpm export``: an ONNX file with a dynamic batch axis whose every stage agrees with PyTorch in ONNX Runtime."""

import re

import numpy as np
import pytest
import torch

from cpm.cli import main
from cpm.errors import CPMError
from cpm.inference.export import export_onnx
from cpm.runtime.build import build_codec
from cpm.runtime.checkpoint import load_model, save_checkpoint
from tests.test_predict import make_checkpoint

onnxruntime = pytest.importorskip("onnxruntime")  # a dev dependency: present wherever `make test` runs


def cli(*argv: str) -> int:
    """``cpm export ARGV...`` through the real command line (bad input: one line on stderr, exit 2)."""
    return main(["export", *argv])


def test_export_agrees_with_pytorch_for_any_batch_size(tmp_path, capfd):
    checkpoint = make_checkpoint(tmp_path / "tiny.pt", tmp_path)
    onnx_path = tmp_path / "model.onnx"
    assert cli(str(checkpoint), "--onnx", str(onnx_path)) == 0
    printed = capfd.readouterr().out
    reported = float(re.search(r"max abs difference (\S+)", printed).group(1))
    assert reported <= 1e-4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image", "center_map"]
    assert [o.name for o in session.get_outputs()] == ["stage1", "stage2", "stage3"]
    assert all(isinstance(i.shape[0], str) for i in session.get_inputs())  # a symbolic batch axis
    model, config = load_model(checkpoint)
    codec = build_codec(config)
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 5):
        image = torch.rand(batch, 1, 64, 64, generator=generator) * 2 - 1
        center_map = codec.center_map(torch.full((batch, 2), 31.5))
        outputs = session.run(None, {"image": image.numpy(), "center_map": center_map.numpy()})
        with torch.no_grad():
            expected = model(image, center_map)
        assert len(outputs) == len(expected) == 3
        for got, want in zip(outputs, expected, strict=True):
            assert got.shape == (batch, 16, 8, 8)
            np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)


def test_a_one_stage_model_exports_without_a_centre_map_input(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "one.pt", tmp_path, **{"model.stages": 1})
    result = export_onnx(checkpoint, tmp_path / "one.onnx")
    assert list(result["inputs"]) == ["image"] and list(result["outputs"]) == ["stage1"]
    assert result["max_abs_difference"] <= 1e-4


def test_a_failed_check_writes_nothing(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "tiny.pt", tmp_path)
    with pytest.raises(CPMError, match="differs from PyTorch"):
        export_onnx(checkpoint, tmp_path / "model.onnx", tolerance=-1.0)  # no difference passes
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["tiny.pt"]


@pytest.mark.parametrize("problem", ["missing folder", "other architecture"])
def test_bad_input_exits_2_with_one_line_naming_the_file(tmp_path, capfd, problem):
    checkpoint = make_checkpoint(tmp_path / "tiny.pt", tmp_path)
    onnx_path = tmp_path / "model.onnx"
    if problem == "missing folder":
        onnx_path, named = tmp_path / "nowhere" / "model.onnx", "model.onnx"
    else:
        state = torch.load(checkpoint, weights_only=True)
        state["config"]["data"]["skeleton"] = "lsp14"  # the weights are those of 15 joints
        save_checkpoint(state, tmp_path / "other.pt")
        checkpoint, named = tmp_path / "other.pt", "other.pt"
    assert cli(str(checkpoint), "--onnx", str(onnx_path)) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and named in lines[0], lines
    assert not onnx_path.exists()
