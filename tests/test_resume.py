"""Nothing lost: a stop signal writes last.pt after a whole step, a resumed run continues bit for bit, and a
diverged run leaves the last good checkpoint as it was."""

import json
import signal
import subprocess
import sys
import time

import torch

from cpm.cli import main
from cpm.runtime.checkpoint import load_checkpoint
from tests.helpers import tiny_overrides

STEPS_PER_EPOCH = 40


def exact_overrides(tmp_path, **extra) -> list[str]:
    """A deterministic fp32 single-thread CPU run with a loss line per step."""
    return tiny_overrides(tmp_path, **{
        "train.epochs": 2, "data.train_samples": 8 * STEPS_PER_EPOCH, "train.log_every": 1,
        "train.deterministic": True, "train.threads": 1, "train.amp": "off", "train.warmup_steps": 5, **extra,
    })


def start_training(overrides: list[str]) -> subprocess.Popen:
    command = [sys.executable, "-m", "cpm", "train", "--no-progress", *sum((["--set", o] for o in overrides), [])]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_lines(path, count: int, process: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.is_file() and len(path.read_text().splitlines()) >= count:
            return
        assert process.poll() is None, process.communicate()
        time.sleep(0.01)
    raise AssertionError(f"{path} never reached {count} lines")


def step_losses(path) -> list[dict]:
    """Every logged step's loss terms and lr (throughput left out: it is a timing)."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "images_per_second"} for line in lines]


def interrupt(tmp_path, name: str, signum: int) -> tuple[subprocess.Popen, str, dict]:
    """Start a run, signal it once it is 5 steps in, and return (process, stderr, last.pt)."""
    process = start_training(exact_overrides(tmp_path, **{"train.name": name}))
    wait_for_lines(tmp_path / "runs" / name / "steps.jsonl", 5, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=180)
    return process, stderr, load_checkpoint(tmp_path / "runs" / name / "last.pt")


def test_sigterm_mid_epoch_then_resume_gives_the_same_losses_bit_for_bit(tmp_path):
    straight = start_training(exact_overrides(tmp_path, **{"train.name": "straight"}))
    process, stderr, checkpoint = interrupt(tmp_path, "split", signal.SIGTERM)
    run_dir = tmp_path / "runs" / "split"
    assert process.returncode == 143, stderr
    assert len(stderr.strip().splitlines()) == 1 and "SIGTERM at step" in stderr and "Traceback" not in stderr
    stopped_at = checkpoint["step"]
    assert 5 <= stopped_at < STEPS_PER_EPOCH  # mid-epoch 1: the signal landed between two steps
    assert checkpoint["epoch"] == 0 and checkpoint["data_order"] == {"seed": 0, "epoch": 0, "batches": stopped_at}
    assert set(checkpoint["rng"]) >= {"python", "numpy", "torch"}
    assert set(checkpoint) >= {"optimizer", "scheduler", "scaler", "config", "git_revision"}
    assert [line["step"] for line in step_losses(run_dir / "steps.jsonl")] == list(range(1, stopped_at + 1))
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]

    resumed = subprocess.run([sys.executable, "-m", "cpm", "train", "--no-progress", "--resume",
                              str(run_dir / "last.pt")], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert straight.wait(timeout=300) == 0, straight.communicate()[1]

    expected = step_losses(tmp_path / "runs" / "straight" / "steps.jsonl")
    assert len(expected) == 2 * STEPS_PER_EPOCH
    assert step_losses(run_dir / "steps.jsonl") == expected  # floats compared exactly
    final_split, final_straight = (load_checkpoint(tmp_path / "runs" / n / "last.pt") for n in ("split", "straight"))
    assert final_split["step"] == final_straight["step"] == 2 * STEPS_PER_EPOCH
    assert all(torch.equal(final_split["model"][k], v) for k, v in final_straight["model"].items())


def test_sigint_finishes_the_step_writes_last_pt_and_exits_130(tmp_path):
    process, stderr, checkpoint = interrupt(tmp_path, "ctrl-c", signal.SIGINT)
    assert process.returncode == 130, stderr
    assert "SIGINT at step" in stderr and "--resume" in stderr and "Traceback" not in stderr
    logged = step_losses(tmp_path / "runs" / "ctrl-c" / "steps.jsonl")
    assert checkpoint["step"] == logged[-1]["step"] == checkpoint["data_order"]["batches"]


def test_a_non_finite_loss_names_the_terms_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    import cpm.runtime.build  # build_loss wraps the staged_loss it finds there

    real_loss, training_calls = cpm.runtime.build.staged_loss, []

    def diverging_loss(beliefs, *args, **kwargs):
        losses = real_loss(beliefs, *args, **kwargs)
        if torch.is_grad_enabled():  # a training step (evaluation runs under no_grad)
            training_calls.append(1)
            if len(training_calls) > 8:  # epoch 2 (8 steps per epoch) diverges
                losses = {name: value * float("nan") for name, value in losses.items()}
        return losses

    monkeypatch.setattr(cpm.runtime.build, "staged_loss", diverging_loss)
    overrides = tiny_overrides(tmp_path, **{"train.epochs": 2})
    assert main(["train", "--no-progress", *sum((["--set", o] for o in overrides), [])]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "non-finite loss at step 10: loss=nan" in error[0]
    assert error[0].endswith("loss/stage1=nan, loss/stage2=nan")  # every term of make train's two stages
    run_dir = tmp_path / "runs" / "tiny"
    for name in ("last.pt", "best.pt"):
        checkpoint = load_checkpoint(run_dir / name)
        assert checkpoint["epoch"] == 1 and checkpoint["step"] == 8
        assert all(torch.isfinite(value).all() for value in checkpoint["model"].values())
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
