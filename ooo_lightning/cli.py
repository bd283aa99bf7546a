"""``ooo-lightning``: a LightningCLI whose ``fit`` runs one phase or the whole OOO pipeline.

    ooo-lightning fit --config configs/point_mass_wall/ooo_iql.yaml
    ooo-lightning fit --config configs/point_mass_wall/ooo_iql.yaml --seed_everything 1
    ooo-lightning fit --config configs/point_mass_wall/exploiter_iql.yaml --data.buffer runs/.../buffer

The config's ``model`` is an ``OOOPipeline`` (all three phases), an ``ExplorerModule``
(phases 1 and 2; the buffer is saved) or an ``ExploiterModule`` (phase 3 on a saved buffer).
Configs may use omegaconf interpolation (``${seed_everything}``); it is resolved after the
command-line overrides, so an override reaches every place that refers to it.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningModule
from jsonargparse import set_parsing_settings
from lightning.pytorch.cli import LightningCLI

from ooo_lightning.callbacks import PhaseProgressBar
from ooo_lightning.data.d4rl import DatasetError
from ooo_lightning.data.datamodule import ReplayDataModule
from ooo_lightning.modules import ExploiterModule, ExplorerModule, NonFiniteLossError
from ooo_lightning.pipeline import OOOPipeline, PhaseRunner, format_results_table, unique_run_dir


class OOOLightningCLI(LightningCLI):
    def __init__(self, args: Any = None, run: bool = True) -> None:
        # Config files are written with paths from their own root (``${seed_everything}``);
        # the subcommand puts them under ``fit.``, so make those paths relative.
        set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
        super().__init__(
            model_class=LightningModule,
            datamodule_class=ReplayDataModule,
            subclass_mode_model=True,
            save_config_callback=None,  # the runner writes the resolved config into the run dir
            parser_kwargs={"parser_mode": "omegaconf+"},
            # Modules throttle their own logging (log_every), so let every log call through.
            trainer_defaults={"max_epochs": 1, "num_sanity_val_steps": 0, "enable_model_summary": False, "log_every_n_steps": 1},
            args=args,
            run=run,
        )

    def fit(self, model: LightningModule, datamodule: ReplayDataModule | None = None, **_: Any) -> None:
        if datamodule is None:
            datamodule = ReplayDataModule()
        run_dir = unique_run_dir(self.trainer.default_root_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        self.parser.save(self.config, run_dir / "config.yaml", skip_none=False, overwrite=True, multifile=False)
        # A pipeline sets the final evaluation; a single phase uses PhaseRunner's defaults.
        evaluation = {k: getattr(model, k) for k in ("final_eval_episodes", "eval_seed") if hasattr(model, k)}
        runner = PhaseRunner(run_dir, self._phase_trainer, **evaluation)
        if isinstance(model, OOOPipeline):
            runner.run_pipeline(model, datamodule)
        elif isinstance(model, ExplorerModule):
            runner.run_explorer(model, datamodule)
        elif isinstance(model, ExploiterModule):
            runner.run_exploiter(model, datamodule)
        else:
            raise TypeError(
                f"model must be an OOOPipeline, ExplorerModule or ExploiterModule, got {type(model).__name__}"
            )
        print(f"\nrun directory: {run_dir}")
        print(format_results_table(runner.results))
        self.run_dir = run_dir
        self.results = runner.results


    def _phase_trainer(self, **kwargs: Any):
        """A fresh Trainer per phase from the config's trainer flags; the phase's own callbacks
        are added to the ones the config lists."""
        trainer_config = self._get(self.config_init, "trainer", default={})
        configured = trainer_config.get("callbacks") or []
        if not isinstance(configured, list):
            configured = [configured]
        callbacks = [*configured, *kwargs.get("callbacks", [])]
        if trainer_config.get("enable_progress_bar") is False:
            callbacks = [cb for cb in callbacks if not isinstance(cb, PhaseProgressBar)]
        kwargs["callbacks"] = callbacks
        return self.instantiate_trainer(**kwargs)


#: Errors caused by the user's input or data: shown as one clear message, not a traceback.
USER_ERRORS = (DatasetError, NonFiniteLossError)


def _quiet_lightning_tips() -> None:
    # Lightning advertises a cloud logger at every Trainer creation, i.e. once per phase.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(lambda record: not str(record.msg).startswith("💡 Tip"))


def main(args: Any = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _quiet_lightning_tips()
    warnings.filterwarnings("ignore", message=r".*IterableDataset. has .__len__. defined")
    try:
        OOOLightningCLI(args=args)
    except USER_ERRORS as err:
        print(f"ooo-lightning: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()  # LightningCLI reads sys.argv itself
