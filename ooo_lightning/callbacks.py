"""Callbacks every phase gets: a progress bar that names the phase."""

from __future__ import annotations

from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import convert_inf


class PhaseProgressBar(TQDMProgressBar):
    """TQDM bar whose description is the module's phase ("explorer offline", "exploiter"...)
    instead of "Epoch 0", and whose postfix shows a few progress values, not the loss."""

    SHOWN = ("online/success_rate", "online/goal_episodes", "eval/success_rate", "progress/updates_per_s")

    @property
    def train_description(self) -> str:
        return getattr(self, "_phase", None) or "train"

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._phase = getattr(pl_module, "phase", "train")  # the bar's first draw names it
        super().on_train_start(trainer, pl_module)

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # Lightning's own steps, but the bar keeps the phase's name (Lightning's draws it as
        # "Epoch 0").
        if self._leave:
            self.train_progress_bar = self.init_train_tqdm()
        self._phase = getattr(pl_module, "phase", "train")
        self.train_progress_bar.set_description(self._phase, refresh=False)
        self.train_progress_bar.reset(total=convert_inf(self.total_train_batches))
        self.train_progress_bar.initial = 0

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
