"""ooo-lightning: Offline-to-Online-to-Offline RL (arXiv 2310.08558) on PyTorch Lightning."""

import ooo_lightning.envs  # noqa: F401  (registers ooo/PointMassWall-v1 with gymnasium)
from ooo_lightning.data.datamodule import ReplayDataModule
from ooo_lightning.modules import ExploiterModule, ExplorerModule, RLModule
from ooo_lightning.pipeline import OOOPipeline

__all__ = ["ExploiterModule", "ExplorerModule", "OOOPipeline", "RLModule", "ReplayDataModule"]
__version__ = "0.1.0"
