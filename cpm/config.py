"""Typed configuration: dataclasses with defaults, TOML files, and ``--set section.key=value``.

A config file holds only what differs from the defaults::

    [model]
    stages = 6

    [train]
    intermediate_supervision = false

Unknown sections or keys, values of the wrong type and out-of-range values raise `ConfigError`,
whose message names the key. A key's accepted values are its field's `Literal`. Keys that moved to another section
are read under their new names (`MOVED_KEYS`, `migrate`). `validate` only checks; `resolve` (what `load_config` and
`config_from_dict` end with) sets the keys the head ignores to their defaults and registers a declared skeleton.
The networks take their `ModelConfig` (the ``[model]`` section), K and the two ``[targets]`` keys that shape them;
codecs and losses take plain keyword arguments.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomllib

from cpm.errors import ConfigError
from cpm.skeleton import SKELETONS, load_skeleton_file, register_skeleton, skeleton_from_table

# A key's choices are its field's `Literal` (`choices`, read by `validate` and by docs/configuration.md). The names of
# parts built elsewhere are these Literals: the tables that build them (`cpm.models.HEADS`,
# `cpm.models.backbones.BACKBONES`, `cpm.targets.losses.REGRESSION_LOSSES`, `cpm.models.pose_machine.INITS`,
# `cpm.data.dataset.INPUT_SCALES`) are checked against them where they are defined (`check_names`), and
# `cpm.targets.codecs.DECODERS` is the Literal's own tuple. Here, so that reading a config does not import torch.
Head = Literal["heatmap", "regression", "integral", "paf"]
Backbone = Literal["cpm", "vgg19", "vgg16", "fourconv"]
FIXED_STRIDES = {"vgg19": 8, "vgg16": 8, "fourconv": 2}  # the cpm trunk's stride follows model.trunk_widths
RegressionLoss = Literal["l2", "l1", "smooth_l1", "rle"]
Decoder = Literal["argmax", "quarter", "parabola", "bicubic", "dark", "soft_argmax"]
EvalDecoder = Literal[Decoder, "paper"]  # what eval.decoder accepts: a decoder, or the released CPM's testing
Init = Literal["kaiming", "kaiming-all", "caffe", "mmpose"]
InputScale = Literal["unit", "caffe", "imagenet"]
DepthEncoding = Literal["nearness8", "millimetres16", "metres32"]  # cpm.data.depth reads each
DEPTH_ENCODINGS: tuple[str, ...] = typing.get_args(DepthEncoding)
SYNTHETIC_DEPTH = ("nearness8", 0.5, 7.5)  # what the synthetic renderer makes (cpm.data.synthetic.zbuffer)


@dataclass
class DepthConfig:
    """How depth frames are stored (``data.depth``). The model always sees nearness gray: 255 at ``near`` metres,
    1 at ``far`` metres and beyond, 0 = no reading (the synthetic frames' convention); files in millimetres or
    metres are converted with ``near`` and ``far`` (`cpm.data.depth`)."""

    # nearness8: 8-bit gray, near = bright | millimetres16: 16-bit mm | metres32: float m
    encoding: DepthEncoding = "nearness8"
    near: float = 0.5  # metres shown as 255
    far: float = 7.5  # metres shown as 1 (farther readings too)


@dataclass
class PoseMixConfig:
    """The synthetic frames' pose sources and their shares (``data.pose_mix``), normalised to sum 1 and drawn per
    sample (`cpm.data.synthetic.sources.PoseMix`): one source alone is a weight of 1 (``{bvh = 1.0}``); all 0 (the
    default): the procedural prior alone."""

    procedural: float = 0.0  # the embedded prior
    bvh: float = 0.0  # motion capture of data.bvh_files
    bank: float = 0.0  # real 2D poses of data.bank_files, lifted to 3D


@dataclass
class DataConfig:
    """What the model trains and is scored on: the source of the samples, the held-out split, the crop fed to the
    model and its augmentation (``[data]``)."""

    # synthetic (the embedded depth renderer) | a reader in cpm.data.datasets: list, lsp, mpii, mpii_mat, flic, coco,
    # jhmdb, itop
    source: Literal["synthetic", "list", "lsp", "mpii", "mpii_mat", "flic", "coco", "jhmdb", "itop"] = "synthetic"
    root: str = ""  # dataset folder of a real source (make train DATA=...)
    annotations: str = ""  # annotation file inside root (lsp: joints.mat by default; itop: "labels.h5,depth.h5")
    val_annotations: str = ""  # held-out annotation file; empty: the last val_samples samples of annotations
    exclude: str = ""  # samples to leave out of a real dataset: `cpm data check` CSV or index / image lines
    # the procedural poses' prior: procedural (hand-set activity ranges) | fitted (joint angles fitted to K2HPD
    # train poses and the training mocap subjects, on the K2HPD bone lengths: cpm.data.synthetic.prior)
    pose_prior: Literal["procedural", "fitted"] = "procedural"
    # the synthetic poses' sources and shares, e.g. {procedural = 0.5, bvh = 0.25, bank = 0.25}, or one source alone,
    # e.g. {bvh = 1.0}; all 0: the procedural prior alone
    pose_mix: PoseMixConfig = field(default_factory=PoseMixConfig)
    bvh_files: str = ""  # pose_mix's bvh poses: a .bvh file or a folder of SUBJECT_CLIP.bvh clips
    bank_files: str = ""  # pose_mix's bank: an N x K x 2 keypoint .mat (the K2HPD train split for training) or .npy
    # the held-out split's bank: "" = the test split beside bank_files (k2hpd_keypoints_train.mat -> ..._test.mat)
    val_bank_files: str = ""
    # a mixture's bvh / bank files not there when a run starts: "error", or "procedural": their weight goes to the
    # procedural prior (said in one line; the run's config.toml holds the mixture it drew), so that a config with
    # real motion trains on a machine without the data too
    missing_pose_files: Literal["error", "procedural"] = "error"
    # bvh clips read: train | held_out (subject numbers ending in 1 or 6) | all
    bvh_subjects: Literal["train", "held_out", "all"] = "train"
    skeleton: str = "itop15"  # a built-in skeleton, the name of the [skeleton] table, or a TOML file declaring one
    depth: DepthConfig = field(default_factory=DepthConfig)  # {encoding, near, far} of depth frames
    seed: int = 0  # training samples are a pure function of (seed, index, epoch)
    train_samples: int = 20000  # samples per epoch; each epoch renders new ones (every render_epochs epochs)
    # synthetic data: each rendered frame trains this many consecutive epochs, newly augmented each time; a DataLoader
    # process keeps the frames it rendered for the next epochs of their block (up to train_samples of them)
    render_epochs: int = 1
    # synthetic data: render each block's frames (train_samples of them) with a process per CPU core before the
    # block's first epoch, and keep them in memory for its render_epochs epochs, instead of rendering them in the
    # DataLoader worker while the training threads use the same cores. The frames are the same either way.
    prerender: bool = False
    val_seed: int = 1000  # a different seed keeps the held-out split disjoint from training
    val_samples: int = 500  # held-out samples: frames rendered from val_seed, or the last N of a real dataset
    input_size: int = 128  # side of the square crop fed to the model, pixels
    # progressive resizing: the crop side of each training epoch (e.g. [96, 128, 128]; the last one goes on for any
    # later epoch); empty: input_size every epoch. The held-out split is always scored at input_size.
    epoch_input_sizes: list[int] = field(default_factory=list)
    crop_padding: float = 1.3  # crop side = crop_padding * person extent (joints' bounding box)
    # what a crop is centred on and sized by: keypoints (the labeled joints' bounding box) | box (the annotated person
    # box of a COCO file, as top-down evaluation on boxes crops; people without a box fall back to their keypoints)
    crop_around: Literal["keypoints", "box"] = "keypoints"
    scale_range: list[float] = field(default_factory=lambda: [0.8, 1.2])  # [low, high] random scale of training crops
    rotation: float = 30.0  # degrees, uniform in [-rotation, rotation]
    flip: bool = True  # mirror with probability 0.5 (left and right joints swap)
    shift: float = 0.08  # centre jitter as a fraction of the crop side
    occlusion: float = 0.0  # probability of a random occluding rectangle per training crop (covered joints: v = 1)
    # synthetic training frames: shares of [frontal, side, back] views where the renderer draws the view's yaw (its
    # procedural poses and the mocap clips; frontal |yaw| < 40, side 40-90, back 90-270 degrees). The default is
    # the Kinect-style mostly frontal capture.
    train_views: list[float] = field(default_factory=lambda: [0.85, 0.12, 0.03])
    # the same shares for the synthetic held-out split (e.g. [0, 0, 1]: back views only, to score them alone)
    val_views: list[float] = field(default_factory=lambda: [0.85, 0.12, 0.03])
    # synthetic bodies with front/back cues: a nose, a chest in front and buttocks behind (front-back symmetric
    # capsules without them, but for the feet); training and held-out frames alike
    body_cues: bool = False
    workers: int = -1  # DataLoader workers; -1: 1 on a CPU (the cores train), the CPU cores (up to 8) on CUDA
    input_scale: InputScale = "unit"  # pixels -> model input: unit (p/255 - 0.5)/0.5 | caffe (p - 128)/256 | imagenet
    # pixel value (0-255, every channel) of crop pixels outside the image, in training, evaluation and prediction
    # crops; the released CPM fills with 128, 0 after (p - 128) / 256 (testing/config.m's padValue, its data
    # transformer)
    pad_value: float = 0.0


@dataclass
class ModelConfig:
    """The network (``[model]``): its head, trunk, stages and their sizes (`cpm.models.build_model` builds every
    variant from this section and the two keys of ``[targets]`` that shape its outputs and inputs: the background
    channel and the centre map's resolution)."""

    # heatmap (CPM belief maps) | regression (FC to K x 2) | integral (soft-argmax of each stage) | paf (bottom-up:
    # each stage predicts the joints' confidence maps and the limbs' part affinity fields of every person in the image)
    head: Head = "heatmap"
    # coordinate loss of the regression and integral heads: l2 | l1 | smooth_l1 | rle (regression head only: RLE's
    # likelihood with a learned residual flow, Li et al. 2021; the head then also outputs a scale per joint)
    regression_loss: RegressionLoss = "l2"
    regression_hidden: int = 256  # regression head: width of the hidden fully connected layer
    regression_pool: int = 4  # regression head: features average-pooled to N x N, then flattened (1 = global pool)
    # regression head's features: "backbone" (the trunk alone) or "stage1" (the trunk and stage 1 of the heatmap
    # model up to its last layer, so that the two heads differ only in that layer and the loss)
    regression_features: Literal["backbone", "stage1"] = "backbone"
    stages: int = 4  # T: stage 1 and T - 1 refinement stages, each predicting belief maps
    in_channels: int = 1  # 3 for RGB models; grayscale frames are replicated to fit
    backbone: Backbone = "cpm"  # image trunk: cpm (two trunks, Fig. 2) | vgg19 | vgg16 | fourconv (one shared trunk)
    backbone_weights: str = ""  # torchvision vgg16/vgg19 ImageNet state dict file, loaded when a run starts
    vgg_cpm_widths: list[int] = field(default_factory=lambda: [256, 128])  # 3x3 convs after a VGG trunk
    trunk_widths: list[int] = field(default_factory=lambda: [16, 32, 64])  # per pooling level (128s in the paper)
    trunk_kernel: int = 5  # kernel of the image trunks' convolutions (9 in the paper)
    shared_trunk: bool = False  # cpm backbone: one image trunk feeds stage 1 and the refinement stages (not two)
    caffe_pooling: bool = False  # trunk max-pools without padding, ceil mode, as the released Caffe nets
    trunk_strided_levels: int = 0  # cpm trunk: its first N levels a stride-2 conv instead of conv + 3x3/2 max-pool
    feature_channels: int = 32  # per-stage projection of the shared features (5x5 conv 32 in the paper)
    stage1_width: int = 128  # stage 1's wide layers (512 in the paper)
    stage1_kernel: int = 7  # stage 1's large kernel (9 in the paper)
    stage1_layers: int = 1  # large-kernel convs in stage 1's head (0 in the VGG MPII model)
    stage_width: int = 64  # channels of the refinement stages' convolutions (128 in the paper)
    stage_kernel: int = 7  # kernel of the refinement stages (11 in the paper)
    stage_layers: int = 3  # large-kernel convs per refinement stage
    # refinement stages' large-kernel convs as depthwise kxk + pointwise 1x1 (same receptive field, ~k^2 fewer MACs)
    stage_separable: bool = False
    stride: int = 8  # input pixels per belief-map cell (the cpm trunk pools log2(stride) times)
    center_map: bool = True  # every stage also reads a Gaussian at the person's centre (the paper's centre map)
    batch_norm: bool = False  # batch norm after every convolution but the output layers
    dropout: float = 0.0  # dropout probability in stage 1's wide layers and the regression head (0.5 in the paper)
    # kaiming (He fan-in; each stage's output layer Gaussian std 1e-3, so beliefs start near zero) | kaiming-all (He
    # fan-in for the output layers too) | caffe (Gaussian std 0.01 everywhere, the released prototxts' filler) | mmpose
    init: Init = "kaiming"
    checkpoint_stages: bool = False  # recompute refinement stages in backward (less memory, ~1 more forward)
    beliefs_first: bool = False  # stages concatenate [beliefs, features, centre] (released VGG MPII net, mmpose)


@dataclass
class TargetsConfig:
    """What the heatmap head learns (``[targets]``): the Gaussian belief maps and the centre map that
    `cpm.targets.codecs.HeatmapCodec` makes from the keypoints (`cpm.runtime.build.build_codec`), which joints and
    people they hold, and the background channel. The network reads ``background`` (K + 1 output maps) and
    ``center_pool`` (the centre map it takes) too. The coordinate heads learn coordinates, not these maps: their
    codec reads the centre map's keys alone."""

    sigma: float = 1.0  # Gaussian target sigma, heatmap cells
    center_sigma: float = 2.5  # centre map sigma, heatmap cells
    background: bool = True  # one more belief channel, 1 - max over the joints (K + 1 maps)
    center_pool: bool = False  # centre map made at input resolution, avg-pooled (s+1)/s by the model (Caffe)
    # unlabeled / out-of-crop joints: ignore (weight 0) | zero (trained toward 0, Caffe)
    missing_joints: Literal["ignore", "zero"] = "ignore"
    cutoff: float = 0.0  # Gaussian target values below this become 0 (Caffe: 0.01)
    stage1_all_people: bool = False  # stage 1 learns every person in the crop, later stages the centred one (Caffe)
    limb_width: float = 1.0  # paf head: half-width of a limb's field, heatmap cells (the paper's sigma_l)


@dataclass
class TrainConfig:
    """How a run trains (``[train]``): where it writes, its length, optimiser and schedule, supervision, precision
    and device, seeds and checkpoints."""

    name: str = "default"  # run folder <runs_dir>/<name>; a name in use gets -2, -3, ... (nothing is overwritten)
    runs_dir: str = "runs"  # folder that holds the run folders
    epochs: int = 8  # passes over data.train_samples samples
    batch_size: int = 32  # global batch: split evenly over the processes of a torchrun run
    optimizer: Literal["adamw", "sgd"] = "adamw"  # adamw | sgd (with momentum, as the released Caffe solvers)
    lr: float = 2e-3  # peak learning rate, reached at the end of the warm-up
    weight_decay: float = 1e-4  # AdamW's decoupled decay, or SGD's L2 penalty
    momentum: float = 0.9  # SGD only
    caffe_lr: bool = False  # lr, weight_decay in Caffe's units (EuclideanLoss = sum / 2N), converted for our mean loss
    stage1_lr_mult: float = 1.0  # lr multiplier of stage 1 and its trunk (5 in the released LSP net)
    refinement_lr_mult: float = 1.0  # lr multiplier of the rest (4 in the released VGG MPII net)
    bias_lr_mult: float = 1.0  # biases' lr over their weights' (2 in every released net)
    # after the warm-up: cosine to zero | linear to zero | step | constant
    schedule: Literal["cosine", "linear", "step", "constant"] = "cosine"
    lr_step_size: int = 0  # step schedule: x0.333 every N steps (Caffe's stepsize); 0 = at 1/2 and 3/4
    warmup_steps: int = 100  # steps of linear warm-up to lr
    intermediate_supervision: bool = True  # every stage's loss counts (false: the last stage's alone)
    stage_weights: list[float] = field(default_factory=list)  # overrides intermediate_supervision
    trainable_stages: list[int] = field(default_factory=list)  # stages whose parameters train; empty = all
    init_from: str = ""  # checkpoint whose weights (matching names and shapes) start the run: stage-wise training
    # auto: bf16 on CUDA and on CPUs with native bf16, else off | bf16 | fp16 | off
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    channels_last: bool = True  # channels-last memory layout of the model and its inputs
    compile: bool = False  # torch.compile the model (inductor); the first steps then take minutes
    device: str = "auto"  # auto (cuda, then mps, then cpu) | cpu | cuda | cuda:N | mps
    seed: int = 0  # the weights' init and the order of the training samples
    deterministic: bool = False  # deterministic algorithms (bit-for-bit repeatable runs and resumes on a CPU)
    log_every: int = 25  # steps between loss reads (each read syncs the device)
    checkpoint_every: int = 0  # steps between mid-epoch last.pt writes (atomic); 0 = after every epoch only
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    # exponential moving average of the weights, per step (e.g. 0.998); 0 = off. The average is what each evaluation
    # scores and what checkpoints hold as "model" (best.pt, cpm eval, predict, export); training goes on from the raw
    # weights ("raw_model"). The decay ramps up as min(ema, (1 + step) / (10 + step)), so early averages follow.
    ema: float = 0.0
    threads: int = 0  # torch intra-op threads; 0 = torch's default
    lr_gamma: float = 0.333  # step schedule: the factor of each decay (Caffe's gamma; mmpose's 0.1)
    lr_milestones: list[float] = field(default_factory=list)  # step schedule: decay at these epochs (mmpose [170, 200])
    # what best.pt is chosen by: "pck@A" (final stage, maximised) or "loss" (minimised); "" = pck@0.2, else the first
    # A (a paf model: loss)
    best_metric: str = ""


@dataclass
class EvalConfig:
    """How belief maps become keypoints and how they are scored, in training's evaluations, ``cpm eval`` and
    ``cpm predict`` (``[eval]``)."""

    decoder: EvalDecoder = "parabola"  # one of cpm.targets.codecs.EVAL_DECODERS ("paper": the released CPM's testing)
    pck_thresholds: list[float] = field(default_factory=lambda: [0.1, 0.2])  # PCK@A thresholds, fractions of the torso
    batch_size: int = 64  # held-out samples per evaluation batch
    scales: list[float] = field(default_factory=lambda: [1.0])  # cpm eval / predict: maps averaged over these crops
    # what cpm eval crops a held-out sample around (its scale 1 of eval.scales): person (as training: the person's
    # centre, side data.crop_padding x its extent) | image (the LSP benchmark, run_benchmark.m: the image centre, side
    # image height / eval.image_fraction) | annotated (the MPII benchmark: the annotated objpos, side
    # data.crop_padding x 200 x the annotated scale; data.source mpii or mpii_mat)
    crop: Literal["person", "image", "annotated"] = "person"
    image_fraction: float = 0.8  # eval.crop = "image": the image height as a fraction of the crop side
    # the crop and its mirror: the mirror's maps flipped back, left / right channels swapped, averaged before decoding
    flip_test: bool = False
    oks_nms: float = 0.9  # top-down on boxes: of two people of one image with OKS above this, the lower-scored goes


@dataclass
class SkeletonConfig:
    """Your own skeleton, by joint name (`cpm.skeleton.skeleton_from_table`); empty: none declared."""

    name: str = ""  # what data.skeleton, checkpoints and predictions call it
    joints: list[str] = field(default_factory=list)  # joint names in the order of the keypoints in the files
    flip_pairs: list[list[str]] = field(default_factory=list)  # [[left_x, right_x], ...]: swapped by a flip
    limbs: list[list[str]] = field(default_factory=list)  # drawn by cpm.viz
    torso: list[str] = field(default_factory=list)  # the two joints whose distance normalises PCK
    to_itop15: list[list[str]] = field(default_factory=list)  # optional [[ITOP-15 joint, this skeleton's joint]]
    # per-joint OKS sigmas of COCO keypoint AP, in the order of joints; empty: by joint name (cpm.skeleton.oks_sigmas)
    oks_sigmas: list[float] = field(default_factory=list)

    def declared(self) -> bool:
        return self != SkeletonConfig()


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    targets: TargetsConfig = field(default_factory=TargetsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    skeleton: SkeletonConfig = field(default_factory=SkeletonConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        table = dataclasses.asdict(self)
        if not self.skeleton.declared():  # written only where a config declares its own skeleton
            del table["skeleton"]
        return table

    def to_toml(self) -> str:
        lines: list[str] = []
        for section, values in self.to_dict().items():
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {toml_value(value)}" for key, value in values.items())
            lines.append("")
        return "\n".join(lines)


def choices(annotation: Any) -> tuple[Any, ...]:
    """The values a field of type ``annotation`` accepts: its `Literal`'s (() for any other type)."""
    return typing.get_args(annotation) if typing.get_origin(annotation) is Literal else ()


def check_names(names: typing.Iterable[str], accepted: Any, key: str) -> None:
    """Where a table builds the parts a key names (`cpm.models.HEADS` for ``model.head``): its ``names`` must be the
    ``accepted`` Literal's, or TypeError naming the key and the difference (a name added to one and not the other)."""
    built, named = set(names), set(typing.get_args(accepted))
    if built != named:
        raise TypeError(f"{key}: the config accepts {sorted(named)}, its table builds {sorted(built)}; give a new name "
                        "to both (cpm/config.py's Literal and the table)")


# (minimum, maximum), inclusive; None = unbounded
RANGES = {
    "data.train_samples": (1, None), "data.render_epochs": (1, None), "data.val_samples": (1, None),
    "data.input_size": (16, None),
    "data.crop_padding": (0.5, None), "data.rotation": (0, 180), "data.shift": (0, 1),
    "data.occlusion": (0, 1), "data.workers": (-1, None),
    "model.stages": (1, 6), "model.stage_width": (1, None),
    "model.trunk_kernel": (1, None),
    "model.trunk_strided_levels": (0, None), "model.stage1_width": (1, None), "model.stage1_kernel": (1, None),
    "model.feature_channels": (0, None), "model.stage_kernel": (1, None), "model.stage_layers": (1, None),
    "model.in_channels": (1, None), "model.stage1_layers": (0, None),
    "model.stride": (1, 64), "model.dropout": (0, 0.99), "targets.sigma": (1e-3, None),
    "targets.center_sigma": (1e-3, None), "model.regression_hidden": (0, None), "model.regression_pool": (1, None),
    "train.epochs": (1, None), "train.batch_size": (1, None), "train.lr": (0, None),
    "train.weight_decay": (0, None), "train.momentum": (0, 1), "train.warmup_steps": (0, None),
    "train.log_every": (1, None), "train.checkpoint_every": (0, None),
    "train.grad_clip": (0, None), "train.threads": (0, None), "train.ema": (0, 0.999999),
    "train.stage1_lr_mult": (0, None), "train.refinement_lr_mult": (0, None), "train.bias_lr_mult": (0, None),
    "train.lr_step_size": (0, None), "train.lr_gamma": (0, 1), "targets.cutoff": (0, 0.99),
    "targets.limb_width": (1e-3, None),
    "eval.batch_size": (1, None), "data.pad_value": (0, 255), "eval.image_fraction": (1e-3, None),
}


def toml_value(value: Any) -> str:
    """A Python value as TOML writes it (also the value of a ``--set key=value``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table: data.depth = {encoding = "nearness8", near = 0.5, far = 7.5}
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check ``value`` against a field annotation; ints are accepted where floats are expected, a `Literal` takes
    the type of its choices (which of them, `validate` checks)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        annotation = type(typing.get_args(annotation)[0])
    if origin is list:
        (item_type,) = typing.get_args(annotation)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"{key}: union annotations are not supported")
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if annotation is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if not isinstance(value, annotation):
        raise ConfigError(f"{key}: expected {annotation.__name__}, got {value!r}")
    return value


def _section_types(section: Any) -> dict[str, Any]:
    return typing.get_type_hints(type(section))


# Keys that moved, by their old dotted name: a config file, a --set, a saved config (a checkpoint, a run folder's
# config.toml, a committed cell summary) or an experiment's override that names the old key sets the new one
# (`migrate`). A cell's hash is taken over the old names (`cpm.experiments.runs.config_hash`), so that no committed
# cell changes its hash when a key moves.
MOVED_KEYS = {
    "model.sigma": "targets.sigma",
    "model.center_sigma": "targets.center_sigma",
    "model.background": "targets.background",
    "model.center_pool": "targets.center_pool",
    "train.missing_joints": "targets.missing_joints",
    "train.target_cutoff": "targets.cutoff",
    "train.stage1_all_people": "targets.stage1_all_people",
}


def migrate(table: dict[str, Any], *, source: str = "", log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """``table`` ({section: {key: value}}, as a config file, a --set or a saved config gives it) in today's layout:
    each key of `MOVED_KEYS` under its new name and the retired one-source keys as a ``data.pose_mix``
    (`_migrate_pose_source`), said to ``log`` in one line per key (the command line says it; a saved config moves
    silently). A key given under both names with two values is a `ConfigError` naming both. ``table`` itself is not
    changed."""
    where = f"{source}: " if source else ""
    moved = {section: dict(values) if isinstance(values, dict) else values for section, values in table.items()}
    for old, new in MOVED_KEYS.items():
        (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
        values = moved.get(old_section)
        if not isinstance(values, dict) or old_key not in values:
            continue
        value = values.pop(old_key)
        target = moved.setdefault(new_section, {})
        if not isinstance(target, dict):
            continue  # `apply` names a section that is not a table
        if new_key in target and target[new_key] != value:
            raise ConfigError(f"{where}{old} = {toml_value(value)} and {new} = {toml_value(target[new_key])}: "
                              f"{old} is {new} now; give it once")
        target[new_key] = value
        if log is not None:
            log(f"{where}{old} is {new} now (read as {new} = {toml_value(value)})")
    data = moved.get("data")
    if isinstance(data, dict) and ("pose_source" in data or "pose_files" in data):
        _migrate_pose_source(data, where, log)
    return moved


def _migrate_pose_source(data: dict[str, Any], where: str, log: Callable[[str], None] | None) -> None:
    """The retired ``data.pose_source`` / ``data.pose_files`` (one pose source alone) of a ``[data]`` table, in
    place: bvh or bank is a ``data.pose_mix`` of weight 1 with its files in ``data.bvh_files`` or
    ``data.bank_files`` (a bank's held-out split is that bank, ``data.val_bank_files``, as the one source's was;
    bvh clips are split by subject, as a mixture's are); procedural is the default mixture (a saved config's
    ``pose_files`` beside it was read by nothing). Files without their source are an error: which source they
    belong to is not said."""
    if "pose_source" not in data:
        if data.pop("pose_files"):
            raise ConfigError(f"{where}data.pose_files is retired: name the files in data.bvh_files or "
                              "data.bank_files, and the source in data.pose_mix (e.g. {bvh = 1.0})")
        return
    kind, files = data.pop("pose_source"), data.pop("pose_files", "")
    if kind == "procedural":
        return
    if kind not in ("bvh", "bank"):
        raise ConfigError(f"{where}data.pose_source: {kind!r} is not one of procedural, bvh, bank")
    mix = data.get("pose_mix", {})
    if not files or (isinstance(mix, dict) and any(mix.values())) or data.get(f"{kind}_files", files) != files:
        raise ConfigError(f"{where}data.pose_source = {toml_value(kind)} is retired: one source alone is "
                          f"data.pose_mix = {{{kind} = 1.0}} with its files in data.{kind}_files")
    data["pose_mix"] = {"procedural": 0.0, "bvh": 0.0, "bank": 0.0} | {kind: 1.0}
    data[f"{kind}_files"] = files
    if kind == "bank":
        data.setdefault("val_bank_files", files)
    if log is not None:
        held_out = (f", and data.val_bank_files = {toml_value(files)}" if kind == "bank" else
                    "; the held-out split draws the clips' held-out subjects (data.bvh_subjects)")
        log(f"{where}data.pose_source = {toml_value(kind)} is retired (read as data.pose_mix = {{{kind} = 1.0}}, "
            f"data.{kind}_files = {toml_value(files)}{held_out})")


def apply(config: Config, overrides: dict[str, Any], *, source: str = "",
          log: Callable[[str], None] | None = None) -> Config:
    """Set ``{"section": {"key": value}}`` on ``config`` in place, checking names and types; keys that moved are
    read under their new names (`migrate`, which says so to ``log``)."""
    where = f"{source}: " if source else ""
    overrides = migrate(overrides, source=source, log=log)
    for section_name, values in overrides.items():
        section = getattr(config, section_name, None) if section_name in Config.__dataclass_fields__ else None
        if section is None:
            known = ", ".join(Config.__dataclass_fields__)
            raise ConfigError(f"{where}unknown config section [{section_name}] (known: {known})")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}{section_name}: expected a table of settings, got {values!r}")
        types_ = _section_types(section)
        for key, value in values.items():
            name, dot, sub = key.partition(".")  # --set data.depth.encoding=... names a key of a table
            if name not in types_ or (dot and not dataclasses.is_dataclass(types_[name])):
                raise ConfigError(f"{where}unknown config key {section_name}.{key}")
            if dataclasses.is_dataclass(types_[name]):
                table = {sub: value} if dot else value
                setattr(section, name, _apply_table(getattr(section, name), table, f"{section_name}.{name}", where))
                continue
            setattr(section, key, _coerce(value, types_[key], f"{where}{section_name}.{key}"))
    return config


def _apply_table(current: Any, table: Any, name: str, where: str) -> Any:
    """A copy of the dataclass ``current`` (a table inside a section, such as ``data.depth``) with the keys of
    ``table`` set; other keys keep their values."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}{name}: expected a table such as {toml_value(dataclasses.asdict(current))}, "
                          f"got {table!r}")
    updated = dataclasses.replace(current)
    types_ = typing.get_type_hints(type(current))
    for key, value in table.items():
        if key not in types_:
            raise ConfigError(f"{where}unknown config key {name}.{key} (known: {', '.join(types_)})")
        setattr(updated, key, _coerce(value, types_[key], f"{where}{name}.{key}"))
    return updated


def validate(config: Config) -> Config:
    """``config`` checked, or the first `ConfigError` naming the key: every value (finite, one of its choices, in
    its range), then the data, model, training and evaluation settings against each other, the depth encoding, the
    skeleton, the best-checkpoint metric, and the keys the head ignores (at their defaults, as `resolve` sets
    them). Pure: ``config`` comes back unchanged, no file is read and no skeleton registered."""
    _validate_values(config)
    _validate_data(config.data)
    _validate_model(config.data, config.model)
    _validate_train_and_eval(config)
    _validate_depth(config.data)
    _validate_skeleton(config)
    _validate_paf(config)
    best_metric(config)  # a metric that is measured
    ignored = _ignored_key_set(config, IGNORED_BY_HEAD[config.model.head])
    if ignored:
        raise ConfigError(f"{ignored}: the {config.model.head} head ignores it (model.head = "
                          f"{config.model.head!r}); leave it at its default (cpm.config.resolve sets it back)")
    return config


def resolve(config: Config) -> Config:
    """``config`` as every entry point runs it, changed in place and returned: the keys its head ignores set back to
    their defaults (`IGNORED_BY_HEAD`: two configs of one model are one config, with one hash), ``data.skeleton``
    naming the skeleton its ``[skeleton]`` table declares; then `validate`d, and the declared skeleton made known to
    `cpm.skeleton.get_skeleton` (`cpm.skeleton.register_skeleton`). `load_config`, `config_from_dict` and the
    experiment grids build their configs with it. A value that is bad alone is an error even where the head ignores
    it."""
    _validate_values(config)
    for key in IGNORED_BY_HEAD.get(config.model.head, ()):
        section, _, name = key.partition(".")
        setattr(getattr(config, section), name, getattr(_DEFAULTS[section], name))
    if config.skeleton.declared() and config.data.skeleton == DataConfig.skeleton:  # the declared one is trained
        config.data.skeleton = config.skeleton.name
    validate(config)
    if config.skeleton.declared():
        register_skeleton(skeleton_from_table(dataclasses.asdict(config.skeleton), "skeleton"))
    return config


def _validate_values(config: Config) -> None:
    """Each value alone: finite numbers, one of its field's `choices` (in the tables inside a section too, such as
    data.depth), within `RANGES`."""
    for section_name in Config.__dataclass_fields__:
        section = getattr(config, section_name)
        for key, annotation in _section_types(section).items():
            name, value = f"{section_name}.{key}", getattr(section, key)
            tables = [(f"{name}.{k}", getattr(value, k), a) for k, a in _section_types(value).items()] \
                if dataclasses.is_dataclass(value) else [(name, value, annotation)]
            for dotted, item, accepted in tables:
                if choices(accepted) and item not in choices(accepted):
                    raise ConfigError(f"{dotted}: {item!r} is not one of {', '.join(choices(accepted))}")
            numbers = value if isinstance(value, list) else [value]
            if any(isinstance(v, float) and not math.isfinite(v) for v in numbers):
                raise ConfigError(f"{name}: {value!r} is not a finite number")
            if name in RANGES:
                low, high = RANGES[name]
                if (low is not None and value < low) or (high is not None and value > high):
                    bounds = f">= {low}" if high is None else f"in [{low}, {high}]"
                    raise ConfigError(f"{name}: {value!r} must be {bounds}")


def _validate_data(data: DataConfig) -> None:
    """``[data]``: augmentation scales, what a real dataset needs, what only synthetic frames have, pose sources."""
    for key in ("train_views", "val_views"):
        views = getattr(data, key)
        if (len(views) != 3 or not all(math.isfinite(v) and v >= 0 for v in views)
                or abs(sum(views) - 1.0) > 1e-6):
            raise ConfigError(f"data.{key}: expected [frontal, side, back] shares >= 0 that sum to 1, got {views}")
    if len(data.scale_range) != 2 or not 0 < data.scale_range[0] <= data.scale_range[1]:
        raise ConfigError(f"data.scale_range: expected [low, high] with 0 < low <= high, got {data.scale_range}")
    if data.source != "synthetic" and not data.root:
        raise ConfigError(f"data.root: data.source = {data.source!r} needs the dataset folder (make train DATA=...)")
    if data.source in ("list", "mpii", "mpii_mat", "flic", "coco", "itop") and not data.annotations:
        raise ConfigError(f"data.annotations: data.source = {data.source!r} needs the annotation file in data.root")
    if data.exclude and data.source == "synthetic":
        raise ConfigError("data.exclude: leaves samples out of a real dataset; data.source = 'synthetic' has none")
    if data.render_epochs != 1 and data.source != "synthetic":
        raise ConfigError(f"data.render_epochs: reuses rendered frames; data.source = {data.source!r} renders none "
                          "(its images are read every epoch)")
    if data.prerender and data.source != "synthetic":
        raise ConfigError(f"data.prerender: renders synthetic frames ahead; data.source = {data.source!r} renders "
                          "none (its images are read every epoch)")
    _validate_pose_mix(data)


def _validate_model(data: DataConfig, model: ModelConfig) -> None:
    """``[model]``: crop sizes that the stride divides, a trunk per backbone, widths, what each backbone and head
    has."""
    if data.input_size % model.stride:
        raise ConfigError(f"data.input_size: {data.input_size} is not a multiple of model.stride = {model.stride}")
    for size in data.epoch_input_sizes:
        if size < 16 or size % model.stride:
            raise ConfigError(f"data.epoch_input_sizes: {size} is not a multiple of model.stride = {model.stride} "
                              "of at least 16")
    if model.backbone == "cpm":
        levels = model.stride.bit_length() - 1
        if len(model.trunk_widths) != levels or 2**levels != model.stride:
            raise ConfigError(
                f"model.trunk_widths: need one width per pooling level, log2(model.stride = {model.stride})"
            )
    elif model.stride != FIXED_STRIDES[model.backbone]:
        raise ConfigError(f"model.stride: the {model.backbone} backbone has stride {FIXED_STRIDES[model.backbone]}, "
                          f"not {model.stride}")
    if model.trunk_strided_levels and (model.backbone != "cpm" or model.trunk_strided_levels > len(model.trunk_widths)):
        raise ConfigError(f"model.trunk_strided_levels: {model.trunk_strided_levels} strided levels need the cpm "
                          f"backbone with at least as many trunk levels (model.trunk_widths: {model.trunk_widths})")
    if any(w < 1 for w in [*model.trunk_widths, *model.vgg_cpm_widths]):
        raise ConfigError("model.trunk_widths, model.vgg_cpm_widths: widths must be >= 1")
    if model.shared_trunk and model.backbone != "cpm":
        raise ConfigError(f"model.shared_trunk: only the cpm backbone has two trunks to share; the "
                          f"{model.backbone} backbone has one")
    if model.regression_loss == "rle" and model.head == "integral":
        raise ConfigError("model.regression_loss: rle needs the scale that only the regression head outputs")
    if model.backbone_weights and model.backbone not in ("vgg16", "vgg19"):
        raise ConfigError(f"model.backbone_weights: only vgg16 and vgg19 load weights, not {model.backbone!r}")


def _validate_train_and_eval(config: Config) -> None:
    """``[train]`` and ``[eval]``: stage weights and trainable stages of the model's stages, thresholds, scales,
    crops and learning-rate milestones."""
    data, train = config.data, config.train
    stages = output_stages(config)
    if train.stage_weights and len(train.stage_weights) != stages:
        raise ConfigError(
            f"train.stage_weights: {len(train.stage_weights)} weights given for {stages} stages"
        )
    if any(w < 0 for w in train.stage_weights):
        raise ConfigError("train.stage_weights: weights must be >= 0")
    if any(not 1 <= t <= stages for t in train.trainable_stages):
        raise ConfigError(f"train.trainable_stages: {train.trainable_stages} names a stage outside 1..{stages}")
    if any(not 0 < a <= 1 for a in config.eval.pck_thresholds) or not config.eval.pck_thresholds:
        raise ConfigError("eval.pck_thresholds: expected a non-empty list of values in (0, 1]")
    if not config.eval.scales or any(s <= 0 for s in config.eval.scales):
        raise ConfigError(f"eval.scales: expected a non-empty list of crop scales > 0, got {config.eval.scales}")
    if config.eval.crop == "annotated" and data.source not in ("mpii", "mpii_mat"):
        raise ConfigError(f"eval.crop: 'annotated' crops around MPII's objpos and scale; data.source = "
                          f"{data.source!r} has none")
    if data.crop_around == "box" and data.source != "coco":
        raise ConfigError(f"data.crop_around: 'box' crops around the person boxes of a COCO keypoints file; "
                          f"data.source = {data.source!r} has none (use data.source = \"coco\")")
    if not 0 < config.eval.oks_nms <= 1:
        raise ConfigError(f"eval.oks_nms: expected an OKS threshold in (0, 1], got {config.eval.oks_nms}")
    if any(m <= 0 for m in train.lr_milestones) or train.lr_milestones != sorted(train.lr_milestones):
        raise ConfigError(f"train.lr_milestones: expected increasing epochs > 0, got {train.lr_milestones}")


# Keys that a head never reads: a config file or --set that gives them another value than the default is refused
# (`load_config(..., reject_ignored=True)`, what `cpm train` and `cpm config` read), `resolve` sets them back to their
# defaults and `validate` refuses another value, so that two configs of one model are one config and a run's saved
# config.toml reads back.
_MAPS_ONLY = ("targets.missing_joints", "targets.cutoff", "targets.stage1_all_people", "eval.scales")  # belief maps
IGNORED_BY_HEAD = {
    "heatmap": ("model.regression_loss", "model.regression_hidden", "model.regression_pool",
                "model.regression_features"),
    "regression": ("model.stages", "train.intermediate_supervision", *_MAPS_ONLY),
    "integral": ("model.regression_hidden", "model.regression_pool", "model.regression_features", *_MAPS_ONLY),
    # bottom-up: whole images, no person crop, no centre map; one trunk read by every stage as it is
    "paf": ("model.regression_loss", "model.regression_hidden", "model.regression_pool", "model.regression_features",
            "model.feature_channels", "model.shared_trunk", "model.beliefs_first", "targets.center_sigma",
            "targets.center_pool", "data.crop_padding", "data.crop_around", *_MAPS_ONLY),
}
_DEFAULTS = {"data": DataConfig(), "model": ModelConfig(), "targets": TargetsConfig(), "train": TrainConfig(),
             "eval": EvalConfig()}


def _validate_depth(data: DataConfig) -> None:
    depth = data.depth
    if not (math.isfinite(depth.near) and math.isfinite(depth.far) and 0 <= depth.near < depth.far):
        raise ConfigError(f"data.depth: near = {depth.near!r}, far = {depth.far!r}: expected 0 <= near < far metres")
    if data.source == "synthetic" and (depth.encoding, depth.near, depth.far) != SYNTHETIC_DEPTH:
        encoding, near, far = SYNTHETIC_DEPTH
        raise ConfigError(f"data.depth: the synthetic renderer makes {encoding} frames with near = {near}, "
                          f"far = {far}; data.depth describes the files of a real dataset")


def _validate_pose_mix(data: DataConfig) -> None:
    """data.pose_mix: finite weights >= 0; a mixture names the files of its bvh and bank sources (and, optionally,
    its held-out split's bank); files named for a source it does not draw are an error (they would change nothing),
    and so is a data.pose_prior other than the default where no procedural pose is drawn."""
    weights = dataclasses.asdict(data.pose_mix)
    for name, weight in weights.items():
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"data.pose_mix.{name}: {weight!r} must be a finite weight >= 0")
    mixed = any(weights.values())
    if mixed and data.source != "synthetic":
        raise ConfigError(f"data.pose_mix: poses the synthetic frames; data.source = {data.source!r} has its own")
    for name in ("bvh", "bank"):
        files = getattr(data, f"{name}_files")
        if weights[name] > 0 and not files:
            raise ConfigError(f"data.{name}_files: data.pose_mix.{name} = {weights[name]:g} needs its file or folder")
        if files and not weights[name] > 0:
            raise ConfigError(f"data.{name}_files: only read with data.pose_mix.{name} > 0 (one source alone: "
                              f"data.pose_mix = {{{name} = 1.0}})")
    if data.pose_prior != "procedural" and data.source != "synthetic":
        raise ConfigError(f"data.pose_prior: poses the synthetic frames; data.source = {data.source!r} has its own")
    if data.pose_prior != "procedural" and mixed and not weights["procedural"] > 0:
        raise ConfigError(f"data.pose_prior: {data.pose_prior!r} draws the procedural poses, and "
                          "data.pose_mix.procedural = 0 has none")
    if data.val_bank_files and not weights["bank"] > 0:
        raise ConfigError("data.val_bank_files: the held-out split's bank, only read by a mixture with "
                          "data.pose_mix.bank > 0")


def _validate_skeleton(config: Config) -> None:
    """data.skeleton: a built-in skeleton, or the one the [skeleton] table declares (a skeleton file named there is
    read into [skeleton] by `load_config` and `config_from_dict`)."""
    data = config.data
    if data.skeleton.endswith(".toml"):
        raise ConfigError(f"data.skeleton: {data.skeleton!r} is a skeleton file, which load_config reads into the "
                          "[skeleton] table; a config to validate holds the skeleton itself")
    if config.skeleton.declared():
        skeleton = skeleton_from_table(dataclasses.asdict(config.skeleton), "skeleton")
        if data.skeleton != skeleton.name:
            raise ConfigError(f"data.skeleton: {data.skeleton!r}, but [skeleton] declares {skeleton.name!r}; "
                              "name one of them")
    elif data.skeleton not in SKELETONS:
        raise ConfigError(f"data.skeleton: {data.skeleton!r} is not one of {', '.join(SKELETONS)}; declare your own "
                          "in a [skeleton] table or a TOML file (data.skeleton = \"my_skeleton.toml\")")


def _validate_paf(config: Config) -> None:
    """A paf model (``model.head = "paf"``): whole images of many people from a COCO keypoints file, no centre map, a
    skeleton with limbs (each gets a field)."""
    if config.model.head != "paf":
        return
    data = config.data
    if config.model.center_map:
        raise ConfigError("model.center_map: the paf head finds every person of the image without a centre map; set "
                          "model.center_map = false")
    if data.source != "coco":
        raise ConfigError(f"data.source: the paf head trains on whole images of many people from a COCO keypoints "
                          f"file; data.source = {data.source!r} has none (use data.source = \"coco\")")
    if data.exclude:
        raise ConfigError("data.exclude: leaves out person samples; the paf head reads whole images")
    declared = config.skeleton.declared()
    skeleton = skeleton_from_table(dataclasses.asdict(config.skeleton), "skeleton") if declared \
        else SKELETONS[data.skeleton]
    if not skeleton.limbs:
        key = "skeleton.limbs" if declared else "data.skeleton"
        raise ConfigError(f"{key}: the paf head predicts a field per limb; skeleton {skeleton.name!r} has no limbs")


def _read_skeleton_file(config: Config, candidates: list[Path]) -> None:
    """``data.skeleton = "file.toml"``: the file's skeleton fills the [skeleton] table, and data.skeleton becomes its
    name, so the resolved config (and every checkpoint) carries the skeleton itself."""
    path = next((p for p in candidates if p.is_file()), candidates[0])
    table = load_skeleton_file(path)
    declared = _apply_table(SkeletonConfig(), table, "skeleton", f"{path}: ")
    if config.skeleton.declared() and config.skeleton != declared:
        raise ConfigError(f"data.skeleton: {path} and the [skeleton] table both declare a skeleton; keep one")
    skeleton_from_table(dataclasses.asdict(declared), f"{path}: skeleton")
    config.skeleton = declared
    config.data.skeleton = declared.name


BEST_THRESHOLD = 0.2  # best.pt keeps the best final-stage PCK at this threshold when train.best_metric is not set


def best_metric(config: Config) -> str:
    """What best.pt is chosen by: ``train.best_metric``, else final-stage PCK@0.2 when it is measured, else at the
    first of ``eval.pck_thresholds``; a paf model measures no PCK (decoding needs grouping): the loss. ``"pck@A"`` is
    maximised, ``"loss"`` (the final stage's held-out loss) minimised."""
    if config.model.head == "paf":
        if config.train.best_metric not in ("", "loss"):
            raise ConfigError(f"train.best_metric: {config.train.best_metric!r}: the paf head's evaluation in training "
                              "measures the held-out loss, not PCK; use loss")
        return "loss"
    thresholds = config.eval.pck_thresholds
    default = BEST_THRESHOLD if BEST_THRESHOLD in thresholds else thresholds[0]
    name = config.train.best_metric or f"pck@{default:g}"
    if name == "loss":
        return name
    measured = [f"pck@{a:g}" for a in thresholds]
    if name not in measured:
        raise ConfigError(f"train.best_metric: {name!r} is not measured (eval.pck_thresholds = {thresholds}); "
                          f"use one of {', '.join(measured)} or loss")
    return name


def _check_named_keys(config: Config, named: list[str]) -> None:
    """A key named in a config file or --set that the head ignores, with another value than its default, is an
    error: it would change nothing."""
    head = config.model.head
    key = _ignored_key_set(config, [key for key in named if key in IGNORED_BY_HEAD.get(head, ())])
    if key:
        section, _, name = key.partition(".")
        raise ConfigError(f"{key}: the {head} head ignores it (model.head = {head!r}); remove {key} = "
                          f"{toml_value(getattr(getattr(config, section), name))}")


def _ignored_key_set(config: Config, keys: typing.Iterable[str]) -> str | None:
    """The first of ``keys`` whose value differs from its default, or None."""
    for key in keys:
        section, _, name = key.partition(".")
        if getattr(getattr(config, section), name) != getattr(_DEFAULTS[section], name):
            return key
    return None


def output_stages(config: Config) -> int:
    """Outputs the model returns: ``model.stages``, or 1 for the regression head (it has no stages)."""
    return 1 if config.model.head == "regression" else config.model.stages


def parse_override(text: str) -> dict[str, dict[str, Any]]:
    """``"train.lr=1e-3"`` -> ``{"train": {"lr": 0.001}}``; the value is read as TOML, else as a string."""
    key, sep, raw = text.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not section or not name:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. train.lr=1e-3")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return {section: {name: value}}


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), *,
                reject_ignored: bool = False) -> Config:
    """Defaults, then the TOML file at ``path``, then each ``section.key=value`` override. With ``reject_ignored``
    (the command line), a key the file or an override names that ``model.head`` ignores (`IGNORED_BY_HEAD`), with
    another value than its default, is a `ConfigError` naming the key and the head. A key that moved (`MOVED_KEYS`)
    is read under its new name, said in one line on stderr."""
    config = Config()
    named: list[str] = []
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"{path}: cannot read config file ({error})") from None
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError(f"{path}: invalid TOML ({error})") from None
        table.pop("cells", None)  # the experiment grids' (cpm.experiments.grids.cell_overrides), read by no run
        table.pop("grid", None)  # the grids' seeds (cpm.experiments.grids.grid_seeds), read by no run
        table = migrate(table, source=str(path), log=_to_stderr)
        apply(config, table, source=str(path))
        named += [f"{section}.{key}" for section, values in table.items() if isinstance(values, dict) for key in values]
    for override in overrides:
        parsed = migrate(parse_override(override), source="--set", log=_to_stderr)
        apply(config, parsed, source="--set")
        named += [f"{section}.{key}" for section, values in parsed.items() for key in values]
    if reject_ignored:
        _check_named_keys(config, named)
    _read_named_skeleton_file(config, path.parent if path is not None else None)
    return resolve(config)


def _read_named_skeleton_file(config: Config, folder: Path | None) -> None:
    """``data.skeleton = "file.toml"``: the file, relative to the working folder, else to ``folder`` (the config
    file's), read into [skeleton] (`_read_skeleton_file`)."""
    if config.data.skeleton.endswith(".toml"):
        name = Path(config.data.skeleton)
        _read_skeleton_file(config, [name] + ([folder / name] if folder is not None else []))


def config_from_dict(table: dict[str, dict[str, Any]]) -> Config:
    """Rebuild a config saved in a checkpoint or run directory (`resolve`d; a skeleton file it names is read, as
    `load_config` reads it)."""
    config = apply(Config(), table, source="saved config")
    _read_named_skeleton_file(config, None)
    return resolve(config)
