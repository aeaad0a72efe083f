"""A mutation spot-check: put small plausible bugs into a copy of the library, run the related tests, report survivors.

    .venv/bin/python tests/mutation_check.py                      # every mutation (slow: some train tiny models)
    .venv/bin/python tests/mutation_check.py --only metrics.*     # the ones whose names match (fnmatch patterns)
    .venv/bin/python tests/mutation_check.py --list               # names, files and tests, nothing run
    .venv/bin/python tests/mutation_check.py --only best-pt-frozen --tests tests/test_cli.py::test_train_then_eval

Each mutation replaces one exact piece of source text (it must occur exactly once; a few carry a line of context
to be unique) with a plausible wrong one. The repository's ``cpm/``, ``tests/``, ``experiments/`` and
``pyproject.toml`` are copied once into a temporary folder, next to a link to ``../shared`` (the real data the
tests read); each mutation is applied there, ``python -m pytest -q -x`` runs its tests with that copy first on
``PYTHONPATH`` (checked once: ``cpm.__file__`` must lie in the copy), and the file is restored. A mutation whose
tests still pass *survived*: no test notices that bug. Its tests are first run unmutated (the baseline; skip it
with ``--no-baseline``), since a test that already fails would "kill" every mutation.

Keep the list growing: every bug fixed, and every bug a review finds, becomes a mutation here. This file is not
collected by pytest (its name does not start with ``test_``) and is not part of ``make test``. Exit status 1 when
a mutation survives or cannot be applied.
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("cpm", "tests", "experiments", "pyproject.toml")


@dataclass(frozen=True)
class Mutation:
    name: str
    path: str  # relative to the repository root
    original: str  # exact text, found exactly once
    replacement: str
    tests: tuple[str, ...]  # pytest node ids or files, relative to the root


METRIC_TESTS = ("tests/test_metric_edges.py", "tests/test_metrics.py", "tests/test_metrics_protocols.py")
SKELETON_TESTS = ("tests/test_skeleton_names.py", "tests/test_skeleton.py")
CODEC_TESTS = ("tests/test_decoders.py", "tests/test_codecs.py")
LOSS_TESTS = ("tests/test_losses.py", "tests/test_model.py")
TRANSFORM_TESTS = ("tests/test_transforms.py", "tests/test_augment_properties.py")
MODEL_TESTS = ("tests/test_model.py",)
SELECTION_TESTS = ("tests/test_best_checkpoint.py", "tests/test_train.py",
                   "tests/test_cli.py::test_train_then_eval_prints_the_per_stage_table")

M, SK, CO, DE = "cpm/evaluation/metrics.py", "cpm/skeleton.py", "cpm/targets/codecs.py", "cpm/targets/decoders.py"
LO, TR, PM, LOOP = "cpm/targets/losses.py", "cpm/data/transforms.py", "cpm/models/pose_machine.py", \
    "cpm/training/loop.py"

MUTATIONS = (
    # --- the six bugs of issue 18 -----------------------------------------------------------------------------
    Mutation("issue18.torso-and-to-or", M,  # in torso_size (PCP has the same line with a comment after it)
             "labeled = (ground_truth[:, a, 2] > 0) & (ground_truth[:, b, 2] > 0)\n        size",
             "labeled = (ground_truth[:, a, 2] > 0) | (ground_truth[:, b, 2] > 0)\n        size", METRIC_TESTS),
    Mutation("issue18.pck-strict-threshold", M,
             "correct = (distance <= threshold * safe[:, None]) & counted  # (N, K)\n    total",
             "correct = (distance < threshold * safe[:, None]) & counted  # (N, K)\n    total", METRIC_TESTS),
    Mutation("issue18.mpii-flip-pairs-crossed", SK, "flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15)",
             "flip_pairs=((0, 4), (1, 5), (2, 3), (10, 15)", SKELETON_TESTS),
    Mutation("issue18.coco-to-itop-hips-swapped", SK, '"coco17": (-1, -1, 6, 5, 8, 7, 10, 9, -1, 12, 11,',
             '"coco17": (-1, -1, 6, 5, 8, 7, 10, 9, -1, 11, 12,', SKELETON_TESTS),
    Mutation("issue18.lsp-torso-moved", SK, "torso=(9, 2),", "torso=(8, 2),", SKELETON_TESTS),
    Mutation("issue18.best-pt-frozen", LOOP,  # best.pt written after the first evaluation only
             "is_best = is_better(score, best, selection)",
             "is_best = is_better(score, best, selection) and math.isnan(best)", SELECTION_TESTS),
    # --- metrics ----------------------------------------------------------------------------------------------
    Mutation("metrics.pck-table-strict-threshold", M,
             "correct = (distance <= threshold * safe[:, None]) & counted  # (N, K)\n    hits",
             "correct = (distance < threshold * safe[:, None]) & counted  # (N, K)\n    hits", METRIC_TESTS),
    Mutation("metrics.pck-curve-strict-threshold", M, "correct = (distance[None] <= thresholds",
             "correct = (distance[None] < thresholds", METRIC_TESTS),
    Mutation("metrics.head-factor", M, "HEAD_BOX_FACTOR = 0.6", "HEAD_BOX_FACTOR = 0.5", METRIC_TESTS),
    Mutation("metrics.zero-normaliser-counted", M, "valid_sample = np.isfinite(normaliser) & (normaliser > 0)",
             "valid_sample = np.isfinite(normaliser)", METRIC_TESTS),
    Mutation("metrics.unlabeled-counted", M, "counted = (ground_truth[..., 2] > 0) & valid_sample[:, None]",
             "counted = (ground_truth[..., 2] >= 0) & valid_sample[:, None]", METRIC_TESTS),
    Mutation("metrics.non-finite-is-a-hit", M, "distance = np.where(np.isfinite(distance), distance, np.inf)",
             "distance = np.where(np.isfinite(distance), distance, 0.0)", METRIC_TESTS),
    Mutation("metrics.auc-left-rectangles", M, "np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2)",
             "np.sum(np.diff(x) * y[:-1])", METRIC_TESTS),
    Mutation("metrics.pcp-strict-or", M, "(error[:, a] <= alpha * length) & (error[:, b] <= alpha * length)",
             "(error[:, a] <= alpha * length) | (error[:, b] <= alpha * length)", METRIC_TESTS),
    Mutation("metrics.bbox-shorter-side", M, "return np.max(boxes[:, 2:] - boxes[:, :2], axis=-1)",
             "return np.min(boxes[:, 2:] - boxes[:, :2], axis=-1)", METRIC_TESTS),
    # --- skeletons --------------------------------------------------------------------------------------------
    Mutation("skeleton.itop-flip-crossed", SK, "flip_pairs=((2, 3), (4, 5), (6, 7), (9, 10)",
             "flip_pairs=((2, 3), (4, 7), (6, 5), (9, 10)", SKELETON_TESTS),
    Mutation("skeleton.k2hpd-torso-image-sides", SK, "torso=(6, 9),", "torso=(3, 12),", SKELETON_TESTS),
    Mutation("skeleton.k2hpd-to-itop-image-sides", SK, '"k2hpd19": (0, 1, 3, 6,', '"k2hpd19": (0, 1, 6, 3,',
             SKELETON_TESTS),
    Mutation("skeleton.jhmdb-belly-dropped", SK, '"jhmdb15": (2, 0, 3, 4, 7, 8, 11, 12, 1,',
             '"jhmdb15": (2, 0, 3, 4, 7, 8, 11, 12, -1,', SKELETON_TESTS),
    Mutation("skeleton.flip-permutation-one-way", SK, "permutation[a], permutation[b] = b, a",
             "permutation[a] = b", SKELETON_TESTS),
    Mutation("skeleton.unmapped-keeps-position", SK, "mapped[..., index < 0, :] = 0.0",
             "mapped[..., index < 0, 2] = 0.0", (*SKELETON_TESTS, "tests/test_jhmdb.py")),
    # --- codecs -----------------------------------------------------------------------------------------------
    Mutation("codec.pixel-to-cell-half-pixel", CO, "return (x - (self.stride - 1) / 2) / self.stride",
             "return (x - self.stride / 2) / self.stride", CODEC_TESTS),
    Mutation("codec.cell-to-pixel-half-pixel", CO, "return u * self.stride + (self.stride - 1) / 2",
             "return u * self.stride + self.stride / 2", CODEC_TESTS),
    Mutation("codec.gaussian-width", CO, "return torch.exp(-dy2 / (2 * sigma**2))[..., :, None]",
             "return torch.exp(-dy2 / (sigma**2))[..., :, None]", CODEC_TESTS),
    Mutation("codec.unlabeled-weighted", CO, "weights = (finite & inside & (keypoints[..., 2] > 0)).float()",
             "weights = (finite & inside & (keypoints[..., 2] >= 0)).float()", CODEC_TESTS),
    Mutation("codec.inside-edge", CO, "(xy[..., 0] >= -0.5) & (xy[..., 0] < width - 0.5)",
             "(xy[..., 0] >= -0.5) & (xy[..., 0] < width + 0.5)", CODEC_TESTS),
    Mutation("codec.background-min", CO, "background = (1 - heatmaps.amax(dim=1, keepdim=True)).clamp(min=0)",
             "background = (1 - heatmaps.amin(dim=1, keepdim=True)).clamp(min=0)", CODEC_TESTS),
    Mutation("codec.soft-argmax-beta", CO, "return math.log(heatmap_size[0] * heatmap_size[1]) + 6",
             "return math.log(heatmap_size[0] * heatmap_size[1]) + 2", CODEC_TESTS),
    Mutation("codec.regression-pixel-edges", CO, "(2 * xy + 1) / size - 1, 0.0)", "(2 * xy) / size - 1, 0.0)",
             CODEC_TESTS),
    # --- decoders ---------------------------------------------------------------------------------------------
    Mutation("decoder.quarter-away-from-neighbour", DE,
             "shift_x = 0.25 * torch.sign(_value_at(beliefs, row, col, 0, 1)",
             "shift_x = -0.25 * torch.sign(_value_at(beliefs, row, col, 0, 1)", CODEC_TESTS),
    Mutation("decoder.quarter-half-cell", DE, "shift_y = 0.25 * torch.sign(", "shift_y = 0.5 * torch.sign(",
             CODEC_TESTS),
    Mutation("decoder.parabola-sign", DE, "shift = 0.5 * (log_before - log_after)",
             "shift = 0.5 * (log_after - log_before)", CODEC_TESTS),
    Mutation("decoder.parabola-clamp", DE, "shift.clamp(-0.5, 0.5)", "shift.clamp(-0.25, 0.25)", CODEC_TESTS),
    Mutation("decoder.peaks-row-col-swapped", DE, "index // width, index % width", "index % width, index // width",
             CODEC_TESTS),
    Mutation("decoder.bicubic-grid", DE, "cells = (_cells(best_col, best_row) - (s - 1) / 2) / s",
             "cells = (_cells(best_col, best_row) - s / 2) / s", CODEC_TESTS),
    Mutation("decoder.cubic-alignment", DE, "t = (x + 0.5) / stride - 0.5", "t = x / stride", CODEC_TESTS),
    Mutation("decoder.dark-no-cross-derivative", DE, "dxy = 0.25 * (at(1, 1)", "dxy = 0.0 * (at(1, 1)",
             CODEC_TESTS),
    Mutation("decoder.dark-step-2-scale", DE, "0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))",
             "0.5 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))", CODEC_TESTS),
    Mutation("decoder.soft-argmax-axes", DE, "x = (p.sum(dim=-2) * torch.arange(w",
             "x = (p.sum(dim=-1)[..., :w] * torch.arange(w", CODEC_TESTS),
    # --- losses -----------------------------------------------------------------------------------------------
    Mutation("loss.background-unweighted", LO, "weights.new_ones(batch, channels - weights.shape[1])",
             "weights.new_zeros(batch, channels - weights.shape[1])", LOSS_TESTS),
    Mutation("loss.weights-ignored", LO, "return (squared.mean(dim=(2, 3)) * weights).mean()",
             "return squared.mean(dim=(2, 3)).mean()", LOSS_TESTS),
    Mutation("loss.last-stage-only-reversed", LO, "return [0.0] * (stages - 1) + [1.0]",
             "return [1.0] + [0.0] * (stages - 1)", LOSS_TESTS),
    Mutation("loss.stage-weights-ignored", LO,  # in staged_heatmap_loss (the next function makes it unique)
             "total = sum(w * term for w, term in zip(stage_weights, terms.values(), strict=True))\n"
             "    return {\"loss\": total, **terms}\n\n\ndef _squared",
             "total = sum(term for w, term in zip(stage_weights, terms.values(), strict=True))\n"
             "    return {\"loss\": total, **terms}\n\n\ndef _squared", LOSS_TESTS),
    Mutation("loss.coordinate-mean-over-xy", LO, "per_joint = elementwise(prediction.float() - target.float()).sum(",
             "per_joint = elementwise(prediction.float() - target.float()).mean(",
             (*LOSS_TESTS, "tests/test_heads.py::test_coordinate_losses_by_hand")),
    # --- transforms -------------------------------------------------------------------------------------------
    Mutation("transform.flip-off-by-one", TR, "matrix[0, 2] += output_size - 1", "matrix[0, 2] += output_size",
             TRANSFORM_TESTS),
    Mutation("transform.rotation-clockwise", TR, "angle = math.radians(rotation)", "angle = math.radians(-rotation)",
             TRANSFORM_TESTS),
    Mutation("transform.middle-off-by-half", TR, "middle = (output_size - 1) / 2", "middle = output_size / 2",
             TRANSFORM_TESTS),
    Mutation("transform.flip-keeps-names", TR, "out = out[list(flip_permutation)]", "out = out[:]", TRANSFORM_TESTS),
    Mutation("transform.occluded-becomes-unlabeled", TR, "keypoints[covered & (keypoints[:, 2] == 2), 2] = 1",
             "keypoints[covered & (keypoints[:, 2] == 2), 2] = 0", TRANSFORM_TESTS),
    Mutation("transform.scale-inverted", TR, "scale = output_size / crop_side", "scale = crop_side / output_size",
             TRANSFORM_TESTS),
    # --- the stage wiring -------------------------------------------------------------------------------------
    Mutation("wiring.previous-beliefs-dropped", PM, "else [project(features), beliefs]",
             "else [project(features), beliefs.detach() * 0]", MODEL_TESTS),
    Mutation("wiring.input-order", PM, "else [project(features), beliefs]", "else [beliefs, project(features)]",
             MODEL_TESTS),
    Mutation("wiring.centre-map-dropped", PM, "center = [center_map.to(features.dtype)]",
             "center = [torch.zeros_like(center_map).to(features.dtype)]", MODEL_TESTS),
    Mutation("wiring.stage1-trunk-shared", PM,
             "features = self.image_features(image) if self.image_features is not None else None",
             "features = self.image_features_stage1(image) if self.image_features is not None else None",
             MODEL_TESTS),
    Mutation("wiring.checkpointed-stages-read-stage1", PM,
             "checkpoint(_refine, project, stage, features, beliefs, *center",
             "checkpoint(_refine, project, stage, features, outputs[0], *center", MODEL_TESTS),
    # --- checkpoint selection ---------------------------------------------------------------------------------
    Mutation("selection.best-is-latest", LOOP, "if is_best:\n                best, best_epoch = score, epoch + 1",
             "if True:\n                best, best_epoch = score, epoch + 1", SELECTION_TESTS),
    Mutation("selection.ties-take-the-later", LOOP, 'return score < best if metric == "loss" else score > best',
             'return score < best if metric == "loss" else score >= best', SELECTION_TESTS),
    Mutation("selection.pck-minimised", LOOP, 'return score < best if metric == "loss" else score > best',
             'return score < best if metric == "loss" else score < best', SELECTION_TESTS),
    Mutation("selection.first-stage", LOOP, "return float(results[\"pck\"][by_name[metric]][-1])",
             "return float(results[\"pck\"][by_name[metric]][0])", SELECTION_TESTS),
    Mutation("selection.default-threshold", "cpm/config.py", "BEST_THRESHOLD = 0.2", "BEST_THRESHOLD = 0.1",
             SELECTION_TESTS),
    Mutation("run-seconds.restarted-on-resume", LOOP, 'seconds=float(checkpoint.get("run_seconds", 0.0))',
             'seconds=0 * float(checkpoint.get("run_seconds", 0.0))',
             ("tests/test_resume_extend.py::test_a_resumed_run_counts_the_wall_time_of_its_earlier_sittings",)),
    Mutation("run-seconds.cell-time-of-the-last-sitting", "cpm/experiments/runs.py",
             'round(checkpoint.get("run_seconds", wall_seconds), 1)', "round(wall_seconds, 1)",
             ("tests/test_experiments.py::test_a_cells_wall_time_is_its_runs_own_over_every_sitting",)),
    Mutation("speedrun.stop-at-target-ignored", "cpm/bench/speedrun.py",
             "until = functools.partial(meets, targets=targets) if stop_at_target and targets is not None else None",
             "until = None",
             ("tests/test_speedrun.py::test_stop_at_target_ends_each_run_at_its_first_evaluation_meeting_the_targets",)),
    Mutation("progressive.one-codec", LOOP, "prepare_batch(batch, codec, self.device, t.channels_last)",
             "prepare_batch(batch, self.codec, self.device, t.channels_last)",
             ("tests/test_progressive.py::test_training_encodes_each_epochs_targets_at_its_map_size_and_scores_at_the"
              "_input_size",)),
    Mutation("progressive.crop-at-input-size", "cpm/data/dataset.py", "        size = self.size_at(self.epoch)\n",
             "        size = self.input_size\n",
             ("tests/test_progressive.py::test_each_epoch_crops_at_its_own_side_and_the_last_side_goes_on",)),
    Mutation("ema.raw-weights-scored", LOOP, "results = evaluate(self.evaluated, self.val_loader,",
             "results = evaluate(self.model, self.val_loader,",
             ("tests/test_ema.py::test_the_average_leaves_training_as_it_was_and_is_what_the_evaluation_scored",)),
    Mutation("ema.never-updated", LOOP, "                self.average.update(s.step)\n", "                pass\n",
             ("tests/test_ema.py::test_the_average_leaves_training_as_it_was_and_is_what_the_evaluation_scored",)),
    Mutation("ema.resume-from-the-average", LOOP, 'checkpoint.get("raw_model", checkpoint["model"])',
             'checkpoint["model"]', ("tests/test_ema.py::test_a_mid_epoch_resume_gives_the_same_average_and_weights",)),
    Mutation("ema.decay-without-ramp", "cpm/training/ema.py", "return min(decay, (1 + step) / (10 + step))",
             "return decay",
             ("tests/test_ema.py::test_the_average_moves_by_the_ramped_decay_and_copies_integer_buffers",)),
)


def copy_tree(destination: Path) -> Path:
    """Copy the repository's library, tests and configs into ``destination/repo`` (no caches), with a link to the
    real data beside it; -> the copy's root."""
    repo = destination / "repo"
    repo.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=ignore)
        elif source.is_file():
            shutil.copy2(source, repo / name)
    shared = ROOT.parent / "shared"
    if shared.exists():
        (destination / "shared").symlink_to(shared, target_is_directory=True)
    return repo


def environment(repo: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(repo), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutation of the same length in the same second: no stale .pyc
    return env


def check_import(repo: Path) -> str:
    result = subprocess.run([sys.executable, "-c", "import cpm; print(cpm.__file__)"], cwd=repo,
                            env=environment(repo), capture_output=True, text=True, check=True)
    location = result.stdout.strip()
    print(f"cpm imported from {location}")
    if not Path(location).resolve().is_relative_to(repo.resolve()):
        raise SystemExit(f"the copy is not the cpm that gets imported ({location}); stopping")
    return location


def run_tests(repo: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    """-> ("passed" | "failed" | "error" | "timeout", seconds, last lines of output)."""
    start = time.monotonic()
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        result = subprocess.run(command, cwd=repo, env=environment(repo), capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.monotonic() - start, ""
    seconds = time.monotonic() - start
    tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-3:])
    status = {0: "passed", 1: "failed"}.get(result.returncode, "error")
    return status, seconds, tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="run the mutations whose names match (fnmatch; repeat or separate by commas)")
    parser.add_argument("--tests", nargs="+", metavar="TEST", help="run these tests instead of each mutation's own")
    parser.add_argument("--list", action="store_true", help="list the mutations and exit")
    parser.add_argument("--no-baseline", action="store_true", help="do not run the tests unmutated first")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per pytest run (default 1200)")
    args = parser.parse_args(argv)
    patterns = [p for item in args.only for p in item.split(",") if p]
    chosen = [m for m in MUTATIONS if not patterns or any(fnmatch.fnmatch(m.name, p) for p in patterns)]
    if not chosen:
        parser.error(f"no mutation matches {', '.join(patterns)}")
    names = [m.name for m in MUTATIONS]
    assert len(set(names)) == len(names), "mutation names must be unique"
    if args.list:
        for m in chosen:
            print(f"{m.name:45} {m.path:30} {' '.join(m.tests)}")
        return 0

    results = []
    with tempfile.TemporaryDirectory(prefix="cpm-mutation-") as folder:
        repo = copy_tree(Path(folder))
        check_import(repo)
        if not args.no_baseline:
            for tests in dict.fromkeys(tuple(args.tests) if args.tests else m.tests for m in chosen):
                status, seconds, tail = run_tests(repo, tests, args.timeout)
                print(f"baseline {' '.join(tests)}: {status} ({seconds:.0f} s)", flush=True)
                if status != "passed":
                    print(tail)
                    return 1
        for m in chosen:
            target = repo / m.path
            source = target.read_text()
            count = source.count(m.original)
            if count != 1:
                results.append((m, f"NOT APPLICABLE (found {count}x)", 0.0))
                print(f"{m.name}: not applicable, the original text occurs {count} times in {m.path}", flush=True)
                continue
            target.write_text(source.replace(m.original, m.replacement))
            try:
                status, seconds, tail = run_tests(repo, tuple(args.tests) if args.tests else m.tests, args.timeout)
            finally:
                target.write_text(source)
            verdict = {"passed": "SURVIVED", "failed": "killed"}.get(status, f"killed ({status})")
            results.append((m, verdict, seconds))
            print(f"{m.name}: {verdict} ({seconds:.0f} s)", flush=True)
            if status == "error":
                print("    " + tail.replace("\n", "\n    "))

    print("\n| mutation | file | result | seconds |\n|---|---|---|---:|")
    for m, verdict, seconds in results:
        print(f"| {m.name} | {m.path} | {verdict} | {seconds:.0f} |")
    survivors = [m.name for m, verdict, _ in results if not verdict.startswith("killed")]
    print(f"\n{len(results) - len(survivors)} of {len(results)} mutations killed"
          + (f"; not killed: {', '.join(survivors)}" if survivors else ""))
    return 1 if survivors else 0


if __name__ == "__main__":
    raise SystemExit(main())
