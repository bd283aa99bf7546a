"""SAC (RLPD-style) loss terms on cases small enough to check by hand."""

import math

import pytest
import torch
from tensordict import TensorDict

from ooo_lightning.losses import staged_update
from ooo_lightning.losses.sac import SACLoss

# Critic members of the linear case: q_i(s, a) = ws * s + wa * a + bias.
MEMBERS = [(1.0, 1.0, 0.0), (2.0, 0.0, 0.0), (0.0, -1.0, 1.0)]
MU, LOG_STD = 0.3, -1.0


def _linear_sac(**kwargs) -> SACLoss:
    """obs 1-d, action 1-d, no hidden layer: every network is an affine map we set by hand."""
    kwargs.setdefault("num_qvalue_nets", 3)
    kwargs.setdefault("layer_norm", False)
    loss = SACLoss(1, 1, hidden_dims=(), **kwargs)
    with torch.no_grad():
        q_layer = loss.qvalue.net[0]
        q_layer.weight.copy_(torch.tensor([[[ws], [wa]] for ws, wa, _ in MEMBERS[: loss.num_qvalue_nets]]))
        q_layer.bias.copy_(torch.tensor([[[bias]] for _, _, bias in MEMBERS[: loss.num_qvalue_nets]]))
        loss.target_qvalue.load_state_dict(loss.qvalue.state_dict())
        # Policy: pre-tanh Normal(MU, exp(LOG_STD)) in every state.
        loss.actor.net[0].weight.zero_()
        loss.actor.net[0].bias.copy_(torch.tensor([MU, LOG_STD]))
    return loss


def _batch(overrides: dict | None = None) -> TensorDict:
    data = {
        "observation": torch.tensor([[1.0], [2.0]]),
        "action": torch.tensor([[0.5], [-0.5]]),
        ("next", "observation"): torch.tensor([[3.0], [-1.0]]),
        ("next", "reward"): torch.tensor([[1.0], [0.5]]),
        ("next", "terminated"): torch.tensor([[False], [False]]),
    }
    data.update(overrides or {})
    return TensorDict(data, batch_size=[2])


def _fix_noise(loss: SACLoss, next_eps, members, actor_eps=(0.0, 0.0)) -> None:
    def draw_noise(stage, batch_size, reference):
        if stage == 0:
            return {"next": torch.tensor(next_eps).reshape(batch_size, 1), "members": torch.tensor(members)}
        return {"actor": torch.tensor(actor_eps).reshape(batch_size, 1)}

    loss.draw_noise = draw_noise


def _squash(eps: float) -> tuple[float, float]:
    """Action and log-density of the fixed policy for noise eps."""
    u = MU + math.exp(LOG_STD) * eps
    log_prob = -0.5 * eps**2 - LOG_STD - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(u) ** 2)
    return math.tanh(u), log_prob


def _q(member: int, s: float, a: float) -> float:
    ws, wa, bias = MEMBERS[member]
    return ws * s + wa * a + bias


def _expected_q_loss(batch, next_eps, members, gamma, alpha, backup_entropy=True, num_nets=3, bonus=(0.0, 0.0)):
    obs = batch["observation"].flatten().tolist()
    action = batch["action"].flatten().tolist()
    next_obs = batch["next", "observation"].flatten().tolist()
    reward = batch["next", "reward"].flatten().tolist()
    terminated = batch["next", "terminated"].flatten().tolist()
    total = 0.0
    for i in range(len(obs)):
        a_next, log_prob = _squash(next_eps[i])
        next_q = min(_q(m, next_obs[i], a_next) for m in members)
        if backup_entropy:
            next_q -= alpha * log_prob
        target = reward[i] + bonus[i] + gamma * (1.0 - terminated[i]) * next_q
        total += sum((_q(m, obs[i], action[i]) - target) ** 2 for m in range(num_nets))
    return total / (len(obs) * num_nets)


@pytest.mark.parametrize("backup_entropy", [True, False])
def test_q_loss_matches_hand_computation(backup_entropy):
    loss = _linear_sac(gamma=0.9, init_alpha=0.5, backup_entropy=backup_entropy)
    _fix_noise(loss, next_eps=[0.7, -1.2], members=[0, 2])
    out = loss(_batch())
    expected = _expected_q_loss(_batch(), [0.7, -1.2], [0, 2], 0.9, 0.5, backup_entropy)
    assert out["loss_qvalue"].item() == pytest.approx(expected, rel=1e-5)
    # A different subset gives a different target here, so the subset is really used.
    _fix_noise(loss, next_eps=[0.7, -1.2], members=[1, 2])
    other = _expected_q_loss(_batch(), [0.7, -1.2], [1, 2], 0.9, 0.5, backup_entropy)
    assert other != pytest.approx(expected, rel=1e-3)
    assert loss(_batch())["loss_qvalue"].item() == pytest.approx(other, rel=1e-5)


def test_q_loss_with_the_default_random_draws_is_reproducible_by_reseeding():
    loss = _linear_sac(gamma=0.9, num_min_qs=2)
    torch.manual_seed(3)
    value = loss(_batch())["loss_qvalue"].item()
    torch.manual_seed(3)
    noise = loss.draw_noise(0, 2, torch.zeros(1))
    expected = _expected_q_loss(_batch(), noise["next"].flatten().tolist(), noise["members"].tolist(), 0.9, 1.0)
    assert value == pytest.approx(expected, rel=1e-5)


def test_terminated_transitions_do_not_bootstrap():
    batch = _batch({("next", "terminated"): torch.tensor([[True], [True]])})
    loss = _linear_sac(gamma=0.9)
    _fix_noise(loss, next_eps=[0.7, -1.2], members=[0, 2])
    out = loss(batch)
    # TD targets are the rewards [1, 0.5] whatever the next state.
    q = [[_q(m, s, a) for s, a in ((1.0, 0.5), (2.0, -0.5))] for m in range(3)]
    expected = sum((q[m][0] - 1.0) ** 2 + (q[m][1] - 0.5) ** 2 for m in range(3)) / 6
    assert out["loss_qvalue"].item() == pytest.approx(expected, rel=1e-6)


def test_intrinsic_reward_is_added_to_the_target():
    bonus = (0.25, -2.0)
    batch = _batch({("next", "intrinsic_reward"): torch.tensor([[bonus[0]], [bonus[1]]])})
    loss = _linear_sac(gamma=0.9)
    _fix_noise(loss, next_eps=[0.7, -1.2], members=[0, 2])
    expected = _expected_q_loss(batch, [0.7, -1.2], [0, 2], 0.9, 1.0, bonus=bonus)
    assert loss(batch)["loss_qvalue"].item() == pytest.approx(expected, rel=1e-5)
    assert expected != pytest.approx(_expected_q_loss(batch, [0.7, -1.2], [0, 2], 0.9, 1.0), rel=1e-3)


def _target_values(loss: SACLoss, draws: int) -> list[float]:
    """TD targets of one terminal-free transition with reward 0 and gamma 1, one per draw."""
    batch = _batch()[:1]
    values = []
    for seed in range(draws):
        torch.manual_seed(seed)
        # With Q(s, a) = 0 the loss is the squared target.
        with torch.no_grad():
            loss.qvalue.net[0].weight.zero_()
            loss.qvalue.net[0].bias.zero_()
        values.append(round(math.sqrt(loss(batch.clone().update({("next", "reward"): torch.zeros(1, 1)}))["loss_qvalue"].item()), 4))
    return values


def _constant_target_critics(loss: SACLoss, constants) -> None:
    with torch.no_grad():
        loss.target_qvalue.net[0].weight.zero_()
        loss.target_qvalue.net[0].bias.copy_(torch.tensor(constants).reshape(-1, 1, 1))


def test_subset_minimum_uses_exactly_num_min_qs_members():
    # Target critics are constants 1, 2, 3 (positive, so |target| = target).
    loss = _linear_sac(gamma=1.0, num_min_qs=2, backup_entropy=False)
    _constant_target_critics(loss, [1.0, 2.0, 3.0])
    counts = {}
    for value in _target_values(loss, 300):
        counts[value] = counts.get(value, 0) + 1
    # Pairs {0,1}, {0,2} -> 1 and {1,2} -> 2: never 3 (one member), 2 about a third of the time.
    assert set(counts) == {1.0, 2.0}
    assert 0.2 < counts[2.0] / 300 < 0.47

    single = _linear_sac(gamma=1.0, num_min_qs=1, backup_entropy=False)
    _constant_target_critics(single, [1.0, 2.0, 3.0])
    assert set(_target_values(single, 100)) == {1.0, 2.0, 3.0}


def test_all_members_give_the_full_minimum():
    loss = _linear_sac(gamma=1.0, num_min_qs=3, backup_entropy=False)
    _constant_target_critics(loss, [2.0, 1.0, 3.0])
    assert set(_target_values(loss, 20)) == {1.0}


def test_actor_and_alpha_terms_match_hand_computation():
    loss = _linear_sac(init_alpha=0.5, actor_q_reduction="mean")
    _fix_noise(loss, next_eps=[0.0, 0.0], members=[0, 1], actor_eps=[0.4, -0.8])
    cache = {}
    loss.stage_losses(0, _batch(), cache)
    terms = loss.stage_losses(1, _batch(), cache)
    samples = [_squash(0.4), _squash(-0.8)]
    q_mean = [sum(_q(m, s, a) for m in range(3)) / 3 for s, (a, _) in zip((1.0, 2.0), samples)]
    expected_actor = sum(0.5 * lp - q for (_, lp), q in zip(samples, q_mean)) / 2
    assert terms["actor"].item() == pytest.approx(expected_actor, rel=1e-5)
    target_entropy = -0.5  # -action_dim / 2
    expected_alpha = -sum(0.5 * (lp + target_entropy) for _, lp in samples) / 2
    assert terms["alpha"].item() == pytest.approx(expected_alpha, rel=1e-5)
    assert cache["metric/entropy"].item() == pytest.approx(-(samples[0][1] + samples[1][1]) / 2, rel=1e-5)
    assert cache["metric/alpha"].item() == pytest.approx(0.5)

    pessimist = _linear_sac(init_alpha=0.5, actor_q_reduction="min")
    _fix_noise(pessimist, next_eps=[0.0, 0.0], members=[0, 1], actor_eps=[0.4, -0.8])
    q_min = [min(_q(m, s, a) for m in range(3)) for s, (a, _) in zip((1.0, 2.0), samples)]
    expected_min = sum(0.5 * lp - q for (_, lp), q in zip(samples, q_min)) / 2
    assert pessimist(_batch())["loss_actor"].item() == pytest.approx(expected_min, rel=1e-5)


def test_actor_loss_does_not_reach_the_critic_or_alpha():
    loss = _linear_sac()
    terms = loss.stage_losses(1, _batch(), {})
    terms["actor"].backward()
    assert all(p.grad is None for p in loss.qvalue.parameters())
    assert loss.log_alpha.grad is None
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in loss.actor.parameters())


# Entropy of tanh(Normal(0, e^log_std)): about -4.6 at log_std -6, 0.67 (near the maximum) at 0.
@pytest.mark.parametrize("log_std, alpha_should_grow", [(-6.0, True), (0.0, False)])
def test_alpha_gradient_moves_entropy_towards_target(log_std, alpha_should_grow):
    loss = SACLoss(1, 1, hidden_dims=(), num_qvalue_nets=2)
    with torch.no_grad():
        loss.actor.net[0].weight.zero_()
        loss.actor.net[0].bias.copy_(torch.tensor([0.0, log_std]))
    torch.manual_seed(0)
    batch = TensorDict({"observation": torch.zeros(256, 1)}, batch_size=[256])
    cache = {}
    terms = loss.stage_losses(1, batch, cache)
    entropy_below_target = cache["metric/entropy"].item() < loss.target_entropy
    assert entropy_below_target == alpha_should_grow
    terms["alpha"].backward()
    # Gradient descent raises log alpha when its gradient is negative.
    assert (loss.log_alpha.grad.item() < 0) == alpha_should_grow


def test_actor_update_every_skips_the_actor_stage():
    loss = _linear_sac(actor_update_every=3)
    optimizers = {t: torch.optim.SGD(loss.term_parameters(t), lr=0.0) for t in loss.terms}
    ran = []
    for update in range(1, 8):
        losses, _ = staged_update(loss, _batch(), optimizers)
        assert "qvalue" in losses
        if "actor" in losses:
            assert set(losses) == {"qvalue", "actor", "alpha"}
            ran.append(update)
    assert ran == [3, 6]


def test_target_critic_is_soft_updated_after_the_critic_stage():
    loss = _linear_sac(target_update_rate=0.5)
    with torch.no_grad():
        loss.qvalue.net[0].weight.add_(2.0)
    before = loss.target_qvalue.net[0].weight.clone()
    loss.after_stage(1)
    assert torch.equal(loss.target_qvalue.net[0].weight, before)
    loss.after_stage(0)
    assert torch.allclose(loss.target_qvalue.net[0].weight, before + 1.0)


def test_contract_and_defaults():
    loss = SACLoss(3, 4, hidden_dims=(8,))
    assert loss.stages == (("qvalue",), ("actor", "alpha"))
    assert loss.target_entropy == -2.0
    assert loss.num_qvalue_nets == 10 and loss.num_min_qs == 2
    assert loss.policy is loss.actor
    assert loss.term_parameters("alpha") == [loss.log_alpha]
    assert loss.term_parameters("qvalue") == list(loss.qvalue.parameters())
    assert loss.term_parameters("actor") == list(loss.actor.parameters())
    assert all(not p.requires_grad for p in loss.target_qvalue.parameters())
    assert SACLoss(1, 1, alpha_lr=1e-3).term_learning_rate("alpha") == 1e-3
    assert SACLoss(1, 3, target_entropy=-3.0).target_entropy == -3.0
    assert loss.policy.act(torch.zeros(5, 3)).shape == (5, 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_min_qs": 0}, "num_min_qs"),
        ({"num_qvalue_nets": 2, "num_min_qs": 3}, "num_min_qs"),
        ({"actor_update_every": 0}, "actor_update_every"),
        ({"actor_q_reduction": "max"}, "actor_q_reduction"),
    ],
)
def test_bad_options_are_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SACLoss(1, 1, **kwargs)


def test_forward_returns_finite_terms():
    torch.manual_seed(0)
    loss = SACLoss(5, 2, hidden_dims=(16, 16))
    batch = TensorDict(
        {
            "observation": torch.randn(32, 5),
            "action": torch.rand(32, 2) * 2 - 1,
            ("next", "observation"): torch.randn(32, 5),
            ("next", "reward"): torch.randn(32, 1),
            ("next", "terminated"): torch.rand(32, 1) < 0.1,
        },
        batch_size=[32],
    )
    out = loss(batch)
    assert set(out.keys()) == {"loss_qvalue", "loss_actor", "loss_alpha"}
    for value in out.values():
        assert value.shape == () and torch.isfinite(value)


def test_policy_learns_the_best_action_of_a_one_step_bandit():
    """Single state, reward -(a - 0.5)^2, terminal: the policy mean must move to 0.5."""
    torch.manual_seed(0)
    loss = SACLoss(1, 1, hidden_dims=(32, 32), num_qvalue_nets=4, init_alpha=0.05, actor_update_every=2)
    optimizers = {t: torch.optim.Adam(loss.term_parameters(t), lr=3e-3) for t in loss.terms}
    obs = torch.zeros(1, 1)
    start = loss.policy.act(obs).item()
    for _ in range(300):
        action = torch.rand(64, 1) * 2 - 1
        batch = TensorDict(
            {
                "observation": obs.expand(64, 1),
                "action": action,
                ("next", "observation"): obs.expand(64, 1),
                ("next", "reward"): -(action - 0.5).pow(2),
                ("next", "terminated"): torch.ones(64, 1, dtype=torch.bool),
            },
            batch_size=[64],
        )
        staged_update(loss, batch, optimizers)  # the Lightning module's own update
    assert abs(start - 0.5) > 0.3
    assert loss.policy.act(obs).item() == pytest.approx(0.5, abs=0.1)


BF16 = {"device_type": "cpu", "dtype": torch.bfloat16}


def test_terms_under_bf16_autocast_are_float32_and_close_to_fp32():
    torch.manual_seed(0)
    loss = SACLoss(5, 2, hidden_dims=(32, 32), init_alpha=0.5)
    g = torch.Generator().manual_seed(1)
    batch = TensorDict(
        {
            "observation": torch.randn(32, 5, generator=g),
            "action": torch.rand(32, 2, generator=g) * 2 - 1,
            ("next", "observation"): torch.randn(32, 5, generator=g),
            ("next", "reward"): torch.randn(32, 1, generator=g),
            ("next", "terminated"): torch.rand(32, 1, generator=g) < 0.1,
            ("next", "intrinsic_reward"): torch.rand(32, 1, generator=g) * 0.1,
        },
        batch_size=[32],
    )
    torch.manual_seed(2)  # the same noise draws in both runs
    reference = loss(batch)
    torch.manual_seed(2)
    with torch.autocast(**BF16):
        out = loss(batch)
    assert set(out.keys()) == {"loss_qvalue", "loss_actor", "loss_alpha"}
    for name, value in out.items():
        assert value.dtype == torch.float32 and torch.isfinite(value), name
        # Hidden layers run in bf16, so only loosely equal.
        assert value.item() == pytest.approx(reference[name].item(), rel=5e-2), name


def test_hand_computation_holds_under_bf16_autocast():
    """Without hidden layers every layer is an output layer: the TD target with its entropy
    term, the log-densities and the temperature loss must come out as in float32."""
    loss = _linear_sac(gamma=0.9, init_alpha=0.5)
    _fix_noise(loss, next_eps=[0.7, -1.2], members=[0, 2], actor_eps=[0.4, -0.8])
    cache = {}
    with torch.autocast(**BF16):
        q_terms = loss.stage_losses(0, _batch(), cache)
        actor_terms = loss.stage_losses(1, _batch(), cache)
    expected_q = _expected_q_loss(_batch(), [0.7, -1.2], [0, 2], 0.9, 0.5)
    assert q_terms["qvalue"].dtype == torch.float32
    assert q_terms["qvalue"].item() == pytest.approx(expected_q, rel=1e-5)
    samples = [_squash(0.4), _squash(-0.8)]
    expected_alpha = -sum(0.5 * (lp - 0.5) for _, lp in samples) / 2
    assert actor_terms["alpha"].dtype == cache["metric/entropy"].dtype == torch.float32
    assert actor_terms["alpha"].item() == pytest.approx(expected_alpha, rel=1e-5)
    assert cache["metric/entropy"].item() == pytest.approx(-(samples[0][1] + samples[1][1]) / 2, rel=1e-5)


def test_td_target_of_large_q_values_is_float32_under_autocast():
    """Target critics near -50 (bf16 resolution 0.25) and a bonus of 0.01: under autocast the
    critic loss must be the float32 one, i.e. the bonus must not be rounded away."""
    bonus = {("next", "intrinsic_reward"): torch.tensor([[0.013], [0.011]])}
    losses = {}
    for name, extra in (("plain", {}), ("bonus", bonus)):
        loss = _linear_sac(gamma=0.99, init_alpha=0.5)
        with torch.no_grad():
            loss.qvalue.net[0].bias.add_(-47.3)
            loss.target_qvalue.net[0].bias.add_(-47.3)
        _fix_noise(loss, next_eps=[0.7, -1.2], members=[0, 2])
        reference = loss(_batch(extra))["loss_qvalue"]
        with torch.autocast(**BF16):
            out = loss(_batch(extra))["loss_qvalue"]
        assert out.dtype == torch.float32
        assert out.item() == pytest.approx(reference.item(), rel=1e-6)
        losses[name] = out.item()
    assert losses["bonus"] != pytest.approx(losses["plain"], rel=1e-4)


def test_td_target_and_temperature_loss_run_in_float32_on_half_inputs():
    """The shared helpers themselves: half-precision inputs under autocast are computed on in
    float32, so a bonus of 0.01 on a target near -47 survives (bf16 would round it away)."""
    from ooo_lightning.losses.base import td_target, temperature_loss

    reward, not_terminal = torch.tensor([-1.0, 0.5]), torch.tensor([1.0, 1.0])
    next_q, log_prob = torch.tensor([-47.25, -46.5]), torch.tensor([-1.5, 0.75])  # bf16-exact
    intrinsic = torch.tensor([0.013, 0.011])
    args = (reward, not_terminal, next_q, 0.99)
    kwargs = {"alpha": torch.tensor(0.5), "next_log_prob": log_prob, "intrinsic": intrinsic}
    with torch.autocast(**BF16):
        target = td_target(*(a.bfloat16() if torch.is_tensor(a) else a for a in args), **kwargs)
        no_bonus = td_target(*args, alpha=torch.tensor(0.5), next_log_prob=log_prob.bfloat16())
        alpha_loss = temperature_loss(torch.tensor(0.5), log_prob.bfloat16(), -0.5)
    assert target.dtype == no_bonus.dtype == alpha_loss.dtype == torch.float32
    torch.testing.assert_close(target, td_target(*args, **kwargs), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(target - no_bonus, intrinsic, rtol=1e-4, atol=1e-6)
    assert alpha_loss.item() == pytest.approx(-0.5 * ((-1.5 - 0.5) + (0.75 - 0.5)) / 2)
