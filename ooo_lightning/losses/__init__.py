from ooo_lightning.losses.base import ActorCriticLoss, LossKeys, soft_update, staged_update
from ooo_lightning.losses.calql import CalQLLoss
from ooo_lightning.losses.iql import IQLLoss
from ooo_lightning.losses.sac import SACLoss

__all__ = ["ActorCriticLoss", "CalQLLoss", "IQLLoss", "LossKeys", "SACLoss", "soft_update", "staged_update"]
