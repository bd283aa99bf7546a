"""Checkpoints that survive a crash: atomic files, RNG states, and finding where to resume.

Each phase writes ``<run_dir>/<phase>/checkpoints/last.ckpt`` every ``checkpoint.every_steps``
training steps (or ``every_minutes``) and once more when its training ends. The file holds
the weights, the optimiser states, Lightning's loop counters, the module's own counters,
the RNG states of every rank and, for the explorer, every online transition collected so
far (the offline part is re-read from the dataset). ``--ckpt_path last`` resumes the run
in the phase that was running; the phases already finished are not run again.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ooo_lightning.config_checks import check_ranges
from ooo_lightning.output import atomic_path

LAST = "last.ckpt"


@dataclass
class CheckpointSettings:
    """How often each phase writes its ``last.ckpt`` (the ``checkpoint:`` section of a config).

    Args:
        every_steps: training steps between checkpoints (a step is ``updates_per_step``
            updates and, online, ``updates_per_step / utd_ratio`` environment steps); null
            uses ``every_minutes`` instead.
        every_minutes: wall-clock minutes between checkpoints when ``every_steps`` is null.
    """

    every_steps: int | None = None
    every_minutes: float = 2.0

    def __post_init__(self) -> None:
        check_ranges("checkpoint", every_steps=(self.every_steps, ">= 1"), every_minutes=(self.every_minutes, "> 0"))


class PhaseCheckpoint(ModelCheckpoint):
    """Writes ``<dirpath>/last.ckpt`` only, every ``every_steps`` training steps of the module
    (Lightning's ``every_n_train_steps`` counts optimiser steps, several per update here) or
    every ``every_minutes``."""

    def __init__(self, dirpath: str | Path, settings: CheckpointSettings) -> None:
        from datetime import timedelta

        by_time = settings.every_steps is None
        super().__init__(
            dirpath=dirpath,
            save_last=True,
            save_top_k=0,  # last.ckpt only: it may hold the whole online buffer
            train_time_interval=timedelta(minutes=settings.every_minutes) if by_time else None,
            every_n_epochs=None if by_time else 0,
        )
        self.every_steps = settings.every_steps
        self._last_time_save: float | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Both schedules by hand: under manual optimisation Lightning 2.6's ModelCheckpoint
        # ignores train_time_interval (it returned before any save, so the default
        # every_minutes wrote nothing until the phase ended).
        if self._should_skip_saving_checkpoint(trainer):
            return
        if self.every_steps is None:
            now = time.monotonic()
            if self._last_time_save is None:
                self._last_time_save = now
            if now - self._last_time_save < self._train_time_interval.total_seconds():
                return
            self._last_time_save = now
        elif pl_module.steps_done % self.every_steps:
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        # The phase's end, always: Lightning 2.6 writes last.ckpt here only after a top-k save in
        # the same step, which this callback never makes, so after a periodic save last.ckpt
        # kept that step's weights instead of the final ones.
        if not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        # SIGTERM (a scheduler's pre-emption, `kill`): Lightning stops at the end of a training
        # step, where the state is whole, so save it. Not on Ctrl+C: that can land mid-update.
        if isinstance(exception, SIGTERMException):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        super()._save_checkpoint(trainer, filepath)
        for logger in trainer.loggers:  # the metrics up to the checkpoint survive a crash too
            logger.save()


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes ``<file>.tmp`` and renames it over ``<file>``: a process killed while saving
    leaves the previous checkpoint intact instead of a truncated one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)


def capture_rng() -> dict[str, Any]:
    """This process's RNG states, as tensors and plain values (loadable with weights_only)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state["numpy"] = {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np_state["keys"].numpy().astype(np.uint32), np_state["pos"], np_state["has_gauss"], np_state["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def phase_checkpoint(run_dir: Path, phase: str) -> Path | None:
    """The phase's ``last.ckpt`` if it exists."""
    path = Path(run_dir) / phase / "checkpoints" / LAST
    return path if path.is_file() else None


def resolve_resume(ckpt_path: str | None, root_dir: str | Path) -> tuple[Path | None, Path | None]:
    """``(run_dir, explicit checkpoint)`` for ``--ckpt_path``.

    ``last`` resumes the run directory ``root_dir`` (the config's ``trainer.default_root_dir``)
    from each phase's ``last.ckpt``; a path to a ``.ckpt`` file inside a run directory
    (``<run_dir>/<phase>/checkpoints/x.ckpt``) resumes that phase from that file. ``None``
    is a new run.
    """
    if not ckpt_path:
        return None, None
    if ckpt_path == "last":
        run_dir = Path(root_dir)
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(
                f"--ckpt_path last: {run_dir} holds no earlier run (no config.yaml). Resume with the same "
                "config (and --seed_everything) as the run you want to continue, or set trainer.default_root_dir "
                "to its run directory."
            )
        return run_dir, None
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"--ckpt_path {ckpt_path}: no such checkpoint file")
    run_dir = path.parent.parent.parent
    if path.parent.name != "checkpoints" or not (run_dir / "config.yaml").is_file():
        raise ValueError(
            f"--ckpt_path {ckpt_path}: expected a file in <run_dir>/<phase>/checkpoints/ of an ooo-lightning run "
            "(or `last` to resume the config's run directory)"
        )
    return run_dir, path
