"""The run's replay buffer (``OfflineOnlineBuffer``): the offline data first and every
online transition after it, in order, so "the data up to online step T" is a prefix."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.data import LazyTensorStorage, ReplayBuffer

from ooo_lightning import distributed
from ooo_lightning.config_checks import ConfigError
from ooo_lightning.data.schema import DatasetError
from ooo_lightning.data.returns import MC_RETURN_KEY, PENDING, ReturnSpec, monte_carlo_returns

#: The transition fields the buffer keeps (TorchRL's key names).
TRANSITION_KEYS: tuple = (
    "observation",
    "action",
    ("next", "observation"),
    ("next", "reward"),
    ("next", "terminated"),
    ("next", "truncated"),
    ("next", "done"),
    # Monte-Carlo return-to-go for Cal-QL; PENDING until the module that needs it fills it in.
    MC_RETURN_KEY,
)
META_FILE = "ooo_buffer.json"


@dataclass
class BufferInfo:
    """What a saved buffer is, so that phase 3 can be re-run from it alone."""

    capacity: int
    num_offline: int
    num_online: int
    observation_dim: int
    action_dim: int
    env_id: str | None = None
    #: The offline data's name (file stem or Minari id), and its (random, expert) reference
    #: returns for D4RL's normalized score when known.
    dataset_name: str | None = None
    reference_returns: list[float] | None = None
    #: Under DDP the online rows are one block per rank, in rank order, each in the order
    #: that rank collected them: their lengths. None: one block (a single process).
    online_segments: list[int] | None = None
    #: Online data of several explorers trained as one (``ExplorerModule(seeds=...)``): their
    #: seeds, member k's transitions its own stream. While they collect, the streams are
    #: interleaved row by row (row ``num_offline + K t + k`` is member k's step t); once
    #: collected, ``split_members`` makes them one block each (``online_segments``), and under
    #: DDP one block per member and rank, member by member (member k's blocks: ``k N .. k N + N - 1``
    #: for N ranks). None: one stream.
    member_seeds: list[int] | None = None
    #: ``data.remove_region`` (data/regions.py): the region cut out of the offline data, with
    #: ``removed_transitions`` and ``transitions_before``. None: the data as read.
    removed_region: dict | None = None

    def segments(self) -> list[tuple[int, int]]:
        """[start, end) storage rows of each block of consecutive online transitions."""
        lengths = self.online_segments or [self.num_online]
        bounds, start = [], self.num_offline
        for length in lengths:
            bounds.append((start, start + length))
            start += length
        return bounds


def member_major_order(ranks: int, steps: int, members: int) -> torch.Tensor:
    """Rows of ``ranks`` blocks of ``steps`` x ``members`` interleaved rows (each rank's members
    collected together), reordered member by member, then rank by rank, then step."""
    return torch.arange(ranks * steps * members).reshape(ranks, steps, members).permute(2, 0, 1).reshape(-1)


def make_replay_buffer(capacity: int) -> ReplayBuffer:
    return ReplayBuffer(storage=LazyTensorStorage(capacity))


def select_transitions(td: TensorDictBase) -> TensorDictBase:
    """Keep the transition fields only, with rewards/flags shaped [N, 1] as stored; a
    missing return column is added as PENDING."""
    if MC_RETURN_KEY not in td.keys():
        reward = td.get(("next", "reward"))
        td = td.clone(False)
        td.set(MC_RETURN_KEY, torch.full_like(reward, PENDING))
    out = td.select(*TRANSITION_KEYS, strict=True)
    return out.reshape(-1)


def _extend_from(rows: TensorDictBase, capacity: int) -> ReplayBuffer:
    replay = make_replay_buffer(capacity)
    if rows.shape[0]:
        replay.extend(rows)
    return replay


class OfflineOnlineBuffer:
    """The run's transitions: the offline data first, then every online transition in the
    order collected (under DDP one block per rank), so "the data up to online step T" is a
    prefix of each block.

    It owns the storage (a TorchRL ``ReplayBuffer`` over a ``LazyTensorStorage``), what the
    data is (``info``), the Monte-Carlo returns of the loss that trains on it, and the
    operations the phases need: appending online data, taking a prefix, gathering the
    ranks' blocks, saving, and the online rows a checkpoint keeps.
    """

    def __init__(self, replay: ReplayBuffer, info: BufferInfo) -> None:
        self.replay, self.info = replay, info
        self._returns: ReturnSpec | None = None
        #: Per online stream (``online_streams``): how many of its rows have final returns
        #: (the rows after them belong to an episode that has not ended yet).
        self._returns_final: list[int] = []

    @classmethod
    def empty(cls, info: BufferInfo) -> OfflineOnlineBuffer:
        return cls(make_replay_buffer(max(1, info.capacity)), info)

    @classmethod
    def load(cls, path: str | Path) -> OfflineOnlineBuffer:
        """A buffer saved by :meth:`save` (``<run_dir>/buffer``)."""
        path = Path(path)
        meta = path / META_FILE
        if not meta.is_file():
            raise DatasetError(
                f"{path} is not a saved ooo-lightning replay buffer (no {META_FILE} in it). "
                "Point `data.buffer` at the `buffer/` folder of an explorer run directory."
            )
        info = BufferInfo(**json.loads(meta.read_text()))
        replay = make_replay_buffer(info.capacity)
        replay.loads(path)
        if len(replay) and MC_RETURN_KEY not in replay.storage[0].keys():
            # Saved before returns were stored: rebuild with the column added.
            replay = _extend_from(select_transitions(replay.storage[torch.arange(len(replay))]), info.capacity)
        if len(replay) != info.num_offline + info.num_online:
            raise DatasetError(
                f"{path}: the buffer holds {len(replay)} transitions but {META_FILE} says "
                f"{info.num_offline} offline + {info.num_online} online; the folder is damaged."
            )
        return cls(replay, info)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.replay.dumps(path)
        (path / META_FILE).write_text(json.dumps(asdict(self.info), indent=2))
        return path

    # --- reading ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.replay)

    @property
    def num_offline(self) -> int:
        return self.info.num_offline

    @property
    def num_online(self) -> int:
        return self.info.num_online

    @property
    def online_steps(self) -> int:
        """Environment steps behind the online data: each member's, with member streams."""
        return self.num_online // len(self.info.member_seeds or [None])

    def rows(self, index: torch.Tensor) -> TensorDictBase:
        """The transitions at storage ``index`` (any shape)."""
        return self.replay.storage[index]

    def rows_between(self, start: int, end: int) -> TensorDictBase:
        return self.replay.storage[torch.arange(start, end)]

    def member_online_index(self, member: int) -> torch.Tensor:
        """Storage rows of member ``member``'s online transitions, in the order collected
        (a buffer of member streams only, see ``BufferInfo.member_seeds``)."""
        seeds = self.info.member_seeds
        if seeds is None:
            raise ValueError("this buffer holds one stream of online data, not the members' streams")
        if self.info.online_segments is None:  # interleaved while collecting
            return self.num_offline + member + len(seeds) * torch.arange(self.num_online // len(seeds))
        return torch.cat([torch.arange(start, end) for start, end in self._member_blocks()[member]])

    def _member_blocks(self) -> list[list[tuple[int, int]]]:
        """[start, end) rows of each member's blocks (one per rank that collected)."""
        blocks, members = self.info.segments(), len(self.info.member_seeds)
        per_member = len(blocks) // members
        return [blocks[k * per_member:(k + 1) * per_member] for k in range(members)]

    def online_streams(self) -> list[torch.Tensor]:
        """Storage rows of each stream of consecutive online transitions (one environment's
        episodes, in the order collected): each member's while they collect interleaved, else
        each block (a rank's, a member's, or a member's on one rank), or the one stream."""
        if self.info.member_seeds is not None and self.info.online_segments is None:
            return [self.member_online_index(k) for k in range(len(self.info.member_seeds))]
        return [torch.arange(start, min(end, len(self))) for start, end in self.info.segments()]

    def offline_rows(self) -> TensorDictBase:
        return self.rows_between(0, self.num_offline)

    def online_rows(self) -> TensorDictBase:
        return self.rows_between(self.num_offline, len(self))

    # --- shaping the buffer for a phase -------------------------------------------------
    def reserve(self, online_rows: int) -> None:
        """Room for ``online_rows`` more transitions (a saved buffer is sized for what it held)."""
        needed = len(self) + online_rows
        if needed > self.info.capacity:
            self.replay = _extend_from(self.rows_between(0, len(self)), needed)
            self.info.capacity = needed

    def prefix(self, online_steps: int | None) -> OfflineOnlineBuffer:
        """The offline data plus the first ``online_steps`` online transitions, in a buffer of
        their own; ``self`` when that is everything. With several ranks' blocks, the first
        T / N rows of each block (each rank collected as many steps); with members' streams,
        each member's first T steps."""
        if online_steps is None or online_steps >= self.online_steps:
            return self
        blocks = self._prefix_blocks(online_steps)
        index = torch.cat([torch.arange(self.num_offline)] + [torch.arange(start, start + k) for start, _, k in blocks])
        segments = [k for _, _, k in blocks] if self.info.online_segments is not None else None
        info = BufferInfo(**{**asdict(self.info), "capacity": len(index), "num_online": len(index) - self.num_offline,
                             "online_segments": segments})
        return OfflineOnlineBuffer(_extend_from(self.rows(index), len(index)), info)

    def prefix_online_index(self, online_steps: int | None, member: int | None = None) -> torch.Tensor:
        """Storage rows of the online transitions ``prefix(online_steps)`` keeps (with
        ``member``: that member's only), in order."""
        if member is not None and online_steps is None:
            return self.member_online_index(member)
        if online_steps is None:
            return torch.arange(self.num_offline, len(self))
        return torch.cat([torch.arange(start, start + k) for start, _, k in self._prefix_blocks(online_steps, member)])

    def prefix_open_rows(self, online_steps: int | None, member: int | None = None) -> torch.Tensor:
        """Storage rows of the episodes that ``prefix(online_steps)`` cuts short (running at a
        block's cut, ended here after it): a prefix alone leaves their returns PENDING."""
        if online_steps is None:
            return torch.empty(0, dtype=torch.long)
        cut = []
        for start, end, taken in self._prefix_blocks(online_steps, member):
            if taken == 0 or taken == end - start:
                continue
            ended = self.rows_between(start, start + taken).get(("next", "done")).reshape(-1)
            if bool(ended[-1]):
                continue
            ends = torch.nonzero(ended).reshape(-1)
            first = start + (int(ends[-1]) + 1 if ends.numel() else 0)
            cut.append(torch.arange(first, start + taken))
        return torch.cat(cut) if cut else torch.empty(0, dtype=torch.long)

    def _prefix_blocks(self, online_steps: int, member: int | None = None) -> list[tuple[int, int, int]]:
        """(start, end, rows taken) of each online block for a prefix of ``online_steps``: the
        steps shared over a stream's blocks (ranks collected as many), each member's own."""
        if self.info.member_seeds is not None:  # each member its first T steps, over its ranks' blocks
            if self.info.online_segments is None:
                raise RuntimeError("split_members() before taking a prefix of the members' streams")
            groups = self._member_blocks()
            groups = groups if member is None else [groups[member]]
        else:
            groups = [self.info.segments()]
        return [(start, end, min(online_steps // len(group) + (i < online_steps % len(group)), end - start))
                for group in groups for i, (start, end) in enumerate(group)]

    # --- Monte-Carlo returns (Cal-QL's calibration) -------------------------------------
    def use_returns(self, spec: ReturnSpec | None) -> None:
        """Fills the return column for ``spec`` (None: the loss reads no returns). Done anew
        for each phase: gamma and the reward shaping belong to the loss that trains."""
        self._returns = spec
        if spec is None:
            return
        if self.num_offline > 0:
            self._fill_returns(torch.arange(self.num_offline), online=False)
        self._fill_online_returns(restart=True)

    @property
    def returns_spec(self) -> ReturnSpec | None:
        """The Monte-Carlo returns the buffer holds (``use_returns``), or None."""
        return self._returns

    def _fill_online_returns(self, restart: bool = False) -> None:
        """Returns of each online stream's rows from its first episode not ended yet (every
        row with ``restart``); an episode still running keeps PENDING until it ends."""
        streams = self.online_streams()
        if restart or len(self._returns_final) != len(streams):
            self._returns_final = [0] * len(streams)
        for k, stream in enumerate(streams):
            self._returns_final[k] += self._fill_returns(stream[self._returns_final[k]:], online=True)

    def _fill_returns(self, index: torch.Tensor, online: bool) -> int:
        """Returns of the rows at ``index`` (one stream, in time order); the number of them
        that are final. Online, an episode still running at the end stays PENDING
        (uncalibrated); offline, the end of the data truncates it."""
        if index.numel() == 0:
            return 0
        spec = self._returns
        rows = self.rows(index)
        reward = spec.shaping(rows.get(("next", "reward")))
        done = rows.get(("next", "done"))
        returns = monte_carlo_returns(reward, done, spec.gamma, spec.failure_reward, open_end_pending=online)
        self.replay.storage.set(index, TensorDict({MC_RETURN_KEY: returns}, [index.numel()]), set_cursor=False)
        ends = torch.nonzero(done.reshape(-1)).reshape(-1)
        return int(ends[-1]) + 1 if ends.numel() else 0

    # --- online data, several ranks, checkpoints ----------------------------------------
    def add_online(self, transitions: TensorDictBase) -> None:
        """Appends the transitions collected; with member streams they are ``[K, F]``, member
        k's F steps, stored interleaved (each step's K transitions together)."""
        if len(self) + transitions.numel() > self.info.capacity:  # the storage would wrap onto the first rows
            raise RuntimeError(f"the buffer holds {self.info.capacity} transitions: reserve() room for online data first")
        seeds = self.info.member_seeds
        if seeds is not None:
            if self.info.online_segments is not None or transitions.batch_dims != 2 or transitions.shape[0] != len(seeds):
                raise RuntimeError(f"the members' transitions come [members ({len(seeds)}), steps] while they collect, "
                                   f"got {tuple(transitions.shape)}")
            steps = transitions.shape[1]
            transitions = transitions.apply(lambda t: t.transpose(0, 1), batch_size=[steps, len(seeds)])
        self.replay.extend(select_transitions(transitions))
        self.info.num_online += transitions.numel()
        if self._returns is not None:
            self._fill_online_returns()

    def gather_ranks(self, device: torch.device) -> None:
        """Under DDP: every rank's online rows, one block per rank, in every rank's buffer
        (each rank collected as many steps). Nothing happens in a single process."""
        if distributed.world_size() == 1 or self.info.online_segments is not None:
            return  # one process, or gathered already (a run resumed after its last step)
        lengths = distributed.all_gather_objects(self.num_online)
        if len(set(lengths)) != 1:
            raise RuntimeError(f"the ranks collected different numbers of online steps: {lengths}")
        gathered = distributed.all_gather_rows(self.online_rows(), distributed.collective_device(device))  # [N, n]
        segments = list(lengths)
        if self.info.member_seeds is not None:
            # Each rank's rows interleave its members' streams: one block per member and rank,
            # member by member (what split_members makes of one process's rows).
            members, ranks = len(self.info.member_seeds), len(lengths)
            steps = lengths[0] // members
            gathered = gathered.reshape(-1)[member_major_order(ranks, steps, members)]
            segments = [steps] * (members * ranks)
        merged = _extend_from(self.offline_rows(), self.num_offline + sum(lengths))
        merged.extend(gathered.reshape(-1))
        self.replay = merged
        self.info.capacity = len(merged)
        self.info.num_online = sum(lengths)
        self.info.online_segments = segments

    def split_members(self) -> None:
        """The members' interleaved online rows as one block per member, in member order
        (``online_segments``): what phase 3 and a saved buffer hold. Nothing without members,
        or when split already (by ``gather_ranks`` under DDP, or a run resumed after its last step)."""
        seeds = self.info.member_seeds
        if seeds is None or self.info.online_segments is not None:
            return
        index = torch.cat([self.member_online_index(k) for k in range(len(seeds))])
        merged = _extend_from(self.offline_rows(), self.num_offline + self.num_online)
        if index.numel():
            merged.extend(self.rows(index))
        self.replay = merged
        self.info.capacity = len(merged)
        self.info.online_segments = [self.num_online // len(seeds)] * len(seeds)

    def online_state(self, device: torch.device) -> dict:
        """What a checkpoint needs to rebuild the buffer: the online rows of every rank (the
        offline rows are read again from the dataset). A collective under DDP."""
        rows = self.online_rows()
        if self.info.online_segments is None:  # each rank holds its own rows: gather them
            rows = distributed.all_gather_rows(rows, distributed.collective_device(device))
        # Else: the end of a DDP explorer, every rank holds all the rows already.
        return {
            "num_offline": self.num_offline,
            "online_rows": {"/".join(k) if isinstance(k, tuple) else k: v for k, v in rows.items(True, True)},
            "online_segments": self.info.online_segments,
        }

    def load_online_state(self, state: dict) -> None:
        """Appends a checkpoint's online rows (this rank's) to a buffer of the offline data."""
        if state["num_offline"] != self.num_offline:
            raise ConfigError(
                f"the checkpoint was taken with {state['num_offline']} offline transitions but the dataset now has "
                f"{self.num_offline}: resume with the same data.dataset"
            )
        if len(self) > self.num_offline:
            raise RuntimeError("load_online_state expects a buffer holding the offline data only")
        rank = distributed.rank()
        per_rank = state.get("online_segments") is None
        flat = {tuple(k.split("/")) if "/" in k else k: (v[rank] if per_rank else v) for k, v in state["online_rows"].items()}
        rows = TensorDict(flat, batch_size=[next(iter(flat.values())).shape[0]])
        if rows.shape[0]:
            if per_rank:
                # The episodes running at the checkpoint were cut there: the resumed collector
                # starts new ones, so each stream's last row (every member's, while members
                # collect interleaved) becomes a time-out (not a termination).
                last = slice(-len(self.info.member_seeds or [None]), None)
                done = rows.get(("next", "done"))
                rows.get(("next", "truncated"))[last] |= ~done[last]
                done[last] = True
            self.replay.extend(rows)
        self.info.num_online = rows.shape[0]
        self.info.online_segments = state.get("online_segments")
        if self._returns is not None:  # the returns are a function of the rows: computed again
            self._fill_online_returns(restart=True)
