"""Training runs of the GPU check: eager, activation checkpointing and ``model.compile=true``.

Each run composes ``conf/train.yaml`` the way ``python -m tsfm.train`` does (``trainer=gpu``,
or ``trainer=cpu`` in the dry run) and builds it with ``tsfm.train.build``, so the configs users
launch are what is measured. :class:`StepMonitor` times each step between Lightning's batch
hooks (the data loader is outside the timed region), synchronising the device, and counts the
FLOPs of one step with ``torch.utils.flop_counter`` (matmuls and attention, forward and
backward) for MFU = FLOPs/token x tokens/s / device bf16 peak.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from common import free_memory, status_of, sync
from flop_count import flop_counter
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from tsfm.training.build import build, check_config
from tsfm.utils.config import register_resolvers

CONF = Path(__file__).resolve().parents[2] / "conf"


def tokens_in_batch(family: str, module: L.LightningModule, batch: dict[str, torch.Tensor]) -> int:
    """Positions the model processes in ``batch`` (padding included: it costs the same)."""
    if family == "moirai":  # packed rows x tokens
        return int(batch["sample_id"].numel())
    if family == "chronos":  # encoder tokens (+EOS) and decoder tokens
        return int(batch["input_ids"].numel() + batch["labels"].numel())
    if family == "chronos2":  # context patches + REG + future patches, per row
        p = module.config.patch_size
        b, t = batch["context"].shape
        return b * (math.ceil(t / p) + 1 + math.ceil(batch["future_target"].shape[-1] / p))
    return int(module.tokens_in_batch(batch))


def compose_run(s: Any, family: str, run_dir: Path, extra: list[str], trainer: str | None = None) -> DictConfig:
    """The composed ``train`` config of one check run (tiny in the dry run)."""
    register_resolvers()
    trainer = trainer or ("gpu" if s.device == "cuda" else "cpu")
    # callbacks=none: the check times the training step itself (its own timer callback); the default
    # callbacks (lite benchmark, checkpoints) are run under every strategy by tests/training/test_distributed.py
    overrides = [
        f"model={s.models[family]}", f"trainer={trainer}", "callbacks=none", "logger=none", "export=false",
        f"trainer.max_steps={s.steps}", "trainer.limit_val_batches=0", "+trainer.enable_checkpointing=false",
        "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
        f"data.batch_size={s.batch[family]}", f"data.num_workers={s.num_workers}",
        f"data.series_scale={s.series_scale}", "data.val_batches=1", f"paths.output_dir={run_dir}",
        *s.overrides.get(family, []), *extra,
    ]  # fmt: skip
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


class StepMonitor(L.Callback):
    """Per-step compute time (device-synchronised), tokens, and the FLOPs of one counted step."""

    def __init__(self, family: str, warmup: int, count_flops: bool = True) -> None:
        self.family, self.warmup, self.count_flops = family, warmup, count_flops
        self.flop_step = warmup if count_flops else -1  # counted, not timed
        self.times: list[float] = []
        self.tokens: list[int] = []
        self.step_times_all: list[float] = []
        self.flops_per_token: float | None = None
        self.first_batch: dict[str, torch.Tensor] | None = None
        self._i, self._t0, self._counter = 0, 0.0, None

    def on_train_batch_start(self, trainer: L.Trainer, module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.first_batch is None:
            self.first_batch = {k: v.detach().cpu().clone() for k, v in batch.items() if isinstance(v, torch.Tensor)}
        if self._i == self.flop_step:
            self._counter = flop_counter()
            self._counter.__enter__()
        sync(module.device)
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        sync(module.device)
        dt = time.perf_counter() - self._t0
        self.step_times_all.append(dt)
        tokens = tokens_in_batch(self.family, module, batch)
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.flops_per_token = self._counter.get_total_flops() / max(tokens, 1)
            self._counter = None
        elif self._i > self.warmup:
            self.times.append(dt)
            self.tokens.append(tokens)
        self._i += 1


def measure(s: Any, monitor: StepMonitor, flops_per_token: float | None) -> dict:
    """Median step time, tokens/s, peak memory and MFU of a finished run."""
    if not monitor.times:
        return {"status": "error", "error": "no timed steps (run shorter than the warm-up)"}
    step = float(np.median(monitor.times))
    tok_s = float(np.sum(monitor.tokens) / np.sum(monitor.times))
    row = {"status": "ok", "steps": len(monitor.step_times_all), "timed_steps": len(monitor.times),
           "step_ms": round(1e3 * step, 2), "first_step_s": round(monitor.step_times_all[0], 2),
           "tokens_per_step": int(np.median(monitor.tokens)), "tokens_per_s": round(tok_s)}  # fmt: skip
    if s.device == "cuda":
        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    else:
        row["peak_mem_gib"] = None  # the CPU has no per-run allocator peak
    fpt = flops_per_token or monitor.flops_per_token
    if fpt:
        row["gflop_per_step"] = round(fpt * row["tokens_per_step"] / 1e9, 2)
        row["mfu_pct"] = round(100 * fpt * tok_s / (s.peak_tflops * 1e12), 2) if s.peak_tflops else None
    return row


def fit_run(s: Any, family: str, label: str, extra: list[str], flops_per_token: float | None = None,
            warmup: int | None = None, trainer: str | None = None, keep: bool = False,
            min_time_s: float = 30.0) -> dict:  # fmt: skip
    """One ``Trainer.fit``; an out-of-memory error becomes a row naming the batch size. Not
    started with less than ``min_time_s`` of the run's time budget left (``--budget-s``)."""
    run_dir = Path(s.out) / "work" / "runs" / f"{family}_{label}"
    row: dict[str, Any] = {"family": family, "model": s.models[family], "run": label, "batch_size": s.batch[family]}
    if s.time_left() < min_time_s:
        return row | {"status": "skipped", "error": f"time budget: {max(s.time_left(), 0):.0f} s of --budget-s left"}
    free_memory()
    t0 = time.perf_counter()
    try:
        cfg = compose_run(s, family, run_dir, extra, trainer)
        check_config(cfg)
        module, datamodule, trainer_obj = build(cfg)
        monitor = StepMonitor(family, s.warmup if warmup is None else warmup, count_flops=flops_per_token is None)
        trainer_obj.callbacks.append(monitor)
        trainer_obj.fit(module, datamodule=datamodule)
        row |= measure(s, monitor, flops_per_token) | {"wall_s": round(time.perf_counter() - t0, 1)}
        row["flops_per_token"] = flops_per_token or monitor.flops_per_token
        if keep:
            row["_objects"] = (cfg, module, trainer_obj, monitor)
    except torch.cuda.OutOfMemoryError as e:
        row |= {"status": "oom", "error": f"out of memory at batch size {s.batch[family]}: {str(e)[:200]}"}
    except Exception as e:  # noqa: BLE001 - reported per family, the others still run
        row |= {"status": "error", "error": f"{type(e).__name__}: {e}"[:600]}
    finally:
        GlobalHydra.instance().clear()
    print(f"   {family:<9} {label:<8} {row.get('status')} {row.get('step_ms', '')} ms/step "
          f"{row.get('tokens_per_s', '')} tok/s {row.get('error', '')[:200]}", flush=True)  # fmt: skip
    return row


def run_train(s: Any) -> dict:
    """Each family: eager bf16-mixed, then with activation checkpointing (same FLOPs/token for MFU)."""
    rows = []
    for fam in s.families:
        plain = fit_run(s, fam, "bf16", [])
        rows.append(plain)
        if plain.get("status") == "ok":
            s.shared.setdefault("eager", {})[fam] = plain
        ac = fit_run(s, fam, "bf16+AC", ["model.module.gradient_checkpointing=true"],
                     flops_per_token=plain.get("flops_per_token"))  # fmt: skip
        if ac.get("status") == "ok" and plain.get("status") == "ok":
            ac["vs_eager"] = round(ac["step_ms"] / plain["step_ms"], 2)  # step time ratio (recompute cost)
            if ac.get("peak_mem_gib") and plain.get("peak_mem_gib"):
                ac["mem_vs_eager"] = round(ac["peak_mem_gib"] / plain["peak_mem_gib"], 2)
        rows.append(ac)
    notes = [f"trainer={'gpu' if s.device == 'cuda' else 'cpu'} (bf16-mixed), {s.steps} steps; step time = median "
             f"of the steps after the first {s.warmup + 1} (one of them FLOP-counted), data loading excluded",
             "tokens = positions the model processes (Moirai packed tokens, Chronos encoder+decoder tokens, "
             "Chronos-2 patches+REG, baseline patches), padding included",
             f"MFU = counted FLOPs/token (matmul+attention, fwd+bwd, no recompute) x tokens/s / {s.peak_source}"]  # fmt: skip
    return {"status": status_of(rows), "rows": rows, "notes": notes}


def _forecast_inputs(n: int) -> list[np.ndarray]:
    g = np.random.default_rng(0)
    return [(g.normal(size=512).cumsum() + 50).astype(np.float32) for _ in range(n)]


def _timed_forecast(forecaster: Any, ctx: list[np.ndarray], h: int, repeats: int = 3) -> tuple[float, np.ndarray]:
    torch.manual_seed(0)
    q = forecaster.predict_quantiles(ctx, prediction_length=h)  # warm-up (compiles)
    best = float("inf")
    for _ in range(repeats):
        sync(forecaster.device)
        t0 = time.perf_counter()
        torch.manual_seed(0)
        forecaster.predict_quantiles(ctx, prediction_length=h)
        sync(forecaster.device)
        best = min(best, time.perf_counter() - t0)
    return best, q


def run_compile(s: Any) -> dict:
    """``model.compile=true``: trains (steady-state step vs eager) and forecasts (vs eager, same weights)."""
    import torch._dynamo
    from hydra.utils import instantiate

    from tsfm.utils.config import to_plain

    rows = []
    backend = "true" if s.compile_backend == "inductor" else s.compile_backend
    for fam in s.families:
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        eager = s.shared.get("eager", {}).get(fam)
        row = fit_run(s, fam, "compiled", [f"model.compile={backend}"], warmup=s.compile_warmup, keep=True,
                      flops_per_token=(eager or {}).get("flops_per_token") or 0.0, min_time_s=90.0)  # fmt: skip
        row["backend"] = s.compile_backend
        c = torch._dynamo.utils.counters
        row["graph_breaks"] = sum(c["graph_break"].values())
        row["unique_graphs"] = c["stats"].get("unique_graphs", 0)
        objs = row.pop("_objects", None)
        if row.get("status") == "ok" and eager:
            row["train_speedup"] = round(eager["step_ms"] / row["step_ms"], 2)
        elif row.get("status") == "ok":
            row["train_speedup"] = None
            row["note"] = "no eager run to compare (train section failed or not run)"
        if objs is not None and s.time_left() < 45:
            row["forecast_error"] = "skipped: time budget (--budget-s) nearly spent"
        elif objs is not None:
            cfg, module, _, _ = objs
            try:
                ctx, h = _forecast_inputs(64 if s.device == "cuda" else 4), 16
                reps = 1 if s.dry_run else 3
                t_c, q_c = _timed_forecast(module.forecaster(), ctx, h, reps)
                plain = instantiate(cfg.model.module, optim=to_plain(cfg.optim), compile=False, _convert_="all")
                plain.model.load_state_dict({k: v.float() for k, v in module.model.state_dict().items()})
                t_e, q_e = _timed_forecast(plain.to(module.device).forecaster(), ctx, h, reps)
                row |= {"forecast_ok": bool(np.isfinite(q_c).all()), "forecast_speedup": round(t_e / t_c, 2),
                        "forecast_max_abs_diff": float(np.abs(q_c - q_e).max())}  # fmt: skip
            except Exception as e:  # noqa: BLE001
                row |= {"forecast_ok": False, "forecast_error": f"{type(e).__name__}: {e}"[:400]}
            del module, cfg
        del objs
        if row.get("status") == "ok" and row.get("unique_graphs", 0) > 2 * 8:
            row["note"] = "many recompilations (data-dependent shapes/structure): speed-up limited"
        rows.append(row)
    torch._dynamo.reset()
    notes = [f"backend {s.compile_backend}" + (" (dry run: inductor's C++ build takes ~1 min per family on 2 CPU cores)"
             if s.dry_run else "") + f"; step time after the first {s.compile_warmup} steps (compilation)",
             "train_speedup = eager step / compiled step (eager from the train section); forecast_speedup: "
             "64 series (dry run 4), same weights, eager model rebuilt from the compiled one's state dict; "
             "forecast_max_abs_diff is informational (fused kernels round differently, samplers may then diverge)"]  # fmt: skip
    return {"status": status_of(rows), "rows": rows, "notes": notes}
