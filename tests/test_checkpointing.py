"""Resume after a crash, atomic checkpoints, and one seed giving one result."""

import json
import random
import signal

import numpy as np
import pytest
import torch

from ooo_lightning.checkpointing import AtomicCheckpointIO, CheckpointSettings, capture_rng, resolve_resume, restore_rng
from ooo_lightning.config_checks import ConfigError
from ooo_lightning.data.buffer import OfflineOnlineBuffer
from resume_probe import callback_arg
from runs import run, start, tiny_job, wait_for_checkpoint

OFFLINE_STEPS = 10  # 80 offline updates / 8 per training step
ONLINE_STEPS = 1200  # 150 online training steps: long enough to be killed part-way


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_dataset):
    root = tmp_path_factory.mktemp("uninterrupted") / "run"
    run(tiny_job(root, tiny_dataset, online_steps=ONLINE_STEPS))
    return root


def _rows(buffer_dir):
    buffer = OfflineOnlineBuffer.load(buffer_dir)
    return buffer.rows_between(0, len(buffer)), buffer.info


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_a_run_killed_online_resumes_and_loses_no_transition(tmp_path, tiny_dataset, uninterrupted, sig):
    steps = ONLINE_STEPS
    job = tiny_job(tmp_path / "killed", tiny_dataset, "--checkpoint.every_steps=5", online_steps=steps)
    proc = start(job)
    last = tmp_path / "killed" / "explorer" / "checkpoints" / "last.ckpt"
    try:
        seen = wait_for_checkpoint(last, proc, after_step=OFFLINE_STEPS)
        proc.send_signal(sig)
    finally:
        code = proc.wait(60)
    ckpt = torch.load(last, weights_only=True)
    if sig == signal.SIGTERM:
        # Stopped at the end of a step, which it saved, and said so by its exit status.
        assert code == 143 and ckpt["ooo_steps_done"] >= seen["ooo_steps_done"]
    assert not (tmp_path / "killed" / "results.json").exists()
    saved_rows = ckpt["ReplayDataModule"]["online_rows"]
    collected = saved_rows["observation"].shape[1]
    assert 0 < collected < steps

    run([*job, "--ckpt_path=last"])
    rows, info = _rows(tmp_path / "killed" / "buffer")
    results = json.loads((tmp_path / "killed" / "results.json").read_text())
    # Same size as an uninterrupted run: every online step of the config, after the offline data.
    whole_rows, whole_info = _rows(uninterrupted / "buffer")
    assert (info.num_offline, info.num_online, len(rows)) == (whole_info.num_offline, whole_info.num_online, len(whole_rows))
    assert info.num_online == steps and results["explorer"]["env_steps"] == steps
    # Nothing collected before the checkpoint is lost: its rows open the online part unchanged,
    # but for the episode the crash cut, which now ends there in a time-out.
    online = rows[info.num_offline : info.num_offline + collected]
    assert torch.equal(online["observation"], saved_rows["observation"][0])
    assert torch.equal(online["action"], saved_rows["action"][0])
    if not bool(saved_rows["next/done"][0][-1]):
        assert bool(online["next", "truncated"][-1]) and not bool(online["next", "terminated"][-1])
    assert set(results) == {"explorer", "exploiter"}


def _same(a, b) -> bool:
    """Equality of nested checkpoint contents: dicts, lists, tuples, tensors (exact) and numbers."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


def _final_state(run_dir, phase):
    ckpt = torch.load(run_dir / phase / "checkpoints" / "last.ckpt", weights_only=True)
    return ckpt["state_dict"], ckpt["optimizer_states"]


@pytest.mark.parametrize("phase, kill_at, explicit", [("explorer", 7, False), ("exploiter", 12, True)],
                         ids=["explorer-last", "exploiter-explicit-ckpt"])
def test_a_killed_phase_resumes_its_exact_state_and_trains_as_if_never_stopped(tmp_path, tiny_dataset, uninterrupted,
                                                                               phase, kill_at, explicit):
    """Killed (SIGKILL, at a step between two checkpoints) during the explorer's offline
    training or the exploiter's, with no environment running: the resumed phase starts from
    exactly the weights, optimiser moments, RNG states, bonus statistics and counters of its
    checkpoint, and from there trains as the uninterrupted run did, to the same final agents,
    buffer and results. Resumed from ``last`` or from a checkpoint file named explicitly."""
    root = tmp_path / "run"
    job = tiny_job(root, tiny_dataset, "--checkpoint.every_steps=5", online_steps=ONLINE_STEPS)
    run([*job, callback_arg(kill_phase=phase, kill_at_step=kill_at)], returncode=-signal.SIGKILL)
    checkpoints = root / phase / "checkpoints"
    saved = torch.load(checkpoints / "last.ckpt", weights_only=True)
    assert saved["ooo_steps_done"] == 5 * (kill_at // 5)  # the last checkpoint before the kill
    resume = "last"
    if explicit:
        resume = str(checkpoints / "before_kill.ckpt")
        (checkpoints / "last.ckpt").rename(resume)
    run([*job, f"--ckpt_path={resume}", callback_arg(record_dir=str(tmp_path / "restored"))])

    restored = torch.load(tmp_path / "restored" / f"{phase}_start.pt", weights_only=False)
    assert _same(restored["state_dict"], saved["state_dict"])
    if phase == "explorer":  # the bonus's running statistics are module state too
        assert {"bonus.observation_stats.var", "bonus.normaliser_stats.var"} <= saved["state_dict"].keys()
    assert _same(restored["optimizer_states"], saved["optimizer_states"])
    assert len(saved["optimizer_states"]) == (4 if phase == "explorer" else 3)  # actor, critic, value (+ bonus)
    assert _same(restored["rng"], saved["ooo_rank_states"][0]["rng"])
    assert (restored["num_updates"], restored["steps_done"]) == (saved["ooo_num_updates"], saved["ooo_steps_done"])

    # The next updates are those of the run that was never stopped: same agents at the end.
    for name in ("explorer", "exploiter"):
        assert _same(_final_state(root, name), _final_state(uninterrupted, name)), name
    assert (root / "results.json").read_text() == (uninterrupted / "results.json").read_text()
    rows, _ = _rows(root / "buffer")
    whole_rows, _ = _rows(uninterrupted / "buffer")
    assert (rows == whole_rows).all()


def test_resume_skips_finished_phases_and_continues_the_next(tmp_path, tiny_dataset):
    job = tiny_job(tmp_path / "run", tiny_dataset, "--checkpoint.every_steps=5")
    run(job)
    before = json.loads((tmp_path / "run" / "results.json").read_text())
    # As if phase 3 had died after its checkpoint: its result is gone, its last.ckpt is there.
    del before["exploiter"]
    (tmp_path / "run" / "results.json").write_text(json.dumps(before))
    explorer_ckpt = (tmp_path / "run" / "explorer" / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    out = run([*job, "--ckpt_path=last"])
    after = json.loads((tmp_path / "run" / "results.json").read_text())
    assert after["explorer"] == before["explorer"]
    assert "exploiter" in after
    assert (tmp_path / "run" / "explorer" / "checkpoints" / "last.ckpt").stat().st_mtime_ns == explorer_ckpt
    assert "explorer: finished in the earlier run" in out.stderr
    assert "exploiter: resuming from" in out.stderr
    assert not (tmp_path / "run-v1").exists()  # resumed in place


def test_last_ckpt_holds_the_end_of_each_phase_after_periodic_saves(tmp_path, tiny_dataset):
    """A phase's last.ckpt is its final state also when its step count is no multiple of the
    checkpoint period (under Lightning 2.6 it kept the last periodic save: step 56 of 60)."""
    root = tmp_path / "run"
    run(tiny_job(root, tiny_dataset, "--checkpoint.every_steps=7"))
    for phase, steps in (("explorer", 80 // 8 + 400 // 8), ("exploiter", 160 // 8)):
        ckpt = torch.load(root / phase / "checkpoints" / "last.ckpt", weights_only=True)
        assert ckpt["ooo_steps_done"] == steps, phase


def test_one_seed_gives_one_result(tmp_path, tiny_dataset, uninterrupted):
    first, second = uninterrupted, tmp_path / "second"
    run(tiny_job(second, tiny_dataset, online_steps=ONLINE_STEPS))
    assert (first / "results.json").read_text() == (second / "results.json").read_text()
    rows_a, _ = _rows(first / "buffer")
    rows_b, _ = _rows(second / "buffer")
    assert (rows_a == rows_b).all()  # the same online transitions...
    weights = [torch.load(d / "exploiter" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for d in (first, second)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # ...and the same final agent


def test_rng_states_round_trip():
    state = capture_rng()
    expected = (torch.rand(3), np.random.rand(2).tolist(), random.random())
    restore_rng(state)
    again = (torch.rand(3), np.random.rand(2).tolist(), random.random())
    assert torch.equal(expected[0], again[0]) and expected[1:] == again[1:]


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": torch.tensor(1)}, path)

    def dies(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(torch, "save", dies)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": torch.tensor(2)}, path)
    monkeypatch.undo()
    assert int(torch.load(path, weights_only=True)["step"]) == 1


def test_resume_arguments_are_checked(tmp_path):
    with pytest.raises(FileNotFoundError, match="no earlier run"):
        resolve_resume("last", tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        resolve_resume(str(tmp_path / "x.ckpt"), tmp_path)
    with pytest.raises(ConfigError, match="every_steps"):
        CheckpointSettings(every_steps=0)


def test_the_time_schedule_writes_checkpoints_during_a_real_phase(tmp_path, tiny_dataset):
    """``checkpoint.every_minutes`` (the default schedule) in a real run: a run killed at the
    explorer's 7th step, before its phase ends, has a checkpoint of an earlier step."""
    root = tmp_path / "run"
    job = tiny_job(root, tiny_dataset, "--checkpoint.every_minutes=0.0001")  # 6 ms: about every step
    run([*job, callback_arg(kill_phase="explorer", kill_at_step=7)], returncode=-signal.SIGKILL)
    saved = torch.load(root / "explorer" / "checkpoints" / "last.ckpt", weights_only=True)
    assert 1 <= saved["ooo_steps_done"] <= 7


def test_time_based_checkpoints_are_written_during_a_phase(monkeypatch, tmp_path):
    """The default schedule (every_minutes): Lightning's own time interval is skipped under
    manual optimisation, so PhaseCheckpoint keeps the clock itself. A step after the interval
    saves, the steps before it do not."""
    import types

    from ooo_lightning import checkpointing
    from ooo_lightning.checkpointing import PhaseCheckpoint

    clock = [1000.0]
    monkeypatch.setattr(checkpointing.time, "monotonic", lambda: clock[0])
    callback = PhaseCheckpoint(tmp_path, CheckpointSettings(every_minutes=2.0))
    saves = []
    monkeypatch.setattr(callback, "_should_skip_saving_checkpoint", lambda trainer: False)
    monkeypatch.setattr(callback, "_monitor_candidates", lambda trainer: {})
    monkeypatch.setattr(callback, "_save_last_checkpoint", lambda trainer, candidates: saves.append(clock[0]))
    module = types.SimpleNamespace(steps_done=0, automatic_optimization=False)
    for minute in (0.0, 1.0, 1.9, 2.1, 3.0, 4.2):
        clock[0] = 1000.0 + 60 * minute
        callback.on_train_batch_end(None, module, None, None, 0)
    assert saves == [1000.0 + 60 * 2.1, 1000.0 + 60 * 4.2]


def test_exploiter_members_killed_mid_phase_resume_as_if_never_stopped(tmp_path, tiny_dataset):
    """With ``seeds`` (two members trained as one), each member's generator (its batches and
    its loss's noise) is in the checkpoint: killed between two checkpoints and resumed, the
    members end where an uninterrupted run's end."""
    members = "--model.init_args.exploiter.init_args.seeds=[2,3]"
    whole = tmp_path / "whole"
    run(tiny_job(whole, tiny_dataset, members, config="ooo_calql.yaml"))
    root = tmp_path / "run"
    job = tiny_job(root, tiny_dataset, members, "--checkpoint.every_steps=5", config="ooo_calql.yaml")
    run([*job, callback_arg(kill_phase="exploiter", kill_at_step=12)], returncode=-signal.SIGKILL)
    saved = torch.load(root / "exploiter" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["ooo_steps_done"] == 10 and len(saved["ooo_rank_states"][0]["member_rng"]) == 2
    run([*job, "--ckpt_path=last"])
    assert _same(_final_state(root, "exploiter"), _final_state(whole, "exploiter"))
    results = json.loads((root / "results.json").read_text())
    assert [m["seed"] for m in results["exploiter"]["members"]] == [2, 3]
    assert (root / "results.json").read_text() == (whole / "results.json").read_text()


def test_explorer_members_killed_online_resume_and_lose_no_transition(tmp_path, tiny_dataset):
    """Explorer members collect interleaved: the checkpoint keeps every member's rows, the
    resumed run cuts each member's running episode there and collects the rest, and the saved
    buffer holds each member's whole stream as a block of its own."""
    seeds = ["--model.init_args.explorer.init_args.seeds=[2,3]", "--model.init_args.exploiter.init_args.seeds=[2,3]"]
    root = tmp_path / "run"
    job = tiny_job(root, tiny_dataset, *seeds, "--checkpoint.every_steps=5", online_steps=400)
    run([*job, callback_arg(kill_phase="explorer", kill_at_step=OFFLINE_STEPS + 27)], returncode=-signal.SIGKILL)
    saved = torch.load(root / "explorer" / "checkpoints" / "last.ckpt", weights_only=True)
    rows = saved["ReplayDataModule"]["online_rows"]
    assert saved["ooo_steps_done"] == OFFLINE_STEPS + 25 and rows["observation"].shape[1] == 2 * 25 * 8
    assert len(saved["ooo_rank_states"][0]["episode_stats"]) == 2
    run([*job, "--ckpt_path=last"])
    buffer = OfflineOnlineBuffer.load(root / "buffer")
    assert (buffer.info.member_seeds, buffer.info.online_segments) == ([2, 3], [400, 400])
    for k in range(2):
        mine = buffer.rows(buffer.member_online_index(k))
        before = rows["observation"][0][k::2]  # member k's rows at the checkpoint
        assert torch.equal(mine["observation"][: len(before)], before)
        assert bool(mine["next", "done"][len(before) - 1])  # its running episode was cut there
    results = json.loads((root / "results.json").read_text())
    assert [m["seed"] for m in results["exploiter"]["members"]] == [2, 3]
