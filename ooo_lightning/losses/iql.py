"""Implicit Q-Learning (Kostrikov et al., 2021) as a staged loss module."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import nn

from ooo_lightning.config_checks import check_bounds, check_ranges
from ooo_lightning.losses.base import ActorCriticLoss, soft_update, td_target
from ooo_lightning.networks import GaussianPolicy, QEnsemble, ValueNetwork, full_precision


@full_precision
def expectile_loss(target_q: torch.Tensor, v: torch.Tensor, expectile: float) -> torch.Tensor:
    """Expectile regression of V towards Q: mean of |tau - 1(q - v < 0)| (q - v)^2.

    float32 under autocast: q - v is a small difference of two large values (bf16 resolves
    values near -50 only to 0.25), and its sign picks the weight.
    """
    diff = target_q - v
    # |tau - 1(diff < 0)|: tau above the expectile, 1 - tau below.
    weight = torch.where(diff > 0, expectile, 1.0 - expectile)
    return (weight * diff.pow(2)).mean()


@full_precision
def advantage_weight(
    target_q: torch.Tensor, v: torch.Tensor, temperature: float, max_weight: float
) -> torch.Tensor:
    """exp(temperature * (Q - V)), capped at ``max_weight``.

    float32 under autocast: an error e of Q - V multiplies the weight by exp(temperature * e);
    with bf16's resolution of 0.25 at Q = -50 and temperature 3 that is up to a factor of 2.
    """
    return torch.exp(temperature * (target_q - v)).clamp(max=max_weight)


class IQLLoss(ActorCriticLoss):
    """IQL with twin Q, expectile value regression and advantage-weighted actor.

    Stages follow the reference implementation: the value network is updated first (towards
    the target critic), then actor and critic use the *updated* value; the target critic is
    soft-updated after the critic step.

    Args:
        observation_dim, action_dim: sizes of the spaces (filled in by the Lightning module).
        hidden_dims: hidden layers of every network.
        num_qvalue_nets: critics in the ensemble (twin Q = 2); targets use their minimum.
        expectile: tau of the expectile regression of V towards Q.
        temperature: beta of the advantage weights exp(beta * (Q - V)).
        max_weight: cap on the advantage weights.
        gamma: discount.
        target_update_rate: Polyak rate of the target critic.
        actor_lr, value_lr, qvalue_lr: Adam learning rates.
        q_bounds: optional (min_q, max_q) clip of target Q values and TD targets; the
            intrinsic reward is added after the clip so the bonus is never clipped away.
        action_clip: dataset actions are clipped to +-action_clip before the log-likelihood.
        log_std_bounds: clip of the policy's log standard deviation.
        layer_norm: LayerNorm after each hidden layer of the Q and V networks (curbs value
            extrapolation to rarely seen states).
        keys: overrides of the batch keys (see ``LossKeys``).
    """

    stages = (("value",), ("actor", "qvalue"))

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        *,
        hidden_dims: Sequence[int] = (256, 256),
        num_qvalue_nets: int = 2,
        expectile: float = 0.7,
        temperature: float = 3.0,
        max_weight: float = 100.0,
        gamma: float = 0.99,
        target_update_rate: float = 0.005,
        actor_lr: float = 3e-4,
        value_lr: float = 3e-4,
        qvalue_lr: float = 3e-4,
        q_bounds: tuple[float, float] | None = None,
        action_clip: float = 1.0 - 1e-5,
        log_std_bounds: tuple[float, float] = (-5.0, 2.0),
        layer_norm: bool = False,
        keys: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(keys)
        check_ranges(
            "IQLLoss", hidden_dims=(tuple(hidden_dims), ">= 1"), num_qvalue_nets=(num_qvalue_nets, ">= 1"),
            expectile=(expectile, "(0, 1)"), temperature=(temperature, "> 0"), max_weight=(max_weight, "> 0"),
            gamma=(gamma, "(0, 1]"), target_update_rate=(target_update_rate, "(0, 1]"), actor_lr=(actor_lr, "> 0"),
            value_lr=(value_lr, "> 0"), qvalue_lr=(qvalue_lr, "> 0"), action_clip=(action_clip, "(0, 1]"),
        )
        check_bounds("IQLLoss", "q_bounds", q_bounds)
        check_bounds("IQLLoss", "log_std_bounds", log_std_bounds)
        self.actor = GaussianPolicy(observation_dim, action_dim, hidden_dims, log_std_bounds)
        self.qvalue = QEnsemble(observation_dim, action_dim, hidden_dims, num_qvalue_nets, layer_norm)
        self.target_qvalue = copy.deepcopy(self.qvalue).requires_grad_(False)
        self.value = ValueNetwork(observation_dim, hidden_dims, layer_norm)
        self.expectile = expectile
        self.temperature = temperature
        self.max_weight = max_weight
        self.gamma = gamma
        self.target_update_rate = target_update_rate
        self.q_bounds = tuple(q_bounds) if q_bounds is not None else None
        self.action_clip = action_clip
        self.learning_rates = {"actor": actor_lr, "value": value_lr, "qvalue": qvalue_lr}


    def term_parameters(self, term: str) -> list[nn.Parameter]:
        return list({"actor": self.actor, "value": self.value, "qvalue": self.qvalue}[term].parameters())


    def _clip_q(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.q_bounds is None else x.clamp(*self.q_bounds)

    def stage_losses(self, stage: int, batch: TensorDictBase, cache: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        k = self.keys
        obs, action = batch.get(k.observation), batch.get(k.action)
        if stage == 0:
            with torch.no_grad():
                target_q = self._clip_q(self.target_qvalue(obs, action).min(0).values)
            v = self.value(obs)
            cache["target_q"] = target_q
            cache["metric/v_mean"] = v.detach().mean()
            return {"value": expectile_loss(target_q, v, self.expectile)}

        target_q = cache["target_q"]
        next_obs = batch.get(k.next_observation)
        reward = batch.get(k.reward).reshape(target_q.shape)
        not_terminal = 1.0 - batch.get(k.terminated).reshape(target_q.shape).to(reward.dtype)
        with torch.no_grad():
            # One forward for V(s) (actor weights) and V(s') (TD target), with the new V.
            v_both = self.value(torch.cat([obs, next_obs], 0))
            v, next_v = v_both[: obs.shape[0]], v_both[obs.shape[0] :]
            intrinsic = batch.get(k.intrinsic_reward, None)
            target = td_target(
                reward,
                not_terminal,
                next_v,
                self.gamma,
                bounds=self.q_bounds,
                intrinsic=None if intrinsic is None else intrinsic.reshape(reward.shape),
            )
            weight = advantage_weight(target_q, v, self.temperature, self.max_weight)
        q = self.qvalue(obs, action)
        # q, target, weight and log_prob are float32 (output layers, helpers), so both losses are.
        qvalue_loss = (q - target).pow(2).mean()
        log_prob = self.actor.log_prob(obs, action.clamp(-self.action_clip, self.action_clip))
        actor_loss = -(weight * log_prob).mean()
        cache["metric/q_mean"] = q.detach().mean()
        cache["metric/adv_weight_mean"] = weight.mean()
        return {"actor": actor_loss, "qvalue": qvalue_loss}

    def after_stage(self, stage: int) -> None:
        if stage == 1:
            soft_update(self.target_qvalue, self.qvalue, self.target_update_rate)
