"""Start-up checks: a config that cannot work fails before any data is collected, with a
message that says what to change."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy


class ConfigError(ValueError):
    """A config value or combination that cannot run; shown as one message, no traceback."""


#: The ranges a numeric setting can be held to: (test on a finite number, words for the message).
RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "finite": (lambda v: True, "a finite number"),
    "> 0": (lambda v: v > 0, "a finite number > 0"),
    ">= 0": (lambda v: v >= 0, "a finite number >= 0"),
    ">= 1": (lambda v: v >= 1, ">= 1"),
    "(0, 1]": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "[0, 1]": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "(0, 1)": (lambda v: 0 < v < 1, "in (0, 1)"),
}


def check_ranges(owner: str, **settings: tuple[Any, str]) -> None:
    """Each ``name=(value, range)`` must be a finite number in its range (``RANGES``); a None
    value is an unset option and passes. A list or tuple value is checked element by
    element. Raises one ConfigError naming ``owner``, the setting and what it accepts."""
    for name, (value, allowed) in settings.items():
        if value is None:
            continue
        test, words = RANGES[allowed]
        for item in value if isinstance(value, (list, tuple)) else (value,):
            number = isinstance(item, (int, float)) and not isinstance(item, bool)
            if not (number and math.isfinite(item) and test(item)):
                raise ConfigError(f"{owner}: {name} must be {words}, got {value!r}")


def check_bounds(owner: str, name: str, bounds: Any) -> None:
    """An optional ``[low, high]`` pair of finite numbers with low < high."""
    if bounds is None:
        return
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
        raise ConfigError(f"{owner}: {name} must be [low, high], got {bounds!r}")
    check_ranges(owner, **{name: (tuple(bounds), "finite")})
    if not bounds[0] < bounds[1]:
        raise ConfigError(f"{owner}: {name} must be [low, high] with low < high, got {list(bounds)}")


def check_trainer(trainer: Trainer) -> None:
    """The trainer flags this project supports: one process, or one DDP process per device
    started by Lightning's launcher, torchrun or SLURM."""
    strategy = trainer.strategy
    if isinstance(strategy, DDPStrategy):
        start = getattr(strategy, "_start_method", "popen")
        if start != "popen":
            raise ConfigError(
                f"trainer.strategy: DDP started by {start!r} (ddp_spawn, ddp_fork, ddp_notebook) is not supported; "
                "use --trainer.strategy ddp: each process then runs its own environment and buffer shard"
            )
    elif not isinstance(strategy, SingleDeviceStrategy):
        raise ConfigError(
            f"trainer.strategy: {type(strategy).__name__} is not supported (the replay buffer and the environments "
            "live in each process); use the default (one device) or --trainer.strategy ddp"
        )
    if trainer.accelerator.__class__.__name__ == "CPUAccelerator":
        cores = os.cpu_count() or 1
        if trainer.num_devices > cores:
            raise ConfigError(
                f"trainer.devices={trainer.num_devices} asks for {trainer.num_devices} CPU processes but this machine "
                f"has {cores} cores; use at most {cores} (each process also steps its own environment)"
            )


def check_loss_keys(loss: Any, stored: tuple, owner: str) -> None:
    """Every key the loss reads must be one the replay buffer stores."""
    stored_set = {k if isinstance(k, str) else tuple(k) for k in stored}
    for name, key in loss.required_keys().items():
        key = key if isinstance(key, str) else tuple(key)
        if key not in stored_set:
            raise ConfigError(
                f"{owner}: the loss reads {name} from {key!r}, which the replay buffer does not hold "
                f"(it holds {sorted(map(str, stored_set))}); fix loss.init_args.keys.{name}"
            )


def error_in_chain(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of ``kinds`` in ``exc``'s cause/context chain (jsonargparse wraps the
    errors raised while it instantiates the config's classes)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kinds):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None
