"""``ooo-lightning``: a LightningCLI whose ``fit`` runs one phase or the whole OOO pipeline.

    ooo-lightning fit --config configs/point_mass_wall/ooo_iql.yaml
    ooo-lightning fit --config configs/point_mass_wall/ooo_iql.yaml --seed_everything 1
    ooo-lightning fit --config configs/point_mass_wall/exploiter_iql.yaml --data.buffer runs/.../buffer
    ooo-lightning fit --config configs/point_mass_wall/ooo_iql.yaml --ckpt_path last   # resume a killed run

The config's ``model`` is an ``OOOPipeline`` (all three phases), an ``ExplorerModule``
(phases 1 and 2; the buffer is saved) or an ``ExploiterModule`` (phase 3 on a saved buffer).
Configs may use omegaconf interpolation (``${seed_everything}``); it is resolved after the
command-line overrides, so an override reaches every place that refers to it.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from jsonargparse import set_parsing_settings
from omegaconf.errors import InterpolationResolutionError
from lightning.pytorch.cli import LightningCLI
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ooo_lightning import distributed
from ooo_lightning.callbacks import PhaseProgressBar
from ooo_lightning.checkpointing import CheckpointSettings, resolve_resume
from ooo_lightning.config_checks import ConfigError, check_trainer, error_in_chain
from ooo_lightning.data.schema import DatasetError
from ooo_lightning.data.datamodule import ReplayDataModule
from ooo_lightning.modules import ExploiterModule, ExplorerModule, NonFiniteLossError
from ooo_lightning.pipeline import OOOPipeline, PhaseRunner, format_results_table, phases_of, unique_run_dir


class OOOLightningCLI(LightningCLI):
    def __init__(self, args: Any = None, run: bool = True) -> None:
        # Config files are written with paths from their own root (``${seed_everything}``);
        # the subcommand puts them under ``fit.``, so make those paths relative.
        set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
        super().__init__(
            datamodule_class=ReplayDataModule,
            save_config_callback=None,  # the runner writes the resolved config into the run dir
            parser_kwargs={"parser_mode": "omegaconf+"},
            # Modules throttle their own logging (log_every), so let every log call through.
            trainer_defaults={"max_epochs": 1, "num_sanity_val_steps": 0, "enable_model_summary": False, "log_every_n_steps": 1},
            args=args,
            run=run,
        )

    def add_core_arguments_to_parser(self, parser) -> None:
        # As LightningCLI's, except the model: what to run, the whole pipeline (a plain
        # object listing its phases) or one phase's LightningModule.
        parser.add_lightning_class_args(self.trainer_class, "trainer")
        parser.set_defaults({"trainer." + k: v for k, v in self.trainer_defaults.items() if k != "callbacks"})
        parser.add_subclass_arguments((OOOPipeline, ExplorerModule, ExploiterModule), "model", required=True, fail_untyped=False)
        parser.add_lightning_class_args(self._datamodule_class, "data", subclass_mode=self.subclass_mode_data)

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_class_arguments(CheckpointSettings, "checkpoint")

    def fit(self, model: Any, datamodule: ReplayDataModule | None = None, ckpt_path: str | None = None, **_: Any) -> None:
        if datamodule is None:
            datamodule = ReplayDataModule()
        check_trainer(self.trainer)
        run_dir, explicit_ckpt = resolve_resume(ckpt_path, self.trainer.default_root_dir)
        resume = run_dir is not None
        self._exported_run_dir = False
        if run_dir is None:
            run_dir = self._new_run_dir()
        if distributed.is_rank_zero():
            run_dir.mkdir(parents=True, exist_ok=True)
            name = "config.yaml" if not resume else "config.resumed.yaml"  # keep the original
            self.parser.save(self.config, run_dir / name, skip_unset=False, overwrite=True, multifile=False)
        # A pipeline sets the final evaluation; a single phase uses PhaseRunner's defaults.
        evaluation = {k: getattr(model, k) for k in ("final_eval_episodes", "eval_seed") if hasattr(model, k)}
        checkpoint = self._get(self.config_init, "checkpoint", default=None)
        if isinstance(checkpoint, dict) or checkpoint is None:
            checkpoint = CheckpointSettings(**(checkpoint or {}))
        runner = PhaseRunner(run_dir, self._phase_trainer, checkpoint=checkpoint, resume=resume, ckpt_path=explicit_ckpt, **evaluation)
        try:
            self._run_phases(runner, model, datamodule)
        finally:
            if self._exported_run_dir:
                os.environ.pop(RUN_DIR_ENV, None)  # a later run in this process picks its own
        if distributed.is_rank_zero():
            print(f"\nrun directory: {run_dir}")
            print(format_results_table(runner.results))
        self.run_dir = run_dir
        self.results = runner.results

    @staticmethod
    def _run_phases(runner: PhaseRunner, model: Any, datamodule: ReplayDataModule) -> None:
        for phase in phases_of(model):
            phase.run(runner, datamodule)

    def _new_run_dir(self):
        """A fresh run directory, the same one in every process of a multi-process run."""
        if RUN_DIR_ENV in os.environ:  # a process started by Lightning's DDP launcher
            return Path(os.environ[RUN_DIR_ENV])
        if not distributed.is_rank_zero() or distributed.launched_externally():
            # Started by torchrun / SLURM: the processes cannot agree on a "-v1" suffix.
            return Path(self.trainer.default_root_dir)
        run_dir = unique_run_dir(self.trainer.default_root_dir)
        os.environ[RUN_DIR_ENV] = str(run_dir)  # inherited by the processes the DDP launcher starts
        self._exported_run_dir = True
        return run_dir

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


RUN_DIR_ENV = "OOO_LIGHTNING_RUN_DIR"


def resolved_config(args: list[str]) -> dict[str, Any]:
    """The config that ``ooo-lightning fit <args>`` would run (``--config`` files composed in
    order, interpolations resolved, every class's defaults filled in), as a dict; nothing is
    built or run. E.g. ``resolved_config(["--config=base.yaml", "--config=overlay.yaml"])``."""
    import yaml

    class ParseOnly(OOOLightningCLI):
        def instantiate_classes(self) -> None:
            pass

    with warnings.catch_warnings():  # the caller's own argv is not the CLI's
        warnings.filterwarnings("ignore", message=".*args parameter is intended")
        cli = ParseOnly(args=list(args), run=False)
        return yaml.safe_load(cli.parser.dump(cli.config, skip_unset=False))


#: Errors caused by the user's input or data: shown as one clear message, not a traceback.
USER_ERRORS = (DatasetError, NonFiniteLossError, ConfigError, MisconfigurationException, FileNotFoundError,
               InterpolationResolutionError)


def _quiet_lightning_tips() -> None:
    # Lightning advertises a cloud logger at every Trainer creation, i.e. once per phase.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(lambda record: not str(record.msg).startswith("💡 Tip"))
    # Logged at every checkpoint the ModelCheckpoint callback writes (it passes no weights_only).
    logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector").addFilter(
        lambda record: not str(record.msg).startswith("`weights_only` was not set")
    )


def main(args: Any = None) -> None:
    argv = sys.argv[1:] if args is None else args
    if isinstance(argv, list) and argv[:1] == ["sweep"]:  # configs x seeds x variants (ooo_lightning.sweep)
        from ooo_lightning import sweep

        sys.exit(sweep.main(argv[1:]))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    _quiet_lightning_tips()
    warnings.filterwarnings("ignore", message=r".*IterableDataset. has .__len__. defined")
    try:
        OOOLightningCLI(args=args)
    except SIGTERMException:
        print("ooo-lightning: stopped by SIGTERM; the phase's last.ckpt holds the last finished step: "
              "run the same command with --ckpt_path last to continue", file=sys.stderr)
        raise SystemExit(143) from None  # 128 + SIGTERM, as a shell reports it
    except Exception as exc:
        # Also found inside jsonargparse's wrapping of errors raised while building the config.
        err = error_in_chain(exc, USER_ERRORS)
        if err is None:
            raise
        message = str(err)
        if isinstance(err, InterpolationResolutionError):  # e.g. the exploiter's ${...explorer...} with explorer: null
            message = message.splitlines()[0] + (" (a ${...} in the config points at a setting that is null or absent: set the setting that "
                        "refers to it directly, e.g. the exploiter's env and env_kwargs when explorer is null)")
        if isinstance(err, MisconfigurationException):  # Lightning's own: say what the machine has
            import torch

            message += (f" (this machine has {torch.cuda.device_count()} CUDA GPUs and {os.cpu_count()} CPU cores: "
                        "check trainer.accelerator, trainer.devices and trainer.precision)")
        print(f"ooo-lightning: error: {message}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()  # LightningCLI reads sys.argv itself
