"""Per-layer gradient magnitudes by stage, with and without intermediate supervision (the paper's Fig. 5): early in
training as part of ``make ablate-supervision`` (`figure5`), and over a whole training run from the command line:

    python -m cpm.experiments.figure5 experiments/supervision.toml --stages 3 \
        --out experiments/results/ablate-supervision/figure5-supervision.json \
        --plot experiments/results/ablate-supervision/figure5-supervision.png

trains the config's full schedule four times (intermediate supervision on / off, under ``kaiming``, whose stage
output layers start at std 1e-3, and ``kaiming-all``, whose output layers are initialised like every other layer)
and records the mean |gradient| of every layer at the first step, the middle and the last. How much of the fall in
gradient at each stage boundary is depth, and how much the output layers' init, is the difference between the two.
Each finished run is written to the JSON at once; a run that is there is not trained again."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cpm.config import Config, config_from_dict
from cpm.errors import CPMError
from cpm.experiments.reports import stage_gradient
from cpm.experiments.runs import Cell, make_config
from cpm.io import write_text_atomic


def gradient_magnitudes(overrides: dict[str, Any] | Config, *, steps: int, record: Sequence[int]) -> dict:
    """Train a fresh model ``steps`` steps (fp32, CPU-friendly) and record, at the steps in ``record``, the mean
    |gradient| of every layer's weights, with the stage each layer belongs to (the paper's Fig. 5)."""
    import torch

    from cpm.data.loader import make_loader
    from cpm.data.synthetic.sources import drop_missing_pose_files
    from cpm.device import resolve_device
    from cpm.runtime.batch import prepare_batch
    from cpm.runtime.build import build_codec, build_datasets, build_loss, build_network, build_stage_weights
    from cpm.training.optim import build_optimizer
    from cpm.training.step import train_step

    config = overrides if isinstance(overrides, Config) else make_config(overrides)
    device = resolve_device(config.train.device)
    torch.manual_seed(config.train.seed)
    model = build_network(config).to(device)
    codec, loss_fn = build_codec(config), build_loss(config, model)
    train_set, _ = build_datasets(drop_missing_pose_files(config))
    loader = make_loader(train_set, batch_size=config.train.batch_size, shuffle=True, workers=0, device=device,
                         seed=config.train.seed, drop_last=True)
    optimizer, scheduler = build_optimizer(model, config, steps)
    scaler = torch.amp.GradScaler(device.type, enabled=False)
    stage_weights = build_stage_weights(config)
    layers = [(name, _stage_of(name)) for name, p in model.named_parameters() if p.ndim > 1]
    layers.sort(key=lambda layer: 1.5 if layer[1] == "trunk" else int(layer[1]))  # stable: input to output per stage
    parameters = dict(model.named_parameters())
    recorded: dict[str, list[float]] = {}
    step, epoch = 0, 0

    def record_gradients() -> None:
        if step + 1 in record:
            recorded[str(step + 1)] = [float(parameters[name].grad.abs().mean())
                                       if parameters[name].grad is not None else 0.0 for name, _ in layers]

    while step < steps:
        train_set.set_epoch(epoch)
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            image, center_map, targets, weights = prepare_batch(batch, codec, device, False)
            train_step(model, image, center_map, targets, weights, optimizer=optimizer, loss_fn=loss_fn,
                       stage_weights=stage_weights, device=device, scaler=scaler,
                       grad_clip=config.train.grad_clip, inspect=record_gradients)
            scheduler.step()
            step += 1
            if step >= steps:
                break
        epoch += 1
    return {"layers": [name for name, _ in layers], "stages": [stage for _, stage in layers], "steps": recorded}


def _stage_of(parameter: str) -> str:
    """The stage a CPM parameter belongs to: "1", "2", ... or "trunk" (the image trunk of stages 2..T)."""
    top, _, rest = parameter.partition(".")
    if top in ("image_features_stage1", "stage1"):
        return "1"
    if top in ("project", "stages"):
        return str(int(rest.partition(".")[0]) + 2)
    return "trunk"


def figure5_cell(cells: Sequence[Cell]) -> str | None:
    """The name of the cell whose config the Fig. 5 record follows: the deepest intermediate-supervision model of seed
    0 (SGD, not the AdamW pair); None when the grid has none."""
    deepest = [cell for cell in cells if cell.name.startswith("T") and cell.name.endswith("-is-seed0")
               and "adamw" not in cell.name]
    return max(deepest, key=lambda cell: cell.config.model.stages).name if deepest else None


def figure5(folder: Path, cells: Sequence[Cell], steps: int, *, device: str, log: Callable[[str], None]) -> Path | None:
    """``<folder>/figure5.json``: gradient records of the grid's deepest intermediate-supervision model (seed 0)
    with and without intermediate supervision, under its own ``model.init`` and under the other one (the
    output-layer init decides how much gradient crosses each stage boundary). Computed once."""
    path = folder / "figure5.json"
    name = figure5_cell(cells)
    if path.is_file() or name is None:
        return path if path.is_file() else None
    config = next(cell.config for cell in cells if cell.name == name)
    log(f"figure 5: gradient magnitudes of {config.model.stages} stages with and without intermediate supervision")
    record = sorted({1, max(1, steps // 2), steps})
    data = {}
    for init in (config.model.init, "kaiming" if config.model.init == "caffe" else "caffe"):
        data[init] = {}
        for label, supervised in (("with", True), ("without", False)):
            variant = config_from_dict(config.to_dict())
            variant.model.init, variant.train.intermediate_supervision = init, supervised
            variant.train.device = device
            data[init][label] = gradient_magnitudes(variant, steps=steps, record=record)
    write_text_atomic(path, json.dumps(data) + "\n")
    return path


def figure5_over_training(config: Config, out: Path, *, inits: Sequence[str] = ("kaiming", "kaiming-all"),
                          log: Callable[[str], None] = print) -> dict:
    """``out`` (JSON, as `figure5`'s: {init: {"with" | "without": record}}): ``config`` trained its whole schedule
    (``train.epochs`` x ``data.train_samples // train.batch_size`` steps) under each init, with and without
    intermediate supervision, recorded at the first step, the middle and the last. Runs already in ``out`` are
    kept; each new one is written as soon as it ends."""
    steps = config.train.epochs * (config.data.train_samples // config.train.batch_size)
    if steps < 1:
        raise CPMError(f"figure 5: {config.train.epochs} epochs of {config.data.train_samples} samples at batch "
                       f"{config.train.batch_size} is no training step")
    record = sorted({1, max(1, steps // 2), steps})
    data: dict = json.loads(out.read_text()) if out.is_file() else {}
    for init in inits:
        for label, supervised in (("with", True), ("without", False)):
            if label in data.get(init, {}):
                continue
            variant = config_from_dict(config.to_dict())
            variant.model.init, variant.train.intermediate_supervision = init, supervised
            log(f"figure 5: {init} init, {label} intermediate supervision, {steps} steps (records at {record})")
            data.setdefault(init, {})[label] = gradient_magnitudes(variant, steps=steps, record=record)
            data[init][label]["config"] = {"stages": variant.model.stages, "epochs": variant.train.epochs,
                                           "steps": steps}
            write_text_atomic(out, json.dumps(data) + "\n")
    return data


STAGE_ORDER = ("1", "trunk", "2", "3", "4", "5", "6")


def figure5_table(data: dict) -> str:
    """A Markdown table of ``data`` (`figure5_over_training`'s records): per init, with / without intermediate
    supervision and recorded step, the mean |gradient| of each stage's layer weights (the mean over the stage's
    layers; "trunk" the image trunk of stages 2..T), as the paper's Fig. 5 reads it stage by stage."""
    stages = sorted({stage for records in data.values() for record in records.values() for stage in record["stages"]},
                    key=lambda stage: STAGE_ORDER.index(stage) if stage in STAGE_ORDER else len(STAGE_ORDER))
    names = ["stage " + stage if stage != "trunk" else "trunk" for stage in stages]
    lines = [f"| init | IS | step | {' | '.join(names)} |", "|---|---|---:|" + "---:|" * len(stages)]
    for init, records in data.items():
        for label in ("with", "without"):
            record = records.get(label)
            for step in record["steps"] if record else ():
                means = [stage_gradient(record, step, stage) for stage in stages]
                cells = " | ".join("–" if mean is None else f"{mean:.2g}" for mean in means)
                lines.append(f"| {init} | {label} | {step} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from cpm.config import load_config, resolve

    parser = argparse.ArgumentParser(prog="python -m cpm.experiments.figure5", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--stages", type=int, default=None, help="model.stages (default the config's)")
    parser.add_argument("--out", type=Path, required=True, help="the records (JSON)")
    parser.add_argument("--plot", type=Path, default=None, help="a PNG of the records: one panel per init and step")
    parser.add_argument("--table", type=Path, default=None,
                        help="a Markdown table of the records: mean |gradient| per stage, init, IS and step")
    parser.add_argument("--inits", nargs="+", default=["kaiming", "kaiming-all"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        stages = [f"model.stages={args.stages}"] if args.stages else []
        config = resolve(load_config(args.config, [*args.overrides, *stages]))
        data = figure5_over_training(config, args.out, inits=args.inits)
    except CPMError as error:
        print(f"python -m cpm.experiments.figure5: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    if args.table is not None:
        write_text_atomic(args.table, figure5_table(data))
        print(f"wrote {args.table}")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from cpm.experiments.reports import gradient_sentence, plot_gradients

        plot_gradients(data, args.plot, plt)
        print(f"wrote {args.plot}")
        print(gradient_sentence(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
