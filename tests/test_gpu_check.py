"""`make gpu-check` on the CPU with tiny sizes: every step runs and writes its part of the report."""

from cpm.bench.gpu_check import bf16_peak, run


def test_peaks_are_looked_up_by_device_name():
    assert bf16_peak("NVIDIA H200") == 989e12 and bf16_peak("NVIDIA A100-SXM4-80GB") == 312e12
    assert bf16_peak("Tesla V100-SXM2") is None and bf16_peak("cpu") is None


def test_tiny_gpu_check_runs_every_step_on_the_cpu(tmp_path):
    report = run(tmp_path, minutes=5, tiny=True, device_name="cpu").read_text()
    assert "## tests" in report and "skipped with --tiny" in report
    assert "| fp32 NCHW |" in report and "| channels-last + bf16 |" in report and "failed" not in report
    assert "`make train` model on cpu" in report and "| 2 |" in report and "| 3 |" not in report  # 2 stages
    assert "ablate-supervision: exit 0, 1 cell summaries" in report
    assert (tmp_path / "speed.md").is_file() and (tmp_path / "train.log").is_file()
    assert list((tmp_path / "results" / "runs" / "ablate-supervision" / "smoke").glob("T1-is-seed0-*.json"))


def test_the_gpu_trains_the_committed_grid_requests():
    from cpm.bench.gpu_check import GPU_GRIDS, committed_grids
    from cpm.experiments.grids import GridRequest, _parse_cell_sets, _parse_sets

    for setting, argv in zip(GPU_GRIDS, committed_grids(), strict=True):
        values = {flag: [argv[i + 1] for i, a in enumerate(argv) if a == flag] for flag in ("--set", "--cell-set")}
        request = GridRequest(argv[0], argv[argv.index("--budget") + 1],
                              argv[argv.index("--config") + 1] if "--config" in argv else None,
                              _parse_sets(values["--set"]), None, _parse_cell_sets(values["--cell-set"]))
        assert f"{request.target}/{request.setting}" == setting  # its summaries land in the committed folder
