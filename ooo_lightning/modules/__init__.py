from ooo_lightning.modules.base import NonFiniteLossError, RLModule
from ooo_lightning.modules.exploiter import ExploiterModule
from ooo_lightning.modules.explorer import ExplorerModule

__all__ = ["ExploiterModule", "ExplorerModule", "NonFiniteLossError", "RLModule"]
