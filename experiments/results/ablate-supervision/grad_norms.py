"""Gradient norm of the main arm's T = 3 model over its first 240 steps, unclipped: the measurement behind
experiments/supervision.toml's grad_clip = 1.0 (median and largest of every 20 steps).

    python experiments/results/ablate-supervision/grad_norms.py true     # with intermediate supervision
"""

import sys

import torch

from cpm.config import load_config, resolve
from cpm.data.loader import make_loader
from cpm.data.synthetic.sources import drop_missing_pose_files
from cpm.runtime.batch import prepare_batch
from cpm.runtime.build import build_codec, build_datasets, build_loss, build_network, build_stage_weights
from cpm.training.optim import build_optimizer

torch.set_num_threads(1)
config = resolve(load_config("experiments/supervision.toml",
                             ["model.stages=3", f"train.intermediate_supervision={sys.argv[1]}"]))
device = torch.device("cpu")
torch.manual_seed(0)
model = build_network(config)
codec, loss_fn = build_codec(config), build_loss(config, model)
train_set, _ = build_datasets(drop_missing_pose_files(config))
loader = make_loader(train_set, batch_size=16, shuffle=True, workers=0, device=device, seed=0, drop_last=True)
optimizer, scheduler = build_optimizer(model, config, 10000)
stage_weights = build_stage_weights(config)
train_set.set_epoch(0)
loader.sampler.set_epoch(0)
norms = []
for i, batch in enumerate(loader):
    image, center_map, targets, weights = prepare_batch(batch, codec, device, False)
    losses = loss_fn(model(image, center_map), targets, weights, stage_weights)
    optimizer.zero_grad()
    losses["loss"].backward()
    norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))))
    optimizer.step()
    scheduler.step()
    if i % 20 == 19:
        last = sorted(norms[-20:])
        print(f"step {i + 1}: loss {float(losses['loss']):.4f}, grad norm median {last[10]:.4f}, max {last[-1]:.4f}")
    if i >= 239:
        break
