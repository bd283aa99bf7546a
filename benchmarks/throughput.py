"""Gradient updates per second of the explorer's update, through Lightning, against a
hand-written plain-PyTorch loop of the same networks and update, in the same process.

    python benchmarks/throughput.py --loss iql --rnd --seconds 20
    python benchmarks/throughput.py --loss calql --seconds 20
    python benchmarks/throughput.py --loss iql --seconds 20 --compile    # compile: true against the eager loop
    python benchmarks/throughput.py --loss iql --seconds 20 --members 1 5 [--compile]   # K agents as one
    python benchmarks/throughput.py --device cuda --loss iql --members 1 10 [--compile] [--precision bf16-mixed]
    python benchmarks/throughput.py --loss calql --seconds 20 --compare allocator     # what cpu.py gains
    python benchmarks/throughput.py --loss iql --seconds 20 --compare nvml             # Lightning's NVML check
    python benchmarks/throughput.py --loss iql --rnd --seconds 20 --compare bonus_order

``--compile`` fits the module with ``compile: true`` (the warm-up steps absorb the compile
time, which is printed as ``compile_seconds``) and also times the plain loop compiled the same
way; the eager plain loop stays the reference, so ``ratio_lightning_over_plain`` is what
compiling gains over a hand-written PyTorch loop.
``--members K ...`` also times K agents stacked as one ``MemberStack`` in the plain loop (each
member its own batch; compiled with ``--compile``): updates per second of the stack, and its
cost against one plain update (K=5 at 2.5 or less is issue 14's CPU target).
``--compare`` also times the plain loop without one of the modules' speed settings, in the
same process: glibc's default allocator (measured first: the setting cannot be undone),
``PYTORCH_NVML_BASED_CUDA_CHECK=1`` as importing Lightning sets it, or the bonus predictor
stepped after the agent's stages instead of before.

Random data with 17-d observations and 6-d actions (HalfCheetah's sizes), batch 256,
256x256 networks (RND: 512-512). The last line is ``updates_per_s=<float>`` (Lightning).
"""

from __future__ import annotations

import argparse
import os
import time
from functools import partial

import gymnasium as gym
import numpy as np
import torch
from lightning.pytorch import Callback, Trainer
from tensordict import TensorDict

from ooo_lightning.cpu import keep_freed_memory
from ooo_lightning.data.buffer import BufferInfo, OfflineOnlineBuffer
from ooo_lightning.data.datamodule import ReplayDataModule
from ooo_lightning.exploration import RNDBonus
from ooo_lightning.losses import CalQLLoss, IQLLoss, SACLoss, staged_update
from ooo_lightning.losses.members import MemberStack
from ooo_lightning.modules import ExplorerModule
from ooo_lightning.modules.base import compiled_adam, compiled_stages

ENV = "bench/Box17x6-v0"  # HalfCheetah's sizes without needing MuJoCo: 17-d observation, 6-d action


class _Box17x6(gym.Env):
    """Only its spaces are used (the update runs on random data)."""

    observation_space = gym.spaces.Box(-np.inf, np.inf, (17,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (6,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(17, np.float32), {}

    def step(self, action):
        return np.zeros(17, np.float32), 0.0, False, False, {}


if ENV not in gym.registry:
    gym.register(ENV, entry_point=_Box17x6)
LOSSES = {"iql": IQLLoss, "calql": CalQLLoss, "sac": SACLoss}


def random_transitions(n: int, obs_dim: int, act_dim: int) -> TensorDict:
    g = torch.Generator().manual_seed(0)
    return TensorDict(
        {
            "observation": torch.randn(n, obs_dim, generator=g),
            "action": torch.rand(n, act_dim, generator=g) * 2 - 1,
            ("next", "observation"): torch.randn(n, obs_dim, generator=g),
            ("next", "reward"): torch.randn(n, 1, generator=g),
            ("next", "terminated"): torch.rand(n, 1, generator=g) < 0.01,
            ("next", "truncated"): torch.zeros(n, 1, dtype=torch.bool),
            ("next", "done"): torch.zeros(n, 1, dtype=torch.bool),
            "mc_return": torch.randn(n, 1, generator=g) * 10,
        },
        batch_size=[n],
    )


def make_module(args: argparse.Namespace) -> ExplorerModule:
    return ExplorerModule(
        ENV,
        partial(LOSSES[args.loss]),
        bonus=partial(RNDBonus) if args.rnd else None,
        bonus_scale=1.0 if args.rnd else 0.0,
        offline_updates=10**9,
        online_steps=0,
        batch_size=args.batch_size,
        updates_per_step=args.updates_per_step,
        eval_every=0,
        log_every=args.log_every,
        compile=args.compile,
    )


def _adam(compiled: bool):
    return compiled_adam if compiled else (lambda params, lr: torch.optim.Adam(params, lr=lr, fused=True))


def _update_parts(loss, compiled: bool):
    """One Adam per term and the stage function, as the modules build them eager or compiled."""
    opts = {t: _adam(compiled)(loss.term_parameters(t), loss.term_learning_rate(t)) for t in loss.terms}
    return opts, (compiled_stages(loss) if compiled else None)


def plain_pytorch(args: argparse.Namespace, data: TensorDict, bonus_last: bool = False, nvml_check: bool = False,
                  compiled: bool = False) -> float:
    """The same loss and bonus modules driven by a bare loop: sample, stage by stage
    forward/backward/step, target update. No Lightning, no replay-buffer object.
    ``bonus_last`` steps the bonus predictor after the agent's stages (the modules step it
    first); ``nvml_check`` keeps the NVML-based CUDA check on (as after importing Lightning);
    ``compiled`` compiles the stages and the Adam steps as ``compile: true`` does."""
    module = make_module(argparse.Namespace(**{**vars(args), "compile": False}))
    module.to(args.device)
    loss, bonus = module.loss, module.bonus
    opts, stages = _update_parts(loss, compiled)
    if bonus is not None:
        opts["bonus"] = _adam(compiled)(list(bonus.predictor.parameters()), bonus.learning_rate)
    n = data.shape[0]
    autocast = torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")

    def update() -> None:
        batch = data[torch.randint(0, n, (args.batch_size,), device=data.device)]
        bonus_loss = None
        if bonus is not None:
            with autocast:
                b, bonus_loss = bonus.compute(batch)
            batch.set(("next", "intrinsic_reward"), b.unsqueeze(-1))
            if not bonus_last:
                opts["bonus"].zero_grad(set_to_none=True)
                bonus_loss.backward()
                opts["bonus"].step()
        with autocast:  # around the backward passes too, as Lightning's precision plugin does
            staged_update(loss, batch, opts, stage_losses=stages)
        if bonus_last:  # the same loss, its graph kept through the agent's stages
            opts["bonus"].zero_grad(set_to_none=True)
            bonus_loss.backward()
            opts["bonus"].step()

    # A plain script never imports Lightning, which sets this variable and so makes every
    # Adam step open the NVML library (see RLModule.on_fit_start); measure without it.
    saved_check = os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    if nvml_check:
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    for _ in range(20):  # warm-up
        update()
    rate = _rate(update, args)
    os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    if saved_check is not None:
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = saved_check
    return rate


def plain_members(args: argparse.Namespace, data: TensorDict, members: int) -> float:
    """The plain loop for ``members`` agents trained as one ``MemberStack`` (each its own
    batch), eager or, with ``--compile``, compiled as the modules compile; returns stacked
    updates per second (each one an update of every member)."""
    stack = MemberStack([LOSSES[args.loss](17, 6) for _ in range(members)]).to(args.device)
    opts, stages = _update_parts(stack, args.compile)
    n = data.shape[0]
    autocast = torch.autocast(torch.device(args.device).type, dtype=torch.bfloat16, enabled=args.precision == "bf16-mixed")

    def update() -> None:
        with autocast:
            staged_update(stack, data[torch.randint(0, n, (members, args.batch_size), device=data.device)], opts,
                          stage_losses=stages)

    saved_check = os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    started = time.perf_counter()
    update()
    if args.compile:
        print(f"members_{members}_compile_seconds={time.perf_counter() - started:.1f}")
    for _ in range(10):  # warm-up
        update()
    rate = _rate(update, args)
    if saved_check is not None:
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = saved_check
    return rate


def _rate(update, args: argparse.Namespace) -> float:
    """Calls of ``update`` per second over ``args.seconds`` (the device's queue drained)."""
    sync = torch.cuda.synchronize if torch.device(args.device).type == "cuda" else (lambda: None)
    sync()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        update()
        count += 1
    sync()
    return count / (time.perf_counter() - start)


class _Clock(Callback):
    """Counts updates between the end of the warm-up steps and the end of fit."""

    def __init__(self, warmup_steps: int) -> None:
        self.warmup_steps = warmup_steps
        self.start: float | None = None
        self.start_updates = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 == self.warmup_steps:
            self.start, self.start_updates = time.perf_counter(), pl_module.num_updates

    def rate(self, pl_module) -> float:
        if self.start is None:
            raise SystemExit(f"the fit ended before its {self.warmup_steps} warm-up steps: give it more --seconds")
        return (pl_module.num_updates - self.start_updates) / (time.perf_counter() - self.start)


def lightning_path(args: argparse.Namespace, data: TensorDict) -> float:
    module = make_module(args)
    buffer = OfflineOnlineBuffer.empty(BufferInfo(data.shape[0], data.shape[0], 0, module.observation_dim, module.action_dim, ENV))
    buffer.replay.extend(data)
    dm = ReplayDataModule()
    dm.attach(buffer)
    clock = _Clock(warmup_steps=3)
    trainer = Trainer(
        accelerator="gpu" if torch.device(args.device).type == "cuda" else "cpu",
        devices=1,
        precision=args.precision,
        max_epochs=1,
        max_time={"seconds": args.seconds + 2},
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=True,
        log_every_n_steps=1,
        callbacks=[clock],
    )
    trainer.fit(module, datamodule=dm)
    if module.compile_seconds is not None:
        print(f"compile_seconds={module.compile_seconds:.1f}")
    return clock.rate(module)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--loss", choices=sorted(LOSSES), default="iql")
    p.add_argument("--rnd", action="store_true", help="add the RND bonus (explorer update)")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--updates-per-step", type=int, default=8)
    p.add_argument("--log-every", type=int, default=25)
    p.add_argument("--buffer-size", type=int, default=100_000)
    p.add_argument("--precision", choices=["32-true", "bf16-mixed"], default="32-true",
                   help="bf16-mixed: Lightning's flag; the plain loops use the same autocast")
    p.add_argument("--device", default="cpu", help="cpu or cuda: where the plain loops run (and Lightning's accelerator)")
    p.add_argument("--compile", action="store_true",
                   help="the Lightning path with compile: true (the plain loop stays eager)")
    p.add_argument("--members", type=int, nargs="+", default=[],
                   help="also time K agents stacked as one MemberStack in the plain loop (e.g. --members 1 5)")
    p.add_argument("--compare", choices=["allocator", "nvml", "bonus_order"], action="append", default=[],
                   help="also time the plain loop without this speed setting (repeatable)")
    args = p.parse_args()
    if "bonus_order" in args.compare and not args.rnd:
        p.error("--compare bonus_order needs --rnd")
    if args.members and args.rnd:
        p.error("--members: the bonus has no member axis yet (issue 14); drop --rnd")
    torch.manual_seed(0)
    import ooo_lightning.envs  # noqa: F401

    data = random_transitions(args.buffer_size, 17, 6)
    plain_data = data.to(args.device)  # the plain loops sample on the device; Lightning's buffer stays on the CPU
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"loss {args.loss}, rnd {args.rnd}, batch {args.batch_size}, updates/step {args.updates_per_step}, "
          f"precision {args.precision}, compile {args.compile}")
    if "allocator" in args.compare:  # before keep_freed_memory(), which cannot be undone
        default_allocator = plain_pytorch(args, plain_data)
        print(f"plain_pytorch_default_allocator_updates_per_s={default_allocator:.1f}")
    # The modules do this at fit start on the CPU; the plain loop runs first, so it gets the
    # same allocator behaviour.
    keep_freed_memory()
    plain = plain_pytorch(args, plain_data)
    print(f"plain_pytorch_updates_per_s={plain:.1f}")
    if args.compile:
        plain_compiled = plain_pytorch(args, plain_data, compiled=True)
        print(f"plain_pytorch_compiled_updates_per_s={plain_compiled:.1f}")
        print(f"ratio_plain_compiled_over_plain={plain_compiled / plain:.3f}")
    if "allocator" in args.compare:
        print(f"gain_of_keeping_freed_memory={plain / default_allocator - 1:+.1%}")
    if "nvml" in args.compare:
        with_check = plain_pytorch(args, plain_data, nvml_check=True)
        adam_steps = len(make_module(args).loss.terms) + int(args.rnd)  # optimiser steps per update
        cost_ms = (1 / with_check - 1 / plain) * 1000 / adam_steps
        print(f"plain_pytorch_nvml_check_updates_per_s={with_check:.1f}")
        print(f"nvml_check_cost_ms_per_adam_step={cost_ms:.3f}")
    if "bonus_order" in args.compare:
        bonus_last = plain_pytorch(args, plain_data, bonus_last=True)
        print(f"plain_pytorch_bonus_stepped_last_updates_per_s={bonus_last:.1f}")
        print(f"gain_of_stepping_the_bonus_first={plain / bonus_last - 1:+.1%}")
    for k in args.members:
        stacked = plain_members(args, plain_data, k)
        print(f"members_{k}_updates_per_s={stacked:.1f} (each of {k} members; {k * stacked:.1f} member-updates/s)")
        print(f"members_{k}_cost_over_one_plain_update={plain / stacked:.2f}")
    light = lightning_path(args, data)
    print(f"lightning_updates_per_s={light:.1f}")
    print(f"ratio_lightning_over_plain={light / plain:.3f}")
    print(f"updates_per_s={light:.1f}")


if __name__ == "__main__":
    main()
