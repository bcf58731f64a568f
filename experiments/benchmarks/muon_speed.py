"""Optimizer step time on a model's parameters: AdamW (plain, fused), torch's Muon and tsfm's BatchedMuon on the
hidden matrices (AdamW on the rest), side by side in one process.

    OMP_NUM_THREADS=2 python experiments/benchmarks/muon_speed.py                  # the quickstart model
    OMP_NUM_THREADS=2 python experiments/benchmarks/muon_speed.py model=chronos2_mini

Gradients are random (the step's cost does not depend on them); each variant runs ``--steps`` timed steps after
``--warmup`` untimed ones. It also prints the largest difference between the two Muon implementations' weights
after the same steps (0 on this CPU: the batched iterations do the same arithmetic).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def quickstart_module(overrides: list[str]) -> torch.nn.Module:
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from tsfm.utils.config import register_resolvers, to_plain

    register_resolvers()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["model.compile=false", *overrides])
    return instantiate(cfg.model.module, optim=to_plain(cfg.optim), _convert_="all").trainable_module()


def time_steps(model: torch.nn.Module, make_opt, steps: int, warmup: int) -> tuple[float, torch.nn.Module]:  # noqa: ANN001
    opt = make_opt(model)
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(p.shape, generator=g) * 1e-2 for p in model.parameters()]
    for p, gr in zip(model.parameters(), grads):
        p.grad = gr
    for _ in range(warmup):
        opt.step()
    t = time.perf_counter()
    for _ in range(steps):
        opt.step()
    return (time.perf_counter() - t) / steps * 1e3, model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("overrides", nargs="*", help="config overrides of the model, e.g. model=chronos2_mini")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    a = p.parse_args()

    from tsfm.training.muon import BatchedMuon
    from tsfm.training.optim import OptimConfig, build_optimizer, hidden_matrices

    base = quickstart_module(a.overrides)
    hidden = hidden_matrices(base)
    n_hidden = sum(1 for q in base.parameters() if id(q) in hidden)
    print(f"{sum(q.numel() for q in base.parameters()):,} parameters, {n_hidden} hidden matrices "
          f"({sum(q.numel() for q in base.parameters() if id(q) in hidden):,} values) on {torch.get_num_threads()} threads")

    def hidden_of(m: torch.nn.Module) -> list[torch.nn.Parameter]:
        ids = hidden_matrices(m)
        return [q for q in m.parameters() if id(q) in ids]

    variants = {
        "AdamW (every parameter)": lambda m: build_optimizer(m, OptimConfig(lr=1e-3))["optimizer"],
        "AdamW fused (every parameter)": lambda m: build_optimizer(m, OptimConfig(lr=1e-3, fused=True))["optimizer"],
        "torch.optim.Muon (hidden matrices only)": lambda m: torch.optim.Muon(hidden_of(m), lr=1e-3,
                                                                             adjust_lr_fn="match_rms_adamw"),
        "BatchedMuon (hidden matrices only)": lambda m: BatchedMuon(hidden_of(m), lr=1e-3),
        "optim.optimizer=muon (BatchedMuon + fused AdamW)": lambda m: build_optimizer(
            m, OptimConfig(lr=1e-3, optimizer="muon", fused=True))["optimizer"],
    }
    results = {}
    print(f"{'optimizer':52s} {'ms/step':>8s}")
    for name, make in variants.items():
        ms, model = time_steps(copy.deepcopy(base), make, a.steps, a.warmup)
        results[name] = model
        print(f"{name:52s} {ms:8.2f}")
    ref, ours = results["torch.optim.Muon (hidden matrices only)"], results["BatchedMuon (hidden matrices only)"]
    diff = max((x - y).abs().max().item() for x, y in zip(hidden_of(ref), hidden_of(ours)))
    print(f"largest weight difference, torch's Muon vs BatchedMuon after {a.steps + a.warmup} steps: {diff:.3g}")


if __name__ == "__main__":
    main()
