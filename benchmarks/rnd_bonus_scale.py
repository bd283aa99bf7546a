"""Where does the RND bonus act, and how large is it there? The bonus's scale rule, measured.

    python benchmarks/rnd_bonus_scale.py [--updates 4000] [--config configs/point_mass_wall/ooo_iql.yaml]
                                         [--width 512] [--seeds 2] [--variants "error_std, default"]
    python benchmarks/rnd_bonus_scale.py --config configs/point_mass_wall/ooo_iql.yaml \
        --config configs/point_mass_wall/ooo_sac_online.yaml      # an overlay, after its base

Trains ``RNDBonus`` on point-mass-wall's offline data the way the explorer samples it (batches
of 256, the predictor on a random 25% of each), for each normalisation and initialisation
(orthogonal with gain sqrt 2 as in the paper's code, or PyTorch's default), and prints the bonus
on the data (states the predictor knows) and on a region the data never visits (under the
wall and by the goal: x in [0.45, 1.05], y in [0, 0.2]), as the predictor learns, times the
config's ``bonus_scale``: that product is what the explorer adds to a reward of -1 per step.
"""

from __future__ import annotations

import argparse

import torch
from tensordict import TensorDict

from ooo_lightning.datasets import generate_for_env
from ooo_lightning.envs import POINT_MASS_WALL_ID
from ooo_lightning.exploration import RNDBonus

VARIANTS = {
    "bonus_std, orth.": {"normalisation": "bonus_std", "orthogonal_init_gain": 2**0.5},  # the paper's recipe
    "error_std, orth.": {"normalisation": "error_std", "orthogonal_init_gain": 2**0.5},
    "bonus_std, default": {"normalisation": "bonus_std"},
    "error_std, default": {"normalisation": "error_std"},
}


def as_batch(x: torch.Tensor) -> TensorDict:
    return TensorDict({"next": TensorDict({"observation": x}, [x.shape[0]])}, [x.shape[0]])


def novel_states(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.stack([torch.rand(n, generator=generator) * 0.6 + 0.45, torch.rand(n, generator=generator) * 0.2], 1)


def measure(states: torch.Tensor, kwargs: dict, updates: int, checkpoints: list[int], seed: int = 0) -> list[tuple]:
    """(update, known p50, novel p50, novel p90) of the unscaled bonus at each checkpoint."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    novel = novel_states(2000, g)
    known = states[torch.randint(0, len(states), (2000,), generator=g)]
    bonus = RNDBonus(states.shape[1], **kwargs)
    opt = torch.optim.Adam([p for p in bonus.parameters() if p.requires_grad], lr=bonus.learning_rate)
    rows = []
    for t in range(1, updates + 1):
        _, loss = bonus.compute(as_batch(states[torch.randint(0, len(states), (256,), generator=g)]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if t in checkpoints:
            with torch.no_grad():
                k = bonus.compute(as_batch(known), update=False)[0]
                nv = bonus.compute(as_batch(novel), update=False)[0]
            rows.append((t, k.median().item(), nv.median().item(), nv.quantile(0.9).item()))
    return rows


def resolved_explorer(configs: list[str]) -> dict:
    """The explorer's settings of the config files as ``ooo-lightning fit`` composes them (an
    overlay after its base, the classes' defaults filled in); nothing is instantiated."""
    from ooo_lightning.cli import resolved_config

    resolved = resolved_config([f"--config={c}" for c in configs])
    return resolved["model"]["init_args"]["explorer"]["init_args"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--updates", type=int, default=4000)
    p.add_argument("--config", action="append", default=None,
                   help="a config file (default: configs/point_mass_wall/ooo_iql.yaml); repeat it for an overlay "
                        "after its base, as ooo-lightning fit takes them")
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), help=f"a subset of {list(VARIANTS)}")
    p.add_argument("--width", type=int, default=None,
                   help="hidden and embedding width of both networks (default: the config's bonus)")
    p.add_argument("--seeds", type=int, default=1, help="networks and batches drawn with seeds 0..N-1")
    args = p.parse_args()
    configs = args.config or ["configs/point_mass_wall/ooo_iql.yaml"]
    torch.set_num_threads(1)
    explorer = resolved_explorer(configs)
    scale = float(explorer["bonus_scale"])
    bonus_args = explorer.get("bonus", {}).get("init_args", {})
    sizes = {"hidden_dims": [args.width] if args.width else bonus_args.get("hidden_dims", [512]),
             "embedding_dim": args.width or bonus_args.get("embedding_dim", 512)}
    data = generate_for_env(POINT_MASS_WALL_ID, "/tmp/ooo_rnd_probe.hdf5", episodes=100, seed=0)
    states = torch.as_tensor(data["next_observations"])
    checkpoints = sorted({c for c in (100, 1000, 4000, 16000, args.updates) if c <= args.updates})
    print(f"point-mass-wall offline data ({len(states)} states); networks {sizes}; "
          f"x{scale:g} = {' + '.join(configs)}'s bonus_scale")
    print(f"{'normalisation':<20} {'seed':>4} {'updates':>7} {'known p50':>10} {'novel p50':>10} {'novel p90':>10} "
          f"{'ratio p50':>9} {'x scale: novel p50':>18}")
    for name in args.variants:
        for seed in range(args.seeds):
            for t, k, n50, n90 in measure(states, {**VARIANTS[name], **sizes}, args.updates, checkpoints, seed):
                print(f"{name:<20} {seed:>4} {t:>7} {k:>10.5f} {n50:>10.4f} {n90:>10.4f} "
                      f"{n50 / max(k, 1e-12):>9.0f} {scale * n50:>18.3f}", flush=True)


if __name__ == "__main__":
    main()
