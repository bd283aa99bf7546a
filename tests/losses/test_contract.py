"""What every loss owes the modules, checked for each loss the package exports (a new one is
picked up here without being named): the bonus reaches the critic, each term has its own
parameters and learning rate, the policy acts both ways, the targets follow, and the
attributes the modules read exist."""

import inspect

import pytest
import torch
from tensordict import TensorDict

import ooo_lightning.losses as losses
from ooo_lightning.losses import ActorCriticLoss, staged_update

OBS, ACT, BATCH = 3, 2, 16
LOSSES = sorted(
    (obj for obj in vars(losses).values()
     if inspect.isclass(obj) and issubclass(obj, ActorCriticLoss) and obj is not ActorCriticLoss),
    key=lambda cls: cls.__name__,
)


def _batch(intrinsic: bool = False) -> TensorDict:
    g = torch.Generator().manual_seed(0)
    data = {
        "observation": torch.randn(BATCH, OBS, generator=g),
        "action": torch.rand(BATCH, ACT, generator=g) * 2 - 1,
        ("next", "observation"): torch.randn(BATCH, OBS, generator=g),
        ("next", "reward"): -torch.rand(BATCH, 1, generator=g),
        ("next", "terminated"): torch.rand(BATCH, 1, generator=g) < 0.2,
        "mc_return": -torch.rand(BATCH, 1, generator=g) * 10,
    }
    if intrinsic:
        data[("next", "intrinsic_reward")] = torch.full((BATCH, 1), 0.5)
    return TensorDict(data, batch_size=[BATCH])


@pytest.fixture(params=LOSSES, ids=lambda cls: cls.__name__)
def loss(request) -> ActorCriticLoss:
    torch.manual_seed(0)
    return request.param(OBS, ACT, hidden_dims=(16, 16))


def test_every_exported_loss_is_covered():
    assert {cls.__name__ for cls in LOSSES} >= {"IQLLoss", "CalQLLoss", "SACLoss"}


def test_the_intrinsic_reward_changes_the_critic_loss(loss):
    """A loss that forgot the bonus would train the explorer without it, silently."""
    assert "qvalue" in loss.terms  # the critic's term
    values = []
    for intrinsic in (False, True):
        torch.manual_seed(1)  # the same sampled actions and noise both times
        values.append(loss(_batch(intrinsic))["loss_qvalue"])
    assert torch.isfinite(values[0]) and not torch.isclose(values[0], values[1])


def test_each_term_trains_its_own_parameters_at_its_own_learning_rate(loss):
    owners: dict[int, str] = {}
    for term in loss.terms:
        params = loss.term_parameters(term)
        assert params, term
        for p in params:
            assert id(p) not in owners, f"{term} and {owners.get(id(p))} share a parameter"
            owners[id(p)] = term
        rate = loss.term_learning_rate(term)
        assert isinstance(rate, float) and rate > 0, (term, rate)
    assert set(loss.terms) <= set(loss.learning_rates)
    # Every trainable parameter belongs to a term, so some optimiser steps it.
    trainable = {id(p) for p in loss.parameters() if p.requires_grad}
    assert trainable <= set(owners), "a trainable parameter that no term's optimiser holds"


def test_the_policy_acts_deterministically_and_stochastically(loss):
    obs = torch.randn(8, OBS)
    with torch.no_grad():
        mean_a, mean_b = loss.policy.act(obs, deterministic=True), loss.policy.act(obs, deterministic=True)
        sample_a, sample_b = loss.policy.act(obs, deterministic=False), loss.policy.act(obs, deterministic=False)
    assert mean_a.shape == sample_a.shape == (8, ACT)
    assert torch.equal(mean_a, mean_b) and not torch.equal(sample_a, sample_b)
    assert mean_a.abs().max() <= 1 and sample_a.abs().max() <= 1


def test_an_update_moves_the_targets_towards_the_critic(loss):
    targets = {name: p.detach().clone() for name, p in loss.named_parameters() if name.startswith("target_")}
    assert targets, "no target network (named target_*)"
    optimizers = {t: torch.optim.Adam(loss.term_parameters(t), lr=loss.term_learning_rate(t)) for t in loss.terms}
    for _ in range(2):  # SAC's delayed actor may skip a stage on one of them
        staged_update(loss, _batch(intrinsic=True), optimizers)
    moved = [name for name, p in loss.named_parameters() if name in targets and not torch.equal(p, targets[name])]
    assert moved, "the target networks did not move"


def test_the_attributes_the_modules_read_are_there(loss):
    assert 0 < loss.gamma <= 1
    assert isinstance(loss.uses_mc_returns, bool)
    assert loss.sparse_failure_reward is None or isinstance(loss.sparse_failure_reward, float)
    assert "mc_return" in loss.required_keys() if loss.uses_mc_returns else "mc_return" not in loss.required_keys()


def test_its_randomness_is_drawn_in_one_place_with_the_base_class_signature(loss):
    """Tests replace ``draw_noise`` to check a loss's arithmetic: every loss takes the same
    arguments, so one replacement fits any of them."""
    assert list(inspect.signature(loss.draw_noise).parameters) == ["stage", "batch_size", "reference", "generator"]
    for stage in range(len(loss.stages)):
        noise = loss.draw_noise(stage, 4, torch.zeros(1))
        assert isinstance(noise, dict) and all(v.device == torch.device("cpu") for v in noise.values())
        # From a generator of its own: the same seed draws the same, and the global RNG is untouched.
        state = torch.get_rng_state()
        again = [loss.draw_noise(stage, 4, torch.zeros(1), torch.Generator().manual_seed(3)) for _ in range(2)]
        assert torch.equal(torch.get_rng_state(), state)
        assert again[0].keys() == noise.keys() and all(torch.equal(again[0][k], again[1][k]) for k in noise)
