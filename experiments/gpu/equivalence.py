"""Golden-fixture cases on the device in float32, against the fixture and against the CPU.

The fixtures (``tests/fixtures``) were made on a CPU. Their README gives the tolerances a
*different but correct* float32 implementation should meet (other kernels, other summation
order); it names no separate accelerator figures, so those float32 tolerances are the ones
applied to the device here, with TF32 switched off (TF32 matmuls would round to 10 bits).
Each family's checkpoint is loaded with tsfm's own loaders (as the tests do) and the same
outputs the tests check are computed once on the CPU and once on the device. The baseline
family has no reference implementation, hence no fixture: it is compared device-vs-CPU only.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from common import ROOT
from safetensors.torch import load_file

FIXTURES = Path(os.environ.get("TSFM_FIXTURES") or ROOT / "tests" / "fixtures")
Outputs = dict[str, torch.Tensor]
# name -> (fixture key or None, atol, rtol): fixture README "suggested tolerances" (float32)
Spec = dict[str, tuple[str | None, float, float]]


def _moirai(device: str) -> tuple[Outputs, Spec, dict]:
    from tsfm.models.moirai.convert import load_model

    T = load_file(str(FIXTURES / "moirai_tiny" / "cases.safetensors"))
    model = load_model(FIXTURES / "moirai_tiny" / "checkpoint").eval().to(device)
    keys = ("target", "observed_mask", "sample_id", "time_id", "variate_id", "prediction_mask", "patch_size")
    batch = {k: T[f"packed.{k}"].to(device) for k in keys}
    with torch.no_grad():
        h, loc, scale, _ = model.encode(**batch)
        distr = model.full_distribution(h, batch["patch_size"])
        b, seq, p = batch["target"].shape
        args = (loc.reshape(-1, 1), scale.reshape(-1, 1))
        out = {"loc": loc, "scale": scale, "encoder_out": h, "loss": model.loss(batch),
               "log_prob": distr.log_prob(batch["target"].reshape(b * seq, p), *args).view(b, seq, p),
               "mean": distr.mean(*args).view(b, seq, p), "variance": distr.variance(args[1]).view(b, seq, p)}  # fmt: skip
    spec = {"loc": ("packed.loc", 0, 1e-6), "scale": ("packed.scale", 0, 1e-6),
            "encoder_out": ("packed.encoder_out", 1e-5, 0), "log_prob": ("packed.log_prob", 1e-3, 0),
            "mean": ("packed.mean", 1e-4, 1e-5), "variance": ("packed.variance", 1e-4, 1e-5),
            "loss": ("packed.loss", 0, 1e-5)}  # fmt: skip
    return out, spec, T


def _chronos(device: str) -> tuple[Outputs, Spec, dict]:
    from tsfm.models.chronos.convert import load_model
    from tsfm.models.chronos.tokenizer import left_pad_stack

    T = load_file(str(FIXTURES / "chronos_t5" / "cases.safetensors"))
    model = load_model(FIXTURES / "chronos_t5" / "checkpoint").eval().to(device)
    tf = "t5_teacher_forcing."
    batch = {k: v.to(device) for k, v in model.tokenize_batch(T[tf + "context"], T[tf + "future"]).items()}
    with torch.no_grad():
        o = model.t5(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        labels = batch["labels"]
        at = o.logits.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
        ce = torch.where(labels == -100, 0.0, o.logits.logsumexp(-1) - at)
        ctx = left_pad_stack([T["pipeline.context.0"], T["pipeline.context.1"]]).to(device)
        emb, emb_scale = model.embed(ctx)
    out = {"encoder_last_hidden_state": o.encoder_last_hidden_state, "logits_first16": o.logits[:, :16],
           "logits_logsumexp": o.logits.logsumexp(-1), "token_ce": ce, "loss": o.loss,
           "embed": emb, "embed_scale": emb_scale}  # fmt: skip
    spec = {"encoder_last_hidden_state": (tf + "encoder_last_hidden_state", 1e-5, 0),
            "logits_first16": (tf + "logits_first16", 1e-5, 0), "logits_logsumexp": (tf + "logits_logsumexp", 1e-5, 0),
            "token_ce": (tf + "token_ce", 1e-5, 0), "loss": (tf + "loss", 1e-5, 1e-5),
            "embed": ("pipeline.embed.embeddings", 1e-5, 0), "embed_scale": ("pipeline.embed.scale", 0, 1e-6)}  # fmt: skip
    return out, spec, T


def _chronos2(device: str) -> tuple[Outputs, Spec, dict]:
    from tsfm.models.chronos2.convert import load_model

    T = dict(load_file(str(FIXTURES / "chronos2_tiny" / "cases.safetensors")))
    model = load_model(FIXTURES / "chronos2_tiny" / "checkpoint").eval().to(device)
    c, tr = "model_forward.", "model_forward_trunc."
    d = {k: v.to(device) for k, v in T.items() if k.startswith((c, tr))}
    with torch.no_grad():
        kw = dict(group_ids=d[c + "group_ids"], future_covariates=d[c + "future_covariates"], num_output_patches=3)
        full = model(d[c + "context"], **kw)
        loss = model(d[c + "context"], future_target=d[c + "future_target"],
                     future_target_mask=d[c + "future_target_mask"], **kw).loss  # fmt: skip
        trunc = model(d[tr + "context"], context_mask=d[tr + "context_mask"])
    # original-scale quantiles compared as asinh((pred - loc) / scale) (README), with the fixture's loc/scale
    T["asinh_q"] = torch.asinh((T[c + "quantile_preds"] - T[c + "loc"][..., None]) / T[c + "scale"][..., None])
    T["asinh_q_trunc"] = torch.asinh((T[tr + "quantile_preds"] - T[tr + "loc"][..., None]) / T[tr + "scale"][..., None])
    T["qn"] = T[c + "quantile_preds_normalized"].view(8, 3, 21, 16).permute(0, 2, 1, 3).reshape(8, 21, 48)
    fl, fs = T[c + "loc"][..., None].to(device), T[c + "scale"][..., None].to(device)
    tl, ts = T[tr + "loc"][..., None].to(device), T[tr + "scale"][..., None].to(device)
    out = {"loc": full.loc, "scale": full.scale, "quantile_preds_normalized": full.quantile_preds_normalized,
           "asinh_quantile_preds": torch.asinh((full.quantile_preds - fl) / fs), "loss_with_mask": loss,
           "trunc_asinh_quantile_preds": torch.asinh((trunc.quantile_preds - tl) / ts)}  # fmt: skip
    spec = {"loc": (c + "loc", 0, 1e-6), "scale": (c + "scale", 0, 1e-6), "quantile_preds_normalized": ("qn", 1e-5, 0),
            "asinh_quantile_preds": ("asinh_q", 1e-5, 0), "loss_with_mask": (c + "loss_with_mask", 0, 1e-5),
            "trunc_asinh_quantile_preds": ("asinh_q_trunc", 1e-5, 0)}  # fmt: skip
    return out, spec, T


def _baseline(device: str) -> tuple[Outputs, Spec, dict]:
    from tsfm.models.baseline.config import BaselineConfig
    from tsfm.models.baseline.model import BaselineModel

    torch.manual_seed(0)
    cfg = BaselineConfig(d_model=64, num_layers=2, num_heads=4, patch_size=16, context_length=128, prediction_length=32)
    model = BaselineModel(cfg).eval().to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 160, generator=g).cumsum(-1) + 10
    with torch.no_grad():
        nll = model.nll(x[:, :128].to(device), x[:, 128:].to(device), horizon_only=True)
    return {"nll_horizon": nll}, {"nll_horizon": (None, 1e-5, 1e-5)}, {}


CASES: dict[str, Callable[[str], tuple[Outputs, Spec, dict]]] = {
    "moirai": _moirai, "chronos": _chronos, "chronos2": _chronos2, "baseline": _baseline,
}  # fmt: skip


def _diff(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> tuple[float, bool]:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if a.shape != b.shape:
        return float("inf"), False
    err = (a - b).abs()
    return float(err.max()) if err.numel() else 0.0, bool((err <= atol + rtol * b.abs()).all())


def run(s: Any) -> dict:
    prev = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    rows = []
    try:
        for fam in s.families:
            try:
                cpu, spec, T = CASES[fam]("cpu")
                dev = CASES[fam](s.device)[0] if s.device != "cpu" else None
            except torch.cuda.OutOfMemoryError as e:
                rows.append({"family": fam, "status": "oom", "error": str(e)[:300]})
                continue
            except Exception as e:  # noqa: BLE001 - one family's failure is a row, not a crash
                rows.append({"family": fam, "status": "error", "error": f"{type(e).__name__}: {e}"[:600]})
                continue
            for name, (key, atol, rtol) in spec.items():
                row: dict[str, Any] = {"family": fam, "tensor": name, "atol": atol, "rtol": rtol}
                if key is not None:
                    row["cpu_vs_fixture"], ok_cpu = _diff(cpu[name], T[key], atol, rtol)
                else:
                    row["cpu_vs_fixture"], ok_cpu = None, True  # no reference implementation
                if dev is None:
                    row |= {"device_vs_fixture": None, "device_vs_cpu": None, "status": "ok" if ok_cpu else "fail",
                            "note": "skipped (needs CUDA)"}  # fmt: skip
                else:
                    ok_fix = True
                    if key is not None:
                        row["device_vs_fixture"], ok_fix = _diff(dev[name], T[key], atol, rtol)
                    row["device_vs_cpu"], ok_dc = _diff(dev[name], cpu[name], atol, rtol)
                    row["status"] = "ok" if (ok_cpu and ok_fix and ok_dc) else "fail"
                rows.append(row)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = prev
    failed = [r for r in rows if r["status"] != "ok"]
    notes = ["float32, TF32 off; tolerances: fixture README 'suggested tolerances for a float32 "
             "reimplementation' (it gives no separate accelerator figures); max |diff| shown",
             "baseline: no fixture (no reference implementation), device vs CPU only"]  # fmt: skip
    if s.device == "cpu":
        notes.append("dry run: the device columns need CUDA and are skipped; CPU vs fixture is checked")
    return {"status": "ok" if not failed else ("fail" if len(failed) < len(rows) else "error"), "rows": rows,
            "notes": notes}  # fmt: skip
