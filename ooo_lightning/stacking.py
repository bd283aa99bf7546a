"""Several copies of one module as one: every parameter and buffer stacked on a leading member
axis, and any of the module's methods run for all members at once through ``torch.func.vmap``.
What ``losses.members.MemberStack`` and ``exploration.members.MemberBonus`` are built on
(docs/design.md#members-several-agents-as-one)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap

from ooo_lightning.config_checks import ConfigError


def _set_tensor(module: nn.Module, name: str, value: torch.Tensor) -> None:
    *path, leaf = name.split(".")
    owner = module.get_submodule(".".join(path))
    if isinstance(value, nn.Parameter):
        owner.register_parameter(leaf, value)
    else:
        owner.register_buffer(leaf, value)


def check_members(modules: Sequence[nn.Module], generators: Sequence[torch.Generator] | None, what: str) -> None:
    """One line for members that cannot be stacked: none, of different classes, or a wrong
    number of generators."""
    if not modules:
        raise ConfigError(f"{what} needs at least one member")
    if any(type(m) is not type(modules[0]) for m in modules):
        raise ConfigError(f"the members must share one class, got {sorted({type(m).__name__ for m in modules})}")
    if generators is not None and len(generators) != len(modules):
        raise ConfigError(f"one generator per member: {len(generators)} for {len(modules)} members")


def stack_copies(modules: Sequence[nn.Module]) -> nn.Module:
    """A copy of ``modules[0]`` whose every parameter and buffer is the members' stacked,
    ``[K, ...]`` (same names, so its state_dict has the module's keys)."""
    stacked = copy.deepcopy(modules[0])
    for name, value in modules[0].named_parameters():
        tensors = torch.stack([dict(m.named_parameters())[name].detach() for m in modules])
        _set_tensor(stacked, name, nn.Parameter(tensors, requires_grad=value.requires_grad))
    for name in dict(modules[0].named_buffers()):
        _set_tensor(stacked, name, torch.stack([dict(m.named_buffers())[name] for m in modules]))
    return stacked


def member_copy(stacked: nn.Module, index: int) -> nn.Module:
    """Member ``index`` of a ``stack_copies`` result as a module of its own (a copy)."""
    one = copy.deepcopy(stacked)
    for name, value in stacked.named_parameters():
        _set_tensor(one, name, nn.Parameter(value.detach()[index].clone(), requires_grad=value.requires_grad))
    for name, value in stacked.named_buffers():
        _set_tensor(one, name, value[index].clone())
    return one


def stacked_draws(
    draw: Callable[[torch.Tensor, torch.Generator | None], dict[str, torch.Tensor]],
    generators: Sequence[torch.Generator | None],
    reference: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """Each member's random draws, ``draw(reference, generator)``, stacked on dim 0: drawn
    where the member's generator lives, returned where ``reference`` is."""
    draws = []
    for g in generators:
        where = reference if g is None or g.device == reference.device else reference.new_empty(0, device=g.device)
        draws.append({k: v.to(reference.device) for k, v in draw(where, g).items()})
    return {key: torch.stack([d[key] for d in draws]) for key in draws[0]}


class _Apply(nn.Module):
    """``functional_call`` runs a module's ``forward``: this one's applies a function to the
    wrapped module (tensor names ``module.<the module's name>``)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(self.module, *args)


class MemberCaller:
    """Applies a function to every member of a ``stack_copies`` result at once: member k sees
    its own slice of every parameter and buffer (in-place buffer updates land in its slice) and
    of every argument passed as batched."""

    def __init__(self, stacked: nn.Module) -> None:
        self.stacked = stacked
        self.apply = _Apply(stacked)

    def __call__(self, fn: Callable[..., Any], batched: tuple, shared: tuple = ()) -> Any:
        """``fn(member_k, *batched_k, *shared)`` for each member k; outputs stacked on dim 0."""
        tensors = {f"module.{n}": v for n, v in (*self.stacked.named_parameters(), *self.stacked.named_buffers())}

        def one(tensors, *args):
            return functional_call(self.apply, tensors, (fn, *args), strict=True)

        in_dims = (0, *(0 for _ in batched), *(None for _ in shared))
        return vmap(one, in_dims=in_dims)(tensors, *batched, *shared)
