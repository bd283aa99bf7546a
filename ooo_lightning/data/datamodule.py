"""LightningDataModule that builds the run's ``OfflineOnlineBuffer`` and feeds a phase's
stacked minibatches from it.

A phase says what it needs in a ``DataRequest`` (the task's sizes, the online transitions it
will add, a buffer prefix, the returns its loss reads, how it samples); ``prepare`` shapes
the buffer for it. ``BufferConnection``, the callback each module brings, makes that call
when a Trainer fits the module with this data module, and hands the module the buffer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from lightning.pytorch import LightningDataModule
from tensordict import TensorDictBase
from torch.utils.data import DataLoader

from ooo_lightning import distributed
from ooo_lightning.config_checks import ConfigError, check_ranges
from ooo_lightning.data.buffer import BufferInfo, OfflineOnlineBuffer, select_transitions
from ooo_lightning.data.regions import Region, RegionCut, plot_region_cut, remove_region
from ooo_lightning.data.returns import ReturnSpec
from ooo_lightning.data.sampling import BatchStream, SamplingSpec
from ooo_lightning.data.schema import to_tensordict
from ooo_lightning.data.task_layout import TaskLayout

log = logging.getLogger(__name__)


class GeneratedDataset(Protocol):
    """A task's dataset that the project can make (the task's ``TaskDataset``)."""

    def check(self, path: Path) -> None:
        """Raises ValueError when the file at ``path`` was made for another task or layout."""

    def generate(self, path: Path, **settings: Any) -> None:
        """Writes the dataset to ``path`` (settings: episodes, steps, seed, noise, missing_goal_radius)."""


@dataclass(frozen=True)
class DataRequest:
    """What a phase needs from the data: declared by the module (``RLModule.data_request``).

    Args:
        env_id, env_kwargs, observation_dim, action_dim: the task (checked against the data).
        sampling: how each training step samples.
        num_batches: training steps of the phase (one stacked batch each).
        online_capacity: transitions the phase will append (the explorer's online steps).
        online_steps_limit: train on the offline data plus the first this many online
            transitions only (a buffer prefix); None: all of it.
        returns: the Monte-Carlo returns the loss reads; None: none.
        generated_dataset: how to make the task's dataset when ``data.dataset`` names a
            missing file and ``data.generate_missing_dataset`` is set.
        batches_done: how many batches a resumed phase has consumed (read when the batches
            start, after the checkpoint is loaded).
        member_generators: one per member of a module that trains several agents as one:
            each member's batches are drawn with its own generator; None: one agent.
        member_online_steps: with members, each member's own buffer prefix (the offline data
            plus that many online transitions); None: every member samples the whole buffer.
        member_seeds: the members' seeds. A phase that collects (the explorer) with members
            keeps each member's online data as its own stream; a phase that trains on such a
            buffer must have the same seeds, member k training on member k's stream.
        dataset_layout: how the task reads its datasets (``ooo_lightning.data.task_layout``:
            observation layout, reward rule); None: as they are.
    """

    env_id: str
    env_kwargs: dict[str, Any]
    observation_dim: int
    action_dim: int
    sampling: SamplingSpec
    num_batches: int
    online_capacity: int = 0
    online_steps_limit: int | None = None
    returns: ReturnSpec | None = None
    generated_dataset: GeneratedDataset | None = None
    batches_done: Callable[[], int] = lambda: 0
    member_generators: list[torch.Generator] | None = None
    member_online_steps: list[int] | None = None
    member_seeds: list[int] | None = None
    dataset_layout: TaskLayout | None = None


class ReplayDataModule(LightningDataModule):
    """Where the transitions come from: an offline dataset, a saved buffer, or nothing.

    Args:
        dataset: the offline data (phase 1): a D4RL-layout HDF5 file (``.hdf5``/``.h5``), an
            npz file with the same keys, or a local Minari dataset id (``minari:<id>`` or a
            bare id); see :mod:`ooo_lightning.data.sources`.
        buffer: a saved buffer folder (``<run>/buffer``), e.g. to re-run phase 3 alone.
        observation_key: for Minari datasets with dict observations, the entry to use
            (default: the task's own flattening where it has one, else ``observation``).
        relabel_rewards: for the tasks that define their reward on the data (antmaze:
            the fixed goal; kitchen: subtasks done in the next state; binary adroit: the
            success flag), recompute every transition's reward and terminal with that rule;
            false keeps the dataset's. See :mod:`ooo_lightning.data.task_layout`.
        score_reference: how results.json's ``normalized_score`` is computed: ``auto`` (the
            dataset's Minari metadata, else D4RL's reference returns found from its name),
            a D4RL name (``antmaze-large-diverse-v2``), ``[random_return, expert_return]``,
            or null for none.
        generate_missing_dataset: create the project's dataset at ``dataset`` when the file
            does not exist (point-mass-wall and the PointMaze tasks), so a job needs nothing else.
        generated_episodes, generated_seed, generated_noise: settings of that generation
            (episodes apply to point-mass-wall; the noise is the controller's action noise).
        generated_steps, generated_missing_goal_radius: PointMaze only: transitions to
            collect, and the radius around the goal from which every transition is removed.
        remove_region: ``{center: [x, y], radius: r, dims: [0, 1]}``: remove from the loaded
            dataset (any format) every transition whose observation or next observation lies
            within ``r`` of ``center`` in observation entries ``dims`` (default: the first
            ``len(center)``); the paper's goal-missing data. See :mod:`ooo_lightning.data.regions`.
    """

    def __init__(
        self,
        dataset: str | None = None,
        buffer: str | None = None,
        observation_key: str | None = None,
        score_reference: str | list[float] | None = "auto",
        generate_missing_dataset: bool = False,
        generated_episodes: int = 100,
        generated_seed: int = 0,
        generated_noise: float = 0.5,
        generated_steps: int = 100_000,
        generated_missing_goal_radius: float | None = None,
        remove_region: dict[str, Any] | None = None,
        relabel_rewards: bool = True,
    ) -> None:
        super().__init__()
        check_ranges(
            "data", generated_episodes=(generated_episodes, ">= 1"), generated_noise=(generated_noise, ">= 0"),
            generated_steps=(generated_steps, ">= 1"), generated_missing_goal_radius=(generated_missing_goal_radius, "> 0"),
        )
        if dataset and buffer:
            raise ConfigError("set either data.dataset (a dataset file or Minari id) or data.buffer (a saved buffer), not both")
        self.dataset = dataset
        self.observation_key = observation_key
        self.relabel_rewards = relabel_rewards  # data/task_layout.py
        self.score_reference = score_reference
        self.generated_steps = generated_steps
        self.generated_missing_goal_radius = generated_missing_goal_radius
        self.buffer_path = buffer
        self.generate_missing_dataset = generate_missing_dataset
        self.generated_episodes = generated_episodes
        self.generated_seed = generated_seed
        self.generated_noise = generated_noise
        #: The buffer the current phase trains on (shared by the phases of a run).
        self.buffer: OfflineOnlineBuffer | None = None
        self.request: DataRequest | None = None
        # --- data.remove_region (data/regions.py) ---
        self.remove_region = self._region(remove_region)
        #: What the region removed, once the dataset is loaded (``regions.plot_region_cut`` draws it).
        self.region_cut: RegionCut | None = None
        #: Where the data module draws its pictures (the pipeline sets ``<run_dir>/plots``); None: none.
        self.pictures_dir: Path | None = None
        # --- end data.remove_region ---

    # --- construction -----------------------------------------------------------------
    def attach(self, buffer: OfflineOnlineBuffer) -> None:
        """Use an in-memory buffer (the pipeline hands the explorer's buffer to phase 3)."""
        self.buffer = buffer

    def load_saved_buffer(self) -> OfflineOnlineBuffer:
        """``data.buffer``, loaded and attached (phase 3 alone on a saved buffer)."""
        if not self.buffer_path:
            raise ConfigError("a run without an explorer needs a saved buffer: set data.buffer")
        buffer = OfflineOnlineBuffer.load(self.buffer_path)
        if self.score_reference != "auto":  # an explicit choice overrides what the buffer recorded
            buffer.info.reference_returns = self._reference(buffer.info.dataset_name, {})
        self.attach(buffer)
        return buffer

    def prepare(self, request: DataRequest) -> OfflineOnlineBuffer:
        """The buffer shaped for a phase: built on first use (dataset, saved buffer or empty),
        checked against the task, cut to the phase's prefix, with room for what it will
        collect and the returns its loss reads. Returns the buffer the phase must use."""
        if self.buffer is None:
            self.buffer = self.load_saved_buffer() if self.buffer_path else self._build(request)
        self._check_dims(request)
        self._check_member_streams(request)
        self.buffer = self.buffer.prefix(request.online_steps_limit)
        self.buffer.reserve(request.online_capacity)
        self.buffer.use_returns(request.returns)
        self.request = request
        return self.buffer

    def _build(self, request: DataRequest) -> OfflineOnlineBuffer:
        info = BufferInfo(
            capacity=max(1, request.online_capacity),
            num_offline=0,
            num_online=0,
            observation_dim=request.observation_dim,
            action_dim=request.action_dim,
            env_id=request.env_id,
        )
        if not self.dataset:
            info.reference_returns = self._reference(None, {})
            return OfflineOnlineBuffer.empty(info)
        from ooo_lightning.data.sources import load_offline_dataset, resolve_source

        source = resolve_source(self.dataset)
        if self.remove_region is not None:  # said before a dataset is generated or read
            self.remove_region.check_width(request.observation_dim, f"environment {request.env_id!r}")
        if source.kind != "minari" and self.generate_missing_dataset:
            self._generate_or_check(Path(source.location), request.generated_dataset)
        data, meta = load_offline_dataset(
            self.dataset, obs_dim=request.observation_dim, act_dim=request.action_dim, observation_key=self.observation_key,
            layout=request.dataset_layout, relabel_rewards=self.relabel_rewards,
        )
        if self.remove_region is not None:
            data = self._cut_region(data, info)
        td = to_tensordict(data)
        info.num_offline = td.shape[0]
        info.capacity = info.num_offline + max(0, request.online_capacity)
        info.dataset_name = meta["name"]
        info.reference_returns = self._reference(meta["name"], meta)
        buffer = OfflineOnlineBuffer.empty(info)
        buffer.replay.extend(select_transitions(td))
        log.info("loaded %d offline transitions from %s", info.num_offline, self.dataset)
        return buffer

    # --- data.remove_region (data/regions.py) ---
    def _region(self, spec: dict[str, Any] | None) -> Region | None:
        if spec is None:
            return None
        region = Region.parse(spec)
        if self.buffer_path:
            raise ConfigError("data.remove_region cuts data.dataset as it is loaded, not a saved buffer (data.buffer): "
                              "set it on the run that loads the dataset")
        if not self.dataset:
            raise ConfigError("data.remove_region needs an offline dataset to cut: set data.dataset, or drop the option")
        return region

    def _cut_region(self, data: dict, info: BufferInfo) -> dict:
        """The dataset without the region, recorded in the buffer's info, logged and drawn."""
        data, cut = remove_region(data, self.remove_region, source=self.dataset)
        self.region_cut = cut
        info.removed_region = cut.record()
        log.info(cut.summary())
        if self.pictures_dir is not None and distributed.is_rank_zero():
            path = plot_region_cut(cut, Path(self.pictures_dir) / "removed_region.png")
            log.info("data.remove_region: coverage before and after in %s", path)
        return data
    # --- end data.remove_region ---

    def _reference(self, name: str | None, meta: dict) -> list[float] | None:
        from ooo_lightning.scores import resolve_reference

        found = resolve_reference(self.score_reference, name, meta)
        return list(found) if found is not None else None

    def _generate_or_check(self, path: Path, dataset: GeneratedDataset | None) -> None:
        if dataset is None:
            return  # nothing to generate with: the reader reports a missing file
        if path.exists():
            try:
                dataset.check(path)
            except ValueError as err:
                raise ConfigError(str(err)) from None
            return
        dataset.generate(
            path,
            episodes=self.generated_episodes,
            steps=self.generated_steps,
            seed=self.generated_seed,
            noise=self.generated_noise,
            missing_goal_radius=self.generated_missing_goal_radius,
        )

    def _check_member_streams(self, request: DataRequest) -> None:
        """A buffer of several explorers' streams is trained on by the same seeds' members; an
        explorer with members starts its streams on the offline data."""
        buffer, seeds = self.buffer, request.member_seeds
        if request.online_capacity > 0 and seeds is not None:
            if buffer.num_online > 0 and buffer.info.member_seeds != seeds:
                raise ConfigError(f"an explorer with seeds {seeds} collects from the offline data, but this buffer "
                                  f"holds {buffer.num_online} online transitions already: start it from a dataset")
            buffer.info.member_seeds = list(seeds)
            return
        held = buffer.info.member_seeds
        if held is not None and seeds != held:
            raise ConfigError(
                f"the buffer holds the online data of {len(held)} explorers (seeds {held}), each its own block: train on "
                f"it with members of the same seeds, seeds: {held} (member k on explorer k's data), not {seeds}"
            )

    def _check_dims(self, request: DataRequest) -> None:
        info = self.buffer.info
        got = (info.observation_dim, info.action_dim)
        want = (request.observation_dim, request.action_dim)
        if got != want:
            source = self.buffer_path or self.dataset or "the buffer"
            raise ConfigError(
                f"{source} holds (observation, action) sizes {got} but environment {request.env_id!r} has {want}"
            )

    # --- use ----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        return self.buffer.save(path)

    def state_dict(self) -> dict:
        """The online rows of every rank, while the phase collects (see
        ``OfflineOnlineBuffer.online_state``): a phase-3 buffer does not change and lives in
        ``<run_dir>/buffer``."""
        if self.buffer is None or self.request is None or self.request.online_capacity == 0:
            return {}
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        return self.buffer.online_state(device)

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.buffer.load_online_state(state)

    def train_dataloader(self) -> DataLoader:
        if self.request is None:
            raise ConfigError("the ReplayDataModule was not prepared for a phase: fit an RLModule with it (its "
                              "BufferConnection callback calls prepare), or call prepare(module.data_request())")
        request = self.request
        stream = BatchStream(self.buffer, request.sampling, request.num_batches, request.batches_done,
                             request.member_generators, request.member_online_steps)
        return _ResumableLoader(stream, batch_size=None, num_workers=0, collate_fn=_as_is)


class _ResumableLoader(DataLoader):
    """The batches depend on nothing but the module's step counter and the RNG, both in the
    checkpoint, so the loader itself has no state to save; saying so lets Lightning resume
    mid-epoch without warning that the data order is lost."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _as_is(batch: TensorDictBase) -> TensorDictBase:
    # The default conversion would treat a TensorDict as a dict of tensors and take it apart.
    return batch
