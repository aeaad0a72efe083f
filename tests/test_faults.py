"""A run or a grid killed anywhere (SIGKILL: a power cut, the OOM killer) and started again ends with the weights,
metrics and records of one uninterrupted run; a full disk or a file cut short is one line naming the file.

Kills come from `cpm.io.fault_point` (``CPM_FAULT=kill:POINT@N``) in a forked copy of this process (no imports to
pay for), and the same command is then run again here. Each run is a tiny deterministic CPU run (one thread,
``train.deterministic``), so "the same" is bit for bit: weights, optimiser, every logged loss. Times are left out
of the comparisons. `tests/test_faults_sweep.py` (slow) kills at many more points, random ones included.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import cpm.io
from cpm.cli import main as cpm_main
from cpm.config import load_config
from cpm.errors import CPMError
from cpm.experiments import grids
from cpm.experiments.runs import dedupe_summary, is_cell_summary
from cpm.io import read_jsonl
from cpm.runtime.checkpoint import load_checkpoint, save_checkpoint
from cpm.training.loop import train
from tests.helpers import tiny_overrides

STEPS = 4  # steps an epoch: 16 frames at batch 4
EPOCHS = 2
TINY = {"data.train_samples": 4 * STEPS, "train.batch_size": 4, "data.val_samples": 8, "eval.batch_size": 8}
TIMES = {"train_seconds", "elapsed_seconds", "run_seconds", "images_per_second", "render_seconds"}


def _quiet(*_args) -> None:
    pass


def run_overrides(tmp: Path, name: str = "run", **extra) -> list[str]:
    """A seconds-long deterministic run: 2 epochs of 4 steps, a loss row every step, a mid-epoch last.pt every 2
    steps (last.pt writes: steps 2, 4, 6, 8), best.pt by held-out loss (it improves every epoch here, so best.pt is
    written at each epoch's end)."""
    return tiny_overrides(tmp, **{
        "train.name": name, "train.epochs": EPOCHS, "train.log_every": 1, "train.checkpoint_every": 2,
        "train.deterministic": True, "train.threads": 1, "train.amp": "off", "train.best_metric": "loss",
        **TINY, **extra})


def start(tmp: Path, name: str = "run", **extra) -> Callable[[], object]:
    return lambda: train(load_config(None, run_overrides(tmp, name, **extra)), progress=False, log=_quiet)


def resume(run_dir: Path, log: Callable[[str], None] = _quiet) -> None:
    """`cpm train --resume last.pt`; for a run whose last.pt already holds its final epoch (a kill after it) that
    is a `CPMError` saying so, once the records and best.pt have been made to match it."""
    try:
        train(None, resume=run_dir / "last.pt", progress=False, log=log)
    except CPMError as error:
        assert "already finished" in str(error) and load_checkpoint(run_dir / "last.pt")["epoch"] == EPOCHS


def killed(action: Callable[[], object], fault: str) -> None:
    """``action()`` in a forked copy of this process with ``CPM_FAULT=fault``; asserts that the fault killed it."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 0
        try:
            os.environ["CPM_FAULT"] = fault
            cpm.io._FAULT_HITS.clear()
            action()
        except BaseException:  # noqa: BLE001 - reported by the exit status
            traceback.print_exc()
            code = 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
        f"CPM_FAULT={fault}: the process was not killed (exit status {os.waitstatus_to_exitcode(status)})"
    # TensorBoard reads a run's event files in the order of their names, which start with the second the writer
    # started: the next sitting's must come after this one's (seconds apart outside a test).
    time.sleep(1 - time.time() % 1)


def timeless(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMES} for row in rows]


def weights(path: Path) -> dict:
    checkpoint = load_checkpoint(path)
    return {"model": checkpoint["model"], "optimizer": checkpoint["optimizer"]["state"], "step": checkpoint["step"],
            "epoch": checkpoint["epoch"], "best": checkpoint["best"]}


def assert_same_tensors(a, b, where: str = "") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}/{key}")
    else:
        assert a == b, where


def tensorboard_losses(folder: Path) -> list[tuple[int, float]]:
    """train/loss as TensorBoard shows it (the events a later sitting's purge_step hides left out)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars("train/loss")]


def assert_same_run(run_dir: Path, reference: Path, epochs: int = EPOCHS) -> None:
    """Same final and best weights and optimiser, the same records row for row (times aside: metrics.jsonl,
    steps.jsonl, TensorBoard's train/loss), no temporary file."""
    assert_same_tensors(weights(run_dir / "last.pt"), weights(reference / "last.pt"), "last.pt")
    assert_same_tensors(weights(run_dir / "best.pt"), weights(reference / "best.pt"), "best.pt")
    for name in ("metrics.jsonl", "steps.jsonl"):
        assert timeless(read_jsonl(run_dir / name)) == timeless(read_jsonl(reference / name)), name
    assert [row["epoch"] for row in read_jsonl(run_dir / "metrics.jsonl")] == list(range(1, epochs + 1))
    assert [row["step"] for row in read_jsonl(run_dir / "steps.jsonl")] == list(range(1, epochs * STEPS + 1))
    assert not list(run_dir.glob(".*.tmp"))
    assert tensorboard_losses(run_dir) == tensorboard_losses(reference)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("reference")
    start(tmp)()
    return tmp / "runs" / "run"


# ---- a training run killed at a chosen point, then resumed ------------------------------------------------------

# The fast suite's kill points; tests/test_faults_sweep.py (slow) goes through every point and more counts.
RUN_FAULTS = [
    "kill:step@7",           # mid-epoch 2: last.pt is the mid-epoch one of step 6, step 7 trained
    "kill:write:last.pt@4",  # during the final checkpoint write: a temporary file left behind, TensorBoard flushed
                             # with steps 7 and 8 and epoch 2, last.pt at step 6
    "kill:write:best.pt@2",  # between last.pt and best.pt of epoch 2: best.pt one epoch behind last.pt
    "kill:saved@1",          # epoch 1's last.pt written, its metrics.jsonl row not: the row comes from last.pt
]


def assert_no_row_ahead_of_the_checkpoint(run_dir: Path) -> None:
    """Wherever a kill lands, metrics.jsonl has no row of an epoch that last.pt does not hold (steps.jsonl, like
    TensorBoard, shows the steps as they are trained: its rows after last.pt are cut when the run resumes)."""
    if (run_dir / "last.pt").is_file() and (run_dir / "metrics.jsonl").is_file():
        epochs = [row["epoch"] for row in cpm.io.read_log(run_dir / "metrics.jsonl")[0]]
        assert max(epochs, default=0) <= load_checkpoint(run_dir / "last.pt")["epoch"]


def killed_and_resumed(tmp: Path, reference: Path, fault: str, **extra) -> Path:
    killed(start(tmp, **extra), fault)
    run_dir = tmp / "runs" / "run"
    assert_no_row_ahead_of_the_checkpoint(run_dir)
    resume(run_dir)
    assert_same_run(run_dir, reference)
    return run_dir


@pytest.mark.parametrize("fault", RUN_FAULTS)
def test_a_run_killed_and_resumed_ends_as_the_uninterrupted_run(tmp_path, reference, fault):
    killed_and_resumed(tmp_path, reference, fault)




def test_a_last_line_cut_short_is_dropped_with_one_line_and_rows_of_an_old_double_resume_kept_once(tmp_path,
                                                                                                    reference):
    killed(start(tmp_path), "kill:steps-row@7")  # last.pt: the mid-epoch one of step 6 (epoch 2)
    run_dir = tmp_path / "runs" / "run"
    rows = (run_dir / "steps.jsonl").read_text().splitlines()
    duplicated = rows[:6] + rows[3:6]  # steps 4..6 twice, as a resume before logs were cut back wrote them
    (run_dir / "steps.jsonl").write_text("\n".join(duplicated) + "\n" + rows[6][:25])  # + a row cut short
    lines = []
    resume(run_dir, log=lines.append)
    cut = [line for line in lines if "cut short" in line]
    assert len(cut) == 1 and str(run_dir / "steps.jsonl") in cut[0]
    assert_same_run(run_dir, reference)


# ---- bad state on disk, full disk ----------------------------------------------------------------------------

def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    return lines[0]


def test_an_empty_last_pt_stops_a_resume_with_one_line_naming_it(tmp_path, capsys):
    run_dir = tmp_path / "runs" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "last.pt").write_bytes(b"")
    assert cpm_main(["train", "--no-progress", "--resume", str(run_dir / "last.pt")]) == 2
    assert str(run_dir / "last.pt") in one_error_line(capsys)


class _FullDisk:
    """A file on a disk that fills up after ``room`` bytes."""

    def __init__(self, file, room: int) -> None:
        self.file, self.room = file, room

    def write(self, data) -> int:
        self.room -= len(data)
        if self.room < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.file.write(data)

    def __getattr__(self, name: str):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


@pytest.fixture
def full_disk(monkeypatch):
    """`cpm.io.atomic_write`'s files take 100 bytes, then ENOSPC."""
    real = os.fdopen
    monkeypatch.setattr(cpm.io.os, "fdopen", lambda *args, **kwargs: _FullDisk(real(*args, **kwargs), 100))


@pytest.mark.parametrize(("name", "write"), [
    ("last.pt", lambda path: save_checkpoint({"model": {"w": torch.zeros(1000)}, "config": {}}, path)),  # RuntimeError
    ("T1-is-seed0-0123abcd.json", lambda path: cpm.io.write_text_atomic(path, json.dumps({"metrics": [0.5] * 100}))),
])
def test_a_checkpoint_or_summary_write_on_a_full_disk_keeps_the_previous_file_and_names_it(tmp_path, full_disk,
                                                                                           name, write):
    path = tmp_path / name
    path.write_bytes(b"the previous file")
    with pytest.raises(CPMError) as error:
        write(path)
    message = str(error.value)
    assert str(path) in message and "No space left on device" in message and len(message.splitlines()) == 1
    assert path.read_bytes() == b"the previous file"
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_a_full_disk_during_training_stops_with_one_line_and_the_run_resumes(tmp_path, reference, capsys):
    """``CPM_FAULT=enospc``: the final last.pt (end of epoch 2) cannot be written; `cpm train` says so in one line
    (exit 2), the mid-epoch last.pt of step 6 stays whole, and the run resumes from it to the uninterrupted result."""
    overrides = run_overrides(tmp_path)
    (tmp_path / "empty.toml").write_text("")  # the defaults, as load_config(None) gives
    os.environ["CPM_FAULT"] = "enospc:write:last.pt@4"
    cpm.io._FAULT_HITS.clear()
    try:
        code = cpm_main(["train", str(tmp_path / "empty.toml"), "--no-progress", "--no-pose-sources",
                         *sum((["--set", o] for o in overrides), [])])
    finally:
        del os.environ["CPM_FAULT"]
    run_dir = tmp_path / "runs" / "run"
    line = one_error_line(capsys)
    assert code == 2 and str(run_dir / "last.pt") in line and "No space left on device" in line
    assert load_checkpoint(run_dir / "last.pt")["step"] == 6
    resume(run_dir)
    assert_same_run(run_dir, reference)


# ---- a grid killed at a chosen point, then the same command again --------------------------------------------

def grid_argv(tmp: Path, only: str = "T1-is-seed0") -> list[str]:
    sets = {"train.epochs": EPOCHS, "train.deterministic": "true", "train.threads": 1, "train.log_every": 1,
            "train.checkpoint_every": 2, **TINY}
    return ["ablate-supervision", "--budget", "smoke", "--only", only, *sum((["--set", f"{k}={v}"] for k, v in
                                                                           sets.items()), []),
            "--results", str(tmp / "results"), "--runs", str(tmp / "runs"), "--no-progress"]


def grid(tmp: Path, only: str = "T1-is-seed0") -> Callable[[], int]:
    def command() -> int:
        code = grids.main(grid_argv(tmp, only))
        assert code == 0
        return code
    return command


SUMMARY_TIMES = {"wall_seconds", "train_seconds", "machine", "revision"}


def summaries(tmp: Path) -> dict[str, dict]:
    """Each cell summary (times and machine aside) by cell name."""
    found = {}
    for path in sorted((tmp / "results" / "runs").rglob("*-*.json")):
        if is_cell_summary(path):
            data = json.loads(path.read_text())
            data = {k: v for k, v in data.items() if k not in SUMMARY_TIMES}
            data["metrics"], data["steps"] = timeless(data["metrics"]), timeless(data["steps"])
            data["config"]["train"].pop("runs_dir")  # the test's folder
            found[data["cell"]] = data
    return found


def report_text(tmp: Path) -> str:
    (report,) = (tmp / "results" / "ablate-supervision").glob("*.md")
    return report.read_text()


@pytest.fixture(scope="module")
def grid_reference(tmp_path_factory) -> Path:
    """The grid of one cell (T1-is-seed0), run once without a stop."""
    tmp = tmp_path_factory.mktemp("grid-reference")
    grid(tmp)()
    return tmp


GRID_FAULTS = [
    "kill:saved@2",                   # T1's final checkpoint written, its final metrics.jsonl row not
    "kill:write:T1-is-seed0-*.json",  # during T1's summary write
]


def grid_killed_and_run_again(tmp_path: Path, grid_reference: Path, fault: str, only: str = "T1-is-seed0") -> None:
    """Kill the grid of the cells ``only`` at ``fault``, run the same command again: the summaries and the report
    of the uninterrupted grid, each cell's logs with one row an epoch and a step, no temporary file anywhere."""
    killed(grid(tmp_path, only), fault)
    for run_dir in (tmp_path / "runs").rglob("T*-is-seed0-*"):
        assert_no_row_ahead_of_the_checkpoint(run_dir)
    grid(tmp_path, only)()
    assert summaries(tmp_path) == summaries(grid_reference)
    assert report_text(tmp_path) == report_text(grid_reference).replace(str(grid_reference), str(tmp_path))
    assert len(summaries(tmp_path)) == len(summaries(grid_reference))
    for run_dir in (tmp_path / "runs").rglob("T*-is-seed0-*"):
        assert len(read_jsonl(run_dir / "metrics.jsonl")) == EPOCHS
        assert len(read_jsonl(run_dir / "steps.jsonl")) == EPOCHS * STEPS
        assert not list(run_dir.glob(".*.tmp"))
    assert not list((tmp_path / "results").rglob(".*.tmp"))


@pytest.mark.parametrize("fault", GRID_FAULTS)
def test_a_grid_killed_and_run_again_gives_the_uninterrupted_summaries(tmp_path, grid_reference, fault):
    grid_killed_and_run_again(tmp_path, grid_reference, fault)


def test_a_cell_summary_cut_short_stops_the_grid_and_the_report_with_one_line_naming_it(tmp_path, grid_reference,
                                                                                          capsys):
    import shutil

    shutil.copytree(grid_reference / "results", tmp_path / "results")
    (summary,) = (tmp_path / "results" / "runs").rglob("T1-is-seed0-*.json")
    summary.write_text(summary.read_text()[:200])
    capsys.readouterr()
    assert grids.main(grid_argv(tmp_path)) == 2
    assert str(summary) in one_error_line(capsys)
    assert grids.main(["report", "--results", str(tmp_path / "results"), "--runs", str(tmp_path / "runs")]) == 2
    assert str(summary) in one_error_line(capsys)


def test_a_cell_with_an_empty_last_pt_stops_the_grid_with_one_line_naming_it(tmp_path, capsys):
    killed(grid(tmp_path), "kill:evaluated@1")  # last.pt: the mid-epoch one of step 2
    (last,) = (tmp_path / "runs").rglob("last.pt")
    last.write_bytes(b"")
    capsys.readouterr()
    assert grids.main(grid_argv(tmp_path)) == 2
    line = one_error_line(capsys)
    assert str(last) in line and "remove" in line


# ---- the one-off repair of committed summaries -----------------------------------------------------------------

def test_repair_records_keeps_the_last_row_of_each_epoch_and_step(tmp_path, capsys):
    folder = tmp_path / "results" / "runs" / "ablate-supervision" / "ablation"
    folder.mkdir(parents=True)
    steps = [{"step": s, "loss": 1.0} for s in (25, 50, 75, 100)] + [{"step": s, "loss": 2.0} for s in (75, 100, 125)]
    metrics = [{"epoch": 1, "step": 50, "train_seconds": 1.0}, {"epoch": 2, "step": 100, "train_seconds": 1.0},
               {"epoch": 2, "step": 100, "train_seconds": 3.0}]
    data = {"cell": "T1-is-seed0", "metrics": metrics, "steps": steps, "train_seconds": 5.0}
    path = folder / "T1-is-seed0-0123abcd.json"
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    untouched = folder / "T2-is-seed0-0123abcd.json"
    untouched.write_text(json.dumps(dedupe_summary(data)[0], indent=1, sort_keys=True) + "\n")
    before = untouched.stat().st_mtime_ns
    assert grids.main(["repair-records", "--results", str(tmp_path / "results")]) == 0
    repaired = json.loads(path.read_text())
    assert [(s["step"], s["loss"]) for s in repaired["steps"]] == [(25, 1.0), (50, 1.0), (75, 2.0), (100, 2.0),
                                                                   (125, 2.0)]
    assert [(m["epoch"], m["train_seconds"]) for m in repaired["metrics"]] == [(1, 1.0), (2, 3.0)]
    assert repaired["train_seconds"] == 4.0
    assert untouched.stat().st_mtime_ns == before
    out = capsys.readouterr().out
    assert f"{path}: 1 duplicated epochs and 2 duplicated loss-curve steps removed" in out
    assert "1 cell summaries repaired" in out
