"""Implicit Q-Learning (Kostrikov et al., 2021) as a staged loss module."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import nn

from ooo_lightning.losses.base import ActorCriticLoss, soft_update
from ooo_lightning.networks import GaussianPolicy, QEnsemble, ValueNetwork


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
        if not 0.0 < expectile < 1.0:
            raise ValueError(f"expectile must be in (0, 1), got {expectile}")
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
            diff = target_q - v
            # |tau - 1(diff < 0)|: tau above the expectile, 1 - tau below.
            weight = torch.where(diff > 0, self.expectile, 1.0 - self.expectile)
            cache["target_q"] = target_q
            cache["metric/v_mean"] = v.detach().mean()
            return {"value": (weight * diff.pow(2)).mean()}

        target_q = cache["target_q"]
        next_obs = batch.get(k.next_observation)
        reward = batch.get(k.reward).reshape(target_q.shape)
        not_terminal = 1.0 - batch.get(k.terminated).reshape(target_q.shape).to(reward.dtype)
        with torch.no_grad():
            # One forward for V(s) (actor weights) and V(s') (TD target), with the new V.
            v_both = self.value(torch.cat([obs, next_obs], 0))
            v, next_v = v_both[: obs.shape[0]], v_both[obs.shape[0] :]
            td_target = self._clip_q(reward + self.gamma * not_terminal * next_v)
            intrinsic = batch.get(k.intrinsic_reward, None)
            if intrinsic is not None:
                td_target = td_target + intrinsic.reshape(td_target.shape)
            weight = torch.exp(self.temperature * (target_q - v)).clamp(max=self.max_weight)
        q = self.qvalue(obs, action)
        qvalue_loss = (q - td_target).pow(2).mean()
        log_prob = self.actor.log_prob(obs, action.clamp(-self.action_clip, self.action_clip))
        actor_loss = -(weight * log_prob).mean()
        cache["metric/q_mean"] = q.detach().mean()
        cache["metric/adv_weight_mean"] = weight.mean()
        return {"actor": actor_loss, "qvalue": qvalue_loss}

    def after_stage(self, stage: int) -> None:
        if stage == 1:
            soft_update(self.target_qvalue, self.qvalue, self.target_update_rate)
