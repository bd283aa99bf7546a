"""K independent bonuses as one, the bonus of an explorer whose agents are stacked members
(``losses.members.MemberStack``; docs/design.md#members-several-agents-as-one); ``member_bonus``
picks the kind. ``MemberBonus`` (RND): each member's predictor, target and running statistics
are its own slice of stacked tensors; ``compute`` runs for all members at once through
``torch.func.vmap``, with each member's random rows drawn from its own generator, as its solo
bonus would draw them. ``MemberCounts``: each member's visit table of its own, filled with the
offline data and its own online transitions."""

from __future__ import annotations

from collections.abc import Sequence

import copy

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

from ooo_lightning.config_checks import ConfigError
from ooo_lightning.exploration.counts import CountBonus
from ooo_lightning.exploration.rnd import ExplorationBonus, RNDBonus
from ooo_lightning.stacking import MemberCaller, check_members, member_copy, stack_copies, stacked_draws


def member_bonus(bonuses: Sequence[ExplorationBonus], generators: Sequence[torch.Generator] | None = None) -> ExplorationBonus:
    """The bonuses of K members as one bonus: ``MemberCounts`` for count bonuses, else
    ``MemberBonus``."""
    if bonuses and isinstance(bonuses[0], CountBonus):
        return MemberCounts(bonuses)
    return MemberBonus(bonuses, generators)


class MemberCounts(ExplorationBonus):
    """``len(bonuses)`` count bonuses as one. ``observe`` takes rows ``[n]`` that every member
    sees (the offline data) or ``[K, n]``, member k's own; ``compute`` takes a batch
    ``[K, B]`` and gives each member's bonus from its own table, ``[K, B]``. A table lookup is
    cheap, so the members are simply looped over."""

    def __init__(self, bonuses: Sequence[ExplorationBonus]) -> None:
        check_members(bonuses, None, "MemberCounts")
        if not all(isinstance(b, CountBonus) for b in bonuses):
            raise ConfigError(f"MemberCounts takes count bonuses, got {[type(b).__name__ for b in bonuses]}")
        super().__init__()
        self.num_members = len(bonuses)
        self.members = nn.ModuleList(bonuses)

    def observe(self, transitions: TensorDictBase) -> None:
        if transitions.batch_dims == 1:
            for bonus in self.members:
                bonus.observe(transitions)
            return
        if transitions.shape[0] != self.num_members:
            raise ValueError(f"MemberCounts of {self.num_members} observes rows [n] or [members, n], got {tuple(transitions.shape)}")
        for bonus, own in zip(self.members, transitions.unbind(0)):
            bonus.observe(own)

    @torch.no_grad()
    def compute(
        self, batch: TensorDictBase, update: bool = True, noise: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        key = self.members[0].observation_key
        observation = batch.get(key) if isinstance(batch, TensorDictBase) else batch[key]
        if observation.shape[0] != self.num_members:
            raise ValueError(f"MemberCounts of {self.num_members} takes batches [members, batch], got {tuple(observation.shape)}")
        bonus = [b.compute(TensorDict({key: obs}, obs.shape[:-1]))[0] for b, obs in zip(self.members, observation.unbind(0))]
        return torch.stack(bonus), None

    def member(self, index: int) -> ExplorationBonus:
        """Member ``index``'s bonus alone (a copy)."""
        return copy.deepcopy(self.members[index])


class MemberBonus(ExplorationBonus):
    """``len(bonuses)`` RND bonuses trained as one. A batch is ``[K, B]``; ``compute`` returns
    the bonus ``[K, B]`` and the predictors' loss summed over the members (each predictor gets
    its own gradient), the per-member losses in ``member_losses``."""

    def __init__(self, bonuses: Sequence[ExplorationBonus], generators: Sequence[torch.Generator] | None = None) -> None:
        check_members(bonuses, generators, "MemberBonus")
        if not isinstance(bonuses[0], RNDBonus):
            # A count bonus's tables are filled by observe(), outside any batch: MemberCounts.
            raise ConfigError(f"MemberBonus stacks RND bonuses, not {type(bonuses[0]).__name__} (member_bonus picks)")
        super().__init__()
        self.learning_rate = bonuses[0].learning_rate
        self.num_members = len(bonuses)
        self.generators = list(generators) if generators is not None else None
        self.stacked = stack_copies(bonuses)
        self.member_losses = torch.empty(0)
        object.__setattr__(self, "_call", MemberCaller(self.stacked))

    @property
    def predictor(self):
        return self.stacked.predictor

    def draw_noise(
        self, batch_size: int, reference: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        return stacked_draws(lambda where, g: self.stacked.draw_noise(batch_size, where, g),
                             self.generators or [generator] * self.num_members, reference)

    def compute(
        self, batch: TensorDictBase, update: bool = True, noise: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        columns = dict(batch.items(include_nested=True, leaves_only=True)) if isinstance(batch, TensorDictBase) else batch
        first = next(iter(columns.values()))
        if first.shape[0] != self.num_members:
            raise ValueError(f"a MemberBonus of {self.num_members} takes batches [members, batch], got {tuple(first.shape)}")
        if not update:
            return self._call(_bonus, (columns,)), None
        noise = self.draw_noise(first.shape[1], first) if noise is None else noise
        bonus, losses = self._call(_bonus_and_loss, (columns, noise))
        self.member_losses = losses.detach()
        return bonus, losses.sum()

    def member(self, index: int) -> ExplorationBonus:
        """Member ``index``'s bonus alone (a copy)."""
        return member_copy(self.stacked, index)


def _bonus(bonus: ExplorationBonus, columns: dict) -> torch.Tensor:
    return bonus.compute(columns, update=False)[0]


def _bonus_and_loss(bonus: ExplorationBonus, columns: dict, noise: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return bonus.compute(columns, update=True, noise=noise)
