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


BF16 = {"device_type": "cpu", "dtype": torch.bfloat16}


def _random_batch(b: int = 32, seed: int = 0) -> TensorDict:
    g = torch.Generator().manual_seed(seed)
    return TensorDict(
        {
            "observation": torch.randn(b, 5, generator=g),
            "action": torch.rand(b, 3, generator=g) * 2 - 1,
            ("next", "observation"): torch.randn(b, 5, generator=g),
            ("next", "reward"): torch.randn(b, 1, generator=g),
            ("next", "terminated"): torch.rand(b, 1, generator=g) < 0.2,
            ("next", "intrinsic_reward"): torch.rand(b, 1, generator=g) * 0.1,
        },
        batch_size=[b],
    )


def test_terms_under_bf16_autocast_are_float32_and_close_to_fp32():
    torch.manual_seed(0)
    loss = IQLLoss(5, 3, hidden_dims=(32, 32), layer_norm=True)
    reference = loss(_random_batch())
    with torch.autocast(**BF16):
        out = loss(_random_batch())
    assert set(out.keys()) == set(reference.keys()) == {"loss_value", "loss_actor", "loss_qvalue"}
    for name, value in out.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), name
        # Hidden layers run in bf16, so only loosely equal.
        assert value.item() == pytest.approx(reference[name].item(), rel=5e-2), name


def test_targets_expectile_difference_and_weights_are_float32_under_autocast():
    """Q and V of about -95 whose difference is 0.04: bf16 (resolution 0.5 there) would lose
    it. Without hidden layers every layer is an output layer, so bf16 autocast must change
    nothing at all."""
    loss = _linear_iql(temperature=3.0, gamma=0.9)
    with torch.no_grad():
        loss.value.net[0].weight.fill_(2.0)  # V(s) = 2 s + 0.037; min Q = 2 s for s < 0
        loss.value.net[0].bias.fill_(0.037)
    batch = _batch(
        {
            "observation": torch.tensor([[-47.3], [-52.1]]),
            "action": torch.tensor([[0.37], [-0.61]]),
            ("next", "observation"): torch.tensor([[-49.9], [-50.6]]),
            ("next", "reward"): torch.tensor([[-1.3], [0.7]]),
            ("next", "terminated"): torch.tensor([[False], [False]]),
            ("next", "intrinsic_reward"): torch.tensor([[0.013], [0.021]]),
        }
    )
    ref_cache, cache = {}, {}
    reference = {**loss.stage_losses(0, batch, ref_cache), **loss.stage_losses(1, batch, ref_cache)}
    with torch.autocast(**BF16):
        out = {**loss.stage_losses(0, batch, cache), **loss.stage_losses(1, batch, cache)}
    for name in ("target_q", "metric/v_mean", "metric/q_mean", "metric/adv_weight_mean"):
        assert cache[name].dtype == torch.float32, name
        torch.testing.assert_close(cache[name], ref_cache[name], rtol=1e-6, atol=0.0)
    # exp(3 * (Q - V)) with Q - V = -0.037: 0.895, which a bf16 V would not give.
    assert cache["metric/adv_weight_mean"].item() == pytest.approx(math.exp(-3 * 0.037), rel=1e-4)
    for name, value in out.items():
        assert value.dtype == torch.float32
        assert value.item() == pytest.approx(reference[name].item(), rel=1e-6), name


def test_expectile_loss_and_advantage_weight_run_in_float32_on_half_inputs():
    """Q and V near -95 (bf16-exact inputs) 0.5 apart: the difference and its exponential are
    taken in float32 even when the inputs arrive in bf16 under autocast."""
    from ooo_lightning.losses.iql import advantage_weight, expectile_loss

    q, v = torch.tensor([-95.0, -94.5]), torch.tensor([-94.5, -95.0])
    with torch.autocast(**BF16):
        value_loss = expectile_loss(q.bfloat16(), v.bfloat16(), 0.7)
        weight = advantage_weight(q.bfloat16(), v.bfloat16(), 3.0, 100.0)
    assert value_loss.dtype == weight.dtype == torch.float32
    assert value_loss.item() == pytest.approx((0.3 * 0.25 + 0.7 * 0.25) / 2)
    torch.testing.assert_close(weight, torch.tensor([math.exp(-1.5), math.exp(1.5)]))
