"""Two DDP processes on the CPU (gloo): each rank collects its own data, the saved buffer holds
both, the ranks' weights stay equal, and the files are written once."""

import json
import os
import signal

import torch

from ooo_lightning import distributed
from ooo_lightning.data.buffer import load_buffer
from runs import run, start, tiny_job, wait_for_checkpoint


def test_two_process_ddp_run_keeps_both_ranks_transitions(tmp_path, tiny_dataset):
    root = tmp_path / "ddp"
    done = run(tiny_job(root, tiny_dataset, "--trainer.devices=2", "--trainer.strategy=ddp", online_steps=400))
    replay, info = load_buffer(root / "buffer")
    assert info.online_segments == [400, 400]
    assert info.num_online == 800 and len(replay) == info.num_offline + 800
    rows = replay.storage[torch.arange(len(replay))]
    rank0, rank1 = (rows[start:end] for start, end in info.segments())
    # Each rank ran its own environment seed: their episodes differ from the first step.
    assert not torch.equal(rank0["observation"][:50], rank1["observation"][:50])
    results = json.loads((root / "results.json").read_text())
    assert results["explorer"]["env_steps"] == 800 and results["exploiter"]["env_steps"] == 800
    # Rank 0 alone reports; the other rank wrote no run directory of its own.
    assert done.stdout.count("run directory:") == 1
    assert not (tmp_path / "ddp-v1").exists()
    # The run ends with a check that the ranks' weights agree (a RuntimeError otherwise);
    # reaching here means it passed for both phases.
    assert "diverged" not in done.stderr


def test_single_process_collectives_are_identities():
    grads = [torch.ones(3), torch.full((2, 2), 2.0)]
    distributed.all_reduce_mean_(grads)
    assert torch.equal(grads[1], torch.full((2, 2), 2.0))
    assert distributed.all_gather_tensor(torch.arange(3)).shape == (1, 3)
    assert distributed.all_gather_objects({"a": 1}) == [{"a": 1}]
    assert (distributed.rank(), distributed.world_size()) == (0, 1)


def test_a_killed_ddp_run_resumes_with_each_ranks_data(tmp_path, tiny_dataset):
    root = tmp_path / "ddp"
    job = tiny_job(root, tiny_dataset, "--trainer.devices=2", "--trainer.strategy=ddp", "--checkpoint.every_steps=5",
                   online_steps=1200)
    proc = start(job)
    try:
        ckpt = wait_for_checkpoint(root / "explorer" / "checkpoints" / "last.ckpt", proc, after_step=10)
        os.killpg(proc.pid, signal.SIGKILL)  # both ranks, as a lost node would
    finally:
        proc.wait(30)
    saved = ckpt["ReplayDataModule"]["online_rows"]["observation"]  # [rank, rows, obs]
    assert saved.shape[0] == 2 and len(ckpt["ooo_rank_states"]) == 2

    run([*job, "--ckpt_path=last"])
    replay, info = load_buffer(root / "buffer")
    assert info.online_segments == [1200, 1200]
    rows = replay.storage[torch.arange(len(replay))]["observation"]
    for rank, (start_row, _) in enumerate(info.segments()):
        # Each rank got its own rows back, and went on collecting after them.
        assert torch.equal(rows[start_row : start_row + saved.shape[1]], saved[rank])
