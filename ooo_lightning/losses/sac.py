"""Soft actor-critic with a large critic ensemble, in the spirit of RLPD (Ball et al., 2023).

RLPD's ingredients for sample-efficient online RL (from scratch or with offline data mixed
into the batches, which is the data module's job): LayerNorm critics, a critic ensemble whose
TD target takes the minimum over a small random subset of the target critics, a high critic
update-to-data ratio with the actor and temperature updated once per environment step, and
an actor that maximises the ensemble *mean*.

Where the time goes: only the ``num_min_qs`` sampled target critics are evaluated (their
weights are gathered, not all ``num_qvalue_nets`` outputs computed and then indexed), and
the actor's critic forward runs on detached critic weights, so its backward computes the
gradient with respect to the action only.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from tensordict import TensorDictBase
from torch import nn

from ooo_lightning.config_checks import ConfigError, check_bounds, check_ranges
from ooo_lightning.losses.base import ActorCriticLoss, soft_update, td_target, temperature_loss
from ooo_lightning.networks import QEnsemble, TanhGaussianPolicy, squash


class SACLoss(ActorCriticLoss):
    """SAC with an ensemble critic, random-subset min targets and a delayed actor (RLPD).

    Stages: the critic first; then actor and temperature against the *updated* critic. The
    target critic is soft-updated after the critic step.

    Args:
        observation_dim, action_dim: sizes of the spaces (filled in by the Lightning module).
        hidden_dims: hidden layers of the actor and of every critic.
        num_qvalue_nets: critics in the ensemble (RLPD: 10).
        num_min_qs: size of the random subset of target critics, drawn anew each update,
            whose minimum forms the TD target (RLPD: 2; equal to ``num_qvalue_nets`` gives
            the plain clipped double-Q minimum).
        layer_norm: LayerNorm after each hidden layer of the critics (RLPD's key ingredient
            against value over-estimation on out-of-distribution actions).
        gamma: discount.
        target_update_rate: Polyak rate of the target critic.
        actor_lr, qvalue_lr, alpha_lr: Adam learning rates.
        init_alpha: initial entropy temperature.
        target_entropy: entropy the temperature is tuned towards; None means
            ``-action_dim / 2``, RLPD's choice (classic SAC uses ``-action_dim``).
        backup_entropy: subtract ``alpha * log pi(a'|s')`` in the TD target.
        actor_q_reduction: how the actor reduces the ensemble's Q values: "mean" (RLPD) or
            "min" (pessimistic, as SAC's twin-Q actor).
        actor_update_every: the actor and temperature are updated on every k-th update only;
            with a critic update-to-data ratio of k that is once per environment step, as
            in RLPD. Skipped updates return no terms for that stage.
        log_std_bounds: clip of the policy's log standard deviation.
        keys: overrides of the batch keys (see ``LossKeys``).
    """

    stages = (("qvalue",), ("actor", "alpha"))

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        *,
        hidden_dims: Sequence[int] = (256, 256),
        num_qvalue_nets: int = 10,
        num_min_qs: int = 2,
        layer_norm: bool = True,
        gamma: float = 0.99,
        target_update_rate: float = 0.005,
        actor_lr: float = 3e-4,
        qvalue_lr: float = 3e-4,
        alpha_lr: float = 3e-4,
        init_alpha: float = 1.0,
        target_entropy: float | None = None,
        backup_entropy: bool = True,
        actor_q_reduction: Literal["mean", "min"] = "mean",
        actor_update_every: int = 1,
        log_std_bounds: tuple[float, float] = (-20.0, 2.0),
        keys: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(keys)
        check_ranges(
            "SACLoss", hidden_dims=(tuple(hidden_dims), ">= 1"), num_qvalue_nets=(num_qvalue_nets, ">= 1"),
            gamma=(gamma, "(0, 1]"), target_update_rate=(target_update_rate, "(0, 1]"), actor_lr=(actor_lr, "> 0"),
            qvalue_lr=(qvalue_lr, "> 0"), alpha_lr=(alpha_lr, "> 0"), init_alpha=(init_alpha, "> 0"),
            target_entropy=(target_entropy, "finite"), actor_update_every=(actor_update_every, ">= 1"),
        )
        check_bounds("SACLoss", "log_std_bounds", log_std_bounds)
        if not 1 <= num_min_qs <= num_qvalue_nets:
            raise ConfigError(
                f"SACLoss: num_min_qs must be between 1 and num_qvalue_nets={num_qvalue_nets}, got {num_min_qs}"
            )
        if actor_q_reduction not in ("mean", "min"):
            raise ConfigError(f"SACLoss: actor_q_reduction must be 'mean' or 'min', got {actor_q_reduction!r}")
        self.action_dim = action_dim
        self.actor = TanhGaussianPolicy(observation_dim, action_dim, hidden_dims, log_std_bounds)
        self.qvalue = QEnsemble(observation_dim, action_dim, hidden_dims, num_qvalue_nets, layer_norm)
        self.target_qvalue = copy.deepcopy(self.qvalue).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(init_alpha)))
        self.num_qvalue_nets = num_qvalue_nets
        self.num_min_qs = num_min_qs
        self.gamma = gamma
        self.target_update_rate = target_update_rate
        self.target_entropy = -action_dim / 2.0 if target_entropy is None else float(target_entropy)
        self.backup_entropy = backup_entropy
        self.actor_q_reduction = actor_q_reduction
        self.actor_update_every = actor_update_every
        # Updates so far (counted after the critic stage); a plain int (not saved in checkpoints),
        # so a resumed run may shift which of the k updates of a step carries the actor update.
        # Outside stage_losses: a compiled stage would be traced again for every value.
        self.updates_done = 0
        self.learning_rates = {"actor": actor_lr, "qvalue": qvalue_lr, "alpha": alpha_lr}

    # --- contract -----------------------------------------------------------------------

    def term_parameters(self, term: str) -> list[nn.Parameter]:
        return {
            "actor": list(self.actor.parameters()),
            "qvalue": list(self.qvalue.parameters()),
            "alpha": [self.log_alpha],
        }[term]


    def after_stage(self, stage: int) -> None:
        if stage == 0:
            soft_update(self.target_qvalue, self.qvalue, self.target_update_rate)
            self.updates_done += 1

    # --- the update ---------------------------------------------------------------------
    def draw_noise(
        self, stage: int, batch_size: int, reference: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """All the randomness of one stage (tests replace it to check the arithmetic).

        Stage 0: Gaussian noise of the next action (``"next"``) and the target critics whose
        minimum forms the target (``"members"``, ``num_min_qs`` distinct indices). Stage 1:
        Gaussian noise of the actor's action (``"actor"``).
        """
        kw = {"dtype": reference.dtype, "device": reference.device, "generator": generator}
        if stage == 0:
            members = torch.randperm(self.num_qvalue_nets, device=reference.device, generator=generator)[: self.num_min_qs]
            return {"next": torch.randn(batch_size, self.action_dim, **kw), "members": members}
        return {"actor": torch.randn(batch_size, self.action_dim, **kw)}

    def runs_stage(self, stage: int) -> bool:
        """The actor stage runs on every ``actor_update_every``-th update only."""
        return stage == 0 or self.updates_done % self.actor_update_every == 0

    def stage_losses(self, stage: int, batch: TensorDictBase, cache: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if stage == 0:
            return self._qvalue_losses(batch, cache)
        return self._actor_losses(batch, cache)

    def _qvalue_losses(self, batch: TensorDictBase, cache: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        k = self.keys
        obs, action = batch.get(k.observation), batch.get(k.action)
        next_obs = batch.get(k.next_observation)
        b = obs.shape[0]
        noise = self.stage_noise(0, b, obs, cache)
        with torch.no_grad():
            alpha = self.log_alpha.exp()
            reward = batch.get(k.reward).reshape(b)
            not_terminal = 1.0 - batch.get(k.terminated).reshape(b).to(reward.dtype)
            next_action, next_log_prob = squash(*self.actor(next_obs), noise["next"])
            # All members needed: skip the weight gather (and its randomness has no effect).
            members = None if self.num_min_qs == self.num_qvalue_nets else noise["members"]
            next_q = self.target_qvalue(next_obs, next_action, members).min(0).values
            intrinsic = batch.get(k.intrinsic_reward, None)
            target = td_target(
                reward,
                not_terminal,
                next_q,
                self.gamma,
                alpha=alpha,
                next_log_prob=next_log_prob if self.backup_entropy else None,
                intrinsic=None if intrinsic is None else intrinsic.reshape(b),
            )
        q = self.qvalue(obs, action)  # [E, B]
        cache["metric/q_mean"] = q.detach().mean()
        cache["metric/alpha"] = alpha
        # q (critic head) and target are float32, so the squared error is too.
        return {"qvalue": (q - target).pow(2).mean()}

    def _actor_losses(self, batch: TensorDictBase, cache: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        obs = batch.get(self.keys.observation)
        noise = self.stage_noise(1, obs.shape[0], obs, cache)
        pi_action, log_prob = squash(*self.actor(obs), noise["actor"])
        q = self.qvalue(obs, pi_action, detach_weights=True)
        q = q.mean(0) if self.actor_q_reduction == "mean" else q.min(0).values
        alpha = self.log_alpha.exp()
        log_prob_data = log_prob.detach()
        cache["metric/alpha"] = alpha.detach()
        cache["metric/entropy"] = -log_prob_data.mean()
        return {
            "actor": (alpha.detach() * log_prob - q).mean(),
            # Gradient in log_alpha is -alpha (log pi + target): alpha grows while the entropy
            # (-log pi) is below target and shrinks above it.
            "alpha": temperature_loss(alpha, log_prob_data, self.target_entropy),
        }
