"""How real are the synthetic poses? Pose statistics of each source against real K2HPD poses.

Every pose (15 ITOP joints in image pixels) is centred on the mean of its shoulders and hips and divided by
its torso size ||left shoulder - right hip|| (the PCK torso). Two families of statistics are compared:

- per-joint position: a 2D histogram of each joint's normalised position (24 x 24 bins over [-3, 3]^2);
- limb angle: a histogram of each limb's image angle (36 bins of 10 degrees), limbs of `ITOP_15`.

The distance between a source and the real poses is the Jensen-Shannon distance (base 2: 0 = the same
distribution, 1 = disjoint supports) of each histogram, averaged over joints, over limbs, and overall (the
mean of the two). Two real samples of the same distribution (K2HPD train against test) show the floor.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cpm.skeleton import ITOP_15

if TYPE_CHECKING:
    from cpm.config import Config

POSITION_BINS, POSITION_RANGE, ANGLE_BINS = 24, 3.0, 36


def normalise(keypoints: np.ndarray) -> np.ndarray:
    """(N, 15, 2+) pixel keypoints -> (M, 15, 2) centred, torso-normalised (poses with no torso dropped)."""
    points = np.asarray(keypoints, dtype=np.float64)[..., :2]
    centre = points[:, [2, 3, 9, 10]].mean(axis=1, keepdims=True)
    left_shoulder, right_hip = ITOP_15.torso
    torso = np.linalg.norm(points[:, left_shoulder] - points[:, right_hip], axis=-1)
    keep = torso > 1e-6
    return (points[keep] - centre[keep]) / torso[keep, None, None]


def js_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2) between two histograms of the same bins."""
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nonzero = a > 0
        return float((a[nonzero] * np.log2(a[nonzero] / m[nonzero])).sum())

    return float(np.sqrt(max(0.5 * kl(p) + 0.5 * kl(q), 0.0)))


def histograms(poses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normalised poses (N, 15, 2) -> joint-position histograms (15, B, B) and limb-angle histograms (L, A)."""
    edges = np.linspace(-POSITION_RANGE, POSITION_RANGE, POSITION_BINS + 1)
    positions = np.stack([np.histogram2d(poses[:, j, 0], poses[:, j, 1], bins=(edges, edges))[0]
                          for j in range(poses.shape[1])])
    limbs = np.array(ITOP_15.limbs)
    vectors = poses[:, limbs[:, 1]] - poses[:, limbs[:, 0]]  # (N, L, 2)
    angles = np.arctan2(vectors[..., 1], vectors[..., 0])
    angle_edges = np.linspace(-np.pi, np.pi, ANGLE_BINS + 1)
    limb_angles = np.stack([np.histogram(angles[:, k], bins=angle_edges)[0] for k in range(len(limbs))])
    return positions + 1e-12, limb_angles + 1e-12  # no empty histogram


def distances(poses: np.ndarray, real: np.ndarray) -> dict[str, float]:
    """Normalised poses of a source and of the real set -> {"position", "angle", "overall"} distances."""
    source_positions, source_angles = histograms(poses)
    real_positions, real_angles = histograms(real)
    position = float(np.mean([js_distance(a, b) for a, b in zip(source_positions, real_positions, strict=True)]))
    angle = float(np.mean([js_distance(a, b) for a, b in zip(source_angles, real_angles, strict=True)]))
    return {"position": position, "angle": angle, "overall": (position + angle) / 2}


def synthetic_keypoints(n: int, *, seed: int, pose_source=None) -> np.ndarray:
    """(n, 15, 2) projected joints of the renderer's scenes ``(seed, 0..n-1)``, without rendering depth, posed by
    ``pose_source`` (None: the procedural prior; a `cpm.data.synthetic.sources.PoseMix` picks each scene's source
    from (seed, index) as `cpm.data.synthetic.frames.render_sample` does)."""
    from cpm.data.synthetic.camera import project_points
    from cpm.data.synthetic.scene import sample_scene
    from cpm.data.synthetic.sources import PoseMix

    result = np.empty((n, 15, 2))
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        source = pose_source.source(seed, i) if isinstance(pose_source, PoseMix) else pose_source
        scene = sample_scene(rng) if source is None else sample_scene(rng, source)
        joints, _, _ = scene.geometry
        offset = np.array([scene.position[0], 0.0, scene.position[1]])
        result[i] = project_points(scene.camera.to_camera(joints + offset))
    return result


def realism_report(*, real: str, reference: str | None = None, bvh: str | None = None, bank: str | None = None,
                   n: int = 4000, seed: int = 0, configs: dict[str, Config] | None = None) -> list[dict]:
    """One row per source: {"source", "poses", "position", "angle", "overall"} against the ``real`` K2HPD file:
    the floor (``reference``, another real set), the procedural prior, ``bvh`` and ``bank`` files, and the pose
    source of each of ``configs`` ({name: config}: its mixture, prior or files, `config_pose_source`)."""
    from cpm.data.datasets.mat_readers import read_k2hpd
    from cpm.data.synthetic.sources import config_pose_source, describe_pose_source, pose_sampler

    real_poses = normalise(read_k2hpd(real).keypoints)
    sources = {"procedural": None}
    if bvh:
        sources["bvh"] = pose_sampler("bvh", bvh)
    if bank:
        sources["bank"] = pose_sampler("bank", bank)
    for name, config in (configs or {}).items():
        sources[f"{name}: {describe_pose_source(config.data)}"] = config_pose_source(config.data)
    rows = []
    if reference:
        # As many poses as each source, because a histogram distance shrinks with the sample size.
        poses = normalise(read_k2hpd(reference).keypoints)
        poses = poses[np.random.default_rng(seed).permutation(len(poses))[:n]]
        rows.append({"source": "K2HPD train (floor)", **_row(poses, real_poses)})
    for name, pose_source in sources.items():
        poses = normalise(synthetic_keypoints(n, seed=seed, pose_source=pose_source))
        rows.append({"source": name, **_row(poses, real_poses)})
    return rows


def _row(poses: np.ndarray, real: np.ndarray) -> dict:
    return {"poses": len(poses), **distances(poses, real)}


def format_table(rows: list[dict]) -> str:
    """Markdown table of `realism_report` rows."""
    lines = ["| source | poses | joint-position JS distance | limb-angle JS distance | overall |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['source']} | {r['poses']} | {r['position']:.3f} | {r['angle']:.3f} | {r['overall']:.3f} |"
              for r in rows]
    return "\n".join(lines)
