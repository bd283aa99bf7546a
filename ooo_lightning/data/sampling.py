"""How a module samples its minibatches from an ``OfflineOnlineBuffer``.

Each module declares one ``SamplingSpec``; ``BatchStream`` turns it into the stacked batches
that a training step consumes (``[updates_per_step, batch_size]`` transitions drawn in one
indexing call, so the per-step costs of Lightning and of sampling are paid once for several
gradient updates). Nothing here needs a Trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from torch.utils.data import IterableDataset

from ooo_lightning.data.buffer import OfflineOnlineBuffer
from ooo_lightning.data.returns import MC_RETURN_KEY, PENDING


@dataclass(frozen=True)
class SamplingSpec:
    """What one training step draws.

    Args:
        batch_size: transitions per gradient update.
        updates_per_step: gradient updates per training step (the batches drawn at once).
        positive_samples: the first samples of each batch taken from transitions with a
            positive task reward, when there are any (up-sampling rare successes).
        offline_fraction: RLPD's symmetric sampling (0.5): that share of each batch from the
            offline rows and the rest from the online rows, once both exist; None: uniform.
    """

    batch_size: int
    updates_per_step: int = 1
    positive_samples: int = 0
    offline_fraction: float | None = None


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
    ``positive_samples`` of each batch come from ``positive_indices`` when there are any.

    With ``offline_fraction``, that share of each batch comes from the offline rows
    [0, num_offline) and the rest from the online rows [num_offline, end), once both exist."""
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


class BatchStream(IterableDataset):
    """``num_batches`` stacked batches of shape [updates_per_step, batch_size] from the buffer
    as it is at each draw (the explorer appends to it between draws); an empty TensorDict
    while the buffer is still empty, e.g. before the first online step.

    ``batches_done`` says how many batches a resumed run has consumed already: the stream
    then yields only the rest. Its length stays ``num_batches`` (Lightning counts the
    restored steps against it). A DataLoader takes it as it is (``batch_size=None``).

    With ``member_generators`` (one per member of a module that trains several agents as
    one), each member draws its own batches with its own generator: [updates_per_step,
    members, batch_size]; with ``member_online_steps`` too, member k only from the offline
    rows and the first ``member_online_steps[k]`` online ones (one block of online rows).
    On a buffer of member streams (``BufferInfo.member_seeds``: several explorers' data), member
    k sees the offline rows followed by its own explorer's online rows only."""

    def __init__(
        self,
        buffer: OfflineOnlineBuffer,
        spec: SamplingSpec,
        num_batches: int,
        batches_done: Callable[[], int] = lambda: 0,
        member_generators: list[torch.Generator] | None = None,
        member_online_steps: list[int] | None = None,
    ) -> None:
        self.buffer, self.spec, self.num_batches, self.batches_done = buffer, spec, num_batches, batches_done
        self.member_generators = member_generators
        self.member_online_steps = member_online_steps

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[TensorDictBase]:
        buffer, spec = self.buffer, self.spec
        positives = torch.empty(0, dtype=torch.long)
        scanned = 0
        # Members on their own streams: each member's positives (in its view) and rows scanned.
        streams = [(positives, 0)] * len(self.member_generators or [])
        open_rows = self._open_rows()
        for _ in range(self.num_batches - self.batches_done()):
            end = len(buffer)
            if end <= 0:
                # Not None: Lightning skips the training step of a None batch, and the
                # explorer's step is where the first data gets collected.
                yield TensorDict({}, batch_size=[0])
                continue
            if spec.positive_samples > 0 and end > scanned:
                # Incremental scan: only the rows added since the last batch.
                reward = buffer.rows(torch.arange(scanned, end)).get(("next", "reward")).reshape(-1)
                positives = torch.cat([positives, torch.nonzero(reward > 0).reshape(-1) + scanned])
                scanned = end
            if self.member_generators is None:
                idx = self._draw(end, positives)
            elif buffer.info.member_seeds is None and self.member_online_steps is None:
                idx = torch.stack([self._draw(end, positives, g) for g in self.member_generators], 1)
            else:
                draws = [self._draw_in_stream(k, g, streams[k]) for k, g in enumerate(self.member_generators)]
                idx = torch.stack([d for d, _ in draws], 1)
                streams = [state for _, state in draws]
            batch = buffer.rows(idx)
            if open_rows is not None:
                self._mark_cut_episodes(batch, idx, open_rows)
            yield batch

    def _member_online(self, member: int) -> torch.Tensor:
        """Storage rows of the online transitions member ``member`` samples from, in order."""
        limit = None if self.member_online_steps is None else self.member_online_steps[member]
        members = None if self.buffer.info.member_seeds is None else member
        return self.buffer.prefix_online_index(limit, members)

    def _open_rows(self) -> list[torch.Tensor] | None:
        """Per member on a buffer prefix, the rows of the episodes its prefix cuts (None when
        no member's loss reads returns, or no member cuts one)."""
        buffer = self.buffer
        if self.member_online_steps is None or buffer.returns_spec is None:
            return None
        members = buffer.info.member_seeds is not None
        rows = [buffer.prefix_open_rows(t, k if members else None) for k, t in enumerate(self.member_online_steps)]
        return rows if any(r.numel() for r in rows) else None

    @staticmethod
    def _mark_cut_episodes(batch: TensorDictBase, idx: torch.Tensor, open_rows: list[torch.Tensor]) -> None:
        # A member on a prefix sees the episode the prefix cuts as a prefix alone does: running,
        # its returns PENDING (uncalibrated), though this buffer holds how it ended.
        returns = batch.get(MC_RETURN_KEY)
        for k, rows in enumerate(open_rows):
            if rows.numel():
                cut = torch.isin(idx[:, k], rows).unsqueeze(-1)
                returns[:, k] = torch.where(cut, torch.full_like(returns[:, k], PENDING), returns[:, k])

    def _draw(self, end: int, positives: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        spec = self.spec
        return sample_indices(end, spec.updates_per_step, spec.batch_size, positives, spec.positive_samples, generator,
                              num_offline=self.buffer.num_offline, offline_fraction=spec.offline_fraction)

    def _draw_in_stream(
        self, member: int, generator: torch.Generator, state: tuple[torch.Tensor, int]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, int]]:
        """Member ``member``'s batches from its view of a buffer of member streams: the offline
        rows, then its own online rows (up to its prefix). Drawn in the view as ``_draw`` draws
        from a buffer of one stream, then mapped to storage rows. ``state``: the positives found
        in the view so far and the view rows scanned; returned updated."""
        buffer = self.buffer
        online = self._member_online(member)
        end = buffer.num_offline + online.numel()
        positives, scanned = state
        if self.spec.positive_samples > 0 and end > scanned:
            new = torch.arange(scanned, end)
            reward = buffer.rows(_view_to_storage(new, online, buffer.num_offline)).get(("next", "reward")).reshape(-1)
            positives, scanned = torch.cat([positives, new[reward > 0]]), end
        idx = self._draw(end, positives, generator)
        return _view_to_storage(idx, online, buffer.num_offline), (positives, scanned)


def _view_to_storage(view: torch.Tensor, online: torch.Tensor, num_offline: int) -> torch.Tensor:
    """Rows of a view (the offline rows, then the rows ``online``) as storage rows."""
    if online.numel() == 0:
        return view
    return torch.where(view < num_offline, view, online[(view - num_offline).clamp(0, online.numel() - 1)])
