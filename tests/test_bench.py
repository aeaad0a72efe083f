import json
import re
from pathlib import Path

from cpm.bench.accuracy import accuracy_table
from cpm.bench.speed import run
from tests.helpers import tiny_overrides


def tiny_config_file(tmp_path: Path) -> Path:
    sections: dict[str, list[str]] = {}
    for override in tiny_overrides(tmp_path):
        key, value = override.split("=", 1)
        section, name = key.split(".")
        sections.setdefault(section, []).append(f"{name} = {value}")
    config = tmp_path / "tiny.toml"
    config.write_text("\n".join(f"[{s}]\n" + "\n".join(v) for s, v in sections.items()))
    return config


def test_bench_prints_one_row_per_measurement(tmp_path):
    table = run([str(tiny_config_file(tmp_path))], seconds=0.01, device_name="cpu", loader_steps=2)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "measurement" not in line]
    results = {row.split("|")[1].strip(): row.split("|")[2].strip() for row in rows}
    names = list(results)
    assert table.startswith("Machine: ") and len(names) == len(rows)  # every row names a different measurement
    assert names[0] == "ceiling: 9x9 conv, fp32"
    if "ceiling: 9x9 conv, bf16" in results:  # a device with native bf16
        assert re.fullmatch(r"[\d.]+x", results["ceiling: bf16 / fp32, the bound on a conv-bound step's speed-up"])
    plain = next(name for name in names if name.startswith("train step, tiny (") and name.endswith("plain fp32 NCHW"))
    assert re.fullmatch(r"[\d.]+ img/s, \d+ GFLOP/s \(\d+ % of the ceiling timed alongside\)", results[plain])
    assert "batch 8" in plain  # the config's batch below 256 px
    assert re.fullmatch(r"[\d.]+x", results["train step, tiny: speed-up over plain"])
    memory = [name for name in names if name.startswith("memory, tiny, batch 8")]
    assert len(memory) == 2 and all(re.fullmatch(r"\d+ MiB", results[name]) for name in memory)
    assert re.fullmatch(r"\d+ samples/s", results["data, tiny: render + crop + augment, one worker"])
    assert re.fullmatch(r"\d+ frames/s", results["renderer: synthetic 256x212 depth frames, one core"])
    waiting = results["data, tiny: step time waiting for data, DataLoader with 0 workers"]
    assert waiting.endswith(" % of 2 steps") and 0 < float(waiting.split()[0]) <= 100  # no workers: it waits
    ahead = results["data, tiny: fast steps fed by the DataLoader (0 workers), frames rendered as they train / ahead "
                    "on every core (data.prerender)"]
    live, kept, ratio = re.fullmatch(r"([\d.]+) / ([\d.]+) img/s \(([\d.]+)x\)", ahead).groups()
    assert abs(float(ratio) - float(kept) / float(live)) < 0.01 * float(ratio) + 0.006  # the ratio of the two rates
    assert re.fullmatch(r"[\d.]+ ms", results["targets, tiny: encode a batch of 8"])
    assert re.fullmatch(r"[\d.]+ ms", results["inference, tiny, batch 1, eager plain fp32 NCHW"])
    assert re.fullmatch(r"[\d.]+ ms", results["inference, tiny, batch 1, ONNX Runtime fp32 (CPU)"])


def test_bench_accuracy_trains_fp32_and_bf16_with_the_same_seed(tmp_path):
    table = accuracy_table(None, tiny_overrides(tmp_path), progress=False, log=lambda *_: None)
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in table.splitlines()
            if line.startswith("| ") and "train.amp" not in line}
    assert list(rows) == ["off (fp32)", "bf16", "bf16 - fp32 (points)"]
    assert "| final-stage PCK@0.1 | final-stage PCK@0.2 |" in table
    for amp, folder in (("off (fp32)", "tiny-amp-off"), ("bf16", "tiny-amp-bf16")):
        # the table's PCK is the run's own final-stage validation PCK of its (only) epoch, in percent
        final = json.loads((tmp_path / "runs" / folder / "metrics.jsonl").read_text().splitlines()[-1])
        expected = [f"{100 * final[f'val/pck@{a}/stage4']:.2f}" for a in ("0.1", "0.2")]
        assert [cell.strip() for cell in rows[amp][:2]] == expected
        assert rows[amp][4].strip() == str(tmp_path / "runs" / folder)
    difference = float(rows["bf16"][1]) - float(rows["off (fp32)"][1])
    assert abs(float(rows["bf16 - fp32 (points)"][1]) - difference) < 0.011
    assert (tmp_path / "runs" / "tiny-amp-off" / "metrics.jsonl").is_file()
    assert (tmp_path / "runs" / "tiny-amp-bf16" / "metrics.jsonl").is_file()


def test_bench_accuracy_reuses_a_finished_bf16_run_and_refuses_another_config(tmp_path):
    import pytest

    from cpm.config import load_config
    from cpm.errors import CPMError
    from cpm.training.loop import train

    overrides = tiny_overrides(tmp_path)
    finished = train(load_config(None, [*overrides, 'train.amp="bf16"', 'train.name="earlier"']), progress=False,
                     log=lambda *_: None)
    table = accuracy_table(None, overrides, progress=False, log=lambda *_: None, reuse_bf16=finished["run_dir"])
    rows = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in table.splitlines()
            if line.startswith("| ") and "train.amp" not in line}
    assert [float(cell) for cell in rows["bf16"][:2]] == [round(100 * finished["pck"][a][-1], 2)
                                                          for a in sorted(finished["pck"])]
    assert rows["bf16"][-1].strip() == finished["run_dir"]
    assert not (tmp_path / "runs" / "tiny-amp-bf16").exists()  # nothing trained for the bf16 side
    with pytest.raises(CPMError, match=r"--reuse-bf16: .*earlier: its config differs in train.lr"):
        accuracy_table(None, [*overrides, "train.lr=0.5"], progress=False, log=lambda *_: None,
                       reuse_bf16=finished["run_dir"])
