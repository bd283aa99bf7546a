"""What the explorer and exploiter modules share: the update loop over a staged loss,
reward shaping, periodic evaluation, throttled logging and the non-finite-loss stop."""

from __future__ import annotations

import logging
import os
import time
import types
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import gymnasium as gym
import torch
from lightning.pytorch import Callback, LightningModule
from tensordict import TensorDictBase

from ooo_lightning.config_checks import ConfigError, check_loss_keys, check_ranges
from ooo_lightning import distributed, envs
from ooo_lightning.checkpointing import capture_rng, restore_rng
from ooo_lightning.cpu import keep_freed_memory
from ooo_lightning.data.buffer import TRANSITION_KEYS, OfflineOnlineBuffer
from ooo_lightning.data.datamodule import DataRequest, ReplayDataModule
from ooo_lightning.data.returns import ReturnSpec, RewardShaping
from ooo_lightning.data.sampling import SamplingSpec
from ooo_lightning.datasets import TaskDataset
from ooo_lightning.evaluation import EvalResult, evaluate_policy, make_env, mean_result
from ooo_lightning.losses.base import ActorCriticLoss, staged_update
from ooo_lightning.losses.members import MemberStack

log = logging.getLogger(__name__)
LossFactory = Callable[[int, int], ActorCriticLoss]
#: ``actor_lr_schedule`` values: a constant actor learning rate, or IQL's offline recipe
#: (Kostrikov et al.'s reference code), a cosine decay to 0 over the module's updates.
ACTOR_LR_SCHEDULES = ("constant", "cosine")
_NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN/inf; raised before the optimiser step, so no weight is corrupted."""


class RLModule(LightningModule):
    """Base of ``ExplorerModule`` and ``ExploiterModule`` (see their docstrings for the args).

    One training step = ``updates_per_step`` gradient updates on a stacked batch from the
    ``OfflineOnlineBuffer`` that a ``ReplayDataModule`` prepares for the module's
    ``data_request()`` (the ``BufferConnection`` callback makes the connection). Logging
    happens every ``log_every`` training steps only: a ``self.log`` call costs about as much
    as a tenth of an update.
    """

    phase = "train"

    def __init__(
        self,
        env: str,
        loss: LossFactory,
        *,
        env_kwargs: dict[str, Any] | None = None,
        batch_size: int = 256,
        updates_per_step: int = 8,
        reward_scale: float = 1.0,
        reward_bias: float = 0.0,
        positive_samples: int = 0,
        offline_fraction: float | None = None,
        eval_every: int = 500,
        eval_episodes: int = 10,
        log_every: int = 25,
        seed: int = 0,
        actor_lr_schedule: str = "constant",
        compile: bool = False,
        seeds: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        check_ranges(
            type(self).__name__, batch_size=(batch_size, ">= 1"), updates_per_step=(updates_per_step, ">= 1"),
            reward_scale=(reward_scale, "> 0"), reward_bias=(reward_bias, "finite"),
            positive_samples=(positive_samples, ">= 0"), offline_fraction=(offline_fraction, "[0, 1]"),
            eval_every=(eval_every, ">= 0"), eval_episodes=(eval_episodes, ">= 1"), log_every=(log_every, ">= 1"),
        )
        if actor_lr_schedule not in ACTOR_LR_SCHEDULES:
            raise ConfigError(f"actor_lr_schedule must be one of {list(ACTOR_LR_SCHEDULES)}, got {actor_lr_schedule!r}")
        self.actor_lr_schedule = actor_lr_schedule
        #: Run the loss's stages and the optimiser steps through torch.compile (see ``update``).
        self.compile_update = bool(compile)
        #: Wall seconds of the first update of a compiled fit (mostly compiling); None otherwise.
        self.compile_seconds: float | None = None
        self._stage_losses = None  # the loss's own stage_losses, or its compiled form (on_fit_start)
        if not 0 <= positive_samples < batch_size:
            raise ConfigError(f"positive_samples must be in [0, batch_size), got {positive_samples}")
        self.env_id = env
        self.env_kwargs = dict(env_kwargs or {})
        try:
            probe = make_env(env, self.env_kwargs)
        except (ValueError, TypeError, gym.error.Error) as err:  # a bad id or env_kwargs: one line
            raise ConfigError(f"cannot make the environment {env!r} with env_kwargs {self.env_kwargs}: {err}") from None
        if not isinstance(probe.action_space, gym.spaces.Box) or len(probe.observation_space.shape or ()) != 1:
            raise ConfigError(f"{env}: needs a flat Box observation space and a Box action space")
        self.observation_dim = int(probe.observation_space.shape[0])
        self.action_dim = int(probe.action_space.shape[0])
        probe.close()
        if seeds is not None:
            seeds = [int(s) for s in seeds]
            if not seeds:
                raise ConfigError(f"{type(self).__name__}: seeds must list at least one seed (null: one agent)")
        #: Members' seeds (one agent each, trained as one ``MemberStack``); None: one agent.
        self.seeds: list[int] | None = None
        #: Each member's generator: its batches and its loss's noise (None without members).
        self.member_generators: list[torch.Generator] | None = None
        try:
            self.loss = loss(self.observation_dim, self.action_dim) if seeds is None else self._member_losses(loss, seeds)
        except ConfigError as err:  # say whose loss it is: both agents may use the same class
            raise ConfigError(f"{type(self).__name__} loss: {err}") from None
        if not isinstance(self.loss, ActorCriticLoss):
            raise TypeError(f"loss must build an ActorCriticLoss, got {type(self.loss).__name__}")
        check_loss_keys(self.loss, TRANSITION_KEYS, type(self).__name__)
        #: How each training step samples the buffer: declared here, once.
        self.sampling = SamplingSpec(batch_size, updates_per_step, positive_samples, offline_fraction)
        self.reward_shaping = RewardShaping(bias=reward_bias, scale=reward_scale)
        self.eval_every = eval_every
        self.eval_episodes = eval_episodes
        self.log_every = log_every
        self.seed = seed
        self.num_updates = 0
        #: Training steps finished: the schedules (phase switch, logging, evaluation) and a
        #: resumed run's remaining steps count from it, not from Lightning's batch index.
        self.steps_done = 0
        self._resumed = False
        self._rng_to_restore: dict[str, Any] | None = None
        self._check_every_update = True
        self._ddp_model = None
        #: Set by ``attach_buffer`` before training (the ``BufferConnection`` callback).
        self.buffer: OfflineOnlineBuffer | None = None

    def _member_losses(self, loss: LossFactory, seeds: list[int]) -> ActorCriticLoss:
        members = []
        #: Each member's RNG state after its loss was built: where its other networks (the
        #: explorer's bonus) start, as a solo agent's would after its loss.
        self.member_init_rng: list[torch.Tensor] = []
        for seed in seeds:  # each member's initial weights from its own seed
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                members.append(loss(self.observation_dim, self.action_dim))
                self.member_init_rng.append(torch.get_rng_state())
        if not isinstance(members[0], ActorCriticLoss):
            return members[0]  # refused, with its type, by the caller
        self.stack_members(members, seeds)
        return self.loss

    def stack_members(self, losses: list[ActorCriticLoss], seeds: list[int]) -> None:
        """Makes this module's agents ``losses``, trained as one ``MemberStack``: member k with
        ``seeds[k]``, whose generator draws its batches and its loss's noise."""
        self.seeds = list(seeds)
        self.member_generators = [torch.Generator().manual_seed(s) for s in seeds]
        self.loss = MemberStack(losses, self.member_generators)

    @property
    def num_members(self) -> int | None:
        """Agents trained as one (``len(seeds)``); None for a module of one agent."""
        return None if self.seeds is None else len(self.seeds)

    @property
    def batch_size(self) -> int:
        return self.sampling.batch_size

    @property
    def updates_per_step(self) -> int:
        return self.sampling.updates_per_step

    @property
    def positive_samples(self) -> int:
        return self.sampling.positive_samples

    # --- the data -----------------------------------------------------------------------
    def data_request(self) -> DataRequest:
        """What this module needs from the data module (see ``DataRequest``)."""
        return DataRequest(
            env_id=self.env_id,
            env_kwargs=self.env_kwargs,
            observation_dim=self.observation_dim,
            action_dim=self.action_dim,
            sampling=self.sampling,
            num_batches=self.num_training_steps,
            online_capacity=self.online_capacity,
            online_steps_limit=self.online_steps_limit,
            returns=self.return_spec(),
            generated_dataset=TaskDataset(self.env_id, self.env_kwargs),
            batches_done=lambda: self.steps_done,
            member_generators=self.member_generators,
            member_online_steps=self.member_online_steps,
            member_seeds=self.seeds,
            dataset_layout=envs.dataset_layout(self.env_id, self.env_kwargs),
        )

    def attach_buffer(self, buffer: OfflineOnlineBuffer) -> None:
        """The buffer to train on (and, for the explorer, to collect into)."""
        self.buffer = buffer

    def configure_callbacks(self) -> list[Callback]:
        return [BufferConnection()]

    @property
    def num_training_steps(self) -> int:
        raise NotImplementedError

    @property
    def total_updates(self) -> int:
        """Gradient updates of the whole fit (every training step makes ``updates_per_step``)."""
        return self.num_training_steps * self.updates_per_step

    @property
    def online_capacity(self) -> int:
        """Transitions this module will add to the buffer."""
        return 0

    #: Train on the offline data plus this many online transitions only (None: all).
    online_steps_limit: int | None = None
    #: Members only: each member's own such limit (the exploiter's curve in one fit).
    member_online_steps: list[int] | None = None

    @property
    def env_steps(self) -> int:
        """Online environment steps behind the current policy."""
        return 0

    def member_env_steps(self) -> list[int]:
        """``env_steps`` of each agent (one entry without members)."""
        return [self.env_steps] * (self.num_members or 1)

    # --- Lightning hooks -----------------------------------------------------------------
    def optimizer_specs(self) -> list[tuple[str, list[torch.nn.Parameter], float]]:
        """(name, parameters, learning rate) of every optimiser, one per loss term."""
        return [(t, self.loss.term_parameters(t), self.loss.term_learning_rate(t)) for t in self.loss.terms]

    def configure_optimizers(self):
        specs = self.optimizer_specs()
        self._optimizer_names = [name for name, _, _ in specs]
        if self.compile_update:
            optimizers = [compiled_adam(params, lr) for _, params, lr in specs]
        else:
            # Fused Adam kernels exist for CPU and CUDA in torch 2.14; one optimiser per term.
            optimizers = [torch.optim.Adam(params, lr=lr, fused=True) for _, params, lr in specs]
        if self.actor_lr_schedule == "constant" or "actor" not in self._optimizer_names:
            return optimizers
        # Stepped once per gradient update in update(); Lightning keeps its state in checkpoints.
        actor = optimizers[self._optimizer_names.index("actor")]
        return optimizers, [torch.optim.lr_scheduler.CosineAnnealingLR(actor, T_max=max(1, self.total_updates))]

    def on_fit_start(self) -> None:
        # Not registered as a submodule: the DDP wrapper holds this module (a cycle).
        object.__setattr__(self, "_ddp_model", self._find_ddp_model())
        if distributed.world_size() > 1 and not self._resumed:
            # Lightning seeds every rank alike; each rank samples its own batches and actions.
            torch.manual_seed(self.seed + 7919 * distributed.rank())
            # Each rank holds every member: each member's batches and noise differ per rank too.
            for seed, generator in zip(self.seeds or [], self.member_generators or []):
                generator.manual_seed(seed + 7919 * distributed.rank())
        # Importing Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 (fork safety before workers
        # start), which makes every torch.cuda.is_available() open the NVML library; Adam calls
        # it on each step, which cost ~0.1-0.3 ms per optimiser step here. Worker processes
        # exist by now, so the cheap check is safe until the end of this fit.
        self._nvml_check = os.environ.pop(_NVML_CHECK, None)
        # A .item() per update forces a device sync; on accelerators check at log steps only.
        self._check_every_update = self.device.type == "cpu"
        if self.device.type == "cpu":
            keep_freed_memory()
        if self.compile_update and self._stage_losses is None:
            self._stage_losses = compiled_stages(self.loss)

    def on_train_start(self) -> None:
        if self._rng_to_restore is not None:
            # Here, not when the checkpoint is loaded: creating the data loader's iterator in
            # between draws a seed from the global RNG, which an uninterrupted run drew once, at
            # the phase's start, and not again at this step.
            restore_rng(self._rng_to_restore)
            self._rng_to_restore = None
        # Here, not in on_fit_start: a resumed run has its counters back by now.
        self._t_start = time.perf_counter()
        self._updates_at_start = self.num_updates

    def on_train_end(self) -> None:
        if self._ddp_model is not None:
            # The ranks apply the same averaged gradients: their weights must agree exactly.
            checksum = torch.stack([p.detach().double().sum() for p in self.parameters()]).sum().reshape(1)
            sums = distributed.all_gather_tensor(checksum, distributed.collective_device(self.device)).reshape(-1).tolist()
            if len(set(sums)) != 1:
                raise RuntimeError(f"{self.phase}: the ranks' weights diverged (parameter sums {sums})")

    def on_fit_end(self) -> None:
        if getattr(self, "_nvml_check", None) is not None:
            os.environ[_NVML_CHECK] = self._nvml_check

    def training_step(self, batch: TensorDictBase | None, batch_idx: int) -> None:
        step = self.steps_done  # equals batch_idx, except after a resume
        self.before_updates(step)
        losses: dict[str, torch.Tensor] = {}
        cache: dict[str, torch.Tensor] = {}
        # Empty before the first online data; skipped during a random warm-up.
        if batch is not None and batch.batch_size.numel() > 0 and self.learning_started():
            optimizers = self.optimizers()
            if not isinstance(optimizers, list):
                optimizers = [optimizers]
            by_term = dict(zip(self._optimizer_names, optimizers))
            # Under DDP the gradients are averaged per stage in update(), not by DDP's reducer.
            with self._ddp_model.no_sync() if self._ddp_model is not None else nullcontext():
                for minibatch in batch.unbind(0):
                    first_compiled = self.compile_update and self.compile_seconds is None
                    started = time.perf_counter()
                    losses, cache = self.update(minibatch, by_term, step)
                    if first_compiled:
                        self._report_compile_time(time.perf_counter() - started)
        last = step + 1 == self.num_training_steps
        if step % self.log_every == 0 or last:
            # Only the last update of the step is logged: building metrics costs time too.
            # With members, the losses are sums over them and the metrics per member: their means.
            members = self.num_members or 1
            metrics = {f"loss/{k}": v.detach() / members for k, v in losses.items()}
            metrics.update({k.replace("metric/", "train/"): v.mean() for k, v in cache.items() if k.startswith("metric/")})
            self._log_step(metrics, step)
        if self.eval_every > 0 and ((step + 1) % self.eval_every == 0 or last) and distributed.is_rank_zero():
            self.run_evaluation()  # the ranks hold the same weights: one evaluation is enough
        self.steps_done += 1

    def extra_metrics(self) -> dict[str, float]:
        """Module-specific values logged with the losses (e.g. online episode statistics)."""
        return {}

    def before_updates(self, batch_idx: int) -> None:
        """Hook for work before the updates of a step (the explorer collects here)."""

    def learning_started(self) -> bool:
        """Whether this step makes its updates (the explorer waits out its random warm-up)."""
        return True

    def return_spec(self) -> ReturnSpec | None:
        """The Monte-Carlo returns the loss reads, or None when it reads none (see
        ``ooo_lightning.data.returns``)."""
        if not self.loss.uses_mc_returns:
            return None
        failure = self.loss.sparse_failure_reward
        shaped_failure = None if failure is None else float(self.reward_shaping(failure))
        return ReturnSpec(float(self.loss.gamma), self.reward_shaping, shaped_failure)

    def prepare_batch(self, batch: TensorDictBase) -> tuple[TensorDictBase, dict[str, torch.Tensor]]:
        """Shapes the task reward; returns the batch and extra losses to optimise (none here)."""
        if not self.reward_shaping.is_identity:
            batch.set(("next", "reward"), self.reward_shaping(batch.get(("next", "reward"))))
        return batch, {}

    def update(
        self, batch: TensorDictBase, optimizers: dict, batch_idx: int
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """One gradient update, stage by stage; returns the losses and the loss's cache."""
        batch, extra = self.prepare_batch(batch)
        extra_losses: dict[str, torch.Tensor] = {}
        # Extra terms (the bonus predictor) first, while their graph is fresh. Stepping them after
        # the agent's stages was ~20% slower on 2026-11-25 and no slower on 2026-12-03
        # (benchmarks/throughput.py --rnd --compare bonus_order); the order stays.
        for name, value in extra.items():
            self._check_finite(value, {name: value}, batch_idx)
            optimizers[name].zero_grad(set_to_none=True)
            self.manual_backward(value)
            self._average_gradients([optimizers[name]])
            optimizers[name].step()
            extra_losses[name] = value
        losses, cache = staged_update(
            self.loss, batch, optimizers, backward=self.manual_backward,
            check=lambda total, terms: self._check_finite(total, terms, batch_idx), before_step=self._average_gradients,
            stage_losses=self._stage_losses,
        )
        losses = {**extra_losses, **losses}
        if self.actor_lr_schedule != "constant":
            self.lr_schedulers().step()
        self.num_updates += 1
        return losses, cache

    # --- helpers ------------------------------------------------------------------------
    def _report_compile_time(self, seconds: float) -> None:
        self.compile_seconds = seconds
        if distributed.is_rank_zero():
            log.info("%s: the first compiled update took %.1f s (compiling its graphs)", self.phase, seconds)

    def _find_ddp_model(self):
        from torch.nn.parallel import DistributedDataParallel

        model = self.trainer.strategy.model if self._trainer is not None else None
        return model if isinstance(model, DistributedDataParallel) else None

    def _average_gradients(self, optimizers: list) -> None:
        if self._ddp_model is None:
            return
        grads = [p.grad for opt in optimizers for group in opt.param_groups for p in group["params"] if p.grad is not None]
        distributed.all_reduce_mean_(grads)

    def _check_finite(self, total: torch.Tensor, terms: dict[str, torch.Tensor], batch_idx: int, force: bool = False) -> None:
        if not (self._check_every_update or force):
            return
        if bool(torch.isfinite(total)):
            return
        bad = [name for name, value in terms.items() if not bool(torch.isfinite(value))]
        if isinstance(self.loss, MemberStack):
            members = sorted({k for value in self.loss.member_losses.values() for k in
                              torch.nonzero(~torch.isfinite(value)).reshape(-1).tolist()})
            bad = f"{bad} of member(s) " + ", ".join(f"{k} (seed {self.seeds[k]})" for k in members)
        ckpt_dir = None
        if self._trainer is not None and self.trainer.checkpoint_callback is not None:
            ckpt_dir = self.trainer.checkpoint_callback.dirpath
        raise NonFiniteLossError(
            f"{self.phase}: non-finite loss {bad} at update {self.num_updates} (training step {batch_idx}). "
            f"Training stopped before the optimiser step; the last good checkpoint is in {ckpt_dir}. "
            "Lower the learning rates, check the rewards for NaN, or set reward_scale smaller."
        )

    def _log_step(self, metrics: dict[str, torch.Tensor], batch_idx: int) -> None:
        if not self._check_every_update:
            for name, value in metrics.items():
                if name.startswith("loss/"):
                    self._check_finite(value, {name: value}, batch_idx, force=True)
        elapsed = time.perf_counter() - self._t_start
        metrics = dict(metrics)
        metrics["progress/updates"] = float(self.num_updates)
        metrics["progress/env_steps"] = float(self.env_steps)
        metrics["progress/updates_per_s"] = (self.num_updates - self._updates_at_start) / max(elapsed, 1e-9)
        if self.actor_lr_schedule != "constant":
            metrics["train/actor_lr"] = self.lr_schedulers().get_last_lr()[0]
        metrics.update(self.extra_metrics())
        self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=self.batch_size)

    def policies(self) -> list[torch.nn.Module]:
        """The policy of each agent: one, or each member's (a copy of its current weights)."""
        if isinstance(self.loss, MemberStack):
            return [self.loss.member(k).policy for k in range(self.loss.num_members)]
        return [self.loss.policy]

    def evaluate_members(self, episodes: int | None = None, seed: int | None = None) -> list[EvalResult]:
        """Mean-action rollouts of each agent's policy (one for a module without members), on
        the same episodes."""
        return [
            evaluate_policy(
                policy,
                self.env_id,
                episodes=episodes or self.eval_episodes,
                seed=(self.seed + 1_000_000) if seed is None else seed,
                env_kwargs=self.env_kwargs,
                env_steps=env_steps,
            )
            for policy, env_steps in zip(self.policies(), self.member_env_steps())
        ]

    def run_evaluation(self, episodes: int | None = None, seed: int | None = None, log: bool = True) -> EvalResult:
        """Mean-action rollouts of the current policy (with members: every member's, averaged);
        logged when called inside training."""
        results = self.evaluate_members(episodes, seed)
        result = results[0] if self.seeds is None else mean_result(results)
        if log:
            metrics = {
                "eval/return_mean": result.return_mean,
                "eval/success_rate": result.success_rate,
                "eval/updates": float(self.num_updates),
                "eval/env_steps": float(self.env_steps),
            }
            if self.seeds is not None:  # each member's curve too (the plots draw them)
                for k, member in enumerate(results):
                    metrics[f"eval/member_{k}/return_mean"] = member.return_mean
                    metrics[f"eval/member_{k}/success_rate"] = member.success_rate
            self.log_dict(
                metrics,
                on_step=True,
                on_epoch=False,
                batch_size=self.batch_size,
                prog_bar=False,
            )
        return result

    def rank_state(self) -> dict[str, Any]:
        """This rank's counters that the weights do not hold (extended by the explorer)."""
        state: dict[str, Any] = {"rng": capture_rng()}
        if self.member_generators is not None:
            state["member_rng"] = [g.get_state() for g in self.member_generators]
        return state

    def load_rank_state(self, state: dict[str, Any]) -> None:
        self._rng_to_restore = state["rng"]  # restored in on_train_start
        for generator, saved in zip(self.member_generators or [], state.get("member_rng", [])):
            generator.set_state(saved)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Called on every rank (Lightning writes rank 0's dict): gather each rank's own state.
        checkpoint["ooo_num_updates"] = self.num_updates
        checkpoint["ooo_steps_done"] = self.steps_done
        checkpoint["ooo_rank_states"] = distributed.all_gather_objects(self.rank_state())

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.num_updates = checkpoint.get("ooo_num_updates", 0)
        self.steps_done = checkpoint.get("ooo_steps_done", 0)
        states = checkpoint.get("ooo_rank_states")
        if states is not None:
            if len(states) != distributed.world_size():
                raise ConfigError(
                    f"the checkpoint was written by {len(states)} processes and this run has {distributed.world_size()}: "
                    "resume with the same trainer.devices and trainer.num_nodes"
                )
            self.load_rank_state(states[distributed.rank()])
        self._resumed = True


def compiled_stages(loss: ActorCriticLoss) -> Callable:
    """``loss.stage_losses`` through ``torch.compile``: one graph per stage, each with the
    backward AOTAutograd derives. The graph gets the batch as a plain dict of its tensors:
    given the TensorDict, torch 2.14 reused a graph traced on batches without the bonus key
    for batches with it (an explorer fitted after an exploiter in one process ignored its
    bonus); dynamo guards a dict's keys."""
    compiled = torch.compile(loss.stage_losses, dynamic=False)

    def stage_losses(stage: int, batch: TensorDictBase, cache: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return compiled(stage, dict(batch.items(include_nested=True, leaves_only=True)), cache)

    return stage_losses


def compiled_adam(params: list[torch.nn.Parameter], lr: float) -> torch.optim.Adam:
    """Adam whose ``step`` runs through ``torch.compile`` (PyTorch's recipe for a compiled
    optimiser: the learning rate a tensor, so a schedule changes it without recompiling).
    Lightning calls ``step(closure=...)``: the closure (its hooks) runs eagerly, then the
    compiled step. Replaced before any LR scheduler wraps ``step``, which then counts it."""
    optimizer = torch.optim.Adam(params, lr=torch.tensor(float(lr)), foreach=False)
    compiled = torch.compile(optimizer.step)

    def step(self, closure=None):
        result = None
        if closure is not None:
            with torch.enable_grad():
                result = closure()
        compiled()
        return result

    optimizer.step = types.MethodType(step, optimizer)  # a method: LR schedulers wrap its __func__
    return optimizer


class BufferConnection(Callback):
    """Connects an ``RLModule`` to the ``ReplayDataModule`` it is fitted with: the data
    module prepares the buffer for the module's ``data_request()`` and the module gets that
    buffer. Lightning runs this after the data module's setup and before a checkpoint is
    restored (whose online rows go into the prepared buffer)."""

    def setup(self, trainer, pl_module: RLModule, stage: str) -> None:
        data = trainer.datamodule
        if not isinstance(data, ReplayDataModule):
            raise ConfigError(f"{type(pl_module).__name__} trains on a ReplayDataModule: fit it with datamodule=ReplayDataModule(...)")
        pl_module.attach_buffer(data.prepare(pl_module.data_request()))
