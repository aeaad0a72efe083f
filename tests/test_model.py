import pytest
import torch

from cpm.models import ConvolutionalPoseMachine, build_model
from cpm.targets.losses import stage_weights_for, staged_heatmap_loss
from tests.helpers import tiny


@pytest.mark.parametrize("stages", [1, 2, 3, 4, 5, 6])
def test_forward_returns_one_belief_map_per_stage(stages):
    model = ConvolutionalPoseMachine(tiny(stages=stages))
    beliefs = model(torch.randn(2, 1, 64, 64), torch.rand(2, 1, 8, 8))
    assert len(beliefs) == stages == model.num_stages
    assert all(b.shape == (2, 16, 8, 8) for b in beliefs)


@pytest.mark.parametrize(("in_channels", "height", "width", "stride"),
                         [(1, 64, 64, 8), (3, 64, 64, 8), (3, 96, 128, 8), (1, 48, 80, 4), (3, 128, 64, 8)])
def test_output_grid_is_the_input_divided_by_the_stride(in_channels, height, width, stride):
    options = {"trunk_widths": [4] * (stride.bit_length() - 1)}
    model = ConvolutionalPoseMachine(tiny(**options | {"in_channels": in_channels, "stages": 3, "stride": stride}),
                                     num_joints=14, background=False)
    beliefs = model(torch.randn(1, in_channels, height, width), torch.rand(1, 1, height // stride, width // stride))
    assert [b.shape for b in beliefs] == [(1, 14, height // stride, width // stride)] * 3


def test_model_without_centre_map_needs_none():
    model = ConvolutionalPoseMachine(tiny(stages=2, center_map=False))
    assert model(torch.randn(1, 1, 64, 64))[1].shape == (1, 16, 8, 8)
    with pytest.raises(ValueError, match="centre map"):
        ConvolutionalPoseMachine(tiny(stages=2))(torch.randn(1, 1, 64, 64))


def test_refinement_stages_share_one_image_trunk():
    model = ConvolutionalPoseMachine(tiny(stages=6))
    trunks = [m for name, m in model.named_children() if name.startswith("image_features")]
    assert len(trunks) == 2  # stage 1's own and the one shared by stages 2..6
    assert len(model.stages) == len(model.project) == 5


@pytest.mark.parametrize("stages", [1, 3])
def test_a_shared_trunk_feeds_stage_1_and_the_refinement_stages(stages):
    torch.manual_seed(0)
    two, one = (ConvolutionalPoseMachine(tiny(stages=stages, shared_trunk=shared)) for shared in (False, True))
    trunk = sum(p.numel() for p in two.image_features_stage1.parameters())
    assert one.image_features_stage1 is None
    assert sum(p.numel() for p in one.parameters()) == sum(p.numel() for p in two.parameters()) - trunk * (stages > 1)
    seen = []
    one.image_features.register_forward_hook(lambda module, args, out: seen.append(out))
    beliefs = one(torch.randn(2, 1, 64, 64), torch.rand(2, 1, 8, 8))
    assert len(seen) == 1 and [b.shape for b in beliefs] == [(2, 16, 8, 8)] * stages  # computed once, read by all
    assert torch.allclose(beliefs[0], one.stage1(seen[0]))
    trunk_ids = {id(p) for p in one.image_features.parameters()}
    assert trunk_ids <= {id(p) for p in one.parameter_groups()["stage1.weight"] + one.parameter_groups()["stage1.bias"]}


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("intermediate_supervision", [True, False])
def test_every_parameter_gets_a_gradient(intermediate_supervision, batch_norm):
    torch.manual_seed(0)
    model = ConvolutionalPoseMachine(tiny(stages=3, batch_norm=batch_norm))
    beliefs = model(torch.randn(2, 1, 64, 64), torch.rand(2, 1, 8, 8))
    target = torch.rand(2, 16, 8, 8)
    weights = torch.ones(2, 15)
    stage_weights = stage_weights_for(3, intermediate_supervision=intermediate_supervision)
    staged_heatmap_loss(beliefs, target, weights, stage_weights)["loss"].backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # Without intermediate supervision stage 1 still learns, through the gradient of later stages.
    assert missing == []


def test_build_model_names_unknown_heads():
    with pytest.raises(ValueError, match="unknown head 'fancy'"):
        build_model(tiny(head="fancy"), 15)


@pytest.mark.parametrize("checkpoint_stages", [False, True])
def test_each_refinement_stage_reads_projected_shared_features_previous_beliefs_and_the_centre_map(
        checkpoint_stages):
    # Fig. 2 of the paper: stage t >= 2 sees [project_t(shared trunk(image)), b_{t-1}, centre map], in that order.
    torch.manual_seed(0)
    model = ConvolutionalPoseMachine(tiny(stages=3, checkpoint_stages=checkpoint_stages)).train()
    image, center_map = torch.randn(2, 1, 64, 64), torch.rand(2, 1, 8, 8)
    seen = []
    hooks = [stage.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0].detach()))
             for stage in model.stages]
    beliefs = model(image, center_map)  # training mode with gradients: the checkpointed path when it is on
    for hook in hooks:
        hook.remove()
    seen = seen[:2]  # a checkpointed stage runs again in backward only; there is no backward here
    with torch.no_grad():
        shared = model.image_features(image)
        assert not torch.equal(shared, model.image_features_stage1(image))  # two trunks, not one
        for t, inputs in enumerate(seen):
            expected = torch.cat([model.project[t](shared), beliefs[t].detach(), center_map], dim=1)
            torch.testing.assert_close(inputs, expected, rtol=0, atol=0)
            assert torch.equal(model.stages[t](inputs), beliefs[t + 1].detach())


def test_separable_stages_keep_the_receptive_field_for_fewer_weights():
    from cpm.evaluation.receptive_field import theoretical_receptive_fields

    torch.manual_seed(0)
    options = {"stages": 3, "stage_width": 16, "stage_kernel": 7, "stage_layers": 3}
    dense, separable = (ConvolutionalPoseMachine(tiny(**options, stage_separable=flag)) for flag in (False, True))
    assert [f.size for f in theoretical_receptive_fields(separable)] == \
        [f.size for f in theoretical_receptive_fields(dense)]
    stage_in = separable.stages[0].layers[0].in_channels  # projected features + beliefs + centre map
    depthwise = [m for m in separable.stages[0].modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    assert [(m.groups, m.kernel_size, m.weight.shape[1]) for m in depthwise] == \
        [(stage_in, (7, 7), 1), (16, (7, 7), 1), (16, (7, 7), 1)]
    # per stage: the dense kxk weights (+ biases) give way to depthwise kxk (no bias) + 1x1 (+ bias)
    dense_kxk = 49 * 16 * (stage_in + 16 + 16) + 3 * 16
    separable_kxk = 49 * (stage_in + 16 + 16) + 16 * (stage_in + 16 + 16) + 3 * 16
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(dense) - count(separable) == 2 * (dense_kxk - separable_kxk)
    beliefs = separable(torch.randn(2, 1, 64, 64), torch.rand(2, 1, 8, 8))
    assert [b.shape for b in beliefs] == [(2, 16, 8, 8)] * 3
    beliefs[-1].sum().backward()
    assert all(m.weight.grad is not None and m.weight.grad.abs().sum() > 0 for m in depthwise)
