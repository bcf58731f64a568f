"""Two gloo processes on CPU draw different windows per rank (and each rank its own fixed stream)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.data.conftest import make_series
from tsfm.data.datamodule import TSDataModule
from tsfm.data.format import write_dataset
from tsfm.data.tasks import FixedWindowTask


def _worker(rank: int, world: int, root: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{root}/pg", rank=rank, world_size=world)
    try:
        dm = TSDataModule([{"path": f"{root}/d"}], FixedWindowTask(16, 4), batch_size=8, num_workers=1)
        dm.setup("fit")
        batches = [b["context"] for _, b in zip(range(3), dm.train_dataloader())]
        gathered: list = [None] * world
        dist.all_gather_object(gathered, torch.stack(batches))
        if rank == 0:
            torch.save(gathered, f"{root}/out.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.dist
def test_two_gloo_ranks_draw_different_windows(tmp_path: Path) -> None:
    write_dataset(make_series(40, [200] * 40), tmp_path / "d")
    mp.spawn(_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = torch.load(tmp_path / "out.pt", weights_only=True)
    assert r0.shape == r1.shape == (3, 8, 16)
    assert not torch.equal(r0, r1)
    # each rank's stream is its own fixed stream: rank 1 in one process gives the same batches
    from tsfm.data.corpus import Corpus
    from tsfm.data.sampler import WindowSampler

    task = FixedWindowTask(16, 4)
    for rank, got in ((0, r0), (1, r1)):
        s = WindowSampler(Corpus.open([tmp_path / "d"]), task, batch_size=8, rank=rank)
        want = torch.stack([task.collate(s.sample(step))["context"] for step in range(3)])
        assert torch.equal(got, want)
