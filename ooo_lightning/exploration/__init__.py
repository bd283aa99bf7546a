from ooo_lightning.exploration.counts import CountBonus
from ooo_lightning.exploration.rnd import ExplorationBonus, RNDBonus, RunningMeanStd

__all__ = ["CountBonus", "ExplorationBonus", "RNDBonus", "RunningMeanStd"]
