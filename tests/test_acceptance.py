"""The acceptance run behind `make train`: the default config, trained in full (2.3 to 5.6 minutes on 2 cores)."""

import pytest

from cpm.config import load_config
from cpm.training.loop import train


@pytest.mark.slow
def test_default_training_reaches_the_published_targets(tmp_path):
    config = load_config("experiments/default.toml", [f"train.runs_dir={str(tmp_path)!r}", "data.workers=1"])
    results = train(config, progress=False)
    final_02, final_01 = results["pck"][0.2][-1], results["pck"][0.1][-1]
    assert results["samples"] >= 500
    assert final_02 >= 0.93
    assert final_01 >= 0.75
    assert final_02 > results["pck"][0.2][0]  # the last stage beats stage 1
