"""Cal-QL / CQL terms against a per-state, per-action hand computation on tiny linear nets."""

import math

import pytest
import torch
from tensordict import TensorDict

from ooo_lightning.losses import CalQLLoss
from test_iql import _random_batch

N_SAMPLED = 2
GAMMA = 0.9
LOG_STD = -1.0
NOISE = {
    "actor": torch.tensor([[0.3], [-0.2]]),
    "sampled": torch.tensor([[[0.5], [-1.0], [0.1], [0.7]], [[-0.4], [0.2], [1.5], [-0.6]]]),  # [n, 2b, A]
    "next": torch.tensor([[0.2], [-0.8]]),
    "random": torch.tensor([[[0.9], [-0.3]], [[-0.7], [0.4]]]),  # [n, b, A]
}


def q1(s, a):
    return s + a


def q2(s, a):
    return 2 * s - a


def mu(s):
    return 0.5 * s


def _linear_calql(**kwargs) -> CalQLLoss:
    """obs 1-d, action 1-d, no hidden layer: q1 = s + a, q2 = 2 s - a, mu(s) = s / 2, log std -1."""
    loss = CalQLLoss(1, 1, hidden_dims=(), num_sampled_actions=N_SAMPLED, gamma=GAMMA, **kwargs)
    with torch.no_grad():
        layer = loss.qvalue.net[0]
        layer.weight.copy_(torch.tensor([[[1.0], [1.0]], [[2.0], [-1.0]]]))
        layer.bias.zero_()
        loss.target_qvalue.load_state_dict(loss.qvalue.state_dict())
        policy = loss.actor.net[0]
        policy.weight.copy_(torch.tensor([[0.5], [0.0]]))
        policy.bias.copy_(torch.tensor([0.0, LOG_STD]))
    loss.draw_noise = lambda stage, b, ref: NOISE
    return loss


def _batch(mc_return=(-1e3, -1e3)) -> TensorDict:
    return TensorDict(
        {
            "observation": torch.tensor([[1.0], [-0.5]]),
            "action": torch.tensor([[0.5], [-0.25]]),
            ("next", "observation"): torch.tensor([[2.0], [0.4]]),
            ("next", "reward"): torch.tensor([[1.0], [0.0]]),
            ("next", "terminated"): torch.tensor([[False], [True]]),
            "mc_return": torch.tensor(mc_return).reshape(2, 1),
        },
        batch_size=[2],
    )


def _tanh_sample(s, eps):
    u = mu(s) + math.exp(LOG_STD) * eps
    log_prob = -0.5 * eps**2 - LOG_STD - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(u) ** 2)
    return math.tanh(u), log_prob


def _hand(batch, calibrate=True, cql_alpha=5.0, alpha=1.0, target_entropy=-1.0, q_bounds=None, intrinsic=None):
    obs = batch["observation"].reshape(-1).tolist()
    act = batch["action"].reshape(-1).tolist()
    nxt = batch["next", "observation"].reshape(-1).tolist()
    rew = batch["next", "reward"].reshape(-1).tolist()
    term = batch["next", "terminated"].reshape(-1).tolist()
    mc = batch["mc_return"].reshape(-1).tolist()
    b = len(obs)
    q_loss, actor, alpha_loss = 0.0, 0.0, 0.0
    for q in (q1, q2):
        mse, gap = 0.0, 0.0
        for i in range(b):
            a_next, _ = _tanh_sample(nxt[i], NOISE["next"][i, 0].item())
            y = rew[i] + GAMMA * (1 - term[i]) * min(q1(nxt[i], a_next), q2(nxt[i], a_next))
            if q_bounds is not None:
                y = min(max(y, q_bounds[0]), q_bounds[1])
            if intrinsic is not None:
                y += intrinsic[i]
            mse += (q(obs[i], act[i]) - y) ** 2 / b
            terms = []
            for j in range(N_SAMPLED):
                terms.append(q(obs[i], NOISE["random"][j, i, 0].item()) - math.log(0.5))
                a_cur, lp_cur = _tanh_sample(obs[i], NOISE["sampled"][j, i, 0].item())
                a_nxt, lp_nxt = _tanh_sample(nxt[i], NOISE["sampled"][j, b + i, 0].item())
                q_cur, q_nxt = q(obs[i], a_cur), q(obs[i], a_nxt)
                if calibrate:
                    q_cur, q_nxt = max(q_cur, mc[i]), max(q_nxt, mc[i])
                terms += [q_cur - lp_cur, q_nxt - lp_nxt]
            gap += (math.log(sum(math.exp(t) for t in terms)) - q(obs[i], act[i])) / b
        q_loss += mse + cql_alpha * gap
    for i in range(b):
        a_pi, lp = _tanh_sample(obs[i], NOISE["actor"][i, 0].item())
        actor += (alpha * lp - min(q1(obs[i], a_pi), q2(obs[i], a_pi))) / b
        alpha_loss += -math.log(alpha) * (lp + target_entropy) / b
    return q_loss, actor, alpha_loss


def test_cql_terms_match_hand_computation():
    loss = _linear_calql(calibrate=False)
    out = loss(_batch())
    q_loss, actor, alpha_loss = _hand(_batch(), calibrate=False)
    assert out["loss_qvalue"].item() == pytest.approx(q_loss, rel=1e-5)
    assert out["loss_actor"].item() == pytest.approx(actor, rel=1e-5)
    assert out["loss_alpha"].item() == pytest.approx(alpha_loss, abs=1e-6)


def test_calibrated_terms_match_hand_computation():
    # State 0's bound lies between its policy-action Q values, state 1's above all of them.
    batch = _batch(mc_return=(1.2, 3.0))
    out = _linear_calql()(batch)
    assert out["loss_qvalue"].item() == pytest.approx(_hand(batch)[0], rel=1e-5)
    assert out["loss_qvalue"].item() > _hand(batch, calibrate=False)[0] + 1e-3


def test_q_bounds_clip_the_td_target_before_the_intrinsic_reward():
    # Unclipped targets are about 3.5 and 0; the bounds (-0.5, 1) cut the first one only.
    batch = _batch()
    batch["next", "intrinsic_reward"] = torch.tensor([[0.25], [0.5]])
    out = _linear_calql(calibrate=False, q_bounds=(-0.5, 1.0))(batch)
    expected = _hand(batch, calibrate=False, q_bounds=(-0.5, 1.0), intrinsic=(0.25, 0.5))[0]
    assert out["loss_qvalue"].item() == pytest.approx(expected, rel=1e-5)
    unbounded = _hand(batch, calibrate=False, intrinsic=(0.25, 0.5))[0]
    assert abs(expected - unbounded) > 1.0


def test_calibration_changes_nothing_where_q_is_above_the_return():
    low = _batch(mc_return=(-1e3, -1e3))
    assert _linear_calql()(low)["loss_qvalue"].item() == pytest.approx(
        _linear_calql(calibrate=False)(low)["loss_qvalue"].item(), rel=1e-6
    )
    # A bound above every Q of state 0 and below every Q of state 1: half the policy actions.
    cache = {}
    _linear_calql().stage_losses(0, _batch(mc_return=(1e3, -1e3)), cache)
    assert cache["metric/calibrated_fraction"].item() == 0.5


def test_calibration_needs_returns_in_the_batch():
    batch = _batch().exclude("mc_return")
    with pytest.raises(KeyError, match="calibrate: false"):
        _linear_calql()(batch)
    _linear_calql(calibrate=False)(batch)  # plain CQL does not need them


def test_policy_loss_does_not_step_the_critic():
    loss = _linear_calql(calibrate=False)
    terms = loss.stage_losses(0, _batch(), {})
    terms["actor"].backward()
    assert all(p.grad is None for p in loss.qvalue.parameters())
    assert loss.actor.net[0].weight.grad is not None


@pytest.mark.parametrize("target_gap, direction", [(-100.0, 1), (100.0, -1)])
def test_lagrange_multiplier_moves_towards_the_target_gap(target_gap, direction):
    loss = _linear_calql(calibrate=False, lagrange=True, target_action_gap=target_gap, cql_alpha_lr=0.1)
    assert "cql_alpha" in loss.terms
    opt = torch.optim.Adam(loss.term_parameters("cql_alpha"), lr=loss.term_learning_rate("cql_alpha"))
    before = loss.log_cql_alpha.item()
    for _ in range(3):
        opt.zero_grad()
        loss.stage_losses(0, _batch(), {})["cql_alpha"].backward()
        opt.step()
    # gap above target (target -100): weight grows; gap below target (+100): weight shrinks.
    assert direction * (loss.log_cql_alpha.item() - before) > 0.2


def test_fixed_alpha_and_no_lagrange_have_no_such_terms():
    loss = CalQLLoss(3, 2, auto_alpha=False, init_alpha=0.2)
    assert loss.terms == ("actor", "qvalue")
    assert loss.log_alpha.exp().item() == pytest.approx(0.2)


def test_random_batches_give_finite_losses_and_expected_shapes():
    torch.manual_seed(0)
    loss = CalQLLoss(5, 3, hidden_dims=(16, 16), num_qvalue_nets=3, layer_norm=True, lagrange=True)
    b = 7
    batch = TensorDict(
        {
            "observation": torch.randn(b, 5),
            "action": torch.rand(b, 3) * 2 - 1,
            ("next", "observation"): torch.randn(b, 5),
            ("next", "reward"): torch.randn(b, 1),
            ("next", "terminated"): torch.zeros(b, 1, dtype=torch.bool),
            ("next", "intrinsic_reward"): torch.rand(b, 1),
            "mc_return": torch.full((b, 1), float("-inf")),  # pending rows: no calibration
        },
        batch_size=[b],
    )
    out = loss(batch)
    assert set(out.keys()) == {"loss_actor", "loss_qvalue", "loss_alpha", "loss_cql_alpha"}
    assert all(torch.isfinite(v) for v in out.values())


BF16 = {"device_type": "cpu", "dtype": torch.bfloat16}


def test_terms_under_bf16_autocast_are_float32_and_close_to_fp32():
    torch.manual_seed(0)
    loss = CalQLLoss(5, 3, hidden_dims=(32, 32), num_sampled_actions=4, lagrange=True, init_alpha=0.5)
    batch = _random_batch(16, seed=1)
    batch.set("mc_return", torch.randn(16, 1, generator=torch.Generator().manual_seed(3)))
    torch.manual_seed(2)  # the same noise draws in both runs
    reference = loss(batch)
    torch.manual_seed(2)
    with torch.autocast(**BF16):
        out = loss(batch)
    assert set(out.keys()) == {"loss_actor", "loss_qvalue", "loss_alpha", "loss_cql_alpha"}
    for name, value in out.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), name
        # Hidden layers run in bf16, so only loosely equal.
        assert value.item() == pytest.approx(reference[name].item(), rel=5e-2), name


def test_hand_computation_holds_under_bf16_autocast():
    """Without hidden layers every layer is an output layer: the log-densities, TD target,
    logsumexp and temperature loss must come out as in float32."""
    batch = _batch(mc_return=(1.2, 3.0))
    with torch.autocast(**BF16):
        out = _linear_calql(init_alpha=0.5)(batch)
    q_loss, actor, alpha_loss = _hand(batch, alpha=0.5)
    assert all(value.dtype == torch.float32 for value in out.values())
    assert out["loss_qvalue"].item() == pytest.approx(q_loss, rel=1e-5)
    assert out["loss_actor"].item() == pytest.approx(actor, rel=1e-5)
    assert out["loss_alpha"].item() == pytest.approx(alpha_loss, rel=1e-5)


def test_conservative_gap_of_large_q_values_is_float32_under_autocast():
    """The gap logsumexp(Q_sampled - log density) - Q(s, a_data) does not change when every Q
    (and the calibration bound) moves by -47.3; bf16 resolves Q there to 0.25 only."""
    cache = {}
    _linear_calql(lagrange=True).stage_losses(0, _batch(mc_return=(1.2, 3.0)), cache)
    shifted = _linear_calql(lagrange=True)
    with torch.no_grad():
        shifted.qvalue.net[0].bias.fill_(-47.3)
        shifted.target_qvalue.net[0].bias.fill_(-47.3)
    batch = _batch(mc_return=(1.2 - 47.3, 3.0 - 47.3))
    shifted_cache, reference_cache = {}, {}
    reference = shifted.stage_losses(0, batch, reference_cache)
    with torch.autocast(**BF16):
        out = shifted.stage_losses(0, batch, shifted_cache)
    for name in ("metric/cql_gap", "metric/entropy", "metric/q_mean", "metric/calibrated_fraction"):
        assert shifted_cache[name].dtype == torch.float32, name
        torch.testing.assert_close(shifted_cache[name], reference_cache[name], rtol=1e-6, atol=0.0)
    assert shifted_cache["metric/cql_gap"].item() == pytest.approx(cache["metric/cql_gap"].item(), abs=1e-4)
    for name, value in out.items():
        assert value.dtype == torch.float32
        assert value.item() == pytest.approx(reference[name].item(), rel=1e-6), name
