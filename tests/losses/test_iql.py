"""IQL loss terms on a one-dimensional case small enough to check by hand."""

import math

import pytest
import torch
from tensordict import TensorDict

from ooo_lightning.losses import IQLLoss


def _linear_iql(**kwargs) -> IQLLoss:
    """obs 1-d, action 1-d, no hidden layer: every network is an affine map we set by hand."""
    loss = IQLLoss(1, 1, hidden_dims=(), **kwargs)
    with torch.no_grad():
        # Q ensemble: q1(s, a) = s + a, q2(s, a) = 2 s
        q_layer = loss.qvalue.net[0]
        q_layer.weight.copy_(torch.tensor([[[1.0], [1.0]], [[2.0], [0.0]]]))
        q_layer.bias.zero_()
        loss.target_qvalue.load_state_dict(loss.qvalue.state_dict())
        # V(s) = s
        loss.value.net[0].weight.fill_(1.0)
        loss.value.net[0].bias.zero_()
        # policy mean tanh(0) = 0, log std 0
        loss.actor.net[0].weight.zero_()
        loss.actor.net[0].bias.zero_()
        loss.actor.log_std.zero_()
    return loss


def _batch(overrides: dict | None = None) -> TensorDict:
    data = {
        "observation": torch.tensor([[1.0], [2.0]]),
        "action": torch.tensor([[0.5], [-0.5]]),
        ("next", "observation"): torch.tensor([[3.0], [5.0]]),
        ("next", "reward"): torch.tensor([[1.0], [0.0]]),
        ("next", "terminated"): torch.tensor([[False], [True]]),
    }
    data.update(overrides or {})
    return TensorDict(data, batch_size=[2])


def test_iql_terms_match_hand_computation():
    loss = _linear_iql(expectile=0.7, temperature=2.0, gamma=0.9)
    out = loss(_batch())
    # min target Q = [1.5, 1.5]; V = [1, 2]; diff = [0.5, -0.5]; weights [0.7, 0.3]
    assert out["loss_value"].item() == pytest.approx((0.7 * 0.25 + 0.3 * 0.25) / 2)
    # TD target = [1 + 0.9 * V(3), 0] = [3.7, 0]; q1 = [1.5, 1.5], q2 = [2, 4]; mean over both
    expected_q = ((1.5 - 3.7) ** 2 + 1.5**2 + (2 - 3.7) ** 2 + 4**2) / 4
    assert out["loss_qvalue"].item() == pytest.approx(expected_q)
    # weights exp(2 * [0.5, -0.5]); log N(+-0.5; 0, 1)
    log_prob = -0.5 * 0.25 - 0.5 * math.log(2 * math.pi)
    expected_actor = -(math.exp(1.0) + math.exp(-1.0)) / 2 * log_prob
    assert out["loss_actor"].item() == pytest.approx(expected_actor, rel=1e-5)


def test_advantage_weight_is_capped():
    loss = _linear_iql(temperature=1000.0, max_weight=100.0)
    cache = {}
    loss.stage_losses(0, _batch(), cache)
    loss.stage_losses(1, _batch(), cache)
    assert cache["metric/adv_weight_mean"].item() == pytest.approx((100.0 + 0.0) / 2)


def test_intrinsic_reward_is_added_after_the_q_clip():
    loss = _linear_iql(gamma=0.9, q_bounds=(-1.0, 1.0))
    batch = _batch({("next", "intrinsic_reward"): torch.tensor([[0.5], [0.5]])})
    # clipped TD target [min(3.7, 1), 0] + 0.5 = [1.5, 0.5]; target-Q at data clipped to [1, 1]
    out = loss(batch)
    expected_q = ((1.5 - 1.5) ** 2 + (1.5 - 0.5) ** 2 + (2 - 1.5) ** 2 + (4 - 0.5) ** 2) / 4
    assert out["loss_qvalue"].item() == pytest.approx(expected_q)


def test_keys_are_configurable():
    loss = _linear_iql(keys={"observation": "obs", "reward": ["next", "task_reward"]})
    batch = _batch()
    batch.rename_key_("observation", "obs")
    batch.rename_key_(("next", "reward"), ("next", "task_reward"))
    reference = _linear_iql()(_batch())
    out = loss(batch)
    for name in ("loss_value", "loss_qvalue", "loss_actor"):
        assert out[name].item() == pytest.approx(reference[name].item())
    with pytest.raises(ValueError, match="unknown loss key"):
        IQLLoss(1, 1, keys={"obsevation": "x"})


def test_target_update_is_polyak_after_the_critic_stage():
    loss = _linear_iql(target_update_rate=0.5)
    with torch.no_grad():
        loss.qvalue.net[0].weight.add_(2.0)
    before = loss.target_qvalue.net[0].weight.clone()
    loss.after_stage(0)
    assert torch.equal(loss.target_qvalue.net[0].weight, before)
    loss.after_stage(1)
    assert torch.allclose(loss.target_qvalue.net[0].weight, before + 1.0)


def test_bad_expectile_is_rejected():
    with pytest.raises(ValueError, match="expectile"):
        IQLLoss(1, 1, expectile=1.0)
