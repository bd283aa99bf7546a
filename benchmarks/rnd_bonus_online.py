"""How large is the RND bonus where an online explorer has not been yet? Replayed from a run.

    python benchmarks/rnd_bonus_online.py --buffer RUN_DIR/buffer [--utd 2] [--random-steps 5000]
        [--bonus-scale 1] [--clip 1] [--variants "error_std" "error_std, ema 0.01" "bonus_std"]

Replays a saved point-mass-wall buffer in its collection order: the offline rows are there
from the start; online state t arrives at environment step t; after ``--random-steps`` every
step makes ``--utd`` bonus updates on a batch of 256 drawn uniformly from what has arrived (the
explorer's sampling; the predictor trains on a random 25% of each batch). Every
``--every`` steps it prints ``bonus_scale x bonus`` (what is added to the task reward, the
clip applied) on the last 1000 states that arrived and on the cells of a 0.05 grid over the
arena that no state has come within 0.05 of yet: the pull toward where the explorer has not
been. Only the bonus is trained, so a variant costs about a minute for 25000 steps.
"""

from __future__ import annotations

import argparse
import time

import torch

from ooo_lightning.data.buffer import OfflineOnlineBuffer
from ooo_lightning.envs.point_mass_wall import X_BOUNDS, Y_BOUNDS
from ooo_lightning.exploration import RNDBonus
from rnd_bonus_scale import as_batch  # benchmarks/, on sys.path when run as a script

VARIANTS = {
    "error_std": {"normalisation": "error_std"},
    "error_std, ema 0.01": {"normalisation": "error_std", "error_std_momentum": 0.01},
    "bonus_std": {"normalisation": "bonus_std"},
}


def arena_grid(cell: float = 0.05) -> torch.Tensor:
    xs = torch.arange(X_BOUNDS[0], X_BOUNDS[1] + 1e-9, cell)
    ys = torch.arange(Y_BOUNDS[0], Y_BOUNDS[1] + 1e-9, cell)
    return torch.cartesian_prod(xs, ys)


def replay(states: torch.Tensor, num_offline: int, kwargs: dict, args: argparse.Namespace) -> list[tuple]:
    torch.manual_seed(args.seed)
    g = torch.Generator().manual_seed(args.seed)
    bonus = RNDBonus(states.shape[1], **kwargs, clip=args.clip)
    opt = torch.optim.Adam([p for p in bonus.parameters() if p.requires_grad], lr=bonus.learning_rate)
    grid = arena_grid()
    unvisited = torch.ones(len(grid), dtype=torch.bool)

    def update(arrived: int) -> None:
        _, loss = bonus.compute(as_batch(states[torch.randint(0, arrived, (256,), generator=g)]))
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(args.offline_updates if num_offline else 0):
        update(num_offline)
    rows = []
    online = len(states) - num_offline
    for t in range(1, online + 1):
        arrived = num_offline + t
        if t > args.random_steps:
            for _ in range(args.utd):
                update(arrived)
        if t % args.every == 0 or t == online:
            new = states[max(0, arrived - args.every):arrived]
            unvisited &= torch.cdist(grid, new).amin(1) > 0.05
            with torch.no_grad():
                recent = bonus.compute(as_batch(states[max(0, arrived - 1000):arrived]), update=False)[0] * args.bonus_scale
                away = bonus.compute(as_batch(grid[unvisited]), update=False)[0] * args.bonus_scale if unvisited.any() else torch.zeros(1)
            rows.append((t, recent.median().item(), recent.quantile(0.9).item(), recent.max().item(),
                         int(unvisited.sum()), away.median().item(), away.quantile(0.9).item()))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--buffer", required=True)
    p.add_argument("--utd", type=int, default=2, help="bonus updates per environment step (the explorer's utd_ratio)")
    p.add_argument("--random-steps", type=int, default=5000)
    p.add_argument("--offline-updates", type=int, default=4000)
    p.add_argument("--bonus-scale", type=float, default=1.0)
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--every", type=int, default=2500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args()
    torch.set_num_threads(1)
    buffer = OfflineOnlineBuffer.load(args.buffer)
    info = buffer.info
    states = buffer.rows_between(0, len(buffer)).get(("next", "observation")).float()
    if states.shape[1] != 2:
        raise SystemExit(f"{args.buffer}: expected point-mass-wall's 2-D observations, got {states.shape[1]}-D")
    print(f"# {args.buffer}: {info.num_offline} offline + {info.num_online} online states; "
          f"bonus_scale {args.bonus_scale} x bonus (clip {args.clip}); utd {args.utd}, {args.random_steps} random steps")
    for name in args.variants:
        start = time.perf_counter()
        rows = replay(states, info.num_offline, VARIANTS[name], args)
        print(f"\n{name} ({time.perf_counter() - start:.0f} s)")
        print(f"{'step':>6} | recent 1000: {'p50':>7} {'p90':>7} {'max':>7} | unvisited cells: {'n':>4} {'p50':>7} {'p90':>7}")
        for t, r50, r90, rmax, n, a50, a90 in rows:
            print(f"{t:>6} | {'':12} {r50:7.4f} {r90:7.4f} {rmax:7.4f} | {'':16} {n:>4} {a50:7.4f} {a90:7.4f}")


if __name__ == "__main__":
    main()
