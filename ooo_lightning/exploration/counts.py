"""Count-based exploration bonus: 1 / sqrt(n + 1) over a hashed discretisation of the state.

Two ways to turn a state into a table key:

* ``grid``: the integer cell ``floor(obs[dims] / cell_size)``, hashed into ``table_size`` slots.
* ``simhash`` (Tang et al., 2017, "#Exploration"): the sign bits of ``A @ obs[dims]`` for a fixed
  Gaussian matrix ``A``, packed into an integer of ``hash_bits`` bits.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Literal

import torch
from tensordict import TensorDictBase

from ooo_lightning.config_checks import ConfigError
from ooo_lightning.exploration.rnd import ExplorationBonus
from ooo_lightning.networks import full_precision

# The int64 arithmetic of the grid hash stays exact (no overflow) up to this table size.
MAX_TABLE_SIZE = 2**31
MAX_HASH_BITS = 24
# Grid coordinates are clamped to this magnitude before the cast to int64 (avoids undefined casts).
_MAX_COORDINATE = 2.0**62
# Odd multiplier of the golden-ratio (Fibonacci) hashing family; per-dimension constants derive from it.
_GOLDEN_ODD = 0x9E3779B97F4A7C15


def _grid_multipliers(num_dims: int, table_size: int) -> torch.Tensor:
    """Distinct large odd constants, one per counted dimension, reduced modulo ``table_size``."""
    constants = [((i + 1) * _GOLDEN_ODD % 2**63) | 1 for i in range(num_dims)]
    return torch.tensor([c % table_size for c in constants], dtype=torch.int64)


class CountBonus(ExplorationBonus):
    """Visit-count bonus ``1 / sqrt(n + 1)``, with ``n`` the count of the hashed state.

    Counting happens in :meth:`observe` (every transition that enters the replay buffer); the
    bonus of a sampled batch is read from the table without changing it. The table is the
    ``counts`` buffer, so it checkpoints and moves with the module; keys are computed on the
    observation's device.

    Distinct states can share a key: several grid cells may hash to the same slot of the table
    (the hash is ``sum_i cell_i * c_i mod table_size`` with distinct large odd constants ``c_i``),
    and with ``simhash`` all states in one cone of the random hyperplanes share a key. Such
    collisions only make the bonus smaller (pooled counts), and are accepted.

    Args:
        observation_dim: size of the observation.
        method: ``grid`` (axis-aligned cells) or ``simhash`` (random-hyperplane sign bits).
        cell_size: ``grid`` cell width, one for all counted dimensions or one per entry of ``dims``.
        dims: which observation entries are counted (e.g. the x-y position of a robot); None
            counts all of them.
        hash_bits: ``simhash`` key width; the table has ``2**hash_bits`` entries (at most 2**24).
        table_size: number of ``grid`` table entries (unused by ``simhash``).
        observation_key: which batch entry is the state to count and score.
        seed: seed of the ``simhash`` projection matrix.
    """

    def __init__(
        self,
        observation_dim: int,
        *,
        method: Literal["grid", "simhash"] = "grid",
        cell_size: float | Sequence[float] = 0.05,
        dims: Sequence[int] | None = None,
        hash_bits: int = 16,
        table_size: int = 2**20,
        observation_key: str | tuple[str, ...] = ("next", "observation"),
        seed: int = 0,
    ) -> None:
        super().__init__()
        if isinstance(observation_dim, bool) or not isinstance(observation_dim, int) or observation_dim < 1:
            raise ConfigError(f"observation_dim must be a positive int, got {observation_dim!r}")
        if method not in ("grid", "simhash"):
            raise ConfigError(f"method must be 'grid' or 'simhash', got {method!r}")
        self.observation_dim = observation_dim
        self.method = method
        self.dims = self._check_dims(dims, observation_dim)
        self.observation_key = tuple(observation_key) if isinstance(observation_key, list) else observation_key

        if method == "grid":
            if isinstance(table_size, bool) or not isinstance(table_size, int) or not 0 < table_size <= MAX_TABLE_SIZE:
                raise ConfigError(f"table_size must be an int in [1, 2**31], got {table_size!r}")
            self.table_size = table_size
            # A plain tuple, not a buffer: module.to(dtype) would round a floating buffer and move cell edges.
            self.cell_size = self._check_cell_size(cell_size, len(self.dims))
            # Fixed by dims and table_size, so there is nothing to checkpoint.
            self.register_buffer("hash_multipliers", _grid_multipliers(len(self.dims), table_size), persistent=False)
        else:
            if isinstance(hash_bits, bool) or not isinstance(hash_bits, int) or not 0 < hash_bits <= MAX_HASH_BITS:
                raise ConfigError(f"hash_bits must be an int in [1, {MAX_HASH_BITS}], got {hash_bits!r}")
            self.hash_bits = hash_bits
            self.table_size = 2**hash_bits
            generator = torch.Generator().manual_seed(seed)
            # Saved with the module so that reloaded counts keep meaning the same states.
            self.register_buffer("projection", torch.randn(hash_bits, len(self.dims), generator=generator))
            self.register_buffer("bit_values", 2 ** torch.arange(hash_bits, dtype=torch.int64), persistent=False)

        self.register_buffer("counts", torch.zeros(self.table_size, dtype=torch.int64))

    @staticmethod
    def _check_dims(dims: Sequence[int] | None, observation_dim: int) -> list[int]:
        if dims is None:
            return list(range(observation_dim))
        dims = list(dims)
        if not dims:
            raise ConfigError("dims must select at least one observation entry (or be None for all)")
        for d in dims:
            if isinstance(d, bool) or not isinstance(d, numbers.Integral) or not 0 <= d < observation_dim:
                raise ConfigError(f"dims entries must be ints in [0, {observation_dim}), got {d!r}")
        if len(set(dims)) != len(dims):
            raise ConfigError(f"dims must not repeat an entry, got {dims}")
        return [int(d) for d in dims]

    @staticmethod
    def _check_cell_size(cell_size: float | Sequence[float], num_dims: int) -> tuple[float, ...]:
        sizes = [cell_size] * num_dims if isinstance(cell_size, numbers.Real) else list(cell_size)
        if len(sizes) != num_dims:
            raise ConfigError(
                f"cell_size must be a number or have one entry per counted dim ({num_dims}), got {len(sizes)}"
            )
        valid = (isinstance(s, numbers.Real) and not isinstance(s, bool) and math.isfinite(s) and s > 0 for s in sizes)
        if not all(valid):
            raise ConfigError(f"cell_size must be finite and > 0, got {cell_size!r}")
        return tuple(float(s) for s in sizes)

    @torch.no_grad()
    @full_precision
    def keys(self, observation: torch.Tensor) -> torch.Tensor:
        """Table index of each observation: [..., observation_dim] -> int64 [...], on its device.

        Autocast off: it would run the ``simhash`` projection in bf16, whose rounding flips the
        sign bits of states near a hyperplane (about 1 key in 150), so that a state counted
        under one precision would be looked up under another key in the other.
        """
        if observation.shape[-1] != self.observation_dim:
            raise ValueError(
                f"observation must end in {self.observation_dim} entries, got shape {tuple(observation.shape)}"
            )
        x = observation[..., self.dims]
        if self.method == "grid":
            # float64 so that cell edges are not shifted by float32 rounding of the division.
            cell_size = torch.tensor(self.cell_size, dtype=torch.float64, device=x.device)
            coords = torch.floor(x.to(torch.float64) / cell_size).clamp(-_MAX_COORDINATE, _MAX_COORDINATE).long()
            multipliers = self.hash_multipliers.to(x.device)
            # Both factors are reduced modulo the table (<= 2**31) first, so products and their sum
            # stay far below 2**63: the hash is exact modular arithmetic, the same on every device.
            terms = coords.remainder(self.table_size) * multipliers % self.table_size
            return terms.sum(-1) % self.table_size
        projection = self.projection.to(x.device)
        bits = (x.to(projection.dtype) @ projection.T > 0).long()
        return (bits * self.bit_values.to(x.device)).sum(-1)

    @torch.no_grad()
    def visit_counts(self, observation: torch.Tensor) -> torch.Tensor:
        """Current count of each observation's key, int64 [...] on the observation's device."""
        keys = self.keys(observation).to(self.counts.device)
        return self.counts[keys].to(observation.device)

    @torch.no_grad()
    def observe(self, transitions: TensorDictBase) -> None:
        """Add one visit to the key of every row's ``observation_key`` entry."""
        keys = self.keys(transitions.get(self.observation_key)).reshape(-1).to(self.counts.device)
        self.counts.index_add_(0, keys, torch.ones_like(keys))

    @torch.no_grad()
    def compute(
        self, batch: TensorDictBase, update: bool = True, noise: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Bonus ``1 / sqrt(n + 1)`` per row and no loss; ``update`` is ignored (see ``observe``)."""
        observation = batch.get(self.observation_key)
        n = self.visit_counts(observation)
        dtype = observation.dtype if observation.is_floating_point() else torch.get_default_dtype()
        return (n.to(torch.float64) + 1.0).rsqrt().to(dtype), None

    def extra_repr(self) -> str:
        detail = f"hash_bits={self.hash_bits}" if self.method == "simhash" else f"table_size={self.table_size}"
        return f"observation_dim={self.observation_dim}, method={self.method!r}, dims={self.dims}, {detail}"
