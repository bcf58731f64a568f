"""FSDP2 through ``trainer=fsdp_64gpu``'s path on a 1-device mesh: train, export, reload on the CPU.

The config is ``trainer=fsdp_64gpu`` with ``trainer.devices=1 trainer.num_nodes=1`` (dry run:
also ``trainer.accelerator=cpu``, gloo), so Lightning's ``ModelParallelStrategy`` calls
``TSFMModule.configure_model``, which applies ``fully_shard`` to every block and the root.
After training, ``tsfm.training.export.export`` gathers the shards and writes the checkpoint directory.
Checked per family:

* the parameters really are DTensors (sharded), and training moved them;
* the export reloads with ``load_forecaster`` on the CPU and forecasts **identically** (bitwise)
  to a CPU model holding the gathered full state dict;
* the sharded model's fp32 loss on the first training batch on the device agrees with the
  reloaded CPU model's (device-vs-CPU rounding only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch


def _one(s: Any, fam: str) -> dict:
    from hydra.utils import instantiate
    from training import fit_run

    from tsfm.forecast import load_forecaster
    from tsfm.training.export import export
    from tsfm.training.parallelize import full_state_dict, is_sharded
    from tsfm.utils.config import to_plain

    extra = ["trainer.devices=1", "trainer.num_nodes=1"] + (["trainer.accelerator=cpu"] if s.device == "cpu" else [])
    row = fit_run(s, fam, "fsdp2", extra, trainer="fsdp_64gpu", keep=True, warmup=1)
    row["run"] = "fsdp2 1-device mesh"
    objs = row.pop("_objects", None)
    if objs is None:
        return row
    cfg, module, trainer, monitor = objs
    try:
        row["sharded"] = is_sharded(module.model)
        out = Path(s.out) / "work" / "runs" / f"{fam}_fsdp2" / "export"
        export(cfg, module, trainer, out)
        full = full_state_dict(module.model)
        plain = instantiate(cfg.model.module, optim=to_plain(cfg.optim), _convert_="all")
        init = {k: v.clone() for k, v in plain.model.state_dict().items()}
        plain.model.load_state_dict(full)
        row["weights_changed"] = any(not torch.equal(init[k], full[k]) for k in init if k in full)
        g = np.random.default_rng(0)
        ctx = [(g.normal(size=200).cumsum() + 20).astype(np.float32) for _ in range(4)]
        reloaded, ours = load_forecaster(out), plain.forecaster()
        sd_a, sd_b = reloaded.model.state_dict(), ours.model.state_dict()
        row["weights_identical"] = sd_a.keys() == sd_b.keys() and all(torch.equal(sd_a[k], sd_b[k]) for k in sd_a)
        torch.manual_seed(0)
        a = reloaded.predict_quantiles(ctx, prediction_length=16)
        torch.manual_seed(0)
        b = ours.predict_quantiles(ctx, prediction_length=16)
        row["reload_identical"] = bool(np.array_equal(a, b))
        row["reload_max_abs_diff"] = float(np.abs(a - b).max())
        batch = monitor.first_batch
        module.eval()
        plain.eval()
        with torch.no_grad():
            dev_loss = float(module.compute_loss({k: v.to(module.device) for k, v in batch.items()}))
            cpu_loss = float(plain.compute_loss(batch))
        row["loss_device"], row["loss_cpu_reloaded"] = dev_loss, cpu_loss
        row["loss_rel_diff"] = abs(dev_loss - cpu_loss) / max(abs(cpu_loss), 1e-12)
        ok = row["sharded"] and row["reload_identical"] and row["loss_rel_diff"] < 1e-4
        row["status"] = "ok" if ok else "mismatch"
    except torch.cuda.OutOfMemoryError as e:
        row |= {"status": "oom", "error": f"out of memory at batch size {s.batch[fam]}: {str(e)[:200]}"}
    except Exception as e:  # noqa: BLE001
        row |= {"status": "error", "error": f"{type(e).__name__}: {e}"[:600]}
    return row


def run(s: Any) -> dict:
    rows = []
    for fam in s.families:
        rows.append(_one(s, fam))
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # the next family's strategy starts a fresh group
    from common import status_of

    status = status_of(rows)
    notes = ["trainer=fsdp_64gpu trainer.devices=1 trainer.num_nodes=1" + (" trainer.accelerator=cpu (gloo)" if
             s.device == "cpu" else " (NCCL)") + ": Lightning ModelParallelStrategy + fully_shard per block",
             "reload_identical: export -> load_forecaster on the CPU vs the gathered state dict on the CPU, "
             "bitwise; loss_rel_diff: sharded model on the device (fp32) vs the reloaded CPU model, first batch "
             "(tolerance 1e-4)"]  # fmt: skip
    return {"status": status, "rows": rows, "notes": notes}
