"""Times the reference chronos-forecasting 2.3.2 Chronos-2 on one scenario (run with the anchors venv).

Invoked by ``chronos2_speed.py`` through ``/tmp/tsfm-anchors/bin/python``; never imported by tsfm.
Reads a JSON scenario from argv[1], prints one JSON line with the per-repeat seconds and the
counted GFLOP of one call (``flop_count.py`` beside this file).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch
from flop_count import count_flops


def main() -> None:
    spec = json.loads(sys.argv[1])
    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    from chronos.chronos2 import Chronos2Pipeline

    pipe = Chronos2Pipeline.from_pretrained(spec["model_dir"])
    model = pipe.model
    rng = np.random.default_rng(spec.get("seed", 0))
    b, t, h = spec["batch"], spec["context"], spec["horizon"]
    x = rng.standard_normal((b, t + h)).astype(np.float32).cumsum(-1)
    times, flops = [], 0
    if spec["kind"] == "forecast":
        model.eval()
        inputs = list(x[:, :t])
        pipe.predict(inputs[:8], prediction_length=h)
        for _ in range(spec["repeats"]):
            t0 = time.perf_counter()
            pipe.predict(inputs, prediction_length=h, batch_size=spec.get("batch_size", 256))
            times.append(time.perf_counter() - t0)
        flops = count_flops(lambda: pipe.predict(inputs, prediction_length=h, batch_size=spec.get("batch_size", 256)))
    elif spec["kind"] == "forward":  # model forward with given group sizes
        model.eval()
        ctx = torch.from_numpy(x[:, :t])
        gids = torch.arange(b) // spec["group_size"]
        n = -(-h // 16)
        with torch.no_grad():
            model(ctx[:8], group_ids=gids[:8], num_output_patches=n)
            for _ in range(spec["repeats"]):
                t0 = time.perf_counter()
                model(ctx, group_ids=gids, num_output_patches=n)
                times.append(time.perf_counter() - t0)
            flops = count_flops(lambda: model(ctx, group_ids=gids, num_output_patches=n))
    elif spec["kind"] == "train":
        model.train()
        ctx, fut = torch.from_numpy(x[:, :t]), torch.from_numpy(x[:, t:])
        gids = torch.arange(b)
        n = -(-h // 16)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
        dtype = getattr(torch, spec.get("autocast") or "float32")
        def step() -> None:
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                loss = model(ctx, group_ids=gids, num_output_patches=n, future_target=fut).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        for i in range(spec["repeats"] + 1):
            t0 = time.perf_counter()
            step()
            if i:  # first step is warm-up
                times.append(time.perf_counter() - t0)
        flops = count_flops(step)
    else:
        raise ValueError(spec["kind"])
    print(json.dumps({"times": times, "gflop": flops / 1e9}))


if __name__ == "__main__":
    main()
