"""Two DDP processes on the CPU (gloo): the averaged gradients train the ranks as one process
on the union of their batches, a broken average is caught, each rank collects its own data,
the saved buffer holds both, and the files are written once."""

import json
import os
import signal
import socket
from functools import partial

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from tensordict import TensorDict

from ooo_lightning import distributed
from ooo_lightning.data.buffer import OfflineOnlineBuffer
from ooo_lightning.losses import IQLLoss
from ooo_lightning.modules import ExploiterModule
from runs import run, start, tiny_job, wait_for_checkpoint

UPDATES = 6


def _batch(rank: int, update: int, size: int = 32) -> TensorDict:
    """Rank ``rank``'s batch for ``update``: different data on each rank."""
    g = torch.Generator().manual_seed(1000 * update + rank)
    return TensorDict({
        "observation": torch.rand(size, 2, generator=g),
        "action": torch.rand(size, 2, generator=g) * 2 - 1,
        ("next", "observation"): torch.rand(size, 2, generator=g),
        ("next", "reward"): -torch.rand(size, 1, generator=g),
        ("next", "terminated"): torch.rand(size, 1, generator=g) < 0.1,
    }, batch_size=[size])


def _train(batches, distributed_run: bool) -> ExploiterModule:
    """The module's own update (every stage, its gradient averaging, its optimisers) on the
    given batches, outside a Trainer; weights from seed 0 on every rank, as Lightning seeds them."""
    torch.manual_seed(0)
    module = ExploiterModule("ooo/PointMassWall-v1", partial(IQLLoss, hidden_dims=(32, 32)), positive_samples=0,
                             batch_size=32, eval_every=0)
    module.manual_backward = lambda loss: loss.backward()  # what Lightning's strategy does on the CPU
    if distributed_run:
        object.__setattr__(module, "_ddp_model", object())  # set in on_fit_start under DDP
    optimizers = module.configure_optimizers()  # one fused Adam per term, as in a fit
    optimizers = dict(zip(module._optimizer_names, optimizers))
    for update, batch in enumerate(batches):
        module.update(batch, optimizers, update)
    return module


def _grads(module) -> dict[str, torch.Tensor]:
    """The gradients of the last update (each stage zeroes its own before its backward)."""
    return {name: p.grad.clone() for name, p in module.named_parameters() if p.grad is not None}


def _ddp_worker(rank: int, port: int, out: str, average: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        if not average:  # the break the end-of-phase check must catch
            distributed.all_reduce_mean_ = lambda tensors: None
        module = _train([_batch(rank, u) for u in range(UPDATES)], distributed_run=True)
        try:
            module.on_train_end()  # the end-of-phase check that the ranks' weights agree
            error = None
        except RuntimeError as err:
            error = str(err)
        state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        torch.save({"state": state, "grads": _grads(module), "error": error}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _two_ranks(tmp_path, average: bool) -> list[dict]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_ddp_worker, args=(port, str(tmp_path), average), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]


def test_averaged_gradients_train_the_ranks_as_one_process_on_the_union_of_their_batches(tmp_path):
    ranks = _two_ranks(tmp_path, average=True)
    assert ranks[0]["error"] is None and ranks[1]["error"] is None
    assert all(torch.equal(ranks[0]["state"][k], ranks[1]["state"][k]) for k in ranks[0]["state"])
    # Every loss term is a batch mean: the mean of the ranks' gradients is the gradient on
    # their union, so one process on the union makes the same updates (up to float rounding).
    union = [torch.cat([_batch(0, u), _batch(1, u)]) for u in range(UPDATES)]
    one_module = _train(union, distributed_run=False)
    one = one_module.state_dict()
    # Adam hides a gradient's scale (a sum instead of a mean moves the weights alike): the
    # last update's gradients are compared too.
    grads = _grads(one_module)
    assert grads.keys() == ranks[0]["grads"].keys() and len(grads) >= 6
    for name, grad in grads.items():
        torch.testing.assert_close(ranks[0]["grads"][name], grad, rtol=1e-4, atol=1e-6)
    start = _train([], distributed_run=False).state_dict()
    for name, value in one.items():
        torch.testing.assert_close(ranks[0]["state"][name], value, rtol=1e-4, atol=1e-6)
    alone = _train([_batch(0, u) for u in range(UPDATES)], distributed_run=False).state_dict()
    for net in ("actor", "qvalue", "value"):
        key = f"loss.{net}.net.0.weight"
        assert not torch.equal(one[key], start[key])  # every network trained...
        # ...and not as on one rank's batches alone: the average did something.
        assert not torch.allclose(alone[key], one[key], rtol=1e-3, atol=1e-5)


def test_ranks_whose_gradients_are_not_averaged_stop_with_the_divergence_error(tmp_path):
    ranks = _two_ranks(tmp_path, average=False)
    for rank in ranks:
        assert rank["error"] is not None and "the ranks' weights diverged" in rank["error"]


def test_two_process_ddp_run_keeps_both_ranks_transitions_of_every_member(tmp_path, tiny_dataset):
    root = tmp_path / "ddp"
    # Both phases as two members (seeds): each rank holds both members, each collecting from
    # its own environment per rank, and averages their gradients.
    done = run(tiny_job(root, tiny_dataset, "--trainer.devices=2", "--trainer.strategy=ddp",
                        "--model.init_args.explorer.init_args.seeds=[5,6]",
                        "--model.init_args.exploiter.init_args.seeds=[5,6]", online_steps=200))
    buffer = OfflineOnlineBuffer.load(root / "buffer")
    replay, info = buffer.replay, buffer.info
    # A block per member and rank, member by member: member 5 on ranks 0, 1, then member 6.
    assert (info.member_seeds, info.online_segments) == ([5, 6], [200, 200, 200, 200])
    assert info.num_online == 800 and len(replay) == info.num_offline + 800
    rows = replay.storage[torch.arange(len(replay))]
    blocks = [rows[start:end]["observation"][:50] for start, end in info.segments()]
    # Every member on every rank ran its own environment seed: their episodes differ from the first step.
    assert all(not torch.equal(blocks[i], blocks[j]) for i in range(4) for j in range(i))
    results = json.loads((root / "results.json").read_text())
    # Each member's steps, over both ranks.
    assert results["explorer"]["env_steps"] == 400 and results["exploiter"]["env_steps"] == 400
    for phase in ("explorer", "exploiter"):
        assert [m["seed"] for m in results[phase]["members"]] == [5, 6]
    # Rank 0 alone reports; the other rank wrote no run directory of its own.
    assert done.stdout.count("run directory:") == 1
    assert not (tmp_path / "ddp-v1").exists()
    # Each phase ends with the check that the ranks' weights agree (a RuntimeError otherwise,
    # as test_ranks_whose_gradients_are_not_averaged_stop_with_the_divergence_error shows).
    assert "diverged" not in done.stderr


def test_a_two_process_count_bonus_counts_every_ranks_transitions(tmp_path, tiny_dataset):
    """The count bonus under DDP: each online step every rank counts the new transitions of
    both ranks, so rank 0's table (in the explorer's checkpoint) holds the offline data once
    and every online transition of both ranks, and the ranks' bonuses agree."""
    root = tmp_path / "ddp"
    run(tiny_job(root, tiny_dataset, "--trainer.devices=2", "--trainer.strategy=ddp", online_steps=200,
                 config="ooo_iql_counts.yaml"))
    info = OfflineOnlineBuffer.load(root / "buffer").info
    assert info.online_segments == [200, 200]
    counts = torch.load(root / "explorer" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]["bonus.counts"]
    assert int(counts.sum()) == info.num_offline + 400


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
    buffer = OfflineOnlineBuffer.load(root / "buffer")
    replay, info = buffer.replay, buffer.info
    assert info.online_segments == [1200, 1200]
    rows = replay.storage[torch.arange(len(replay))]["observation"]
    for rank, (start_row, _) in enumerate(info.segments()):
        # Each rank got its own rows back, and went on collecting after them.
        assert torch.equal(rows[start_row : start_row + saved.shape[1]], saved[rank])
