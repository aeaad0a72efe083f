"""Flip test (``eval.flip_test``, `cpm.targets.flip`): the mirror's outputs flipped back without a shift, left / right
channels swapped and the centre map mirrored; the same average in the predictor, ``cpm eval``, ``cpm predict`` and
the ONNX export."""

import dataclasses
import json

import cv2
import numpy as np
import pytest
import torch

from cpm.cli import main
from cpm.data.dataset import PIXEL_MEAN, PIXEL_STD
from cpm.data.loader import make_loader
from cpm.data.synthetic.frames import render_sample
from cpm.data.transforms import apply_affine, crop_matrix, invert_affine, warp_image
from cpm.evaluation.evaluate import evaluate, evaluate_checkpoint
from cpm.inference.predictor import load_predictor
from cpm.models import build_model
from cpm.runtime.build import build_codec, build_datasets
from cpm.runtime.checkpoint import load_model
from cpm.skeleton import ITOP_15
from cpm.targets.codecs import HeatmapCodec, RegressionCodec
from cpm.targets.flip import FlipTest, flip_back, mirror_inputs
from tests.helpers import tiny
from tests.test_predict import make_checkpoint

PERMUTATION = ITOP_15.flip_permutation  # 15 joints, six left / right pairs
K, N, STRIDE = 15, 64, 8


def flip_test_by_hand(model, image, center_map):
    """model(x) and swap(flip(model(flip(x)))) averaged, written out step by step for every stage."""
    plain = model(image, center_map)
    mirrored = model(torch.flip(image, [3]), None if center_map is None else torch.flip(center_map, [3]))
    averaged = []
    for p, m in zip(plain, mirrored, strict=True):
        if p.ndim == 4:  # (B, K[+1], h, w): columns reversed, left / right channels swapped, background kept
            back = torch.flip(m[:, list(PERMUTATION) + list(range(K, p.shape[1]))], [3])
        else:  # (B, K, 2 | 4): joints swapped, x negated
            back = m[:, list(PERMUTATION)].clone()
            back[..., 0] = -back[..., 0]
        averaged.append((p + back) / 2)
    return averaged


class ByHand(torch.nn.Module):
    """A model whose outputs are ``flip_test_by_hand`` of another's."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.num_stages = model.num_stages

    def forward(self, image, center_map=None):
        return flip_test_by_hand(self.model, image, center_map)


def center_maps(codec, x: float, y: float = 30.0, batch: int = 2):
    return codec.center_map(torch.tensor([[x, y]] * batch))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("flip")
    # fp32 on every CPU: cpm eval runs in the config's train.amp (bf16 where the CPU has it), and bf16 rounds the two
    # passes apart from the written-out average by whole pixels where peaks nearly tie
    return make_checkpoint(folder / "tiny.pt", folder, **{"train.amp": "off"})


def test_a_flipped_back_mirror_target_equals_the_target_exactly_without_a_shift():
    """Pixel x of a crop of N = s*w pixels mirrors to N - 1 - x, and cell u's centre s*u + (s - 1)/2 to that of cell
    w - 1 - u: the mirrored crop's targets, flipped back, are the crop's targets bit for bit."""
    codec = HeatmapCodec(input_size=(N, N), stride=STRIDE, sigma=1.0, background=True)
    rng = np.random.default_rng(0)
    xy = rng.integers(0, 4 * N, size=(2, K, 2)) / 4  # quarter pixels anywhere in the crop: exact in float32
    keypoints = torch.from_numpy(np.concatenate([xy, np.full((2, K, 1), 2.0)], axis=-1)).float()
    mirrored = keypoints.clone()
    mirrored[..., 0] = N - 1 - keypoints[..., 0]
    mirrored = mirrored[:, list(PERMUTATION)]  # the mirror's left joints are the person's right ones
    targets, _ = codec.encode(keypoints)  # (2, K + 1, 8, 8)
    mirror_targets, _ = codec.encode(mirrored)
    assert torch.equal(flip_back(mirror_targets, PERMUTATION), targets)
    assert not torch.equal(mirror_targets.flip(-1), targets)  # the channel swap matters

    coordinates = RegressionCodec(input_size=(N, N))  # normalised n = (2x + 1)/N - 1 mirrors to -n
    assert torch.equal(flip_back(coordinates.encode(mirrored)[0], PERMUTATION), coordinates.encode(keypoints)[0])


class MirrorEquivariantNet(torch.nn.Module):
    """Two stages that commute with a mirror: stage 1 = average-pool(conv(image)), whose kernel for joint k mirrored
    is the kernel of joint flip(k) (a joint without a pair, and the background, has a symmetric kernel); stage 2 adds
    the centre map to every channel. Mirroring the image (and the centre map) mirrors every map and swaps left and
    right channels."""

    num_stages = 2

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, K + 1, 5, padding=2)
        weight, bias = torch.randn(K + 1, 1, 5, 5), torch.randn(K + 1)
        order = [*PERMUTATION, K]
        for k, partner in enumerate(order):
            if partner == k:
                weight[k] = (weight[k] + weight[k].flip(-1)) / 2
            elif partner > k:
                weight[partner], bias[partner] = weight[k].flip(-1), bias[k]
        self.conv.weight.data, self.conv.bias.data = weight, bias
        self.pool = torch.nn.AvgPool2d(STRIDE)

    def forward(self, image, center_map=None):
        stage1 = self.pool(self.conv(image))  # (B, K + 1, 8, 8)
        return [stage1, stage1 + center_map]


def test_a_mirror_equivariant_model_is_unchanged_by_flip_test():
    model = MirrorEquivariantNet()
    codec = HeatmapCodec(input_size=(N, N), stride=STRIDE, sigma=1.0)
    image = torch.randn(2, 1, N, N, generator=torch.Generator().manual_seed(1))
    center_map = center_maps(codec, 20.0)  # off the middle: forgetting to mirror it changes stage 2
    with torch.no_grad():
        plain, flipped = model(image, center_map), FlipTest(model, PERMUTATION)(image, center_map)
    for p, f in zip(plain, flipped, strict=True):
        torch.testing.assert_close(f, p, rtol=0, atol=1e-5)
    assert all(p.std(dim=(2, 3)).min() > 0.1 for p in plain)  # not flat maps that every flip leaves alone


@pytest.mark.parametrize("head", ["heatmap", "regression", "rle"])
def test_flip_test_of_a_random_model_is_the_average_written_out(head):
    fields = {"stages": 3} if head == "heatmap" else {"head": "regression", "regression_hidden": 16}
    if head == "rle":
        fields["regression_loss"] = "rle"
    torch.manual_seed(0)
    model = build_model(tiny(**fields), K).eval()
    for module in model.modules():  # He's initialisation everywhere: outputs of order 1, far from symmetric
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            torch.nn.init.normal_(module.bias, std=0.1)
    codec = HeatmapCodec(input_size=(N, N), stride=STRIDE, sigma=1.0)
    image = torch.randn(2, 1, N, N, generator=torch.Generator().manual_seed(2))
    center_map = center_maps(codec, 20.0)
    with torch.no_grad():
        flipped = FlipTest(model, PERMUTATION)(image, center_map)
        expected, plain = flip_test_by_hand(model, image, center_map), model(image, center_map)
    assert len(flipped) == len(expected) == model.num_stages
    for f, e, p in zip(flipped, expected, plain, strict=True):
        assert f.shape == p.shape == ((2, K + 1, 8, 8) if head == "heatmap" else (2, K, 4 if head == "rle" else 2))
        torch.testing.assert_close(f, e, rtol=0, atol=1e-6)
        assert (f - p).abs().max() > 1e-3  # flip test changed something


def test_on_a_mirror_symmetric_frame_flip_test_maps_are_left_right_symmetric():
    frame = cv2.resize(render_sample(7, 0)["image"][:, 22:234], (N, N), interpolation=cv2.INTER_AREA)
    pixels = (torch.from_numpy(frame).float()[None, None] / 255 - PIXEL_MEAN) / PIXEL_STD
    image = (pixels + pixels.flip(-1)) / 2  # the frame mirrored onto itself: image.flip(-1) equals it exactly
    codec = HeatmapCodec(input_size=(N, N), stride=STRIDE, sigma=1.0)
    center_map = center_maps(codec, (N - 1) / 2, batch=1)  # on the mirror axis
    torch.manual_seed(3)
    model = build_model(tiny(stages=3), K).eval()
    with torch.no_grad():
        plain = model(image, center_map)
        mirror_branch = model(*mirror_inputs(image, center_map))
        flipped = FlipTest(model, PERMUTATION)(image, center_map)
    order = [*PERMUTATION, K]
    for p, m, f in zip(plain, mirror_branch, flipped, strict=True):
        torch.testing.assert_close(m, p, rtol=0, atol=0)  # the mirror branch sees the same input
        # its maps brought back are the plain maps with left / right swapped: so the mean is symmetric
        torch.testing.assert_close(flip_back(m, PERMUTATION), p[:, order].flip(-1), rtol=0, atol=0)
        torch.testing.assert_close(f, f[:, order].flip(-1), rtol=0, atol=1e-6)
        assert (p - p[:, order].flip(-1)).abs().max() > 1e-3  # a random model's own maps are not symmetric


def crop_by_hand(image, size):
    """The whole frame as the predictor crops it without a box: its centre, side = the longer side."""
    height, width = image.shape
    matrix = crop_matrix(np.array([(width - 1) / 2, (height - 1) / 2]), float(max(height, width)), size)
    crop = warp_image(image, matrix, size).astype(np.float32)
    return (torch.from_numpy(crop)[None, None] / 255 - PIXEL_MEAN) / PIXEL_STD, matrix


def test_predictor_flip_test_decodes_the_average_written_out(checkpoint):
    image = render_sample(7, 0)["image"]  # (212, 256)
    plain = load_predictor(checkpoint, "cpu").predict(image)
    on = load_predictor(checkpoint, "cpu", flip_test=True)
    assert on.flip_test and not load_predictor(checkpoint, "cpu").flip_test  # the config's eval.flip_test is off
    flipped = on.predict(image)
    np.testing.assert_array_equal(load_predictor(checkpoint, "cpu").predict(image, flip_test=True).keypoints,
                                  flipped.keypoints)
    np.testing.assert_array_equal(on.predict(image, flip_test=False).keypoints, plain.keypoints)

    model, config = load_model(checkpoint)
    codec = build_codec(config)
    tensor, matrix = crop_by_hand(image, config.data.input_size)
    with torch.no_grad():
        averaged = flip_test_by_hand(model, tensor, codec.center_map(torch.tensor([[31.5, 31.5]])))
    expected = np.stack([apply_affine(codec.decode(maps, method=config.eval.decoder)[0][0].double().numpy(),
                                      invert_affine(matrix)) for maps in averaged])  # (T, K, 2) image pixels
    # one batch of crop and mirror against two calls: kernels may round differently (AVX-512), the refinement
    # magnifies it to ~1e-3 px; a wrong flip moves keypoints by whole pixels
    np.testing.assert_allclose(flipped.stage_keypoints[0], expected, atol=5e-3)
    np.testing.assert_allclose(flipped.beliefs[0], np.stack([m[0].numpy() for m in averaged]), atol=1e-5)
    assert np.abs(flipped.keypoints - plain.keypoints).max() > 0.5  # a random model's two passes disagree


def test_multi_scale_prediction_flip_tests_every_scale_then_averages_the_scales(checkpoint):
    image = render_sample(7, 3)["image"]
    predictor = load_predictor(checkpoint, "cpu", scales=[1.0, 1.25], flip_test=True)
    flipped = predictor.predict(image)
    by_hand = dataclasses.replace(predictor, model=ByHand(predictor.model), flip_test=False).predict(image)
    np.testing.assert_allclose(flipped.stage_keypoints, by_hand.stage_keypoints, atol=1e-3)
    np.testing.assert_allclose(flipped.beliefs, by_hand.beliefs, atol=1e-5)
    assert np.abs(flipped.keypoints - predictor.predict(image, flip_test=False).keypoints).max() > 0.5


def test_predictor_flip_test_of_an_integral_head_agrees_with_its_drawn_maps(tmp_path):
    checkpoint = make_checkpoint(tmp_path / "integral.pt", tmp_path, **{"model.head": "integral"})
    image = render_sample(7, 1)["image"]
    predictor = load_predictor(checkpoint, "cpu", flip_test=True)
    flipped, plain = predictor.predict(image), predictor.predict(image, flip_test=False)
    model, config = load_model(checkpoint)
    tensor, matrix = crop_by_hand(image, config.data.input_size)
    with torch.no_grad():
        coordinates = flip_test_by_hand(model, tensor, build_codec(config).center_map(torch.tensor([[31.5, 31.5]])))
    crop_points = RegressionCodec(input_size=(N, N)).decode(torch.stack(coordinates)[:, 0].double())[0].numpy()
    np.testing.assert_allclose(flipped.stage_keypoints[0], apply_affine(crop_points, invert_affine(matrix)),
                               atol=1e-3)
    # the drawn maps (the two passes' distributions averaged, peak 1) have those keypoints as their expectation
    maps = flipped.beliefs[0] / flipped.beliefs[0].sum(axis=(-2, -1), keepdims=True)  # (T, K, 8, 8)
    cells = np.stack([(maps.sum(-2) * np.arange(8)).sum(-1), (maps.sum(-1) * np.arange(8)).sum(-1)], axis=-1)
    np.testing.assert_allclose(cells * STRIDE + (STRIDE - 1) / 2, crop_points, atol=1e-3)
    assert np.abs(flipped.keypoints - plain.keypoints).max() > 0.1


def test_eval_with_flip_test_scores_the_average_written_out(checkpoint, capfd):
    off = evaluate_checkpoint(checkpoint, progress=False, device_name="cpu")
    on = evaluate_checkpoint(checkpoint, overrides={"eval": {"flip_test": True}}, progress=False, device_name="cpu")
    model, config = load_model(checkpoint)
    loader = make_loader(build_datasets(config)[1], batch_size=config.eval.batch_size, shuffle=False, workers=0,
                         device=torch.device("cpu"), seed=0)
    expected = evaluate(ByHand(model), loader, build_codec(config), torso=ITOP_15.torso, decoder=config.eval.decoder,
                        device=torch.device("cpu"), progress=False)
    np.testing.assert_allclose(on["predictions"], expected["predictions"], atol=1e-3)
    assert np.abs(on["predictions"] - off["predictions"]).max() > 0.5

    assert main(["eval", str(checkpoint), "--set", "eval.flip_test=true", "--json", "--no-progress",
                 "--device", "cpu"]) == 0
    printed = json.loads(capfd.readouterr().out)  # --set reaches the config: the flip-tested outputs' loss
    np.testing.assert_allclose(printed["loss"], on["loss"], rtol=1e-6)
    assert np.abs(np.subtract(on["loss"], off["loss"])).max() > 1e-4
    assert printed["pck"] == {f"{a:g}": on["pck"][a] for a in on["pck"]}


def test_cpm_predict_flip_test_flag_writes_the_predictors_flip_tested_keypoints(checkpoint, tmp_path):
    frame = tmp_path / "frame.png"
    assert cv2.imwrite(str(frame), render_sample(7, 2)["image"])
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(frame), "--out", str(out), "--flip-test", "--no-progress",
                 "--device", "cpu"]) == 0
    joints = json.loads((out / "frame.json").read_text())["joints"]
    predictor = load_predictor(checkpoint, "cpu")
    flipped = predictor.predict(predictor.read_image(frame), flip_test=True)
    np.testing.assert_allclose([[j["x"], j["y"]] for j in joints], flipped.keypoints[0], atol=1e-3)


def test_onnx_export_with_flip_test_holds_both_passes_and_matches_pytorch(checkpoint, tmp_path, capfd):
    onnxruntime = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    onnx_path = tmp_path / "flip.onnx"
    assert main(["export", str(checkpoint), "--onnx", str(onnx_path), "--flip-test"]) == 0
    assert "cpm.flip_test = 1" in capfd.readouterr().out
    metadata = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert metadata["cpm.flip_test"] == "1"

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    model, config = load_model(checkpoint)
    image = torch.rand(2, 1, N, N, generator=torch.Generator().manual_seed(4)) * 2 - 1
    center_map = center_maps(build_codec(config), 24.0)
    outputs = session.run(None, {"image": image.numpy(), "center_map": center_map.numpy()})
    with torch.no_grad():
        expected, plain = flip_test_by_hand(model, image, center_map), model(image, center_map)
    for got, want, unflipped in zip(outputs, expected, plain, strict=True):
        np.testing.assert_allclose(got, want.numpy(), atol=1e-4, rtol=0)
        assert np.abs(got - unflipped.numpy()).max() > 1e-2
