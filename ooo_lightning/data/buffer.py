"""The run's replay buffer: TorchRL ``ReplayBuffer`` over a ``LazyTensorStorage``.

One buffer holds the offline data first and every online transition after it, in order,
so "the data up to online step T" is simply a prefix of the storage.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tensordict import TensorDictBase
from torchrl.data import LazyTensorStorage, ReplayBuffer

from ooo_lightning.data.d4rl import DatasetError
from ooo_lightning.data.returns import MC_RETURN_KEY, PENDING

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

    def segments(self) -> list[tuple[int, int]]:
        """[start, end) storage rows of each block of consecutive online transitions."""
        lengths = self.online_segments or [self.num_online]
        bounds, start = [], self.num_offline
        for length in lengths:
            bounds.append((start, start + length))
            start += length
        return bounds


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


def save_buffer(buffer: ReplayBuffer, path: str | Path, info: BufferInfo) -> Path:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    buffer.dumps(path)
    (path / META_FILE).write_text(json.dumps(asdict(info), indent=2))
    return path


def load_buffer(path: str | Path) -> tuple[ReplayBuffer, BufferInfo]:
    path = Path(path)
    meta = path / META_FILE
    if not meta.is_file():
        raise DatasetError(
            f"{path} is not a saved ooo-lightning replay buffer (no {META_FILE} in it). "
            "Point `data.buffer` at the `buffer/` folder of an explorer run directory."
        )
    info = BufferInfo(**json.loads(meta.read_text()))
    buffer = make_replay_buffer(info.capacity)
    buffer.loads(path)
    if len(buffer) and MC_RETURN_KEY not in buffer.storage[0].keys():
        # Saved before returns were stored: rebuild with the column added.
        old = buffer.storage[torch.arange(len(buffer))]
        buffer = make_replay_buffer(info.capacity)
        buffer.extend(select_transitions(old))
    if len(buffer) != info.num_offline + info.num_online:
        raise DatasetError(
            f"{path}: the buffer holds {len(buffer)} transitions but {META_FILE} says "
            f"{info.num_offline} offline + {info.num_online} online; the folder is damaged."
        )
    return buffer, info


def sample_indices(
    end: int,
    num_batches: int,
    batch_size: int,
    positive_indices: torch.Tensor | None = None,
    positive_samples: int = 0,
    generator: torch.Generator | None = None,
    num_offline: int = 0,
    offline_fraction: float | None = None,
) -> torch.Tensor:
    """Uniform indices in [0, end) shaped [num_batches, batch_size]; the first
    ``positive_samples`` of each batch come from ``positive_indices`` when there are any
    (the up-sampling of rare rewarding transitions).

    With ``offline_fraction`` (RLPD's symmetric sampling is 0.5), that share of each batch
    comes from the offline rows [0, num_offline) and the rest from the online rows
    [num_offline, end), once both exist."""
    if offline_fraction is not None and 0 < num_offline < end:
        n_offline = int(round(batch_size * offline_fraction))
        idx = torch.cat(
            [
                torch.randint(0, num_offline, (num_batches, n_offline), generator=generator),
                torch.randint(num_offline, end, (num_batches, batch_size - n_offline), generator=generator),
            ],
            1,
        )
    else:
        idx = torch.randint(0, end, (num_batches, batch_size), generator=generator)
    if positive_samples > 0 and positive_indices is not None and positive_indices.numel() > 0:
        pick = torch.randint(0, positive_indices.numel(), (num_batches, positive_samples), generator=generator)
        idx[:, :positive_samples] = positive_indices[pick]
    return idx
