from cpm.bench import run
from tests.helpers import tiny_overrides


def test_bench_prints_one_row_per_measurement(tmp_path):
    overrides = tiny_overrides(tmp_path)
    sections: dict[str, list[str]] = {}
    for override in overrides:
        key, value = override.split("=", 1)
        section, name = key.split(".")
        sections.setdefault(section, []).append(f"{name} = {value}")
    config = tmp_path / "default.toml"  # named "default" so the data and codec rows are measured too
    config.write_text("\n".join(f"[{s}]\n" + "\n".join(v) for s, v in sections.items()))
    table = run([str(config)], seconds=0.01, device_name="cpu")
    rows = [line for line in table.splitlines() if line.startswith("| ") and "measurement" not in line]
    names = [row.split("|")[1].strip() for row in rows]
    assert names[0] == "ceiling: 9x9 conv, fp32"
    assert any(name.startswith("train step, default") and "plain fp32 NCHW" in name for name in names)
    assert "train step, default: speed-up over plain" in names
    assert "data: render + crop + augment, one worker" in names
    assert any(name.startswith("inference, default") for name in names)
    assert all(row.split("|")[2].strip() for row in rows)
