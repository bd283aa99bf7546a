"""A callback the checkpoint tests hand to ``ooo-lightning fit`` (``--trainer.callbacks``): it
kills its own process at a chosen training step of a chosen phase, and writes what a phase
holds when its training starts (after a resume: what was restored) for the test to compare
with the checkpoint."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import torch
from lightning.pytorch import Callback

from ooo_lightning.checkpointing import capture_rng


def callback_arg(kill_phase: str | None = None, kill_at_step: int = -1, record_dir: str | None = None) -> str:
    """The command-line argument that adds this callback to every phase's Trainer."""
    init = {"kill_phase": kill_phase, "kill_at_step": kill_at_step, "record_dir": record_dir}
    return "--trainer.callbacks+=" + json.dumps({"class_path": "resume_probe.ResumeProbe", "init_args": init})


def _phase(trainer) -> str:
    return Path(trainer.default_root_dir).name  # <run_dir>/<phase>


class ResumeProbe(Callback):
    """``kill_phase``/``kill_at_step``: SIGKILL once ``steps_done`` reaches the step (before the
    phase's checkpoint callback runs for that step). ``record_dir``: ``<phase>_start.pt`` with
    the module's state dict, its optimisers' states, the RNG states and its counters as the
    phase's training starts."""

    def __init__(self, kill_phase: str | None = None, kill_at_step: int = -1, record_dir: str | None = None) -> None:
        self.kill_phase, self.kill_at_step = kill_phase, kill_at_step
        self.record_dir = Path(record_dir) if record_dir else None

    def setup(self, trainer, pl_module, stage) -> None:
        if self.record_dir is None:
            return
        # Recorded after the module's own on_train_start (Lightning calls the callbacks' first),
        # where a resumed module puts its RNG states back.
        module_hook = pl_module.on_train_start

        def on_train_start() -> None:
            module_hook()
            self._record(trainer, pl_module)

        pl_module.on_train_start = on_train_start

    def _record(self, trainer, pl_module) -> None:
        self.record_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "state_dict": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
            "optimizer_states": [opt.state_dict() for opt in trainer.optimizers],
            "rng": capture_rng(),
            "num_updates": pl_module.num_updates,
            "steps_done": pl_module.steps_done,
        }
        torch.save(state, self.record_dir / f"{_phase(trainer)}_start.pt")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if _phase(trainer) == self.kill_phase and pl_module.steps_done == self.kill_at_step:
            os.kill(os.getpid(), signal.SIGKILL)
