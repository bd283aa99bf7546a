"""What stacking K agents in one call buys on this machine (issue 14's question), before any of
it is built: the forward and backward of every loss term for K independent agents, one after
another against all at once (``torch.func.vmap`` over their stacked weights), and how much of
the machine's matrix-product speed one agent's update uses.

    python benchmarks/stacked_agents.py [--loss iql] [--agents 1 5] [--rounds 30] [--rows 1280]

Prints, per K: milliseconds per round of K updates both ways and their ratio, then the FLOPs of
one update and the rate it runs at beside a 2048 sgemm measured in the same run. ``--rows``
times one agent on larger batches: K x 256 rows is K members' arithmetic without any stacking
machinery, the floor a member axis could reach. No optimiser
step and no sampling cost are included: this is the part that stacking can change.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from tensordict import TensorDict
from torch.func import functional_call, stack_module_state, vmap
from torch.utils.flop_counter import FlopCounterMode

from throughput import LOSSES, random_transitions

OBS, ACT, ROWS = 2, 2, 20000
KEYS = ("observation", "action", ("next", "observation"), ("next", "reward"), ("next", "terminated"), "mc_return")


def _total(loss: torch.nn.Module, batch: TensorDict) -> torch.Tensor:
    out = loss(batch)
    return sum(out[k] for k in out.keys() if k.startswith("loss_"))


def one_after_another(make, data: TensorDict, agents: int, rounds: int, batch_size: int) -> float:
    losses = [make() for _ in range(agents)]
    start = time.perf_counter()
    for _ in range(rounds):
        for loss in losses:
            _total(loss, data[torch.randint(0, ROWS, (batch_size,))]).backward()
    return (time.perf_counter() - start) / rounds


def all_at_once(make, data: TensorDict, agents: int, rounds: int, batch_size: int) -> float:
    losses = [make() for _ in range(agents)]
    params, buffers = stack_module_state(losses)
    template = copy.deepcopy(losses[0]).to("meta")

    def one(p, b, *columns):
        batch = TensorDict(dict(zip(KEYS, columns)), batch_size=[columns[0].shape[0]])
        out = functional_call(template, (p, b), (batch,))
        return sum(v for k, v in out.items() if k.startswith("loss_"))

    stacked = vmap(one, randomness="different")
    start = time.perf_counter()
    for _ in range(rounds):
        batch = data[torch.randint(0, ROWS, (agents, batch_size))]
        stacked(params, buffers, *(batch.get(k) for k in KEYS)).sum().backward()
    return (time.perf_counter() - start) / rounds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loss", choices=sorted(LOSSES), default="iql")
    p.add_argument("--agents", type=int, nargs="+", default=[1, 5])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--rows", type=int, nargs="*", default=[],
                   help="also time one agent on these batch sizes (e.g. 1280 = 5 x 256)")
    args = p.parse_args()
    torch.manual_seed(0)
    data = random_transitions(ROWS, OBS, ACT)

    def make():
        return LOSSES[args.loss](OBS, ACT)

    print(f"# {args.loss}, batch {args.batch_size}, {torch.get_num_threads()} threads")
    for k in args.agents:
        apart = one_after_another(make, data, k, args.rounds, args.batch_size)
        together = all_at_once(make, data, k, args.rounds, args.batch_size)
        print(f"K={k}: one after another {apart * 1e3:.1f} ms, all at once {together * 1e3:.1f} ms per round "
              f"(all at once / one after another = {together / apart:.2f})")
    if args.rows:
        # One agent on K x 256 rows: K members' arithmetic with nothing stacked in the way.
        base = one_after_another(make, data, 1, args.rounds, args.batch_size)
        for rows in args.rows:
            t = one_after_another(make, data, 1, args.rounds, rows)
            print(f"one agent, batch {rows}: {t * 1e3:.1f} ms ({t / base:.2f}x batch {args.batch_size})")
    loss = make()
    with FlopCounterMode(display=False) as counter:
        _total(loss, data[torch.randint(0, ROWS, (args.batch_size,))]).backward()
    flops = counter.get_total_flops()
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    start = time.perf_counter()
    for _ in range(10):
        a @ b
    sgemm = 2 * 2048**3 * 10 / (time.perf_counter() - start)
    update = one_after_another(make, data, 1, args.rounds, args.batch_size)
    print(f"one update: {flops / 1e6:.0f} MFLOP in {update * 1e3:.2f} ms = {flops / update / 1e9:.0f} GFLOP/s; "
          f"2048 sgemm {sgemm / 1e9:.0f} GFLOP/s; the update uses {flops / update / sgemm:.0%} of it")


if __name__ == "__main__":
    main()
