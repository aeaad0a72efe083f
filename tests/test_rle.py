"""RLE (Li et al. 2021): the regression head with a scale per joint, trained with the residual log-likelihood of
`cpm.targets.losses.rle_nll` and its RealNVP flow (`cpm.models.realnvp`); decoding, evaluation, prediction and
export read μ, and score a joint 1 - mean σ."""

import json
import math

import numpy as np
import pytest
import torch

from cpm.config import ModelConfig, load_config
from cpm.errors import ConfigError
from cpm.experiments.grids import SMOKE_MODEL
from cpm.models import RegressionHead
from cpm.models.realnvp import RealNVP
from cpm.runtime.build import build_codec, build_loss
from cpm.targets.codecs import RegressionCodec
from cpm.targets.losses import coordinate_loss, rle_nll, stage_weights_for
from cpm.training.loop import train
from tests.helpers import tiny_overrides

LOG_2PI = math.log(2 * math.pi)
# One joint by hand: mu, sigma, target -> x̄ = (target - mu) / sigma = (0.2, -0.4).
MU, SIGMA, TARGET = (0.1, -0.2), (0.5, 0.25), (0.2, -0.3)
FLOW_AT_IDENTITY = (0.2**2 + 0.4**2) / 2 + LOG_2PI  # -log N(x̄; 0, I), the untrained flow's G
LAPLACE = 0.2 + 0.4 + 2 * math.log(2)  # -log of exp(-|x|) / 2 in x and in y: Q
GAUSSIAN = (0.2**2 + 0.4**2) / 2 + LOG_2PI
LOG_SIGMA = math.log(0.5) + math.log(0.25)


def rle_model_config(**fields) -> ModelConfig:
    smoke = {key.removeprefix("model."): value for key, value in SMOKE_MODEL.items() if key.startswith("model.")}
    return ModelConfig(**smoke | {"head": "regression", "regression_loss": "rle"} | fields)


def joints(*rows) -> torch.Tensor:
    return torch.tensor([rows], dtype=torch.float32)  # (1, K, columns)


def randomised(flow: RealNVP, std: float = 0.05, seed: int = 0) -> RealNVP:
    """The flow with every weight and bias drawn from N(0, std^2): a density other than the standard normal."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in flow.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)
    return flow


def test_the_loss_by_hand_with_the_flow_at_identity():
    prediction = joints([*MU, *SIGMA])
    target = joints(TARGET)
    weights = torch.ones(1, 1)
    flow = RealNVP()  # zero-initialised couplings: G is the standard normal density
    expected = FLOW_AT_IDENTITY + LAPLACE + LOG_SIGMA
    assert rle_nll(prediction, target, flow).item() == pytest.approx(expected, rel=1e-6)
    assert coordinate_loss(prediction, target, weights, "rle", flow).item() == pytest.approx(expected, rel=1e-6)
    gaussian = FLOW_AT_IDENTITY + GAUSSIAN + LOG_SIGMA
    assert rle_nll(prediction, target, flow, "gaussian").item() == pytest.approx(gaussian, rel=1e-6)
    # the likelihood of a target at the mean: only the densities' peaks and the scale
    at_mean = rle_nll(joints([0.0, 0.0, 0.1, 0.1]), joints([0.0, 0.0]), flow).item()
    assert at_mean == pytest.approx(LOG_2PI + 2 * math.log(2) + 2 * math.log(0.1), rel=1e-6)


def test_the_loss_reads_a_trained_flow_through_its_log_density():
    flow = randomised(RealNVP())
    prediction, target = joints([*MU, *SIGMA]), joints(TARGET)
    residual = torch.tensor([[0.2, -0.4]])
    expected = -flow.log_prob(residual).item() + LAPLACE + LOG_SIGMA
    assert rle_nll(prediction, target, flow).item() == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(FLOW_AT_IDENTITY + LAPLACE + LOG_SIGMA, rel=1e-3)  # the flow is not the identity


def test_the_flow_starts_at_the_standard_normal_and_stays_a_density():
    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(1)) * 3
    standard = -x.square().sum(-1) / 2 - LOG_2PI
    torch.testing.assert_close(RealNVP().log_prob(x), standard)
    flow = randomised(RealNVP()).double()
    grid = torch.linspace(-12, 12, 241, dtype=torch.float64)
    points = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), dim=-1)  # (241, 241, 2)
    with torch.no_grad():
        density = flow.log_prob(points).exp()
        assert not torch.allclose(flow.log_prob(x.double()), standard.double(), atol=1e-2)
    assert (density.sum() * (grid[1] - grid[0]) ** 2).item() == pytest.approx(1.0, abs=1e-3)


def test_visibility_weights_scale_each_joint_and_leave_out_the_unlabeled():
    flow = randomised(RealNVP())
    prediction = joints([*MU, *SIGMA], [0.3, 0.3, 0.2, 0.4], [0.9, -0.9, 0.05, 0.05]).requires_grad_()
    target = joints(TARGET, [0.1, 0.2], [0.0, 0.0])
    per_joint = rle_nll(prediction, target, flow).detach()  # (1, 3)
    weights = torch.tensor([[1.0, 0.5, 0.0]])
    loss = coordinate_loss(prediction, target, weights, "rle", flow)
    assert loss.item() == pytest.approx((per_joint[0, 0] + 0.5 * per_joint[0, 1]).item() / 3, rel=1e-6)
    loss.backward()
    assert prediction.grad[0, 2].abs().max() == 0  # the unlabeled joint teaches nothing
    assert prediction.grad[0, :2].abs().min() > 0


def test_gradient_reaches_the_mean_the_scale_and_the_flow_of_the_model():
    torch.manual_seed(0)
    model = RegressionHead(rle_model_config(), num_joints=15)
    config = load_config(None, ['model.head="regression"', 'model.regression_loss="rle"'])
    loss_fn = build_loss(config, model)
    image = torch.randn(4, 1, 64, 64)
    [outputs] = model(image)
    assert outputs.shape == (4, 15, 4) and (outputs[..., 2:] > 0).all() and (outputs[..., 2:] < 1).all()
    target = torch.rand(4, 15, 2) * 2 - 1
    loss_fn([outputs], target, torch.ones(4, 15), stage_weights_for(1))["loss"].backward()
    last = model.regressor[-1].weight.grad.view(15, 4, -1)  # rows: x, y, σx, σy of each joint
    assert last[:, :2].abs().sum(-1).min() > 0 and last[:, 2:].abs().sum(-1).min() > 0
    for name, parameter in model.flow.named_parameters():
        if name.endswith(".4.weight"):  # the last layer of every coupling's scale and shift networks
            assert parameter.grad is not None and parameter.grad.abs().max() > 0, name
    with pytest.raises(ValueError, match="needs the model"):
        build_loss(config)


def test_mean_and_scale_move_toward_the_likelihood_s_optimum():
    """With the flow at identity and a Laplace Q, the optimum for one target is μ = target and σ as small as the
    Gaussian term allows: a step lowers the error and, far from the target, raises σ."""
    flow = RealNVP()
    mu = torch.tensor([[[0.0, 0.0]]], requires_grad=True)
    logit = torch.tensor([[[-3.0, -3.0]]], requires_grad=True)
    target = joints([0.5, -0.5])
    rle_nll(torch.cat([mu, logit.sigmoid()], -1), target, flow).sum().backward()
    assert mu.grad[0, 0, 0] < 0 < mu.grad[0, 0, 1]  # descending moves μ toward the target
    assert logit.grad.max() < 0  # σ = 0.047 is far too small for an error of 0.5: descending raises it


def test_the_codec_decodes_the_mean_and_scores_one_minus_the_mean_scale():
    codec = RegressionCodec(input_size=(64, 64))
    outputs = joints([-1 + 1 / 64, 1 - 1 / 64, 0.1, 0.3], [0.0, 0.0, 0.5, 0.5])
    keypoints, confidence = codec.decode(outputs)
    torch.testing.assert_close(keypoints, joints([0.0, 63.0], [31.5, 31.5]))
    torch.testing.assert_close(confidence, torch.tensor([[0.8, 0.5]]))
    _, ones = codec.decode(outputs[..., :2])
    assert ones.eq(1).all()


def test_only_the_regression_head_takes_the_rle_loss():
    with pytest.raises(ConfigError, match="model.regression_loss"):
        load_config(None, ['model.head="integral"', 'model.regression_loss="rle"'])
    assert RegressionHead(rle_model_config(regression_loss="l2")).flow is None


def test_a_smoke_rle_run_trains_evaluates_predicts_and_exports(tmp_path, capfd):
    from cpm.cli import main
    from cpm.evaluation.evaluate import evaluate_checkpoint
    from cpm.inference.predictor import load_predictor
    from cpm.runtime.checkpoint import load_model

    overrides = tiny_overrides(tmp_path, **SMOKE_MODEL, **{
        "model.head": "regression", "model.regression_loss": "rle", "data.train_samples": 32, "train.log_every": 2})
    results = train(load_config(None, overrides), progress=False, log=lambda *a: None)
    run_dir = tmp_path / "runs" / "tiny"
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    losses = [line["val/loss/stage1"] for line in logged if "val/loss/stage1" in line]
    assert losses and all(math.isfinite(loss) for loss in losses)

    model, saved = load_model(run_dir / "last.pt")
    assert saved.model.regression_loss == "rle" and model.flow is not None
    last_layers = [p for name, p in model.flow.named_parameters() if name.endswith(".4.weight")]
    assert all(p.abs().max() > 0 for p in last_layers)  # zero at the start: the flow trained with the head
    again = evaluate_checkpoint(run_dir / "last.pt", progress=False, device_name="cpu")
    np.testing.assert_allclose(again["predictions"], results["predictions"])
    assert again["predictions"].shape[1:] == (1, 15, 2)
    assert 0 < again["confidence"].min() and again["confidence"].max() < 1  # 1 - mean σ, not the ones of l2

    predictor = load_predictor(run_dir / "last.pt", device_name="cpu")
    image = (np.random.default_rng(0).random((80, 60)) * 255).astype(np.uint8)
    prediction = predictor.predict(image)
    crop = torch.from_numpy(prediction.crops[0]).float()[None, None] / 255 * 2 - 1  # the unit input scale
    with torch.no_grad():
        [outputs] = model(crop)
    expected = 1 - outputs[0, :, 2:].mean(-1).numpy()
    np.testing.assert_allclose(prediction.confidence[0], expected, atol=1e-5)

    pytest.importorskip("onnxruntime")
    onnx_path = tmp_path / "rle.onnx"
    capfd.readouterr()
    assert main(["export", str(run_dir / "last.pt"), "--onnx", str(onnx_path)]) == 0
    assert "stages:  (batch, K, 4): x, y" in capfd.readouterr().out
    import onnx
    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    [got] = session.run(None, {"image": crop.numpy()})
    assert got.shape == (1, 15, 4)
    np.testing.assert_allclose(got, outputs.numpy(), atol=1e-4, rtol=0)
    notes = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    assert "sigma" in notes["cpm.outputs"]
    assert build_codec(saved).decode(torch.from_numpy(got))[1][0].numpy() == pytest.approx(expected, abs=1e-4)
