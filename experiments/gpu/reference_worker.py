"""Times the reference libraries for the GPU check; runs in the anchors venv, never imports tsfm.

``python reference_worker.py SPEC.json`` with a list of scenarios (written by ``references.py``)
on the same device, weights and inputs as tsfm's side. Prints one ``RESULT {json}`` line:
per scenario the best seconds over the repeats (after one warm-up call, device-synchronised),
or the error that stopped it. Needs ``../shared/anchors`` on PYTHONPATH (``jaxtyping_shim``).
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable

import numpy as np
import torch


def best_time(fn: Callable[[], object], repeats: int, device: str) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def moirai_train(sc: dict, device: str) -> float:
    import jaxtyping_shim  # noqa: F401  (stands in for jaxtyping.PyTree)
    from safetensors.torch import load_file
    from uni2ts.loss.packed import PackedNLLLoss
    from uni2ts.model.moirai import MoiraiModule

    module = MoiraiModule.from_pretrained(sc["ckpt"]).train().to(device)
    b = {k: v.to(device) for k, v in load_file(sc["batch"]).items()}
    opt, loss_fn = torch.optim.AdamW(module.parameters(), lr=1e-4), PackedNLLLoss()
    names = ("target", "observed_mask", "sample_id", "time_id", "variate_id", "prediction_mask", "patch_size")

    def step() -> None:
        distr = module(*(b[k] for k in names))
        loss = loss_fn(pred=distr, target=b["target"], prediction_mask=b["prediction_mask"],
                       observed_mask=b["observed_mask"], sample_id=b["sample_id"], variate_id=b["variate_id"])  # fmt: skip
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return best_time(step, sc["repeats"], device)


def moirai_forecast(sc: dict, device: str) -> float:
    import jaxtyping_shim  # noqa: F401
    from uni2ts.model.moirai import MoiraiForecast, MoiraiModule

    module = MoiraiModule.from_pretrained(sc["ckpt"]).eval()
    ctx = torch.from_numpy(np.load(sc["context"]))[..., None].to(device)  # [N, T, 1]
    fc = MoiraiForecast(module=module, prediction_length=sc["horizon"], context_length=ctx.shape[1],
                        patch_size=sc["patch_size"], num_samples=sc["num_samples"], target_dim=1,
                        feat_dynamic_real_dim=0, past_feat_dynamic_real_dim=0).to(device)  # fmt: skip

    def forecast() -> None:
        with torch.no_grad():
            fc(past_target=ctx, past_observed_target=torch.ones_like(ctx, dtype=torch.bool),
               past_is_pad=torch.zeros(ctx.shape[:2], dtype=torch.bool, device=device))  # fmt: skip

    return best_time(forecast, sc["repeats"], device)


def chronos2_forecast(sc: dict, device: str) -> float:
    from chronos.chronos2 import Chronos2Pipeline

    pipe = Chronos2Pipeline.from_pretrained(sc["model_dir"], device_map=device)
    ctx = list(np.load(sc["context"]))
    return best_time(lambda: pipe.predict(ctx, prediction_length=sc["horizon"], batch_size=sc["batch_size"]),
                     sc["repeats"], device)  # fmt: skip


def chronos_forecast(sc: dict, device: str) -> float:
    from chronos import ChronosPipeline

    pipe = ChronosPipeline.from_pretrained(sc["model_dir"], device_map=device, torch_dtype=torch.float32)
    ctx = [torch.from_numpy(x) for x in np.load(sc["context"])]
    return best_time(lambda: pipe.predict(ctx, prediction_length=sc["horizon"], num_samples=sc["num_samples"]),
                     sc["repeats"], device)  # fmt: skip


KINDS = {"moirai_train": moirai_train, "moirai_forecast": moirai_forecast,
         "chronos2_forecast": chronos2_forecast, "chronos_forecast": chronos_forecast}  # fmt: skip


def main() -> None:
    spec = json.loads(open(sys.argv[1]).read())
    device = spec["device"]
    torch.set_num_threads(spec.get("threads", torch.get_num_threads()))
    if device == "cuda" and not torch.cuda.is_available():
        print("RESULT " + json.dumps({"error": f"the reference venv's torch {torch.__version__} has no CUDA"}))
        return
    out = {}
    for sc in spec["scenarios"]:
        torch.manual_seed(0)
        try:
            out[sc["name"]] = {"seconds": KINDS[sc["kind"]](sc, device)}
        except Exception as e:  # noqa: BLE001 - one scenario's failure is reported, the others still run
            out[sc["name"]] = {"error": f"{type(e).__name__}: {e}"[:500], "traceback": traceback.format_exc()[-1500:]}
        if device == "cuda":
            torch.cuda.empty_cache()
    print("RESULT " + json.dumps({"scenarios": out, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
