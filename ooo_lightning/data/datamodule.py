"""LightningDataModule that owns the replay buffer and feeds stacked minibatches.

Each training step receives ``[updates_per_step, batch_size]`` transitions drawn in one
indexing call, so the per-step costs of Lightning and of sampling are paid once for several
gradient updates. The buffer lives in this process and the explorer appends to it while
training, so samples always come from the current buffer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from lightning.pytorch import LightningDataModule
from tensordict import TensorDictBase
from tensordict import TensorDict
from torch.utils.data import DataLoader, IterableDataset
from torchrl.data import ReplayBuffer

from ooo_lightning.config_checks import ConfigError, check_ranges
from ooo_lightning.data.buffer import (
    BufferInfo,
    load_buffer,
    make_replay_buffer,
    sample_indices,
    save_buffer,
    select_transitions,
)
from ooo_lightning import distributed
from ooo_lightning.data.returns import MC_RETURN_KEY, monte_carlo_returns

if TYPE_CHECKING:
    from ooo_lightning.modules.base import RLModule

log = logging.getLogger(__name__)


class ReplayDataModule(LightningDataModule):
    """Where the transitions come from: an offline dataset, a saved buffer, or nothing.

    Args:
        dataset: the offline data (phase 1): a D4RL-layout HDF5 file (``.hdf5``/``.h5``), an
            npz file with the same keys, or a local Minari dataset id (``minari:<id>`` or a
            bare id); see :mod:`ooo_lightning.data.sources`.
        buffer: a saved buffer folder (``<run>/buffer``), e.g. to re-run phase 3 alone.
        observation_key: for Minari datasets with dict observations, the entry to use
            (default ``observation``).
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
        self.score_reference = score_reference
        self.generated_steps = generated_steps
        self.generated_missing_goal_radius = generated_missing_goal_radius
        self.buffer_path = buffer
        self.generate_missing_dataset = generate_missing_dataset
        self.generated_episodes = generated_episodes
        self.generated_seed = generated_seed
        self.generated_noise = generated_noise
        self.replay: ReplayBuffer | None = None
        self.info: BufferInfo | None = None
        self._returns: tuple[float, float | None] | None = None  # (gamma, failure reward) in use
        self._returns_pending_from = 0  # first row whose episode has not ended yet

    # --- construction -----------------------------------------------------------------
    def attach(self, replay: ReplayBuffer, info: BufferInfo) -> None:
        """Use an in-memory buffer (the pipeline hands the explorer's buffer to phase 3)."""
        self.replay, self.info = replay, info

    def setup(self, stage: str) -> None:
        module: RLModule = self.trainer.lightning_module
        if self.replay is None:
            self.replay, self.info = self._build(module)
        self._check_dims(module)
        self._select_prefix(module)
        extra = module.online_capacity
        if len(self.replay) + extra > self.info.capacity:
            self._grow(len(self.replay) + extra)
        self._returns = module.mc_return_settings()
        if self._returns is not None:
            self._fill_all_returns(module)

    def _build(self, module: RLModule) -> tuple[ReplayBuffer, BufferInfo]:
        if self.buffer_path:
            replay, info = load_buffer(self.buffer_path)
            if self.score_reference != "auto":  # an explicit choice overrides what the buffer recorded
                info.reference_returns = self._reference(info.dataset_name, {})
            return replay, info
        info = BufferInfo(
            capacity=max(1, module.online_capacity),
            num_offline=0,
            num_online=0,
            observation_dim=module.observation_dim,
            action_dim=module.action_dim,
            env_id=module.env_id,
        )
        if not self.dataset:
            info.reference_returns = self._reference(None, {})
            return make_replay_buffer(info.capacity), info
        from ooo_lightning.data.d4rl import to_tensordict
        from ooo_lightning.data.sources import load_offline_dataset, resolve_source

        source = resolve_source(self.dataset)
        if source.kind != "minari" and self.generate_missing_dataset:
            self._generate_or_check(Path(source.location), module.env_id, module.env_kwargs)
        data, meta = load_offline_dataset(
            self.dataset, obs_dim=module.observation_dim, act_dim=module.action_dim, observation_key=self.observation_key
        )
        td = to_tensordict(data)
        info.num_offline = td.shape[0]
        info.capacity = info.num_offline + max(0, module.online_capacity)
        info.dataset_name = meta["name"]
        info.reference_returns = self._reference(meta["name"], meta)
        replay = make_replay_buffer(info.capacity)
        replay.extend(select_transitions(td))
        log.info("loaded %d offline transitions from %s", info.num_offline, self.dataset)
        return replay, info

    def _reference(self, name: str | None, meta: dict) -> list[float] | None:
        from ooo_lightning.scores import resolve_reference

        found = resolve_reference(self.score_reference, name, meta)
        return list(found) if found is not None else None

    def _generate_or_check(self, path: Path, env_id: str, env_kwargs: dict) -> None:
        from ooo_lightning.data.generate import check_generation_record, generate_for_env, generators

        if path.exists():
            try:
                check_generation_record(path, env_id, env_kwargs)
            except ValueError as err:
                raise ConfigError(str(err)) from None
            return
        if env_id not in generators():
            raise FileNotFoundError(
                f"offline dataset {path} does not exist, and the project can only generate datasets for "
                f"{sorted(generators())} (the environment is {env_id!r}); give the path of an existing "
                "D4RL HDF5 / npz file or a local Minari id."
            )
        generate_for_env(
            env_id,
            path,
            episodes=self.generated_episodes,
            steps=self.generated_steps,
            seed=self.generated_seed,
            noise=self.generated_noise,
            missing_goal_radius=self.generated_missing_goal_radius,
            env_kwargs=env_kwargs,
        )

    def _check_dims(self, module: RLModule) -> None:
        got = (self.info.observation_dim, self.info.action_dim)
        want = (module.observation_dim, module.action_dim)
        if got != want:
            source = self.buffer_path or self.dataset or "the buffer"
            raise ConfigError(
                f"{source} holds (observation, action) sizes {got} but environment {module.env_id!r} has {want}"
            )

    def _grow(self, capacity: int) -> None:
        # A saved buffer is sized for what it held; an explorer resuming on it needs more room.
        old = self.replay
        new = make_replay_buffer(capacity)
        if len(old):
            new.extend(old.storage[torch.arange(len(old))])
        self.replay = new
        self.info.capacity = capacity

    def _select_prefix(self, module: RLModule) -> None:
        # A buffer of several ranks' blocks: "the first T online steps" are the first T / N
        # rows of each block, copied into a buffer of their own (each phase-3 run gets its
        # own data module), so that the module can sample it whole.
        if not self.info.online_segments or len(self.info.online_segments) < 2:
            return
        limit = module.sampling_end(len(self.replay), self.info.num_offline) - self.info.num_offline
        if limit >= self.info.num_online:
            return
        blocks = self.info.segments()
        share = [limit // len(blocks) + (i < limit % len(blocks)) for i in range(len(blocks))]
        taken = [min(k, end - start) for (start, end), k in zip(blocks, share)]
        index = torch.cat([torch.arange(self.info.num_offline)] + [torch.arange(start, start + k) for (start, _), k in zip(blocks, taken)])
        kept = self.replay.storage[index]
        self.replay = make_replay_buffer(len(index))
        self.replay.extend(kept)
        self.info = BufferInfo(**{**self.info.__dict__, "capacity": len(index), "num_online": sum(taken), "online_segments": taken})

    # --- Monte-Carlo returns (Cal-QL's calibration) -------------------------------------
    def _fill_all_returns(self, module: RLModule) -> None:
        # Recomputed at every setup: gamma and reward shaping belong to the module, and an
        # exploiter on a prefix must not see returns that depend on data after the prefix.
        end = module.sampling_end(len(self.replay), self.info.num_offline)
        offline_end = min(self.info.num_offline, end)
        if offline_end > 0:
            self._fill_returns(0, offline_end, online=False)
        self._returns_pending_from = offline_end
        # Each rank's block is its own stream of episodes (a single block in one process).
        for start, stop in self.info.segments():
            if min(stop, end) > start:
                self._fill_returns(start, min(stop, end), online=True)

    def _fill_returns(self, start: int, end: int, online: bool) -> None:
        """Returns of rows [start, end). Online, an episode still running at ``end`` stays
        PENDING (uncalibrated) until it ends; offline, the end of the data truncates it."""
        if end <= start:
            return
        gamma, failure = self._returns
        rows = self.replay.storage[torch.arange(start, end)]
        module = self.trainer.lightning_module
        reward = module.shape_reward(rows.get(("next", "reward")))
        done = rows.get(("next", "done"))
        returns = monte_carlo_returns(reward, done, gamma, failure, open_end_pending=online)
        self.replay.storage.set(slice(start, end), TensorDict({MC_RETURN_KEY: returns}, [end - start]), set_cursor=False)
        if online:
            ends = torch.nonzero(done.reshape(-1)).reshape(-1)
            if ends.numel():
                self._returns_pending_from = start + int(ends[-1]) + 1

    # --- use ----------------------------------------------------------------------------
    def add_online(self, transitions: TensorDictBase) -> None:
        self.replay.extend(select_transitions(transitions))
        self.info.num_online += transitions.numel()
        if self._returns is not None:
            self._fill_returns(self._returns_pending_from, len(self.replay), online=True)

    def save(self, path: str | Path) -> Path:
        return save_buffer(self.replay, path, self.info)

    # --- several ranks, checkpoints -----------------------------------------------------
    def _online_rows(self) -> TensorDictBase:
        return self.replay.storage[torch.arange(self.info.num_offline, len(self.replay))]

    def gather_ranks(self, device: torch.device) -> None:
        """Under DDP: every rank's online rows, one block per rank, in every rank's buffer
        (each rank collected as many steps). Nothing happens in a single process."""
        if distributed.world_size() == 1 or self.info.online_segments is not None:
            return  # one process, or gathered already (a run resumed after its last step)
        lengths = distributed.all_gather_objects(self.info.num_online)
        if len(set(lengths)) != 1:
            raise RuntimeError(f"the ranks collected different numbers of online steps: {lengths}")
        where = distributed.collective_device(device)
        gathered = distributed.all_gather_rows(self._online_rows(), where)  # [N, n]
        offline = self.replay.storage[torch.arange(self.info.num_offline)]
        merged = make_replay_buffer(self.info.num_offline + sum(lengths))
        if self.info.num_offline:
            merged.extend(offline)
        merged.extend(gathered.reshape(-1))
        self.replay = merged
        self.info.capacity = len(merged)
        self.info.num_online = sum(lengths)
        self.info.online_segments = list(lengths)

    def state_dict(self) -> dict:
        """What a checkpoint needs to rebuild the buffer: the online rows of every rank (the
        offline rows are read again from the dataset). Only while the module collects: a
        phase-3 buffer does not change and lives in ``<run_dir>/buffer``."""
        if self.replay is None or self.trainer is None or self.trainer.lightning_module.online_capacity == 0:
            return {}
        rows = self._online_rows()
        if self.info.online_segments is None:  # each rank holds its own rows: gather them
            where = distributed.collective_device(self.trainer.lightning_module.device)
            rows = distributed.all_gather_rows(rows, where)
        # Else: the end of a DDP explorer, every rank holds all the rows already.
        return {
            "num_offline": self.info.num_offline,
            "online_rows": {"/".join(k) if isinstance(k, tuple) else k: v for k, v in rows.items(True, True)},
            "online_segments": self.info.online_segments,
            "returns_pending_from": distributed.all_gather_objects(self._returns_pending_from),
        }

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        if state["num_offline"] != self.info.num_offline:
            raise ConfigError(
                f"the checkpoint was taken with {state['num_offline']} offline transitions but the dataset now has "
                f"{self.info.num_offline}: resume with the same data.dataset"
            )
        rank = distributed.rank()
        per_rank = state.get("online_segments") is None
        flat = {tuple(k.split("/")) if "/" in k else k: (v[rank] if per_rank else v) for k, v in state["online_rows"].items()}
        rows = TensorDict(flat, batch_size=[next(iter(flat.values())).shape[0]])
        if len(self.replay) > self.info.num_offline:
            raise RuntimeError("load_state_dict expects a buffer holding the offline data only")
        if rows.shape[0]:
            if per_rank and not bool(rows.get(("next", "done"))[-1]):
                # The episode running at the checkpoint was cut there: the resumed collector starts
                # a new one, so the last row becomes a time-out (not a termination).
                rows.get(("next", "truncated"))[-1] = True
                rows.get(("next", "done"))[-1] = True
            self.replay.extend(rows)
        self.info.num_online = rows.shape[0]
        self.info.online_segments = state.get("online_segments")
        self._returns_pending_from = state["returns_pending_from"][rank]
        if self._returns is not None:
            self._fill_returns(self._returns_pending_from, len(self.replay), online=True)

    def train_dataloader(self) -> DataLoader:
        return _ResumableLoader(
            _StackedBatches(self, self.trainer.lightning_module), batch_size=None, num_workers=0, collate_fn=_as_is
        )


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


class _StackedBatches(IterableDataset):
    """Yields ``module.num_training_steps`` batches of shape [updates_per_step, batch_size]
    (an empty TensorDict while the buffer is still empty, e.g. before the first online step)."""

    def __init__(self, data: ReplayDataModule, module: RLModule) -> None:
        self.data, self.module = data, module

    def __len__(self) -> int:
        # All the steps, also after a resume: Lightning counts the restored ones against it.
        return self.module.num_training_steps

    def __iter__(self) -> Iterator[TensorDictBase | None]:
        module, data = self.module, self.data
        positives = torch.empty(0, dtype=torch.long)
        scanned = 0
        for _ in range(len(self) - module.steps_done):  # a resumed run: the steps that remain
            end = module.sampling_end(len(data.replay), data.info.num_offline)
            if end <= 0:
                # Not None: Lightning skips the training step of a None batch, and the
                # explorer's step is where the first data gets collected.
                yield TensorDict({}, batch_size=[0])
                continue
            if module.positive_samples > 0 and end > scanned:
                # Incremental scan: only the rows added since the last batch.
                reward = data.replay.storage[torch.arange(scanned, end)].get(("next", "reward")).reshape(-1)
                positives = torch.cat([positives, torch.nonzero(reward > 0).reshape(-1) + scanned])
                scanned = end
            idx = sample_indices(
                end,
                module.updates_per_step,
                module.batch_size,
                positives,
                module.positive_samples,
                num_offline=data.info.num_offline,
                offline_fraction=module.offline_fraction,
            )
            yield data.replay.storage[idx]
