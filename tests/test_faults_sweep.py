"""The slow sweep of `tests/test_faults.py` (``make test-slow``): every kill point of a training run at several
counts, seeded random ones, a grid of two cells killed at each of its skip-if-done paths (before the first
checkpoint, mid-cell, between cells, during a summary, grid.json, figure5.json and the report), SIGKILLs at random
moments from outside, data.prerender blocks, and the issue's scenario through the command line: a 12-epoch smoke
cell killed in its 7th epoch and run again has 12 rows in metrics.jsonl, 24 in steps.jsonl and the summary of the
uninterrupted cell."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cpm.io import read_jsonl
from tests.test_faults import (
    assert_same_run,
    grid,
    grid_argv,
    grid_killed_and_run_again,
    killed,
    killed_and_resumed,
    resume,
    start,
    summaries,
)

pytestmark = pytest.mark.slow

# Kill points of a run after its first last.pt (written after step 2's row): before it, `cpm train` has nothing to
# resume (a grid starts such a cell again: the two-cell grid below). last.pt writes: steps 2, 4, 6, 8; best.pt:
# epochs 1, 2.
# Every one of them, in a run of 8 steps (random moments: the grid killed from outside, below).
RUN_FAULTS = ([f"kill:{point}@{n}" for point in ("step", "steps-row") for n in range(3, 9)]
              + [f"kill:{point}@{n}" for point in ("evaluated", "saved", "metrics-row", "write:best.pt")
                 for n in (1, 2)]
              + [f"kill:write:last.pt@{n}" for n in (2, 3, 4)])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    start(tmp)()
    return tmp / "runs" / "run"


@pytest.mark.parametrize("fault", RUN_FAULTS)
def test_every_kill_point_of_a_run_resumes_to_the_uninterrupted_run(tmp_path, uninterrupted, fault):
    killed_and_resumed(tmp_path, uninterrupted, fault)


def test_a_run_killed_twice_resumes_to_the_uninterrupted_run(tmp_path, uninterrupted):
    killed(start(tmp_path), "kill:write:last.pt@3")
    run_dir = tmp_path / "runs" / "run"
    killed(lambda: resume(run_dir), "kill:steps-row@2")  # in the resumed sitting, after rows past its last.pt
    resume(run_dir)
    assert_same_run(run_dir, uninterrupted)


def test_a_kill_while_prerendering_a_block_resumes_with_the_same_frames(tmp_path, tmp_path_factory):
    """data.prerender with two-epoch blocks (frames in memory, nothing on disk): killed in the second epoch of the
    first block, whose resumed run renders that block again, then as the second block starts rendering."""
    prerender = {"data.prerender": True, "data.render_epochs": 2, "train.epochs": 3}
    reference = tmp_path_factory.mktemp("prerender-reference")
    start(reference, **prerender)()
    killed(start(tmp_path, **prerender), "kill:step@6")
    run_dir = tmp_path / "runs" / "run"
    killed(lambda: resume(run_dir), "kill:prerender@2")
    resume(run_dir)
    assert_same_run(run_dir, reference / "runs" / "run", epochs=3)


TWO_CELLS = "T[12]-is-seed0"  # T1 trains steps 1-8 of the process, T2 steps 9-16


@pytest.fixture(scope="module")
def two_cell_reference(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("two-cell-reference")
    grid(tmp, TWO_CELLS)()
    return tmp


@pytest.mark.parametrize("fault", [
    "kill:write:grid.json",           # the grid's first write
    "kill:step@1",                    # before T1's first checkpoint: its folder is started again
    "kill:step@7",                    # mid-cell
    "kill:evaluated@2",               # during T1's last evaluation
    "kill:metrics-row@2",             # T1 complete, not summarised
    "kill:cell-trained@1",
    "kill:cell@2",                    # between the cells
    "kill:step@11",                   # mid-T2, T1 summarised
    "kill:saved@4",                   # T2's final checkpoint, not its row
    "kill:write:T2-is-seed0-*.json",  # during T2's summary
    "kill:report",                    # every cell done, the report not written
])
def test_a_two_cell_grid_killed_anywhere_gives_the_uninterrupted_summaries(tmp_path, two_cell_reference, fault):
    grid_killed_and_run_again(tmp_path, two_cell_reference, fault, TWO_CELLS)


def run_grid_process(tmp: Path, only: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cpm.experiments", *grid_argv(tmp, only)],
                            env=os.environ | (env or {}), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_grid_killed_from_outside_at_a_random_moment_gives_the_uninterrupted_summaries(tmp_path,
                                                                                        two_cell_reference, seed):
    """SIGKILL from outside after a random delay (seeded) within the time the grid takes, then the same command."""
    draw = random.Random(seed)
    started = time.monotonic()
    process = run_grid_process(tmp_path, TWO_CELLS)
    process.wait()
    assert process.returncode == 0, process.stderr.read()
    whole = time.monotonic() - started
    for folder in ("runs", "results"):
        subprocess.run(["rm", "-rf", str(tmp_path / folder)], check=True)
    process = run_grid_process(tmp_path, TWO_CELLS)
    try:
        process.wait(timeout=draw.uniform(0.2, 0.95) * whole)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
    process.stderr.close()
    grid(tmp_path, TWO_CELLS)()
    assert summaries(tmp_path) == summaries(two_cell_reference)


def test_figure5_json_killed_mid_write_is_computed_again_the_same(tmp_path, tmp_path_factory):
    """figure5.json (computed once, then skipped) with the grid's deepest intermediate-supervision cell."""
    reference = tmp_path_factory.mktemp("figure5-reference")
    grid(reference, "T6-is-seed0")()
    killed(grid(tmp_path, "T6-is-seed0"), "kill:write:figure5.json")
    assert not list((tmp_path / "results").rglob("figure5.json"))
    grid(tmp_path, "T6-is-seed0")()
    (made,), (expected,) = ((t / "results").rglob("figure5.json") for t in (tmp_path, reference))
    assert made.read_text() == expected.read_text()
    assert summaries(tmp_path) == summaries(reference)


def test_the_issue_scenario_a_12_epoch_cell_killed_in_its_7th_epoch(tmp_path):
    """The issue's command (smoke budget, 12 epochs of 4 steps, a loss row every 2 steps), SIGKILLed in its 7th
    epoch and run again: 12 rows in metrics.jsonl and 24 in steps.jsonl, and the uninterrupted cell's summary."""
    def command(root: Path, env: dict | None = None) -> subprocess.CompletedProcess:
        argv = ["ablate-supervision", "--budget", "smoke", "--only", "T2-is-seed0", "--set", "train.epochs=12",
                "--set", "train.threads=1", "--set", "train.deterministic=true", "--results", str(root / "R"),
                "--runs", str(root / "D"), "--no-progress"]
        return subprocess.run([sys.executable, "-m", "cpm.experiments", *argv], env=os.environ | (env or {}),
                              capture_output=True, text=True, timeout=600)

    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    assert command(straight).returncode == 0
    killed_run = command(stopped, {"CPM_FAULT": "kill:step@26"})  # epoch 7 is steps 25-28
    assert killed_run.returncode == -signal.SIGKILL, killed_run.stderr
    again = command(stopped)
    assert again.returncode == 0, again.stderr
    (run_dir,) = (stopped / "D").rglob("T2-is-seed0-*")
    assert len(read_jsonl(run_dir / "metrics.jsonl")) == 12
    assert len(read_jsonl(run_dir / "steps.jsonl")) == 24

    def cell(root: Path) -> dict:
        (path,) = (root / "R" / "runs").rglob("T2-is-seed0-*.json")
        data = json.loads(path.read_text())
        return {k: v for k, v in data.items() if k not in ("wall_seconds", "train_seconds", "machine", "revision")}

    made, expected = cell(stopped), cell(straight)
    for data in (made, expected):
        data["config"]["train"].pop("runs_dir")
        for row in data["metrics"] + data["steps"]:
            for key in ("train_seconds", "elapsed_seconds", "run_seconds", "images_per_second"):
                row.pop(key, None)
    assert made == expected

