"""tsfm and the reference libraries on the same device, weights and inputs, in one run.

Random models of the small shapes are saved in the official layouts with tsfm's exporters;
the references load those directories in their own venv (``../shared/anchors``, made by
``setup_anchors.sh``) through ``reference_worker.py`` in a subprocess, tsfm loads them here.
Scenarios: uni2ts Moirai-small train step (fp32, packed rows of 512 tokens) and forecast;
chronos-forecasting Chronos-2 forecast at batch 256 and Chronos-T5 forecast. Without the
anchors venv the reference column says "reference not installed" and tsfm is still timed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent


def _sizes(s: Any) -> dict:
    if s.dry_run:
        return {"moirai": dict(d_model=64, num_layers=2), "moirai_rows": 1, "moirai_len": 512, "moirai_series": 8,
                "c2": dict(d_model=64, d_kv=16, d_ff=128, num_heads=4, num_layers=2, context_length=256,
                           max_output_patches=4, initializer_factor=0.25),
                "c2_series": 16, "t5": dict(size="tiny", overrides=dict(num_layers=1, num_decoder_layers=1, d_model=64)),
                "t5_series": 4, "t5_samples": 4, "ctx": 128, "repeats": 1, "size": "tiny"}  # fmt: skip
    return {"moirai": dict(d_model=384, num_layers=6), "moirai_rows": 32, "moirai_len": 512, "moirai_series": 256,
            "c2": dict(d_model=512, d_kv=64, d_ff=2048, num_heads=8, num_layers=6, context_length=2048,
                       max_output_patches=64, initializer_factor=0.25),
            "c2_series": 256, "t5": dict(size="small", overrides={}), "t5_series": 64, "t5_samples": 20,
            "ctx": 512, "repeats": 3, "size": "small"}  # fmt: skip


def _best(fn: Any, repeats: int, device: str) -> float:
    from common import sync

    fn()
    best = float("inf")
    for _ in range(repeats):
        sync(torch.device(device))
        t0 = time.perf_counter()
        fn()
        sync(torch.device(device))
        best = min(best, time.perf_counter() - t0)
    return best


def prepare(s: Any, work: Path) -> tuple[list[dict], dict]:
    """Write checkpoints and inputs under ``work``; return the scenarios and tsfm's timing callables."""
    from moirai_speed import make_batch

    from tsfm.forecast import load_forecaster
    from tsfm.models.chronos import convert as chronos_convert
    from tsfm.models.chronos.config import ChronosConfig
    from tsfm.models.chronos.model import ChronosModel
    from tsfm.models.chronos2 import convert as chronos2_convert
    from tsfm.models.chronos2.config import Chronos2Config
    from tsfm.models.chronos2.model import Chronos2Model
    from tsfm.models.moirai import convert as moirai_convert
    from tsfm.models.moirai.config import MoiraiConfig
    from tsfm.models.moirai.model import MoiraiModel

    z, dev, work = _sizes(s), s.device, Path(work)
    torch.manual_seed(0)
    m_dir = moirai_convert.save_pretrained(MoiraiModel(MoiraiConfig(**z["moirai"])), work / "moirai")
    c2_dir = chronos2_convert.save_pretrained(Chronos2Model(Chronos2Config(**z["c2"])), work / "chronos2")
    t5_dir = chronos_convert.save_pretrained(ChronosModel(ChronosConfig.from_name(z["t5"]["size"], **z["t5"]["overrides"])), work / "chronos")
    batch = make_batch(rows=z["moirai_rows"], length=z["moirai_len"], ps=32)
    save_file({k: v.contiguous() for k, v in batch.items()}, str(work / "moirai_batch.safetensors"))
    g = np.random.default_rng(0)
    for name, n in (("moirai", z["moirai_series"]), ("c2", z["c2_series"]), ("t5", z["t5_series"])):
        np.save(work / f"ctx_{name}.npy", (g.normal(size=(n, z["ctx"])).cumsum(-1) + 50).astype(np.float32))
    ctx = {k: list(np.load(work / f"ctx_{k}.npy")) for k in ("moirai", "c2", "t5")}
    r = z["repeats"]
    scenarios = [
        {"name": "moirai_train", "kind": "moirai_train", "ckpt": str(m_dir), "batch": str(work / "moirai_batch.safetensors"), "repeats": r,
         "label": f"Moirai-{z['size']} train step, {z['moirai_rows']}x{z['moirai_len']} tokens, fp32", "items": batch["sample_id"].numel(), "unit": "tokens/s"},
        {"name": "moirai_forecast", "kind": "moirai_forecast", "ckpt": str(m_dir), "context": str(work / "ctx_moirai.npy"), "horizon": 48,
         "patch_size": 32, "num_samples": 100, "repeats": r, "label": f"Moirai-{z['size']} forecast {z['moirai_series']} series, 100 samples",
         "items": z["moirai_series"], "unit": "series/s"},
        {"name": "chronos2_forecast", "kind": "chronos2_forecast", "model_dir": str(c2_dir), "context": str(work / "ctx_c2.npy"), "horizon": 64,
         "batch_size": 256, "repeats": r, "label": f"Chronos-2-{z['size']} forecast {z['c2_series']} series, batch 256", "items": z["c2_series"], "unit": "series/s"},
        {"name": "chronos_forecast", "kind": "chronos_forecast", "model_dir": str(t5_dir), "context": str(work / "ctx_t5.npy"), "horizon": 64 if not s.dry_run else 8,
         "num_samples": z["t5_samples"], "repeats": r, "label": f"Chronos-T5-{z['t5']['size']} forecast {z['t5_series']} series, {z['t5_samples']} samples",
         "items": z["t5_series"], "unit": "series/s"},
    ]  # fmt: skip
    narrow = {k: (v[..., :32] if v.ndim == 3 else v).to(dev) for k, v in batch.items()}  # width = the active patch

    def moirai_train(dtype: torch.dtype | None = None) -> Any:
        model = moirai_convert.load_model(m_dir).train().to(dev)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step() -> None:
            with torch.autocast(dev, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = model(narrow)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return step

    f_m, f_c2, f_t5 = (load_forecaster(d, device=dev) for d in (m_dir, c2_dir, t5_dir))
    ours = {
        "moirai_train": moirai_train,
        "moirai_forecast": lambda: lambda: f_m.predict_samples(ctx["moirai"], 48, num_samples=100, patch_size=32,
                                                               batch_size=len(ctx["moirai"])),
        "chronos2_forecast": lambda: lambda: f_c2.predict_quantiles(ctx["c2"], 64, batch_size=256),
        "chronos_forecast": lambda: lambda: f_t5.predict_samples(ctx["t5"], scenarios[3]["horizon"], num_samples=z["t5_samples"]),
    }  # fmt: skip
    return scenarios, ours


def run_reference(s: Any, scenarios: list[dict], work: Path) -> dict:
    """The worker's results, or ``{"error": ...}`` (e.g. "reference not installed")."""
    py = Path(s.anchors) / "bin" / "python"
    if not py.exists():
        return {"error": f"reference not installed ({py} missing; see ../shared/anchors/README.md)"}
    spec = work / "reference_spec.json"
    spec.write_text(json.dumps({"device": s.device, "scenarios": scenarios, "threads": torch.get_num_threads()}))
    from common import shared_dir

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shared_dir("anchors")), str(HERE)])}
    try:
        out = subprocess.run([str(py), str(HERE / "reference_worker.py"), str(spec)], capture_output=True, text=True,
                             env=env, timeout=max(60.0, min(300.0, s.time_left())))  # fmt: skip
    except subprocess.TimeoutExpired:
        return {"error": "reference run timed out"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
        return {"error": f"reference run failed (rc {out.returncode}): {out.stderr[-800:]}"}
    return json.loads(lines[-1][len("RESULT "):])


def run(s: Any) -> dict:
    work = Path(s.out) / "work" / "reference"
    work.mkdir(parents=True, exist_ok=True)
    scenarios, ours = prepare(s, work)
    ref = run_reference(s, scenarios, work)  # first: the references get the device to themselves
    rows = []
    for sc in scenarios:
        row: dict[str, Any] = {"scenario": sc["label"], "unit": sc["unit"]}
        try:
            row["tsfm_s"] = _best(ours[sc["name"]](), sc["repeats"], s.device)
            row["tsfm_rate"] = round(sc["items"] / row["tsfm_s"], 1)
        except torch.cuda.OutOfMemoryError as e:
            row |= {"status": "oom", "error": str(e)[:300]}
        except Exception as e:  # noqa: BLE001
            row |= {"status": "error", "error": f"{type(e).__name__}: {e}"[:500]}
        r = ref.get("scenarios", {}).get(sc["name"], {"error": ref.get("error", "no result")})
        if "seconds" in r:
            row["reference_s"] = r["seconds"]
            row["reference_rate"] = round(sc["items"] / r["seconds"], 1)
            if "tsfm_s" in row:
                row["speedup"] = round(r["seconds"] / row["tsfm_s"], 2)
        else:
            row["reference"] = r["error"][:300]
        row.setdefault("status", "ok")
        rows.append(row)
        if sc["name"] == "moirai_train" and "tsfm_s" in row:  # bf16 autocast: what trainer=gpu runs
            try:
                t = _best(ours["moirai_train"](torch.bfloat16), sc["repeats"], s.device)
                rows.append({"scenario": sc["label"].replace("fp32", "tsfm bf16 autocast"), "unit": sc["unit"],
                             "tsfm_s": t, "tsfm_rate": round(sc["items"] / t, 1), "status": "ok",
                             "speedup": round(r["seconds"] / t, 2) if "seconds" in r else None,
                             "reference": "vs reference fp32" if "seconds" in r else r.get("error", "")[:300]})  # fmt: skip
            except Exception as e:  # noqa: BLE001
                rows.append({"scenario": "Moirai train step, tsfm bf16 autocast", "status": "error",
                             "error": f"{type(e).__name__}: {e}"[:300]})  # fmt: skip
    notes = ["speedup = reference seconds / tsfm seconds (best of the repeats after a warm-up), same device, "
             "weights and inputs; references in a subprocess with the anchors venv",
             f"reference: {ref['error']}" if "error" in ref else f"reference torch {ref.get('torch')}"]  # fmt: skip
    if s.dry_run:
        notes.append("dry run: tiny shapes on the CPU (the GPU run uses the small shapes)")
    states = {r["status"] for r in rows}
    return {"status": "ok" if states <= {"ok"} else "partial", "rows": rows, "notes": notes}


if __name__ == "__main__":
    sys.exit("run through experiments/gpu/check.py")
