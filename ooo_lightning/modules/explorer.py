"""Phases 1 and 2 of OOO: offline pre-training and online fine-tuning of the explorer."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModule
from torch import nn

from ooo_lightning.config_checks import ConfigError, check_ranges
from ooo_lightning import distributed
from ooo_lightning.data.buffer import member_major_order
from ooo_lightning.exploration.members import member_bonus
from ooo_lightning.exploration.rnd import ExplorationBonus
from ooo_lightning.modules.base import LossFactory, RLModule
from ooo_lightning.stacking import stacked_draws

BonusFactory = Callable[[int], ExplorationBonus]


class _SamplingActor(nn.Module):
    """The policy's stochastic action, the form a TorchRL collector calls; uniform random
    actions in [-1, 1] for the first ``random_steps`` environment steps (RLPD's warm-up).

    With members (``policy`` a ``MemberStack``, ``generators`` one per member), the
    observation is ``[K, obs]``, one row per member's environment: member k acts with its own
    policy, its random numbers drawn from its own generator, as it would alone."""

    def __init__(
        self, policy: nn.Module, action_dim: int, random_steps: int = 0, generators: list[torch.Generator] | None = None
    ) -> None:
        super().__init__()
        self.policy = policy
        self.action_dim = action_dim
        self.random_steps = random_steps
        self.generators = generators
        self.steps_done = 0  # environment steps taken (by each member): set by the explorer, counted here

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        shape = (*observation.shape[:-1], self.action_dim)
        self.steps_done += observation.shape[:-1].numel() // len(self.generators or [None])
        random = self.steps_done <= self.random_steps
        if self.generators is not None:
            draw = torch.rand if random else torch.randn
            noise = stacked_draws(lambda where, g: {"x": draw(shape[1:], generator=g, device=where.device)},
                                  self.generators, observation)["x"]
            action = noise * 2 - 1 if random else self.policy.act(observation, noise)
            return action.to(observation.dtype)
        if random:
            return torch.rand(shape, device=observation.device, dtype=observation.dtype) * 2 - 1
        # The collector runs inside a training step: under bf16-mixed autocast the action
        # would come out bf16, which the environment does not take.
        return self.policy.act(observation, deterministic=False).to(observation.dtype)


class _EpisodeStats:
    """One environment's online episodes: the running one and the latest 20 finished."""

    def __init__(self, info_keys: Sequence[str]) -> None:
        self.info_keys = list(info_keys)
        self.recent_returns: deque[float] = deque(maxlen=20)
        self.recent_successes: deque[bool] = deque(maxlen=20)
        self.recent_info_max: dict[str, deque[float]] = {k: deque(maxlen=20) for k in self.info_keys}
        self.episodes = 0
        self.goal_episodes = 0
        self.cut_episode()

    def cut_episode(self) -> None:
        """Forget the running episode (a resumed run starts a new one)."""
        self.episode_return, self.episode_success = 0.0, False
        self.episode_info_max = dict.fromkeys(self.info_keys, -math.inf)

    def track(self, frames: TensorDictBase) -> None:
        """The environment's next steps, ``[F]``."""
        rewards = frames.get(("next", "reward")).reshape(-1).tolist()
        dones = frames.get(("next", "done")).reshape(-1).tolist()
        infos = {k: frames.get(("next", k)).reshape(-1).tolist() for k in self.info_keys}
        for i, (reward, done) in enumerate(zip(rewards, dones)):
            self.episode_return += reward
            self.episode_success = self.episode_success or reward > 0
            for key, values in infos.items():
                self.episode_info_max[key] = max(self.episode_info_max[key], float(values[i]))
            if done:
                for key in self.info_keys:
                    self.recent_info_max[key].append(self.episode_info_max[key])
                self.recent_returns.append(self.episode_return)
                self.recent_successes.append(self.episode_success)
                self.episodes += 1
                self.goal_episodes += int(self.episode_success)
                self.cut_episode()

    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.recent_returns:
            out["online/episode_return"] = sum(self.recent_returns) / len(self.recent_returns)
            out["online/success_rate"] = sum(self.recent_successes) / len(self.recent_successes)
            out["online/episodes"] = float(self.episodes)
            out["online/goal_episodes"] = float(self.goal_episodes)
        for key in self.info_keys:
            seen = [*self.recent_info_max[key], self.episode_info_max[key]]
            if max(seen) > -math.inf:
                out[f"online/{key}_max"] = max(seen)
        return out

    def state(self) -> dict[str, Any]:
        return {
            "online_episodes": self.episodes,
            "online_goal_episodes": self.goal_episodes,
            "recent_returns": list(self.recent_returns),
            "recent_successes": list(self.recent_successes),
            "recent_info_max": {k: list(v) for k, v in self.recent_info_max.items()},
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.episodes = state["online_episodes"]
        self.goal_episodes = state["online_goal_episodes"]
        self.recent_returns.extend(state["recent_returns"])
        self.recent_successes.extend(state["recent_successes"])
        for key, values in state.get("recent_info_max", {}).items():  # absent in older checkpoints
            if key in self.recent_info_max:
                self.recent_info_max[key].extend(values)
        self.cut_episode()  # the episode running at the checkpoint is cut (the buffer marks it truncated)


def _make_torchrl_env(env_id: str, env_kwargs: dict[str, Any], seed: int, info_keys: Sequence[str] = ()):
    import ooo_lightning.envs  # noqa: F401  (registration in the collector's process too)
    from torchrl.envs import GymEnv
    from torchrl.envs.libs.gym import default_info_dict_reader

    class NumericInfoReader(default_info_dict_reader):
        """TorchRL's reader needs arrays; gymnasium envs often put plain floats in info."""

        def __call__(self, info_dict, tensordict):
            missing = [k for k in self.keys if k not in info_dict]
            if missing:
                raise ConfigError(f"log_info_keys: {missing} not in {env_id}'s info (it has {sorted(info_dict)})")
            values = {k: np.asarray(info_dict[k], dtype=np.float32) for k in self.keys}
            return super().__call__(values, tensordict)

    env = GymEnv(env_id, **env_kwargs)
    if info_keys:  # copied into each frame's ("next", key); the buffer keeps transition fields only
        env.set_info_dict_reader(NumericInfoReader(list(info_keys)))
    # Seeded here, before the collector's first reset: seeding the collector afterwards resets
    # the env again and its first frame would start from a stale observation.
    env.set_seed(seed)
    if any(spec.dtype == torch.float64 for spec in env.full_observation_spec.values(True, True)):
        # gymnasium's MuJoCo tasks return float64 observations; the networks and the buffer are float32.
        from torchrl.envs import DoubleToFloat, TransformedEnv

        env = TransformedEnv(env, DoubleToFloat())
    return env


class ExplorerModule(RLModule):
    """The exploration agent: its loss plus an exploration bonus on the reward.

    The first ``offline_updates`` gradient updates use the offline data only (phase 1). Then
    each training step collects ``updates_per_step / utd_ratio`` environment steps with a
    TorchRL collector running the policy's stochastic action, appends them to the replay
    buffer, and makes ``updates_per_step`` updates on batches from the whole buffer (phase 2),
    until ``online_steps`` environment steps have been collected.

    Args:
        env: gymnasium id of the task (e.g. ``ooo/PointMassWall-v1``).
        loss: the loss, given by ``class_path`` (e.g. ``ooo_lightning.losses.IQLLoss``); it is
            built with the environment's observation and action sizes.
        bonus: exploration bonus by ``class_path`` (e.g. ``ooo_lightning.exploration.RNDBonus``),
            or null for none.
        bonus_scale: weight of the bonus in the reward; 0 turns the bonus off entirely (the
            standard fine-tuning baseline).
        offline_updates: gradient updates of phase 1.
        online_steps: environment steps of phase 2.
        utd_ratio: gradient updates per environment step in phase 2; below 1 (e.g. 0.5) the
            explorer collects more data than it updates on, which is cheaper per step.
        random_steps: the first environment steps of phase 2 take uniform random actions,
            and no update is made until they are collected (RLPD starts with 5000).
        env_kwargs: keyword arguments of ``gymnasium.make``.
        batch_size: transitions per gradient update.
        updates_per_step: gradient updates per Lightning training step (amortises overhead).
        reward_scale, reward_bias: task reward r becomes (r + bias) * scale before the loss.
        positive_samples: samples per batch drawn from rewarding transitions (0: uniform).
        offline_fraction: share of each batch drawn from the offline data once online data
            exists (0.5 is RLPD's symmetric sampling); null samples the whole buffer uniformly.
        eval_every: training steps between evaluations (0: only at the end).
        eval_episodes: episodes per evaluation.
        log_every: training steps between log entries.
        seed: seed of the collector's environment and of the evaluations.
        actor_lr_schedule: ``constant``, or ``cosine``: the actor's learning rate decays to 0
            over the module's updates, as in IQL's offline training recipe.
        log_info_keys: numeric keys of the environment's step ``info`` to follow online: each
            is logged as ``online/<key>_max``, the largest value in the latest 20 episodes and
            the current one (sparse HalfCheetah: ``x_progress``, how far the torso got before any
            reward is earned).
        seeds: several explorers trained as one (docs/design.md#members-several-agents-as-one):
            member k has its own initial weights, bonus, environment (seeded with ``seeds[k]``),
            batches and noise from ``seeds[k]``, and its own stream of online data in the buffer
            (a block of its own once collected, which phase 3 trains member k on). RND bonus
            (or none). Under DDP every rank holds all the members, each collecting from its own
            environment per rank (as a solo explorer's ranks do).
    """

    def __init__(
        self,
        env: str,
        loss: LossFactory,
        *,
        bonus: BonusFactory | None = None,
        bonus_scale: float = 10.0,
        offline_updates: int = 5000,
        online_steps: int = 20000,
        utd_ratio: float = 1,
        random_steps: int = 0,
        log_info_keys: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        check_ranges(
            "ExplorerModule", bonus_scale=(bonus_scale, ">= 0"), offline_updates=(offline_updates, ">= 0"),
            online_steps=(online_steps, ">= 0"), utd_ratio=(utd_ratio, "> 0"), random_steps=(random_steps, ">= 0"),
        )
        super().__init__(env, loss, **kwargs)
        frames_per_step = self.updates_per_step / utd_ratio if utd_ratio > 0 else 0.0
        if frames_per_step < 1 or abs(frames_per_step - round(frames_per_step)) > 1e-9:
            raise ConfigError(
                f"updates_per_step ({self.updates_per_step}) / utd_ratio ({utd_ratio}) must be a whole number of "
                "environment steps per training step: updates_per_step must be a multiple of utd_ratio "
                "(or utd_ratio 1/k, e.g. 0.5)"
            )
        if not 0 <= random_steps <= online_steps:
            raise ConfigError(f"random_steps must be in [0, online_steps ({online_steps})], got {random_steps}")
        self.random_steps = random_steps
        try:
            self.bonus = self._build_bonus(bonus) if (bonus is not None and bonus_scale != 0) else None
        except ConfigError as err:
            raise ConfigError(f"ExplorerModule bonus: {err}") from None
        self.bonus_scale = bonus_scale
        self.offline_updates = offline_updates
        self.online_steps = online_steps
        self.utd_ratio = utd_ratio
        self.frames_per_step = round(frames_per_step)
        self.offline_training_steps = math.ceil(offline_updates / self.updates_per_step)
        self.online_training_steps = math.ceil(online_steps / self.frames_per_step)
        self.phase = "explorer offline"
        self.collected_steps = 0
        self._collector = None
        self._collector_iter = None
        self.log_info_keys = list(log_info_keys)
        #: The online episodes of each environment (one per member).
        self.episode_stats = [_EpisodeStats(self.log_info_keys) for _ in range(self.num_members or 1)]
        self.bonus_rows_seen = 0

    def _build_bonus(self, bonus: BonusFactory) -> ExplorationBonus:
        if self.seeds is None:
            return bonus(self.observation_dim)
        bonuses = []
        for state in self.member_init_rng:  # each member's bonus built after its loss, as alone
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(state)
                bonuses.append(bonus(self.observation_dim))
        return member_bonus(bonuses, self.member_generators)

    # --- what the data module asks ------------------------------------------------------
    @property
    def num_training_steps(self) -> int:
        return self.offline_training_steps + self.online_training_steps

    @property
    def online_capacity(self) -> int:
        return self.online_training_steps * self.frames_per_step * (self.num_members or 1)

    @property
    def env_steps(self) -> int:
        return self.collected_steps * distributed.world_size()  # every rank collects as many

    def optimizer_specs(self):
        specs = super().optimizer_specs()
        trainable = [p for p in self.bonus.parameters() if p.requires_grad] if self.bonus is not None else []
        if trainable:  # a count bonus has nothing to train
            specs.append(("bonus", trainable, self.bonus.learning_rate))
        return specs

    # --- phases -------------------------------------------------------------------------
    def before_updates(self, batch_idx: int) -> None:
        if batch_idx < self.offline_training_steps:
            self.phase = "explorer offline"
        else:
            self.phase = "explorer online"
            if self._collector_iter is None:
                self._start_collector()
            frames = next(self._collector_iter)
            self.buffer.add_online(frames)
            self._track_episodes(frames)
        if self.bonus is not None:
            self._show_new_rows_to_bonus()

    def _show_new_rows_to_bonus(self) -> None:
        # Every transition in the buffer is shown once (offline data at the first step), so a
        # count bonus counts the data, not how often it was sampled.
        buffer = self.buffer
        if len(buffer) <= self.bonus_rows_seen:
            return
        num_offline = buffer.num_offline
        if self.bonus_rows_seen < num_offline:  # the same offline data on every rank: shown as is
            self.bonus.observe(buffer.rows_between(self.bonus_rows_seen, num_offline).to(self.device))
            self.bonus_rows_seen = num_offline
        if len(buffer) > self.bonus_rows_seen:
            rows = buffer.rows_between(self.bonus_rows_seen, len(buffer))
            if distributed.world_size() > 1:
                # Every rank collects as many steps per training step: the bonus sees all ranks' data.
                device = distributed.collective_device(self.device)
                rows = distributed.all_gather_rows(rows, device)
            rows = rows.reshape(-1, rows.shape[-1])  # [ranks, n]
            if self.seeds is not None:  # each rank's rows interleave the members': [members, ranks x steps]
                ranks, members = rows.shape[0], len(self.seeds)
                order = member_major_order(ranks, rows.shape[1] // members, members)
                rows = rows.reshape(-1)[order].reshape(members, -1)
            self.bonus.observe((rows.reshape(-1) if self.seeds is None else rows).to(self.device))
            self.bonus_rows_seen = len(buffer)

    def _start_collector(self) -> None:
        from torchrl.collectors import Collector
        from torchrl.envs import SerialEnv

        members = self.member_generators
        actor = _SamplingActor(self.loss if members else self.loss.policy, self.action_dim, self.random_steps, members)
        policy = TensorDictModule(actor, in_keys=["observation"], out_keys=["action"])
        # Each rank its own environment seed; a resumed run a new one (its episodes start afresh).
        # Members: one environment each, seeded as that member's solo run seeds its one.
        env_fns = [partial(_make_torchrl_env, self.env_id, self.env_kwargs,
                           seed + 1_000_003 * distributed.rank() + self.collected_steps, self.log_info_keys)
                   for seed in (self.seeds or [self.seed])]
        # The collector runs the policy once to read its output spec: not a draw of the members' runs.
        states = [g.get_state() for g in members or []]
        self._collector = Collector(
            create_env_fn=env_fns[0] if members is None else partial(SerialEnv, len(env_fns), env_fns),
            policy=policy,
            frames_per_batch=self.frames_per_step * len(env_fns),
            total_frames=-1,
            device=self.device,
            storing_device="cpu",
            env_device="cpu",
            auto_register_policy_transforms=False,  # the policy is stateless: no InitTracker needed
        )
        for generator, state in zip(members or [], states):
            generator.set_state(state)
        actor.steps_done = self.collected_steps
        self._collector_iter = iter(self._collector)

    def _track_episodes(self, frames: TensorDictBase) -> None:
        """``frames``: ``[F]`` steps of the environment, or ``[K, F]``, F of each member's."""
        streams = frames.unbind(0) if self.seeds is not None else [frames]
        for stats, stream in zip(self.episode_stats, streams):
            stats.track(stream)
        self.collected_steps += streams[0].numel()

    def on_train_end(self) -> None:
        super().on_train_end()
        if self._collector is not None:
            self._collector.shutdown()
            self._collector, self._collector_iter = None, None
        # Under DDP every rank leaves with the whole buffer: phase 3 trains on all of it.
        self.buffer.gather_ranks(self.device)
        # Members: each one's online data in a block of its own, for phase 3 and the saved buffer.
        self.buffer.split_members()

    # --- update -------------------------------------------------------------------------
    def learning_started(self) -> bool:
        return self.phase == "explorer offline" or self.collected_steps >= self.random_steps

    def prepare_batch(self, batch: TensorDictBase) -> tuple[TensorDictBase, dict[str, torch.Tensor]]:
        batch, extra = super().prepare_batch(batch)
        if self.bonus is not None:
            bonus, bonus_loss = self.bonus.compute(batch)
            batch.set(("next", "intrinsic_reward"), (self.bonus_scale * bonus).unsqueeze(-1))
            if bonus_loss is not None:
                extra["bonus"] = bonus_loss
            self._last_bonus = bonus  # reduced only when logged, not on every update
        return batch, extra

    def extra_metrics(self) -> dict[str, float]:
        out: dict[str, float] = {}
        if self.bonus is not None and hasattr(self, "_last_bonus"):
            out["train/bonus_mean"] = float(self._last_bonus.mean())
            out.update(self.bonus_quantiles())
        # With members: the mean over the members that have a value.
        per_member = [stats.metrics() for stats in self.episode_stats]
        for key in dict.fromkeys(k for m in per_member for k in m):
            values = [m[key] for m in per_member if key in m]
            out[key] = sum(values) / len(values)
        return out

    @torch.no_grad()
    def bonus_quantiles(self, rows: int = 1000) -> dict[str, float]:
        """Where the bonus acts: median, p90 and max of ``bonus_scale * bonus`` (what is added
        to the reward) over the most recent ``rows`` online transitions and over ``rows``
        evenly spaced offline ones. A batch mean hides this: batches are almost all states
        the predictor already knows. Evenly spaced, not sampled, so that logging draws
        nothing from the training RNG."""
        num_offline, end = self.buffer.num_offline, len(self.buffer)
        blocks = {"offline": torch.linspace(0, num_offline - 1, min(rows, num_offline)).long() if num_offline else None,
                  "online": torch.arange(max(num_offline, end - rows), end) if end > num_offline else None}
        if self.seeds is not None:  # [K, rows]: the offline rows for every member, each member's own online rows
            if blocks["offline"] is not None:
                blocks["offline"] = blocks["offline"].expand(len(self.seeds), -1)
            if blocks["online"] is not None:
                blocks["online"] = torch.stack([self.buffer.member_online_index(k)[-rows:] for k in range(len(self.seeds))])
        out: dict[str, float] = {}
        for name, idx in blocks.items():
            if idx is None or idx.numel() == 0:
                continue
            bonus = self.bonus.compute(self.buffer.rows(idx).to(self.device), update=False)[0].float() * self.bonus_scale
            for label, q in (("p50", 0.5), ("p90", 0.9)):
                out[f"bonus/{name}_{label}"] = float(bonus.quantile(q))
            out[f"bonus/{name}_max"] = float(bonus.max())
        return out

    def rank_state(self) -> dict[str, Any]:
        return {
            **super().rank_state(),
            "collected_steps": self.collected_steps,
            "episode_stats": [stats.state() for stats in self.episode_stats],
            "bonus_rows_seen": self.bonus_rows_seen,
        }

    def load_rank_state(self, state: dict[str, Any]) -> None:
        super().load_rank_state(state)
        self.collected_steps = state["collected_steps"]
        # Checkpoints before members kept one environment's statistics at the top level.
        for stats, saved in zip(self.episode_stats, state.get("episode_stats", [state])):
            stats.load_state(saved)
        self.bonus_rows_seen = state["bonus_rows_seen"]
