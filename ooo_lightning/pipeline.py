"""Chains the OOO phases, one ``Trainer.fit`` each, and writes the run's report.

Run directory layout::

    <run_dir>/config.yaml            resolved config of the command
    <run_dir>/explorer/              metrics.csv, TensorBoard events, checkpoints/
    <run_dir>/buffer/                the replay buffer (offline + every online transition)
    <run_dir>/exploiter/             metrics.csv, TensorBoard events, checkpoints/
    <run_dir>/exploiter_T<T>/        the same for an exploiter on the buffer prefix up to online step T
    <run_dir>/results.json           one entry per evaluated policy
    <run_dir>/plots/*.png            learning curves, visited states, exploiter against online steps,
                                     the region data.remove_region cut out of the dataset
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from ooo_lightning.config_checks import ConfigError, check_ranges
from ooo_lightning import distributed
from ooo_lightning.callbacks import PhaseProgressBar
from ooo_lightning.checkpointing import AtomicCheckpointIO, CheckpointSettings, PhaseCheckpoint, phase_checkpoint
from ooo_lightning.data.buffer import OfflineOnlineBuffer
from ooo_lightning.data.datamodule import ReplayDataModule
from ooo_lightning.evaluation import EvalResult, mean_result
from ooo_lightning.modules import ExploiterModule, ExplorerModule, RLModule
from ooo_lightning.output import atomic_write_text
from ooo_lightning.scores import normalized_score

log = logging.getLogger(__name__)

TrainerFactory = Callable[..., Trainer]


class OOOPipeline:
    """A whole OOO run: ``explorer`` (phases 1 and 2) then ``exploiter`` (phase 3), every
    policy evaluated at the end on the same ``final_eval_episodes`` episodes.

    A plain object, the config's ``model``: ``phases()`` lists what ``ooo-lightning fit``
    runs in order, each phase with a Trainer of its own.

    Args:
        explorer: the exploration agent (``ExplorerModule``); null runs phase 3 alone on a
            saved buffer (``data.buffer``).
        exploiter: the exploitation agent (``ExploiterModule``), trained from scratch on the
            explorer's buffer; null stops after phase 2 (e.g. the fine-tuning baseline).
        exploiter_online_steps: online steps T at which to retrain: one fresh exploiter per T
            on the offline data plus the first T online transitions (the curve of the
            exploiter against online steps), each entry ``exploiter_T<T>`` in results.json.
            A T at or beyond the end of the buffer is the whole buffer and is reported as
            ``exploiter``. Null: one exploiter on the whole buffer.
        exploiter_curve: how those exploiters train: ``apart``, one fit after another, or
            ``together``, as the members of one fit (each on its prefix; the same results.json
            entries). Together needs a loss without Monte-Carlo returns and a buffer from one
            process.
        final_eval_episodes: episodes of the final evaluation of each policy.
        eval_seed: seed of the first final-evaluation episode (episode i uses eval_seed + i).
    """

    def __init__(
        self,
        explorer: ExplorerModule | None = None,
        exploiter: ExploiterModule | None = None,
        exploiter_online_steps: list[int] | None = None,
        exploiter_curve: str = "apart",
        final_eval_episodes: int = 50,
        eval_seed: int = 10_000,
    ) -> None:
        check_ranges("OOOPipeline", final_eval_episodes=(final_eval_episodes, ">= 1"))
        if explorer is None and exploiter is None:
            raise ConfigError("the pipeline needs an explorer, an exploiter, or both")
        if explorer is not None and exploiter is not None and explorer.env_id != exploiter.env_id:
            raise ConfigError(f"explorer and exploiter must share the task: {explorer.env_id!r} vs {exploiter.env_id!r}")
        if explorer is not None and exploiter is not None and explorer.env_kwargs != exploiter.env_kwargs:
            raise ConfigError(
                f"explorer and exploiter must share the task's env_kwargs: {explorer.env_kwargs} vs {exploiter.env_kwargs} "
                "(set the exploiter's to ${model.init_args.explorer.init_args.env_kwargs})"
            )
        if exploiter_online_steps is not None:
            if exploiter is None:
                raise ConfigError("exploiter_online_steps needs an exploiter")
            if exploiter.online_steps_limit is not None:
                raise ConfigError("set either exploiter_online_steps (one exploiter per T) or the exploiter's online_steps_limit, not both")
            if not exploiter_online_steps or any(t < 0 for t in exploiter_online_steps):
                raise ConfigError(f"exploiter_online_steps must be a non-empty list of steps >= 0, got {exploiter_online_steps}")
            exploiter_online_steps = sorted(set(int(t) for t in exploiter_online_steps))
        if exploiter_curve not in ("apart", "together"):
            raise ConfigError(f"exploiter_curve must be 'apart' or 'together', got {exploiter_curve!r}")
        if explorer is not None and explorer.seeds is not None and exploiter is not None:
            # Said now, not after the explorer's hours: phase 3 trains member k on explorer k's data.
            if exploiter.seeds != explorer.seeds:
                raise ConfigError(
                    f"the explorer's members (seeds {explorer.seeds}) each collect their own data: give the exploiter the "
                    f"same seeds, seeds: ${{model.init_args.explorer.init_args.seeds}} (it has {exploiter.seeds})"
                )
            if exploiter_online_steps is not None and exploiter_curve == "together":
                raise ConfigError("exploiter_curve: together trains one buffer's prefixes as members; with explorer "
                                  "members use exploiter_curve: apart (each T's exploiter has the seeds' members)")
        self.exploiter_curve = exploiter_curve
        self.explorer = explorer
        self.exploiter = exploiter
        self.exploiter_online_steps = exploiter_online_steps
        self.final_eval_episodes = final_eval_episodes
        self.eval_seed = eval_seed

    def phases(self) -> list[Phase]:
        phases: list[Phase] = []
        if self.explorer is not None:
            phases.append(ExplorerPhase(self.explorer))
        if self.exploiter is not None:
            phases.append(ExploiterPhase(self.exploiter, self.exploiter_online_steps, self.exploiter_curve == "together"))
        return phases


class Phase(Protocol):
    def run(self, runner: PhaseRunner, data: ReplayDataModule) -> None:
        """Fits the phase on ``data`` (whose buffer it may leave for the next phase)."""


@dataclass
class ExplorerPhase:
    """Phases 1 and 2: the explorer pre-trains offline, then collects online into the buffer,
    which is saved to ``<run_dir>/buffer`` with a picture of the states it visited."""

    module: ExplorerModule

    def run(self, runner: PhaseRunner, data: ReplayDataModule) -> None:
        if runner.finished("explorer"):
            data.attach(OfflineOnlineBuffer.load(runner.run_dir / "buffer"))
            return
        runner.fit("explorer", self.module, data)
        if distributed.is_rank_zero():
            # The buffer before the results: a run whose results name the explorer has its buffer.
            runner.save_buffer(data.buffer)
            runner.write_results()
            runner.plot_visits(data.buffer, self.module.env_id, self.module.env_kwargs)


@dataclass
class ExploiterPhase:
    """Phase 3: a fresh exploiter on the buffer, or, with ``online_steps``, one fresh
    exploiter per T on the offline data plus the first T online transitions."""

    module: ExploiterModule
    online_steps: list[int] | None = None
    together: bool = False

    def run(self, runner: PhaseRunner, data: ReplayDataModule) -> None:
        if self.online_steps is None:
            # On the buffer an explorer left, or on what the data module loads (a dataset or a saved buffer).
            runner.fit_exploiter("exploiter", self.module, data if data.buffer is None else _sharing(data.buffer))
            return
        buffer = data.buffer if data.buffer is not None else data.load_saved_buffer()
        if self.together:
            # The T < end of the buffer, then the whole buffer once, as the loop below trains them.
            steps = [t for t in self.online_steps if t < buffer.online_steps]
            steps += [buffer.online_steps] if len(steps) < len(self.online_steps) else []
            names = [f"exploiter_T{t}" if t < buffer.online_steps else "exploiter" for t in steps]
            runner.fit_curve("exploiter_curve", self.module.prefix_members(steps), _sharing(buffer), names)
            if distributed.is_rank_zero():
                runner.plot_online_steps_curve()
            return
        for steps in self.online_steps:
            whole = steps >= buffer.online_steps
            # A fresh, untrained agent for each T, on its own prefix of the buffer.
            runner.fit_exploiter("exploiter" if whole else f"exploiter_T{steps}", copy.deepcopy(self.module),
                                 _sharing(buffer.prefix(None if whole else steps)))
            if whole:
                break  # larger T would train on the same data again
        if distributed.is_rank_zero():
            runner.plot_online_steps_curve()


def _sharing(buffer: OfflineOnlineBuffer) -> ReplayDataModule:
    # Phase 3 starts from the in-memory buffer (also saved to <run_dir>/buffer).
    data = ReplayDataModule()
    data.attach(buffer)
    return data


def phases_of(model: Any) -> list[Phase]:
    """What ``ooo-lightning fit`` runs for the config's ``model``: a whole pipeline, or one
    phase's module on its own."""
    if isinstance(model, OOOPipeline):
        return model.phases()
    if isinstance(model, ExplorerModule):
        return [ExplorerPhase(model)]
    if isinstance(model, ExploiterModule):
        return [ExploiterPhase(model)]
    raise TypeError(f"model must be an OOOPipeline, ExplorerModule or ExploiterModule, got {type(model).__name__}")


def unique_run_dir(path: str | Path) -> Path:
    """``path`` if it is new or empty, else ``path-v1``, ``path-v2``...: a re-run never
    overwrites the results of an earlier one."""
    path = Path(path)
    if not path.exists() or not any(path.iterdir()):
        return path
    version = 1
    while Path(f"{path}-v{version}").exists():
        version += 1
    return Path(f"{path}-v{version}")


class PhaseRunner:
    """Fits the phases of a run, each with its own Trainer, logs and checkpoints.

    With ``resume``, the phases that have an entry in the run's results.json are skipped
    (the explorer's saved buffer is loaded instead) and the others start from their
    ``last.ckpt`` when they have one (``ckpt_path`` names another file for its phase).
    Under DDP every rank runs the phases; rank 0 alone evaluates and writes files.
    """

    def __init__(
        self,
        run_dir: str | Path,
        make_trainer: TrainerFactory,
        final_eval_episodes: int = 50,
        eval_seed: int = 10_000,
        checkpoint: CheckpointSettings | None = None,
        resume: bool = False,
        ckpt_path: str | Path | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.make_trainer = make_trainer
        self.final_eval_episodes = final_eval_episodes
        self.eval_seed = eval_seed
        self.checkpoint = checkpoint or CheckpointSettings()
        self.resume = resume
        self.ckpt_path = Path(ckpt_path) if ckpt_path else None
        self.results: dict[str, Any] = {}
        results_file = self.run_dir / "results.json"
        if resume and results_file.is_file():
            self.results = json.loads(results_file.read_text())

    def _trainer(self, phase: str) -> Trainer:
        phase_dir = self.run_dir / phase
        checkpoint = PhaseCheckpoint(phase_dir / "checkpoints", self.checkpoint)
        return self.make_trainer(
            default_root_dir=str(phase_dir),
            max_epochs=1,
            logger=[
                CSVLogger(self.run_dir, name=phase, version=""),
                TensorBoardLogger(self.run_dir, name=phase, version="", default_hp_metric=False),
            ],
            callbacks=[PhaseProgressBar(), checkpoint],
            enable_checkpointing=True,
            plugins=[AtomicCheckpointIO()],
        )

    def _resume_from(self, phase: str) -> Path | None:
        if not self.resume:
            return None
        if self.ckpt_path is not None and self.ckpt_path.parent.parent.name == phase:
            return self.ckpt_path
        return phase_checkpoint(self.run_dir, phase)

    def _fit_and_evaluate(self, phase: str, module: RLModule, data: ReplayDataModule) -> list[EvalResult] | None:
        """Fits ``phase``; on rank 0, the final evaluation of each agent (None on other ranks)."""
        trainer = self._trainer(phase)
        ckpt = self._resume_from(phase)
        if ckpt is not None:
            log.info("%s: resuming from %s", phase, ckpt)
        data.pictures_dir = self.run_dir / "plots"  # e.g. data.remove_region's removed_region.png
        # PhaseCheckpoint also writes last.ckpt when training ends: a crash during the final
        # evaluation or while saving the buffer resumes after the last step, not before it.
        trainer.fit(module, datamodule=data, ckpt_path=ckpt)
        if not distributed.is_rank_zero():
            return None
        return module.evaluate_members(self.final_eval_episodes, self.eval_seed)

    @staticmethod
    def _entry(result: EvalResult, data: ReplayDataModule) -> dict[str, Any]:
        """A policy's results.json entry: its evaluation, with the normalized score when the
        data has reference returns, and the region cut out of the offline data if one was."""
        entry = result.to_dict()
        reference = data.buffer.info.reference_returns if data.buffer is not None else None
        if reference:
            entry["normalized_score"] = normalized_score(result.scored_return, tuple(reference))
            entry["score_reference"] = list(reference)
        removed = data.buffer.info.removed_region if data.buffer is not None else None
        if removed:
            entry["removed_region"] = dict(removed)
        return entry

    def fit(self, phase: str, module: RLModule, data: ReplayDataModule) -> None:
        results = self._fit_and_evaluate(phase, module, data)
        if results is None:
            return
        if module.seeds is None:
            self.results[phase] = self._entry(results[0], data)
        else:
            # Every seed apart, as separate runs would report them; the entry itself is their mean.
            members = [{"seed": seed, **self._entry(r, data)} for seed, r in zip(module.seeds, results)]
            self.results[phase] = {**self._entry(mean_result(results), data), "members": members}
        log.info("%s: %s", phase, self.results[phase])

    def fit_curve(self, phase: str, module: ExploiterModule, data: ReplayDataModule, names: list[str]) -> None:
        """The exploiter curve as the members of one fit (``ExploiterModule.prefix_members``):
        member k's final evaluation is results.json's ``names[k]``, as if fitted apart."""
        if self.resume and all(name in self.results for name in names):
            log.info("%s: finished in the earlier run, not run again", phase)
            return
        results = self._fit_and_evaluate(phase, module, data)
        if results is not None:
            self.results.update((name, self._entry(r, data)) for name, r in zip(names, results))
            self.write_results()

    def finished(self, phase: str) -> bool:
        """Whether a resumed run finished ``phase`` already (it has an entry in results.json)."""
        if self.resume and phase in self.results:
            log.info("%s: finished in the earlier run, not run again", phase)
            return True
        return False

    def fit_exploiter(self, phase: str, exploiter: ExploiterModule, data: ReplayDataModule) -> None:
        if self.finished(phase):
            return
        self.fit(phase, exploiter, data)
        if distributed.is_rank_zero():
            self.write_results()

    def save_buffer(self, buffer: OfflineOnlineBuffer) -> None:
        final, tmp = self.run_dir / "buffer", self.run_dir / "buffer.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        buffer.save(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)

    def plot_online_steps_curve(self) -> None:
        from ooo_lightning.plots import plot_exploiter_against_online_steps

        plot_exploiter_against_online_steps(self.results, self.run_dir / "plots" / "exploiter_vs_online_steps.png")

    def plot_visits(self, buffer: OfflineOnlineBuffer, env_id: str, env_kwargs: dict) -> None:
        from ooo_lightning.envs import task_tools

        tools = task_tools(env_id)
        if tools.plot_visits is None:
            return  # no picture of this task's states
        obs = buffer.rows_between(0, len(buffer)).get("observation").numpy()
        offline, online = obs[: buffer.num_offline], obs[buffer.num_offline :]
        tools.call("plot_visits", offline, online, self.run_dir / "plots" / "visited_states.png", env_kwargs=env_kwargs)

    def write_results(self) -> Path:
        from ooo_lightning.plots import plot_learning_curves

        path = atomic_write_text(self.run_dir / "results.json", json.dumps(self.results, indent=2))
        plot_learning_curves(self.run_dir)
        return path


def format_results_table(results: dict[str, Any]) -> str:
    """A plain-text table of results.json's entries."""
    labels = [*results, *(f"  seed {m['seed']}" for r in results.values() for m in r.get("members", []))]
    width = max([12, *(len(label) for label in labels)])
    scored = any("normalized_score" in r for r in results.values())
    header = f"{'policy':<{width}} {'success':>8} {'return':>16} {'episodes':>9} {'env_steps':>10}"
    header += f" {'normalized':>10}" if scored else ""
    lines = [header, "-" * len(header)]

    def line(name: str, r: dict[str, Any]) -> str:
        ret = f"{r['return_mean']:.2f} +- {r['return_std']:.2f}"
        text = f"{name:<{width}} {r['success_rate']:>8.2f} {ret:>16} {r['episodes']:>9d} {r['env_steps']:>10d}"
        if scored:
            score = r.get("normalized_score")
            text += f" {score:>10.1f}" if score is not None else f" {'-':>10}"
        return text

    for name, r in results.items():
        lines.append(line(name, r))  # with members: their mean, the spread of their returns
        lines += [line(f"  seed {m['seed']}", m) for m in r.get("members", [])]
    return "\n".join(lines)
