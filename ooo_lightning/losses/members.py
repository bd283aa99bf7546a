"""K independent agents of one loss as one loss: ``MemberStack``.

Every parameter and buffer of the K losses is stacked on a leading member axis, and each stage
is evaluated for all members at once through ``torch.func.vmap`` over the loss's own
``stage_losses``. A stage's terms are summed over the members: member k's weights get member
k's gradient only, and Adam is elementwise, so one optimiser per term over the stacked weights
steps each member as its own Adam would (issue 14; docs/design.md#members). Target updates
(``after_stage``) are elementwise too and run on the stacked weights as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from torch import nn

from ooo_lightning.losses.base import NOISE, ActorCriticLoss
from ooo_lightning.stacking import MemberCaller, check_members, member_copy, stack_copies, stacked_draws

#: Cache entries under this prefix hold a term's value per member ([K]); the terms themselves
#: are their sums over the members (what is back-propagated).
MEMBER_LOSS = "member_loss/"


class MemberStack(ActorCriticLoss):
    """``len(losses)`` independent copies of one loss class, trained as one.

    ``losses`` are built alike (same class and arguments) and initialised each with its own
    seed; they are copied, not kept. ``generators``, one per member, are where each member
    draws its loss's noise (``draw_noise``); without them every member draws from the global
    generator in turn.

    A batch has the member axis first: ``[K, B]``. ``stage_losses`` returns each term summed
    over the members, and the per-member values in the cache under ``member_loss/<term>``;
    diagnostics (``metric/...``) come back per member, ``[K]``.
    """

    def __init__(self, losses: Sequence[ActorCriticLoss], generators: Sequence[torch.Generator] | None = None) -> None:
        check_members(losses, generators, "MemberStack")
        first = losses[0]
        super().__init__()
        self.keys = first.keys
        self.stages = first.stages
        self.gamma = first.gamma
        self.uses_mc_returns = first.uses_mc_returns
        self.sparse_failure_reward = first.sparse_failure_reward
        self.learning_rates = dict(first.learning_rates)
        self.num_members = len(losses)
        self.member_losses: dict[str, torch.Tensor] = {}
        self.generators = list(generators) if generators is not None else None
        #: The loss's structure with every tensor stacked, [K, ...]: its own ``term_parameters``
        #: and ``after_stage`` apply to all members at once; its state_dict keys are the loss's.
        self.stacked = stack_copies(losses)
        # Not a submodule: the stacked loss is registered once, here, as ``stacked``.
        object.__setattr__(self, "_call", MemberCaller(self.stacked))

    # --- the loss contract, for all members --------------------------------------------
    @property
    def policy(self) -> nn.Module:
        raise NotImplementedError("a MemberStack acts per member: member(k).policy")

    def term_parameters(self, term: str) -> list[nn.Parameter]:
        return self.stacked.term_parameters(term)

    def after_stage(self, stage: int) -> None:
        self.stacked.after_stage(stage)

    def runs_stage(self, stage: int) -> bool:
        return self.stacked.runs_stage(stage)

    def draw_noise(
        self, stage: int, batch_size: int, reference: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """Each member's draws, from its own generator, stacked: ``[K, ...]``."""
        return stacked_draws(lambda where, g: self.stacked.draw_noise(stage, batch_size, where, g),
                             self.generators or [generator] * self.num_members, reference)

    def stage_losses(self, stage: int, batch: TensorDictBase, cache: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        columns = dict(batch.items(include_nested=True, leaves_only=True)) if isinstance(batch, TensorDictBase) else batch
        first = next(iter(columns.values()))
        if first.shape[0] != self.num_members:
            raise ValueError(f"a MemberStack of {self.num_members} takes batches [members, batch], got {tuple(first.shape)}")
        noise = self.draw_noise(stage, first.shape[1], first)
        carried = {k: v for k, v in cache.items() if not k.startswith(MEMBER_LOSS)}
        # The members' noise, drawn outside: inside vmap it would not be their solo runs' numbers.
        carried.update({NOISE + key: value for key, value in noise.items()})
        terms, out = self._call(_stage_losses, (columns, carried), shared=(stage,))
        cache.update(out)
        for term, value in terms.items():
            cache[MEMBER_LOSS + term] = value.detach()
        #: The latest stage's terms per member, [K] each (which member went non-finite).
        self.member_losses = {term: value.detach() for term, value in terms.items()}
        return {term: value.sum() for term, value in terms.items()}

    def act(self, observation: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        """Each member's action for its own observations, ``[K, ..., obs]`` -> ``[K, ..., A]``:
        the policy's sample whose standard normal draw is ``noise`` (``[K, ..., A]``, drawn by
        the caller from each member's generator), or its mean when ``noise`` is None."""
        if noise is None:
            return self._call(_mean_action, (observation,))
        return self._call(_sampled_action, (observation, noise))

    # --- one member ---------------------------------------------------------------------
    def member(self, index: int) -> ActorCriticLoss:
        """A plain loss holding member ``index``'s current weights (a copy): to act, evaluate
        or save that agent alone."""
        return member_copy(self.stacked, index)


def _stage_losses(loss: ActorCriticLoss, columns: dict, cache: dict, stage: int) -> tuple[dict, dict]:
    """One member's stage: its terms and its cache (a copy inside vmap: returned to come out)."""
    return loss.stage_losses(stage, columns, cache), cache


def _mean_action(loss: ActorCriticLoss, observation: torch.Tensor) -> torch.Tensor:
    return loss.policy.act(observation, deterministic=True)


def _sampled_action(loss: ActorCriticLoss, observation: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return loss.policy.act(observation, deterministic=False, noise=noise)
