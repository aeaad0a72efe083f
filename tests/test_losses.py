import pytest
import torch

from cpm.targets.losses import stage_weights_for, staged_heatmap_loss, weighted_mse


def test_stage_weights_with_and_without_intermediate_supervision():
    assert stage_weights_for(3) == [1.0, 1.0, 1.0]
    assert stage_weights_for(3, intermediate_supervision=False) == [0.0, 0.0, 1.0]
    assert stage_weights_for(2, stage_weights=[0.5, 2]) == [0.5, 2.0]
    with pytest.raises(ValueError):
        stage_weights_for(2, stage_weights=[1.0])


def test_weighted_mse_by_hand():
    prediction = torch.zeros(1, 3, 2, 2)
    target = torch.zeros(1, 3, 2, 2)
    target[0, 0] = 1.0  # joint 0: squared error 1 everywhere
    target[0, 1, 0, 0] = 2.0  # joint 1: one pixel of squared error 4, weight 0
    target[0, 2, 1, 1] = 2.0  # background: one pixel of squared error 4 -> mean 1, weight 1
    loss = weighted_mse(prediction, target, torch.tensor([[1.0, 0.0]]))
    assert loss.item() == pytest.approx((1.0 + 0.0 + 1.0) / 3)


def test_staged_loss_sums_weighted_terms_and_reports_each_stage():
    target = torch.zeros(1, 2, 2, 2)
    beliefs = [torch.full((1, 2, 2, 2), 1.0), torch.full((1, 2, 2, 2), 2.0)]
    losses = staged_heatmap_loss(beliefs, target, torch.ones(1, 1), [0.5, 1.0])
    assert losses["loss/stage1"].item() == pytest.approx(1.0)
    assert losses["loss/stage2"].item() == pytest.approx(4.0)
    assert losses["loss"].item() == pytest.approx(0.5 + 4.0)
