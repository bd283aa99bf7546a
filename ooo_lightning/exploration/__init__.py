from ooo_lightning.exploration.rnd import ExplorationBonus, RNDBonus, RunningMeanStd

__all__ = ["ExplorationBonus", "RNDBonus", "RunningMeanStd"]
