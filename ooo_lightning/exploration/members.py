"""K independent RND bonuses as one: ``MemberBonus``, the bonus of an explorer whose agents are
stacked members (``losses.members.MemberStack``; docs/design.md#members-several-agents-as-one).
Each member's predictor, target and running statistics are its own slice of stacked tensors;
``compute`` runs for all members at once through ``torch.func.vmap``, with each member's
random rows drawn from its own generator, as its solo bonus would draw them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tensordict import TensorDictBase

from ooo_lightning.config_checks import ConfigError
from ooo_lightning.exploration.rnd import ExplorationBonus, RNDBonus
from ooo_lightning.stacking import MemberCaller, check_members, member_copy, stack_copies, stacked_draws


class MemberBonus(ExplorationBonus):
    """``len(bonuses)`` RND bonuses trained as one. A batch is ``[K, B]``; ``compute`` returns
    the bonus ``[K, B]`` and the predictors' loss summed over the members (each predictor gets
    its own gradient), the per-member losses in ``member_losses``."""

    def __init__(self, bonuses: Sequence[ExplorationBonus], generators: Sequence[torch.Generator] | None = None) -> None:
        check_members(bonuses, generators, "MemberBonus")
        if not isinstance(bonuses[0], RNDBonus):
            # A count bonus's hash tables are filled by observe(), outside any batch: no member axis yet.
            raise ConfigError(f"several agents as one take an RNDBonus so far, not {type(bonuses[0]).__name__}")
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
