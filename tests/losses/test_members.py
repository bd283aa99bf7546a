"""``MemberStack``: K agents of one loss trained as one, each exactly as its solo run (issue 14)."""

from functools import partial

import pytest
import torch
from tensordict import TensorDict

from ooo_lightning.config_checks import ConfigError
from ooo_lightning.losses import CalQLLoss, IQLLoss, SACLoss, staged_update
from ooo_lightning.losses.members import MEMBER_LOSS, MemberStack

OBS, ACT, K, B, ROWS = 4, 2, 3, 32, 500
LOSSES = {
    "iql": partial(IQLLoss, OBS, ACT, hidden_dims=(32, 32)),
    "calql": partial(CalQLLoss, OBS, ACT, hidden_dims=(32, 32), num_sampled_actions=3),
    "sac": partial(SACLoss, OBS, ACT, hidden_dims=(32, 32)),
    "sac_delayed_actor": partial(SACLoss, OBS, ACT, hidden_dims=(32, 32), actor_update_every=2),
}


def _data() -> TensorDict:
    g = torch.Generator().manual_seed(0)
    return TensorDict({
        "observation": torch.randn(ROWS, OBS, generator=g),
        "action": torch.rand(ROWS, ACT, generator=g) * 2 - 1,
        ("next", "observation"): torch.randn(ROWS, OBS, generator=g),
        ("next", "reward"): torch.randn(ROWS, 1, generator=g),
        ("next", "terminated"): torch.rand(ROWS, 1, generator=g) < 0.05,
        "mc_return": torch.randn(ROWS, 1, generator=g) * 5,
    }, batch_size=[ROWS])


def _adam(loss):
    return {t: torch.optim.Adam(loss.term_parameters(t), lr=1e-3) for t in loss.terms}


def _own_noise(loss, generator: torch.Generator) -> None:
    """A solo loss that draws its noise from ``generator``, as its member does."""
    draw = loss.draw_noise
    loss.draw_noise = lambda stage, batch_size, reference, generator_=None: draw(stage, batch_size, reference, generator)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_member_trains_as_its_solo_run(name):
    solos = []
    for k in range(K):
        torch.manual_seed(k)
        solos.append(LOSSES[name]())
    stack = MemberStack(solos, [torch.Generator().manual_seed(100 + k) for k in range(K)])
    for k, solo in enumerate(solos):
        _own_noise(solo, torch.Generator().manual_seed(100 + k))
    data, stack_opt, solo_opts = _data(), _adam(stack), [_adam(s) for s in solos]
    for update in range(4):
        rows = torch.randint(0, ROWS, (K, B))  # each member its own batch
        sums, cache = staged_update(stack, data[rows], stack_opt)
        for k, solo in enumerate(solos):
            losses, _ = staged_update(solo, data[rows[k]], solo_opts[k])
            assert losses.keys() == sums.keys()
            for term, value in losses.items():
                torch.testing.assert_close(cache[MEMBER_LOSS + term][k], value.detach(), msg=f"{term}, update {update}")
            # The gradients each stage left behind: member k's are its solo run's, unscaled.
            stacked = dict(stack.stacked.named_parameters())
            for key, param in solo.named_parameters():
                if param.grad is not None:
                    torch.testing.assert_close(stacked[key].grad[k], param.grad, msg=f"grad {key}, update {update}")
        for term, total in sums.items():
            torch.testing.assert_close(total.detach(), cache[MEMBER_LOSS + term].sum())
    for k, solo in enumerate(solos):
        member = stack.member(k)
        assert type(member) is type(solo)
        for key, value in solo.state_dict().items():
            torch.testing.assert_close(member.state_dict()[key], value, msg=key)
    # The members did train apart: they hold different weights.
    assert not torch.equal(stack.member(0).actor.net[0].weight, stack.member(1).actor.net[0].weight)


def test_metrics_come_back_per_member():
    stack = MemberStack([LOSSES["iql"]() for _ in range(K)])
    _, cache = staged_update(stack, _data()[torch.randint(0, ROWS, (K, B))], _adam(stack))
    assert cache["metric/q_mean"].shape == (K,)
    assert cache[MEMBER_LOSS + "value"].shape == (K,)


def test_a_member_state_dict_has_the_solo_keys_with_a_member_axis():
    solo = LOSSES["sac"]()
    stack = MemberStack([solo, LOSSES["sac"]()])
    assert stack.stacked.state_dict().keys() == solo.state_dict().keys()
    for key, value in solo.state_dict().items():
        assert stack.stacked.state_dict()[key].shape == (2, *value.shape)
    assert stack.member(0).state_dict().keys() == solo.state_dict().keys()


def test_bad_members_are_refused_in_one_line():
    with pytest.raises(ConfigError, match="at least one member"):
        MemberStack([])
    with pytest.raises(ConfigError, match="share one class"):
        MemberStack([LOSSES["iql"](), LOSSES["sac"]()])
    with pytest.raises(ConfigError, match="one generator per member"):
        MemberStack([LOSSES["iql"]()] * 2, [torch.Generator()])
    stack = MemberStack([LOSSES["iql"]()] * 2)
    with pytest.raises(ValueError, match=r"\[members, batch\]"):
        stack.stage_losses(0, _data()[:B], {})


@pytest.mark.parametrize("name", ["iql", "sac"])
def test_members_act_as_each_policy_with_the_same_noise(name):
    """``act``: member k's policy on its own observations, its sample from the standard normal
    draw it is given (what an explorer's members collect with), or its mean."""
    losses = []
    for seed in (1, 2, 3):
        torch.manual_seed(seed)
        losses.append(LOSSES[name]())
    stack = MemberStack(losses)
    obs, noise = torch.randn(K, 5, OBS), torch.randn(K, 5, ACT)
    sampled, mean = stack.act(obs, noise), stack.act(obs)
    for k, loss in enumerate(losses):
        torch.testing.assert_close(sampled[k], loss.policy.act(obs[k], deterministic=False, noise=noise[k]))
        torch.testing.assert_close(mean[k], loss.policy.act(obs[k]))
    assert sampled.shape == (K, 5, ACT) and not torch.allclose(sampled, mean)
