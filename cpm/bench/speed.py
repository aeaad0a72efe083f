"""``make bench``: speed of every part of the pipeline, measured side by side in one run.

    python -m cpm.bench experiments/default.toml experiments/paper_lsp.toml

Prints one Markdown table:

- the machine's ceilings: fp32 and bf16 throughput of a large 9x9 convolution (channels-last);
- the training step of each config: images/s and achieved FLOP/s (counted by ``torch.utils.flop_counter``)
  of the plain way (fp32, NCHW, as the PyTorch ports of CPM run it) and of the fast path (channels-last,
  bf16 autocast where the device has it, the way ``cpm train`` runs with ``train.amp = "auto"``), each
  against its ceiling, and the speed-up. The two steps are timed alternately, so that a change in the
  machine's load hits both alike;
- the memory of a training step: on CPU the growth of the peak resident set size (RSS) over two steps, in a
  fresh process, over what the process held before them (weights, inputs): activations, gradients,
  optimiser state and library workspaces; on CUDA ``torch.cuda.max_memory_allocated`` over the same;
- the data pipeline: samples/s of render + crop + augment in one worker against what the fast step
  consumes, and the share of step time spent waiting for the next batch in a real DataLoader loop with
  the config's ``data.workers`` (targets are encoded on the training device, the "targets" row);
- target generation (``HeatmapCodec.encode``) and decoding per batch;
- inference latency per image: eager PyTorch (fp32 NCHW, and the fast path) and ONNX Runtime (fp32, CPU;
  the model exported by `cpm.inference.export` to a temporary file).

Shared machines are noisy: compare ratios within one run, not absolute figures across runs.
The accuracy cost of bf16 is measured by `cpm.bench.accuracy` (``make bench-accuracy``).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from cpm.bench.timing import CEILING_FLOPS, TrainStep, ceiling_conv, fast_dtype, sync, timed, timed_alternately
from cpm.config import Config, load_config
from cpm.data.loader import make_loader, resolve_workers
from cpm.data.synthetic.sources import drop_missing_pose_files
from cpm.device import autocast, cpu_has_native_bf16, resolve_device
from cpm.runtime.batch import prepare_batch
from cpm.runtime.build import build_codec, build_datasets


def _current_rss() -> int:
    """Bytes resident now (Linux ``/proc``); elsewhere the peak so far, which is then the baseline."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return _peak_rss()


def _peak_rss() -> int:
    """Peak bytes resident in this process: Linux's VmHWM, which starts afresh at exec. ``ru_maxrss`` does not on
    Linux (it keeps the peak of the parent that forked the process), so it is only the fallback."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    except (OSError, ValueError, IndexError, StopIteration):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on Linux


def step_memory(config: Config, *, batch: int, device: torch.device, fast: bool) -> int:
    """Bytes a training step needs beyond the weights and inputs: the peak over two steps minus what was held
    before them. CUDA: ``max_memory_allocated``. CPU: peak RSS in this process (call it in a fresh one)."""
    step = TrainStep(config, batch=batch, device=device, fast=fast)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    else:
        before = _current_rss()
    step()
    step()
    sync(device)
    after = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _peak_rss()
    return after - before


def step_memory_in_new_process(config_path: str, *, batch: int, device: torch.device, fast: bool) -> int:
    """`step_memory` in a fresh Python process (the peak RSS of this one is already the peak of everything)."""
    if device.type == "cuda":
        return step_memory(load_config(config_path), batch=batch, device=device, fast=fast)
    command = [sys.executable, "-m", "cpm.bench.speed", "--memory-probe", "--batch", str(batch),
               "--device", str(device),
               *(["--fast"] if fast else []), config_path]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(result.stdout.split()[-1])


def render_rate(*, seconds: float) -> float:
    """Synthetic depth frames (256 x 212, sensor noise and dropouts) rendered per second by one core: the renderer
    alone, one OpenCV thread, counted against this process's CPU time."""
    import cv2

    from cpm.data.synthetic.frames import render_sample

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        render_sample(0, 0)
        count, start, wall = 0, time.process_time(), time.perf_counter()
        while time.perf_counter() - wall < seconds:
            render_sample(0, count)
            count += 1
        return count / (time.process_time() - start)
    finally:
        cv2.setNumThreads(threads)


def data_rate(config: Config, *, seconds: float) -> float:
    """Training samples/s (render + crop + augment + to tensor) in this one process = one worker."""
    train_set, _ = build_datasets(config)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        train_set[count % len(train_set)]
        count += 1
    return count / (time.perf_counter() - start)


def loader_wait(config: Config, step: TrainStep, *, steps: int, seconds: float,
                ahead: bool = False) -> tuple[float, int, float]:
    """-> (share of the time spent waiting for the next batch, steps run, training images/s): up to ``steps`` fast
    training steps on real batches (`cpm.data.loader.make_loader` with ``data.workers`` workers), at least 3,
    stopping after ``seconds``. The first batch (workers starting) is not counted. ``ahead``: the epoch's frames
    are rendered before the loader starts (`PoseDataset.prerender`, ``data.prerender``), not as the steps train."""
    train_set, _ = build_datasets(config)
    if ahead:
        train_set.prerender(0)
    loader = make_loader(train_set, batch_size=step.batch, shuffle=True, workers=config.data.workers,
                         device=step.device, seed=0, drop_last=True)
    batches = iter(loader)
    next(batches)
    waiting, start, done = 0.0, time.perf_counter(), 0
    while done < steps and (done < 3 or time.perf_counter() - start < seconds):
        asked = time.perf_counter()
        batch = next(batches)
        waiting += time.perf_counter() - asked
        step.run(*prepare_batch(batch, step.codec, step.device, step.channels_last))
        done += 1
    sync(step.device)
    total = time.perf_counter() - start
    del batches, loader  # stops the persistent workers
    return waiting / total, done, done * step.batch / total


def onnx_latency(config: Config, model: torch.nn.Module, *, seconds: float) -> float | None:
    """Seconds per image (batch 1) of ``model`` exported by `cpm.inference.export` and run in ONNX Runtime on
    the CPU (fp32); None when the onnx extra is not installed."""
    try:
        import numpy as np
        import onnxruntime
    except ImportError:
        return None
    from cpm.inference.export import export_onnx
    from cpm.runtime.checkpoint import save_checkpoint

    size = config.data.input_size
    with tempfile.TemporaryDirectory() as folder:
        checkpoint, onnx_path = Path(folder) / "model.pt", Path(folder) / "model.onnx"
        state = {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
        save_checkpoint({"model": state, "config": config.to_dict()}, checkpoint)
        export_onnx(checkpoint, onnx_path)
        session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    codec = build_codec(config)
    inputs = {"image": np.random.default_rng(0).uniform(-1, 1, (1, model.in_channels, size, size)).astype(np.float32),
              "center_map": codec.center_map(torch.full((1, 2), (size - 1) / 2)).numpy()}
    feed = {i.name: inputs[i.name] for i in session.get_inputs()}
    return timed(lambda: session.run(None, feed), seconds=seconds, device=torch.device("cpu"))


def machine_description(device: torch.device) -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as cpuinfo:
            name = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device.type == "cuda":
        name = f"{torch.cuda.get_device_name(device)} (host: {name})"
    native = ", native bf16" if cpu_has_native_bf16() else ""
    return (f"Machine: {name}, {os.cpu_count()} cores{native}, {torch.get_num_threads()} torch threads, "
            f"device {device}, torch {torch.__version__}")


def config_rows(config_path: str, *, device: torch.device, seconds: float, loader_steps: int) -> list[tuple[str, str]]:
    """The table rows of one config: its training step (plain and fast), the step's memory, the data pipeline, target
    encoding and decoding, and inference latency."""
    config = drop_missing_pose_files(load_config(config_path))
    name = Path(config_path).stem
    batch = 2 if config.data.input_size >= 256 else config.train.batch_size
    rows, fast_step, fast_rate = _step_rows(config, name, batch=batch, device=device, seconds=seconds)
    for fast in (False, True):
        memory = step_memory_in_new_process(config_path, batch=batch, device=device, fast=fast)
        label = fast_step.label if fast else "plain fp32 NCHW"
        where = "peak allocated" if device.type == "cuda" else "peak RSS"
        rows.append((f"memory, {name}, batch {batch}, {label}: {where} of a step over weights + inputs",
                     f"{memory / 2**20:.0f} MiB"))
    rows += _data_rows(config, config_path, name, fast_step, fast_rate, seconds=seconds, loader_steps=loader_steps)
    rows += _target_rows(config, name, fast_step, device=device, seconds=seconds)
    del fast_step
    return rows + _inference_rows(config, name, device=device, seconds=seconds)


def _step_rows(config: Config, name: str, *, batch: int, device: torch.device, seconds: float
               ) -> tuple[list[tuple[str, str]], TrainStep, float]:
    """The plain and fast training steps timed alternately with the convolution ceilings -> (rows, the fast step,
    its images per second)."""
    steps = {fast: TrainStep(config, batch=batch, device=device, fast=fast) for fast in (False, True)}
    flops = {fast: step.flops() for fast, step in steps.items()}  # also the first (warm-up) call
    # The ceilings are timed again in the same rotation, so each fraction compares figures of the same moments.
    timings = timed_alternately({**steps, "fp32": ceiling_conv(device, None), "fast": ceiling_conv(device, fast_dtype(
        device))}, seconds=seconds, device=device)
    seconds_per_step = {fast: timings[fast] for fast in steps}
    ceilings = {False: CEILING_FLOPS / timings["fp32"], True: CEILING_FLOPS / timings["fast"]}
    images_per_second = {fast: batch / s for fast, s in seconds_per_step.items()}
    title = f"{name} ({steps[True].parameters / 1e6:.2f}M params, {config.data.input_size} px, batch {batch})"
    rows = []
    for fast, step in steps.items():
        achieved = flops[fast] / seconds_per_step[fast]
        rows.append((f"train step, {title}, {step.label}",
                     f"{images_per_second[fast]:.2f} img/s, {achieved / 1e9:.0f} GFLOP/s "
                     f"({100 * achieved / ceilings[fast]:.0f} % of the ceiling timed alongside)"))
    speed_up = images_per_second[True] / images_per_second[False]
    rows.append((f"train step, {name}: speed-up over plain", f"{speed_up:.2f}x"))
    rows.append((f"train step, {name}: FLOPs per image (forward + backward)", f"{flops[True] / batch / 1e9:.1f} GFLOP"))
    return rows, steps[True], images_per_second[True]


def _data_rows(config: Config, config_path: str, name: str, fast_step: TrainStep, fast_rate: float, *,
               seconds: float, loader_steps: int) -> list[tuple[str, str]]:
    """One worker's samples per second against what the fast step consumes, the step time spent waiting for the
    DataLoader, and (synthetic frames) the steps fed with frames rendered alongside or ahead."""
    samples = data_rate(config, seconds=seconds)
    rows = [(f"data, {name}: render + crop + augment, one worker", f"{samples:.0f} samples/s"),
            (f"data, {name}: one worker / what the fast step consumes", f"{samples / fast_rate:.2f}x")]
    workers = resolve_workers(config.data.workers, fast_step.device)
    share, done, _ = loader_wait(config, fast_step, steps=loader_steps, seconds=4 * seconds)
    rows.append((f"data, {name}: step time waiting for data, DataLoader with {workers} worker"
                 f"{'s' if workers != 1 else ''}", f"{100 * share:.1f} % of {done} steps"))
    if config.data.source == "synthetic":  # the same steps, frames rendered alongside or ahead (data.prerender)
        samples_set = f"data.train_samples={(4 * loader_steps + 1) * fast_step.batch}"
        frames = drop_missing_pose_files(load_config(config_path, [samples_set]))
        rates = [loader_wait(frames, fast_step, steps=4 * loader_steps, seconds=8 * seconds, ahead=ahead)[2]
                 for ahead in (False, True)]
        rows.append((f"data, {name}: fast steps fed by the DataLoader ({workers} worker{'s' if workers != 1 else ''}),"
                     " frames rendered as they train / ahead on every core (data.prerender)",
                     f"{rates[0]:.1f} / {rates[1]:.1f} img/s ({rates[1] / rates[0]:.2f}x)"))
    return rows


def _target_rows(config: Config, name: str, fast_step: TrainStep, *, device: torch.device,
                 seconds: float) -> list[tuple[str, str]]:
    """Encoding a batch of random keypoints into targets and decoding the heatmaps (parabola)."""
    codec, batch, size = fast_step.codec, fast_step.batch, config.data.input_size
    keypoints = torch.rand(batch, fast_step.weights.shape[1], 3, device=device) * (size - 1)  # (B, K, 3)
    keypoints[..., 2] = 2
    encode_s = timed(lambda: codec.encode(keypoints), seconds=seconds / 3, device=device)
    heatmaps, _ = codec.encode(keypoints)
    decode_s = timed(lambda: codec.decode(heatmaps), seconds=seconds / 3, device=device)
    return [(f"targets, {name}: encode a batch of {batch}", f"{1e3 * encode_s:.2f} ms"),
            (f"decode (parabola), {name}: a batch of {batch}", f"{1e3 * decode_s:.2f} ms")]


def _inference_rows(config: Config, name: str, *, device: torch.device, seconds: float) -> list[tuple[str, str]]:
    """Latency of one frame, eager plain and fast, and through ONNX Runtime (fp32, CPU) where it is installed."""
    inference = {fast: TrainStep(config, batch=1, device=device, fast=fast) for fast in (False, True)}
    calls = {}
    for fast, step in inference.items():
        step.model.eval()

        def infer(step: TrainStep = step) -> None:
            with torch.no_grad(), autocast(device, step.dtype):
                step.model(step.image, step.center_map)

        calls[fast] = infer
    latency = timed_alternately(calls, seconds=seconds / 2, device=device)
    rows = [(f"inference, {name}, batch 1, eager {step.label}", f"{1e3 * latency[fast]:.1f} ms")
            for fast, step in inference.items()]
    onnx_seconds = onnx_latency(config, inference[False].model, seconds=seconds / 2)
    rows.append((f"inference, {name}, batch 1, ONNX Runtime fp32 (CPU)",
                 "onnx extra not installed" if onnx_seconds is None else f"{1e3 * onnx_seconds:.1f} ms"))
    return rows


def run(configs: list[str], *, seconds: float, device_name: str, loader_steps: int = 10) -> str:
    device = resolve_device(device_name)
    torch.manual_seed(0)
    rows: list[tuple[str, str]] = []
    ceilings = timed_alternately({"fp32": ceiling_conv(device, None), "fast": ceiling_conv(device, fast_dtype(device))},
                                 seconds=seconds, device=device)
    rows.append(("ceiling: 9x9 conv, fp32", f"{CEILING_FLOPS / ceilings['fp32'] / 1e9:.0f} GFLOP/s"))
    if fast_dtype(device) is not None:
        rows.append(("ceiling: 9x9 conv, bf16", f"{CEILING_FLOPS / ceilings['fast'] / 1e9:.0f} GFLOP/s"))
        # A convolution-bound step cannot gain more from bf16 than the convolution itself does.
        rows.append(("ceiling: bf16 / fp32, the bound on a conv-bound step's speed-up",
                     f"{ceilings['fp32'] / ceilings['fast']:.2f}x"))
    rows.append(("renderer: synthetic 256x212 depth frames, one core", f"{render_rate(seconds=seconds):.0f} frames/s"))
    for config_path in configs:
        rows += config_rows(config_path, device=device, seconds=seconds, loader_steps=loader_steps)
    lines = [machine_description(device), "", "| measurement | result |", "|---|---:|",
             *(f"| {a} | {b} |" for a, b in rows)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cpm.bench", description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", default=["experiments/default.toml"])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--loader-steps", type=int, default=10, help="steps of the DataLoader loop")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--memory-probe", action="store_true", help=argparse.SUPPRESS)  # step_memory, one config
    parser.add_argument("--batch", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--fast", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_probe:
        config = load_config(args.configs[0])
        print(step_memory(config, batch=args.batch, device=resolve_device(args.device), fast=args.fast))
        return
    print(run(args.configs, seconds=args.seconds, device_name=args.device, loader_steps=args.loader_steps))


if __name__ == "__main__":
    main()
