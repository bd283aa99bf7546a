import pytest
import torch
from tensordict import TensorDict

from ooo_lightning.config_checks import ConfigError
from ooo_lightning.data.schema import DatasetError
from ooo_lightning.data.buffer import BufferInfo, OfflineOnlineBuffer
from ooo_lightning.data.returns import MC_RETURN_KEY, ReturnSpec


def _transitions(n: int, start: int = 0) -> TensorDict:
    obs = torch.arange(start, start + n, dtype=torch.float32).reshape(n, 1).repeat(1, 2)
    return TensorDict(
        {
            "observation": obs,
            "action": torch.zeros(n, 2),
            ("next", "observation"): obs + 1,
            ("next", "reward"): (torch.arange(start, start + n) % 7 == 0).float().reshape(n, 1),
            ("next", "terminated"): torch.zeros(n, 1, dtype=torch.bool),
            ("next", "truncated"): torch.zeros(n, 1, dtype=torch.bool),
            ("next", "done"): torch.zeros(n, 1, dtype=torch.bool),
        },
        batch_size=[n],
    )


def _buffer(n_offline: int, n_online: int) -> OfflineOnlineBuffer:
    """Row i observes (i, i); every 7th row is rewarding."""
    buffer = OfflineOnlineBuffer.empty(BufferInfo(n_offline + n_online, n_offline, n_online, 2, 2))
    buffer.replay.extend(_transitions(n_offline + n_online))
    return buffer


def test_save_load_round_trip(tmp_path):
    buffer = OfflineOnlineBuffer.empty(BufferInfo(capacity=100, num_offline=30, num_online=0, observation_dim=2, action_dim=2, env_id="x"))
    buffer.replay.extend(_transitions(30))
    buffer.add_online(_transitions(12, start=30))
    buffer.save(tmp_path / "buffer")
    loaded = OfflineOnlineBuffer.load(tmp_path / "buffer")
    assert loaded.info == BufferInfo(capacity=100, num_offline=30, num_online=12, observation_dim=2, action_dim=2, env_id="x")
    assert len(loaded) == 42
    original = buffer.rows_between(0, 42)
    again = loaded.rows_between(0, 42)
    for key in original.keys(include_nested=True, leaves_only=True):
        assert torch.equal(original.get(key), again.get(key)), key
    # still appendable after loading
    loaded.add_online(_transitions(3, start=42))
    assert len(loaded) == 45


def test_load_rejects_a_folder_that_is_not_a_buffer(tmp_path):
    with pytest.raises(DatasetError, match="not a saved ooo-lightning replay buffer"):
        OfflineOnlineBuffer.load(tmp_path)


def test_load_detects_a_count_mismatch(tmp_path):
    buffer = OfflineOnlineBuffer.empty(BufferInfo(10, 5, 3, 2, 2))
    buffer.replay.extend(_transitions(5))
    buffer.save(tmp_path / "b")
    with pytest.raises(DatasetError, match="damaged"):
        OfflineOnlineBuffer.load(tmp_path / "b")


def test_reserve_grows_a_full_buffer_and_keeps_its_rows():
    buffer = _buffer(10, 5)
    buffer.reserve(20)
    assert buffer.info.capacity == 35 and len(buffer) == 15
    buffer.add_online(_transitions(20, start=15))
    assert buffer.rows_between(0, 35)["observation"][:, 0].tolist() == list(range(35))


def test_a_prefix_is_a_buffer_of_its_own_and_the_whole_buffer_is_itself():
    buffer = _buffer(10, 12)
    assert buffer.prefix(None) is buffer and buffer.prefix(12) is buffer
    prefix = buffer.prefix(4)
    assert (len(prefix), prefix.num_online, prefix.info.online_segments) == (14, 4, None)
    assert prefix.rows_between(0, 14)["observation"][:, 0].tolist() == list(range(14))
    assert len(buffer) == 22  # untouched


def _two_rank_buffer() -> OfflineOnlineBuffer:
    # 10 offline rows, then rank 0's 6 online rows and rank 1's 6 (as a DDP explorer leaves them).
    buffer = _buffer(10, 12)
    buffer.info.online_segments = [6, 6]
    return buffer


def test_a_prefix_of_a_two_rank_buffer_takes_the_first_steps_of_each_rank():
    prefix = _two_rank_buffer().prefix(4)
    obs = prefix.rows_between(0, len(prefix))["observation"][:, 0].tolist()
    assert obs == [*range(10), 10, 11, 16, 17]  # offline, rank 0's first 2, rank 1's first 2
    assert (prefix.num_online, prefix.info.online_segments) == (4, [2, 2])


def test_returns_do_not_run_across_the_ranks_blocks():
    buffer = _two_rank_buffer()
    done = buffer.rows_between(0, 22)[("next", "done")]
    done[18] = True  # rank 0's block ends mid-episode; rank 1's first episode ends at row 18
    buffer.replay.storage.set(slice(0, 22), buffer.rows_between(0, 22).set(("next", "done"), done), set_cursor=False)
    buffer.use_returns(ReturnSpec(gamma=0.5))
    returns = buffer.rows_between(0, 22)[MC_RETURN_KEY].reshape(-1)
    # Rank 0's unfinished episode stays pending: it is not joined to rank 1's finished one.
    assert torch.isinf(returns[10:16]).all()
    assert torch.isfinite(returns[16:19]).all() and torch.isinf(returns[19:]).all()


def test_online_rows_added_later_get_their_returns_once_their_episode_ends():
    buffer = _buffer(4, 0)
    buffer.reserve(4)
    buffer.use_returns(ReturnSpec(gamma=0.5))
    rows = _transitions(3, start=4)
    rows.set(("next", "reward"), torch.ones(3, 1))
    buffer.add_online(rows)
    assert torch.isinf(buffer.rows_between(4, 7)[MC_RETURN_KEY]).all()  # the episode is still running
    end = _transitions(1, start=7)
    end.set(("next", "reward"), torch.ones(1, 1))
    end.set(("next", "done"), torch.ones(1, 1, dtype=torch.bool))
    buffer.add_online(end)
    assert buffer.rows_between(4, 8)[MC_RETURN_KEY].reshape(-1).tolist() == [1.875, 1.75, 1.5, 1.0]


def _member_buffer(steps_per_call=(3, 2)) -> OfflineOnlineBuffer:
    """10 offline rows, then two members' streams as an explorer with seeds [4, 7] collects
    them: each call appends [2 members, F steps]; member k's step t observes 100 (k + 1) + t."""
    buffer = OfflineOnlineBuffer.empty(BufferInfo(10 + 2 * sum(steps_per_call), 10, 0, 2, 2))
    buffer.replay.extend(_transitions(10))
    buffer.info.member_seeds = [4, 7]
    done = 0
    for steps in steps_per_call:
        frames = torch.stack([_transitions(steps, 100 * (k + 1) + done) for k in range(2)])  # [members, steps]
        buffer.add_online(frames)
        done += steps
    return buffer


def _first_obs(buffer, index):
    return buffer.rows(index)["observation"][:, 0].long().tolist()


def test_member_streams_are_interleaved_while_collected_and_a_block_each_once_split():
    buffer = _member_buffer()
    assert buffer.num_online == 10
    assert _first_obs(buffer, torch.arange(10, 20)) == [100, 200, 101, 201, 102, 202, 103, 203, 104, 204]
    for k in range(2):
        assert _first_obs(buffer, buffer.member_online_index(k)) == [100 * (k + 1) + t for t in range(5)]
    buffer.split_members()
    assert buffer.info.online_segments == [5, 5] and len(buffer) == 20
    assert _first_obs(buffer, torch.arange(10, 20)) == [100, 101, 102, 103, 104, 200, 201, 202, 203, 204]
    for k in range(2):
        assert _first_obs(buffer, buffer.member_online_index(k)) == [100 * (k + 1) + t for t in range(5)]
    prefix = buffer.prefix(2)  # each member's first 2 steps
    assert _first_obs(prefix, torch.arange(10, 14)) == [100, 101, 200, 201]
    assert prefix.info.member_seeds == [4, 7] and prefix.info.online_segments == [2, 2]


def test_member_streams_refuse_rows_not_shaped_per_member():
    buffer = _member_buffer()
    buffer.reserve(4)
    with pytest.raises(RuntimeError, match=r"\[members \(2\), steps\]"):
        buffer.add_online(_transitions(4))


def test_each_member_stream_gets_its_own_returns_while_interleaved_and_the_same_once_split():
    buffer = OfflineOnlineBuffer.empty(BufferInfo(10 + 2 * 5, 10, 0, 2, 2))
    buffer.replay.extend(_transitions(10))
    buffer.info.member_seeds = [4, 7]
    buffer.use_returns(ReturnSpec(gamma=0.5))  # as the explorer: set before collecting
    for start, steps in ((0, 2), (2, 3)):
        frames = torch.stack([_transitions(steps, 100 * (k + 1) + start) for k in range(2)])
        frames.set(("next", "reward"), torch.ones(2, steps, 1))
        # Member 0's episode ends at its step 2; member 1's is still running.
        frames[0].get(("next", "done"))[2 - start:3 - start] = True
        buffer.add_online(frames)

    def member_returns(b):
        return [b.rows(b.member_online_index(k))[MC_RETURN_KEY].reshape(-1).tolist() for k in range(2)]

    inf = float("-inf")
    expected = [[1.75, 1.5, 1.0, inf, inf], [inf] * 5]  # not run across the members' interleaved rows
    assert member_returns(buffer) == expected
    buffer.split_members()
    buffer.use_returns(ReturnSpec(gamma=0.5))  # phase 3 computes them anew, over the blocks
    assert member_returns(buffer) == expected


def test_a_buffer_of_member_streams_round_trips_and_resumes_with_every_members_episode_cut(tmp_path):
    buffer = _member_buffer()
    buffer.split_members()
    loaded = OfflineOnlineBuffer.load(buffer.save(tmp_path / "buffer"))
    assert (loaded.info.member_seeds, loaded.info.online_segments) == ([4, 7], [5, 5])
    state = _member_buffer().online_state(torch.device("cpu"))  # mid-collection, interleaved
    fresh = OfflineOnlineBuffer.empty(BufferInfo(30, 10, 0, 2, 2))
    fresh.replay.extend(_transitions(10))
    fresh.info.member_seeds = [4, 7]
    fresh.load_online_state(state)
    truncated = fresh.rows_between(10, 20).get(("next", "truncated")).reshape(-1).tolist()
    assert truncated == [False] * 8 + [True, True]  # each member's last row: its episode was cut


def test_two_ranks_of_members_gather_into_a_block_per_member_and_rank(monkeypatch):
    """Under DDP each rank collects its members interleaved; gathered, member k's data is its
    blocks on every rank, in rank order: prefixes share T over them, returns stop at each."""
    from ooo_lightning import distributed

    buffer = _member_buffer()  # rank 0's; rank 1 collected the same steps, observing 1000 more
    rank1 = buffer.online_rows()
    rank1.set("observation", rank1.get("observation") + 1000)
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed, "all_gather_objects", lambda obj: [obj, obj])
    monkeypatch.setattr(distributed, "all_gather_rows", lambda rows, device: torch.stack([rows, rank1]))
    buffer.gather_ranks(torch.device("cpu"))
    buffer.split_members()  # split already: nothing to do
    assert buffer.info.online_segments == [5, 5, 5, 5] and buffer.num_online == 20
    for k in range(2):
        own = [100 * (k + 1) + t for t in range(5)]
        assert _first_obs(buffer, buffer.member_online_index(k)) == own + [1000 + o for o in own]
    prefix = buffer.prefix(3)  # each member's first 3 steps: 2 from rank 0, 1 from rank 1
    assert _first_obs(prefix, torch.arange(10, 16)) == [100, 101, 1100, 200, 201, 1200]
    assert prefix.info.online_segments == [2, 1, 2, 1] and prefix.online_steps == 3
    assert [s.tolist() for s in buffer.online_streams()] == [list(range(a, a + 5)) for a in (10, 15, 20, 25)]
