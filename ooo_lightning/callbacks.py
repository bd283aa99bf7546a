"""Callbacks every phase gets: a progress bar that names the phase."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar


class PhaseProgressBar(TQDMProgressBar):
    """TQDM bar whose description is the module's phase ("explorer offline", "exploiter"...)
    instead of "Epoch 0", and whose postfix shows a few progress values, not the loss."""

    SHOWN = ("online/success_rate", "online/goal_episodes", "eval/success_rate", "progress/updates_per_s")

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self._phase = None

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        phase = getattr(pl_module, "phase", "train")
        if phase != getattr(self, "_phase", None):
            self._phase = phase
            self.train_progress_bar.set_description(phase)

    def get_metrics(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        metrics = trainer.callback_metrics
        shown: dict[str, Any] = {}
        for key in self.SHOWN:
            if key in metrics:
                value = metrics[key]
                shown[key.split("/")[-1]] = f"{float(value):.3g}"
        return shown
