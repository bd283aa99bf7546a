"""What a Lightning module needs from a loss: named terms, grouped in update stages.

A loss owns its networks (the TorchRL way) and returns named loss terms. Terms that may be
back-propagated together form a *stage*; stages run in order, each followed by one
optimiser step per term, so an algorithm can say "update V first, then actor and Q with the
new V" (IQL) without the module knowing anything about IQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

from ooo_lightning.config_checks import ConfigError
from ooo_lightning.networks import full_precision

NestedKey = str | tuple[str, ...]
#: Cache entries under this prefix are a stage's random draws, given from outside (``stage_noise``).
NOISE = "noise/"


@dataclass
class LossKeys:
    """Where a loss reads its inputs in a batch; TorchRL's names by default."""

    observation: NestedKey = "observation"
    action: NestedKey = "action"
    next_observation: NestedKey = ("next", "observation")
    reward: NestedKey = ("next", "reward")
    terminated: NestedKey = ("next", "terminated")
    # Optional: a scaled exploration bonus, added to the TD target after any Q clipping.
    intrinsic_reward: NestedKey = ("next", "intrinsic_reward")
    # Monte-Carlo return-to-go of the state (Cal-QL's calibration bound).
    mc_return: NestedKey = "mc_return"


class ActorCriticLoss(nn.Module):
    """Base class of the losses; see the module docstring for the stage contract."""

    #: Terms per stage, e.g. ``(("value",), ("actor", "qvalue"))``.
    stages: tuple[tuple[str, ...], ...] = ()
    #: Discount of the TD targets (and of the Monte-Carlo returns the module fills in).
    gamma: float
    #: Whether the loss reads the Monte-Carlo return-to-go (``keys.mc_return``), which the data
    #: module then computes for every transition.
    uses_mc_returns: bool = False
    #: Task reward of a failed step in a sparse task (before the module's shaping), for the
    #: returns of episodes cut by a time-out; None: such episodes get no return bound.
    sparse_failure_reward: float | None = None

    def __init__(self, keys: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.keys = LossKeys()
        if keys:
            self.set_keys(**keys)

    def set_keys(self, **kwargs: Any) -> None:
        valid = {f.name for f in fields(LossKeys)}
        for name, value in kwargs.items():
            if name not in valid:
                raise ConfigError(f"unknown loss key {name!r}; valid keys are {sorted(valid)}")
            setattr(self.keys, name, tuple(value) if isinstance(value, list) else value)

    def required_keys(self) -> dict[str, NestedKey]:
        """The batch entries this loss cannot do without (the bonus is optional; the
        Monte-Carlo return only for losses that read it)."""
        names = ["observation", "action", "next_observation", "reward", "terminated"]
        if self.uses_mc_returns:
            names.append("mc_return")
        return {name: getattr(self.keys, name) for name in names}

    @property
    def terms(self) -> tuple[str, ...]:
        return tuple(t for stage in self.stages for t in stage)

    #: Adam learning rate of each term; set by the subclass from its arguments.
    learning_rates: dict[str, float]

    # --- to implement -----------------------------------------------------------------
    @property
    def policy(self) -> nn.Module:
        """The actor (``self.actor`` by default); must provide ``act(observation, deterministic)``."""
        return self.actor

    def term_parameters(self, term: str) -> list[nn.Parameter]:
        raise NotImplementedError

    def term_learning_rate(self, term: str) -> float:
        return self.learning_rates[term]

    def stage_losses(self, stage: int, batch: TensorDictBase, cache: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Loss terms of ``stage``. ``cache`` carries tensors from earlier stages of the same
        batch (and diagnostics, under ``metric/...`` names, that the module may log)."""
        raise NotImplementedError

    def draw_noise(
        self, stage: int, batch_size: int, reference: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Every random draw of stage ``stage`` for ``batch_size`` transitions, with the dtype
        and device of ``reference``, from ``generator`` (the global one by default): one place
        that a test replaces to check a loss's arithmetic, and where each member of a
        ``MemberStack`` draws from its own generator. A loss that samples nothing (IQL) draws
        nothing."""
        return {}

    def after_stage(self, stage: int) -> None:
        """Called after the optimiser steps of ``stage`` (e.g. a target-network update)."""

    def runs_stage(self, stage: int) -> bool:
        """Whether ``staged_update`` runs ``stage`` on this update: a loss that skips a stage on
        some updates (SAC's delayed actor) says so here, outside ``stage_losses``, which then
        stays one graph under ``torch.compile``."""
        return True

    # --- shared -------------------------------------------------------------------------
    def stage_noise(
        self, stage: int, batch_size: int, reference: torch.Tensor, cache: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """The draws ``stage_losses`` uses: those given in ``cache`` under ``noise/<name>``
        (taken out of it; a ``MemberStack`` gives each member its own, drawn outside
        ``vmap``), else ``draw_noise``'s."""
        given = {key[len(NOISE) :]: cache.pop(key) for key in [k for k in cache if k.startswith(NOISE)]}
        return given or self.draw_noise(stage, batch_size, reference)

    def forward(self, batch: TensorDictBase) -> TensorDict:
        """All terms on one batch with the current parameters (no update in between)."""
        cache: dict[str, torch.Tensor] = {}
        out: dict[str, torch.Tensor] = {}
        for stage in range(len(self.stages)):
            for term, value in self.stage_losses(stage, batch, cache).items():
                out[f"loss_{term}"] = value
        return TensorDict(out, batch_size=[])


def staged_update(
    loss: ActorCriticLoss,
    batch: TensorDictBase,
    optimizers: dict[str, torch.optim.Optimizer],
    *,
    backward: Callable[[torch.Tensor], None] = torch.Tensor.backward,
    check: Callable[[torch.Tensor, dict[str, torch.Tensor]], None] | None = None,
    before_step: Callable[[list[torch.optim.Optimizer]], None] | None = None,
    stage_losses: Callable[[int, TensorDictBase, dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """One gradient update of ``loss``, stage by stage (each that ``loss.runs_stage``): the
    stage's terms, one backward of their sum, one step of each term's optimiser, then
    ``loss.after_stage``. Returns the losses and the cache (diagnostics under ``metric/...``). ``check`` sees each stage's total and terms
    before any gradient; ``before_step`` the stage's optimisers after the backward (the
    gradient average under DDP); ``stage_losses`` stands in for ``loss.stage_losses`` (its
    compiled form)."""
    losses: dict[str, torch.Tensor] = {}
    cache: dict[str, torch.Tensor] = {}
    terms_of = loss.stage_losses if stage_losses is None else stage_losses
    for stage in range(len(loss.stages)):
        if not loss.runs_stage(stage):  # skipped on this update (SAC's delayed actor)
            continue
        terms = terms_of(stage, batch, cache)
        total = sum(terms.values())
        if check is not None:
            check(total, terms)
        stepped = [optimizers[term] for term in terms]
        for optimizer in stepped:
            optimizer.zero_grad(set_to_none=True)
        backward(total)
        if before_step is not None:
            before_step(stepped)
        for optimizer in stepped:
            optimizer.step()
        loss.after_stage(stage)
        losses.update(terms)
    return losses, cache


@full_precision
def td_target(
    reward: torch.Tensor,
    not_terminal: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    *,
    alpha: torch.Tensor | None = None,
    next_log_prob: torch.Tensor | None = None,
    bounds: tuple[float, float] | None = None,
    intrinsic: torch.Tensor | None = None,
) -> torch.Tensor:
    """reward + gamma * not_terminal * (next_value - alpha * next_log_prob), clipped to
    ``bounds``, plus the intrinsic reward (after the clip, so the bonus is never clipped away).

    float32 under autocast: the critic regresses on this target, and bf16 resolves values
    near -50 only to 0.25 (a bonus of 0.01 added there would vanish).
    """
    if next_log_prob is not None:
        next_value = next_value - alpha * next_log_prob
    target = reward + gamma * not_terminal * next_value
    if bounds is not None:
        target = target.clamp(*bounds)
    if intrinsic is not None:
        target = target + intrinsic
    return target


@full_precision
def temperature_loss(temperature: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """SAC's entropy-tuning loss ``-(temperature * (log pi + target_entropy)).mean()``, log pi
    detached; ``temperature`` is alpha or log alpha, which sets the gradient's scale.

    float32 under autocast: log pi + target_entropy is a small difference of larger numbers
    whose sign decides whether alpha grows.
    """
    return -(temperature * (log_prob.detach() + target_entropy)).mean()


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging, one fused op over all tensors: target <- target + tau (source - target)."""
    torch._foreach_lerp_(list(target.parameters()), list(source.parameters()), tau)
