"""Cal-QL (Nakamoto et al., 2023): conservative Q-learning whose lower bound is calibrated by
Monte-Carlo returns; with ``calibrate=False`` it is plain CQL (Kumar et al., 2020).

Where the time goes: the conservative term scores ``3 n`` sampled actions per state with every
critic. Here they are all scored by one batched forward of the critic ensemble (data action
included), the policy is run once per state (not once per sampled action: its distribution
depends on the state only), and the policy's own Q term runs on detached critic weights so
that every term fits into one backward pass.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from torch import nn

from ooo_lightning.config_checks import check_bounds, check_ranges
from ooo_lightning.losses.base import ActorCriticLoss, soft_update, td_target, temperature_loss
from ooo_lightning.networks import QEnsemble, TanhGaussianPolicy, full_precision, squash


class CalQLLoss(ActorCriticLoss):
    """SAC actor, critic ensemble with the (calibrated) CQL regulariser.

    All terms are computed from the same parameters and stepped together, as in the Cal-QL
    reference code; the target critic is soft-updated after the step.

    Args:
        observation_dim, action_dim: sizes of the spaces (filled in by the Lightning module).
        hidden_dims: hidden layers of the actor and of every critic.
        num_qvalue_nets: critics in the ensemble; targets and the actor use their minimum.
        gamma: discount.
        target_update_rate: Polyak rate of the target critic.
        actor_lr, qvalue_lr, alpha_lr, cql_alpha_lr: Adam learning rates.
        init_alpha: initial entropy temperature.
        auto_alpha: tune the temperature towards ``target_entropy`` (SAC's entropy tuning);
            False keeps ``init_alpha``.
        target_entropy: None means -action_dim.
        backup_entropy: subtract alpha * log pi(a'|s') in the TD target (off in Cal-QL).
        num_sampled_actions: n, actions per state of each kind in the conservative term
            (uniform random, policy at s, policy at s'): 3 n in all.
        cql_alpha: weight of the conservative term.
        cql_temperature: temperature of the logsumexp.
        importance_sample: correct the logsumexp by the sampling densities (log 0.5^|A| for
            the uniform actions, log pi for the policy actions); False uses the plain
            logsumexp over the 3 n actions plus the data action, as CQL(H) without it.
        lagrange: tune the conservative weight by dual gradient descent so that the gap
            (logsumexp - Q(s, a_data)) stays at ``target_action_gap``.
        target_action_gap: the gap the Lagrange multiplier aims at.
        cql_clip_diff: optional (min, max) clip of the per-sample gap.
        calibrate: Cal-QL's calibration: policy-action Q values enter the logsumexp as
            max(Q, mc_return(s)), so the conservative term never pushes Q below the return of
            the data; False is plain CQL (what the paper's public commands ran).
        sparse_failure_reward: task reward (before the module's bias and scale) of the steps
            of a failed episode in a sparse task, e.g. 0; such episodes get
            r_fail / (1 - gamma) as return at every step. None: plain discounted returns.
        q_bounds: optional (min_q, max_q) clip of the TD targets, e.g. the data's return range
            (the paper's retraining); the intrinsic reward is added after the clip.
        log_std_bounds: clip of the policy's log standard deviation.
        layer_norm: LayerNorm after each hidden layer of the critics.
        keys: overrides of the batch keys (see ``LossKeys``; the returns are ``mc_return``).
    """

    def __init__(
        self,
        observation_dim: int,
        action_dim: int,
        *,
        hidden_dims: Sequence[int] = (256, 256),
        num_qvalue_nets: int = 2,
        gamma: float = 0.99,
        target_update_rate: float = 0.005,
        actor_lr: float = 1e-4,
        qvalue_lr: float = 3e-4,
        alpha_lr: float = 1e-4,
        cql_alpha_lr: float = 3e-4,
        init_alpha: float = 1.0,
        auto_alpha: bool = True,
        target_entropy: float | None = None,
        backup_entropy: bool = False,
        num_sampled_actions: int = 10,
        cql_alpha: float = 5.0,
        cql_temperature: float = 1.0,
        importance_sample: bool = True,
        lagrange: bool = False,
        target_action_gap: float = 0.8,
        cql_clip_diff: tuple[float, float] | None = None,
        calibrate: bool = True,
        sparse_failure_reward: float | None = None,
        q_bounds: tuple[float, float] | None = None,
        log_std_bounds: tuple[float, float] = (-20.0, 2.0),
        layer_norm: bool = False,
        keys: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(keys)
        check_ranges(
            "CalQLLoss", hidden_dims=(tuple(hidden_dims), ">= 1"), num_qvalue_nets=(num_qvalue_nets, ">= 1"),
            gamma=(gamma, "(0, 1]"), target_update_rate=(target_update_rate, "(0, 1]"), actor_lr=(actor_lr, "> 0"),
            qvalue_lr=(qvalue_lr, "> 0"), alpha_lr=(alpha_lr, "> 0"), cql_alpha_lr=(cql_alpha_lr, "> 0"),
            init_alpha=(init_alpha, "> 0"), target_entropy=(target_entropy, "finite"),
            num_sampled_actions=(num_sampled_actions, ">= 1"), cql_alpha=(cql_alpha, ">= 0"),
            cql_temperature=(cql_temperature, "> 0"), target_action_gap=(target_action_gap, "finite"),
            sparse_failure_reward=(sparse_failure_reward, "finite"),
        )
        for name, bounds in (("cql_clip_diff", cql_clip_diff), ("q_bounds", q_bounds), ("log_std_bounds", log_std_bounds)):
            check_bounds("CalQLLoss", name, bounds)
        self.action_dim = action_dim
        self.actor = TanhGaussianPolicy(observation_dim, action_dim, hidden_dims, log_std_bounds)
        self.qvalue = QEnsemble(observation_dim, action_dim, hidden_dims, num_qvalue_nets, layer_norm)
        self.target_qvalue = copy.deepcopy(self.qvalue).requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(init_alpha)), requires_grad=auto_alpha)
        # The multiplier is a parameter even without Lagrange so checkpoints keep one layout.
        self.log_cql_alpha = nn.Parameter(torch.zeros(()), requires_grad=lagrange)
        self.gamma = gamma
        self.target_update_rate = target_update_rate
        self.auto_alpha = auto_alpha
        self.target_entropy = -float(action_dim) if target_entropy is None else float(target_entropy)
        self.backup_entropy = backup_entropy
        self.num_sampled_actions = num_sampled_actions
        self.cql_alpha = cql_alpha
        self.cql_temperature = cql_temperature
        self.importance_sample = importance_sample
        self.lagrange = lagrange
        self.target_action_gap = target_action_gap
        self.cql_clip_diff = tuple(cql_clip_diff) if cql_clip_diff is not None else None
        self.calibrate = calibrate
        self.sparse_failure_reward = sparse_failure_reward
        self.q_bounds = tuple(q_bounds) if q_bounds is not None else None
        terms = ["actor", "qvalue"] + (["alpha"] if auto_alpha else []) + (["cql_alpha"] if lagrange else [])
        self.stages = (tuple(terms),)
        self.learning_rates = {"actor": actor_lr, "qvalue": qvalue_lr, "alpha": alpha_lr, "cql_alpha": cql_alpha_lr}

    # --- contract -----------------------------------------------------------------------
    @property
    def uses_mc_returns(self) -> bool:
        return self.calibrate


    def term_parameters(self, term: str) -> list[nn.Parameter]:
        return {
            "actor": list(self.actor.parameters()),
            "qvalue": list(self.qvalue.parameters()),
            "alpha": [self.log_alpha],
            "cql_alpha": [self.log_cql_alpha],
        }[term]


    def after_stage(self, stage: int) -> None:
        soft_update(self.target_qvalue, self.qvalue, self.target_update_rate)

    # --- the update ---------------------------------------------------------------------
    def draw_noise(
        self, stage: int, batch_size: int, reference: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """All the randomness of the update (its one stage; tests replace it to check the
        arithmetic): Gaussian noise of the actor's sample at s, of the n policy samples at s and s', of
        the next action of the TD target, and the n uniform random actions."""
        n, a, b = self.num_sampled_actions, self.action_dim, batch_size
        kw = {"dtype": reference.dtype, "device": reference.device, "generator": generator}
        return {
            "actor": torch.randn(b, a, **kw),
            "sampled": torch.randn(n, 2 * b, a, **kw),
            "next": torch.randn(b, a, **kw),
            "random": torch.rand(n, b, a, **kw) * 2.0 - 1.0,
        }

    @full_precision
    def _conservative_gap(
        self, q_all: torch.Tensor, sampled_log_prob: torch.Tensor, bound: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-critic mean of logsumexp(Q of the sampled actions) - Q(s, a_data), and the share
        of policy actions raised to the calibration ``bound`` (None without calibration).

        ``q_all`` is ``[E, 1 + 3 n, b]`` (data, random, pi(s), pi(s') actions), ``sampled_log_prob``
        ``[n, 2 b]`` (pi(s) then pi(s')). float32 under autocast: the gap is a small difference
        of a logsumexp and Q(s, a_data), values of the size of the returns that bf16 resolves to
        0.25 at 50, and the exponentials amplify any rounding of their inputs.
        """
        n, b = self.num_sampled_actions, q_all.shape[-1]
        q_data = q_all[:, 0]
        q_random, q_current, q_next = q_all[:, 1 : n + 1], q_all[:, n + 1 : 2 * n + 1], q_all[:, 2 * n + 1 :]
        calibrated_fraction = None
        if bound is not None:
            calibrated_fraction = (q_all[:, n + 1 :] < bound).float().mean().detach()
            q_current, q_next = torch.maximum(q_current, bound), torch.maximum(q_next, bound)
        if self.importance_sample:
            random_log_density = self.action_dim * math.log(0.5)
            ood = torch.cat(
                [
                    q_random - random_log_density,
                    q_next - sampled_log_prob[:, b:],
                    q_current - sampled_log_prob[:, :b],
                ],
                1,
            )
        else:
            ood = torch.cat([q_random, q_next, q_current, q_data.unsqueeze(1)], 1)
        t = self.cql_temperature
        gap = torch.logsumexp(ood / t, dim=1) * t - q_data  # [E, b]
        if self.cql_clip_diff is not None:
            gap = gap.clamp(*self.cql_clip_diff)
        return gap.mean(-1), calibrated_fraction  # [E]

    def stage_losses(self, stage: int, batch: TensorDictBase, cache: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        k = self.keys
        obs, action = batch.get(k.observation), batch.get(k.action)
        next_obs = batch.get(k.next_observation)
        b, n = obs.shape[0], self.num_sampled_actions
        reward = batch.get(k.reward).reshape(b)
        not_terminal = 1.0 - batch.get(k.terminated).reshape(b).to(reward.dtype)
        noise = self.stage_noise(0, b, obs, cache)
        alpha = self.log_alpha.exp()

        # One policy forward for s and s'; the sampled actions reuse its output.
        mu, log_std = self.actor(torch.cat([obs, next_obs], 0))
        pi_action, pi_log_prob = squash(mu[:b], log_std[:b], noise["actor"])
        with torch.no_grad():
            mu_d, log_std_d = mu.detach(), log_std.detach()
            sampled, sampled_log_prob = squash(mu_d, log_std_d, noise["sampled"])  # [n, 2b, A], [n, 2b]
            next_action, next_log_prob = squash(mu_d[b:], log_std_d[b:], noise["next"])
            next_q = self.target_qvalue(next_obs, next_action).min(0).values
            intrinsic = batch.get(k.intrinsic_reward, None)
            target = td_target(
                reward,
                not_terminal,
                next_q,
                self.gamma,
                alpha=alpha,
                next_log_prob=next_log_prob if self.backup_entropy else None,
                bounds=self.q_bounds,
                intrinsic=None if intrinsic is None else intrinsic.reshape(b),
            )

        # Every action scored at Q(s, .) in one ensemble forward: data, random, pi(s), pi(s').
        actions = torch.cat([action.unsqueeze(0), noise["random"], sampled[:, :b], sampled[:, b:]], 0)
        q_all = self.qvalue(obs.expand(1 + 3 * n, *obs.shape), actions)  # [E, 1 + 3n, b]
        q_data = q_all[:, 0]
        bound = None
        if self.calibrate:
            mc_return = batch.get(k.mc_return, None)
            if mc_return is None:
                raise KeyError(
                    f"Cal-QL calibration reads Monte-Carlo returns at {k.mc_return!r}, which the batch lacks; "
                    "set calibrate: false for plain CQL"
                )
            bound = mc_return.reshape(1, 1, b)
        gap, calibrated_fraction = self._conservative_gap(q_all, sampled_log_prob, bound)
        if calibrated_fraction is not None:
            cache["metric/calibrated_fraction"] = calibrated_fraction
        losses: dict[str, torch.Tensor] = {}
        if self.lagrange:
            cql_weight = self.log_cql_alpha.exp().clamp(0.0, 1e6)
            conservative = cql_weight.detach() * self.cql_alpha * (gap - self.target_action_gap)
            # Dual ascent: the multiplier grows while the gap exceeds its target.
            losses["cql_alpha"] = -(cql_weight * self.cql_alpha * (gap.detach() - self.target_action_gap)).mean()
            cache["metric/cql_weight"] = cql_weight.detach()
        else:
            conservative = self.cql_alpha * gap
        # Summed over critics, as the reference sums its twin losses.
        # q_data, target and gap are float32 (critic head, helpers), so this sum is too.
        losses["qvalue"] = (q_data - target).pow(2).mean(-1).sum() + conservative.sum()

        # Actor on detached critic weights: its gradient must reach the policy only.
        q_pi = self.qvalue(obs, pi_action, detach_weights=True).min(0).values
        losses["actor"] = (alpha.detach() * pi_log_prob - q_pi).mean()
        if self.auto_alpha:
            losses["alpha"] = temperature_loss(self.log_alpha, pi_log_prob, self.target_entropy)

        cache["metric/q_mean"] = q_data.detach().mean()
        cache["metric/cql_gap"] = gap.detach().mean()
        cache["metric/alpha"] = alpha.detach()
        cache["metric/entropy"] = -pi_log_prob.detach().mean()
        return {term: losses[term] for term in self.stages[0]}
