"""K independent agents of one loss as one loss: ``MemberStack``.

Every parameter and buffer of the K losses is stacked on a leading member axis, and each stage
is evaluated for all members at once through ``torch.func.vmap`` over the loss's own
``stage_losses``. A stage's terms are summed over the members: member k's weights get member
k's gradient only, and Adam is elementwise, so one optimiser per term over the stacked weights
steps each member as its own Adam would (issue 14; docs/design.md#members). Target updates
(``after_stage``) are elementwise too and run on the stacked weights as they are.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from tensordict import TensorDictBase
from torch import nn
from torch.func import functional_call, vmap

from ooo_lightning.config_checks import ConfigError
from ooo_lightning.losses.base import NOISE, ActorCriticLoss

#: Cache entries under this prefix hold a term's value per member ([K]); the terms themselves
#: are their sums over the members (what is back-propagated).
MEMBER_LOSS = "member_loss/"


def _set_tensor(module: nn.Module, name: str, value: torch.Tensor) -> None:
    *path, leaf = name.split(".")
    owner = module.get_submodule(".".join(path))
    if isinstance(value, nn.Parameter):
        owner.register_parameter(leaf, value)
    else:
        owner.register_buffer(leaf, value)


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
        if not losses:
            raise ConfigError("MemberStack needs at least one member")
        first = losses[0]
        if any(type(loss) is not type(first) for loss in losses):
            raise ConfigError(f"the members must share one loss class, got {sorted({type(l).__name__ for l in losses})}")
        if generators is not None and len(generators) != len(losses):
            raise ConfigError(f"one generator per member: {len(generators)} for {len(losses)} members")
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
        self.stacked = copy.deepcopy(first)
        for name, value in first.named_parameters():
            stacked = torch.stack([dict(loss.named_parameters())[name].detach() for loss in losses])
            _set_tensor(self.stacked, name, nn.Parameter(stacked, requires_grad=value.requires_grad))
        for name, value in first.named_buffers():
            _set_tensor(self.stacked, name, torch.stack([dict(loss.named_buffers())[name] for loss in losses]))
        # Not a submodule: the stacked loss is registered once, here, as ``stacked``.
        object.__setattr__(self, "_caller", _StageLosses(self.stacked))

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
        gens = self.generators or [generator] * self.num_members
        draws = []
        for g in gens:  # drawn where the member's generator lives, used where the batch is
            where = reference if g is None or g.device == reference.device else reference.new_empty(0, device=g.device)
            draws.append({k: v.to(reference.device) for k, v in self.stacked.draw_noise(stage, batch_size, where, g).items()})
        return {key: torch.stack([d[key] for d in draws]) for key in draws[0]}

    def stage_losses(self, stage: int, batch: TensorDictBase, cache: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        columns = dict(batch.items(include_nested=True, leaves_only=True)) if isinstance(batch, TensorDictBase) else batch
        first = next(iter(columns.values()))
        if first.shape[0] != self.num_members:
            raise ValueError(f"a MemberStack of {self.num_members} takes batches [members, batch], got {tuple(first.shape)}")
        noise = self.draw_noise(stage, first.shape[1], first)
        carried = {k: v for k, v in cache.items() if not k.startswith(MEMBER_LOSS)}
        tensors = {f"loss.{name}": value for name, value in (*self.stacked.named_parameters(), *self.stacked.named_buffers())}
        terms, out = vmap(self._one_member, in_dims=(0, 0, 0, 0, None))(tensors, columns, carried, noise, stage)
        cache.update(out)
        for term, value in terms.items():
            cache[MEMBER_LOSS + term] = value.detach()
        #: The latest stage's terms per member, [K] each (which member went non-finite).
        self.member_losses = {term: value.detach() for term, value in terms.items()}
        return {term: value.sum() for term, value in terms.items()}

    def _one_member(self, tensors, columns, cache, noise, stage):
        # The member's noise, drawn outside: inside vmap it would not be its solo run's numbers.
        cache = {**cache, **{NOISE + key: value for key, value in noise.items()}}
        terms = functional_call(self._caller, tensors, (stage, columns, cache), strict=True)
        return terms, cache

    # --- one member ---------------------------------------------------------------------
    def member(self, index: int) -> ActorCriticLoss:
        """A plain loss holding member ``index``'s current weights (a copy): to act, evaluate
        or save that agent alone."""
        one = copy.deepcopy(self.stacked)
        for name, value in self.stacked.named_parameters():
            _set_tensor(one, name, nn.Parameter(value.detach()[index].clone(), requires_grad=value.requires_grad))
        for name, value in self.stacked.named_buffers():
            _set_tensor(one, name, value[index].clone())
        return one


class _StageLosses(nn.Module):
    """``functional_call`` runs a module's ``forward``: this one's is the loss's
    ``stage_losses`` (tensor names ``loss.<the loss's name>``)."""

    def __init__(self, loss: ActorCriticLoss) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, stage, columns, cache):
        return self.loss.stage_losses(stage, columns, cache)
