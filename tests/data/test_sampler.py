"""Weighted sampling, length-proportional item choice, determinism, workers, ranks, page release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tests.data.conftest import make_series
from tsfm.data.corpus import Corpus
from tsfm.data.datamodule import BatchStream
from tsfm.data.format import write_dataset
from tsfm.data.sampler import WindowSampler
from tsfm.data.tasks import FixedWindowTask
from tsfm.data.types import Series


def corpus_of(tmp_path: Path, sizes: dict[str, list[int]], weights: list[float] | None = None) -> Corpus:
    for i, (name, lengths) in enumerate(sizes.items()):
        write_dataset(make_series(len(lengths), lengths, seed=i, prefix=f"{name}_"), tmp_path / name)
    return Corpus.open([tmp_path / n for n in sizes], weights)


def test_probabilities_capped_at_epsilon_then_renormalised(tmp_path: Path) -> None:
    corpus = corpus_of(tmp_path, {"big": [1000] * 8, "mid": [100] * 8, "small": [100]})
    obs = np.array([8000, 800, 100], float)
    np.testing.assert_allclose(corpus.probabilities(), obs / obs.sum())
    capped = np.minimum(obs / obs.sum(), 0.05)
    np.testing.assert_allclose(corpus.probabilities(epsilon=0.05), capped / capped.sum())
    corpus.weights = [1.0, 2.0, 0.0]
    np.testing.assert_allclose(corpus.probabilities("explicit"), [1 / 3, 2 / 3, 0])
    with pytest.raises(ValueError, match="weighting must be 'observations' or 'explicit'"):
        corpus.probabilities("uniform")


def test_items_drawn_proportional_to_length_and_short_ones_never(tmp_path: Path) -> None:
    corpus = corpus_of(tmp_path, {"d": [100, 300, 600, 5]})
    sampler = WindowSampler(corpus, FixedWindowTask(8, 2), batch_size=1)
    assert sampler.skipped_short == 1
    ids = [s.item_id for s in sampler.draw(np.random.default_rng(0), 20000)]
    freq = np.array([ids.count(f"d_{i}") for i in range(4)]) / len(ids)
    np.testing.assert_allclose(freq, [0.1, 0.3, 0.6, 0.0], atol=0.015)


def test_dataset_mix_follows_probabilities(tmp_path: Path) -> None:
    corpus = corpus_of(tmp_path, {"a": [200] * 4, "b": [200] * 4}, weights=[0.9, 0.1])
    sampler = WindowSampler(corpus, FixedWindowTask(16, 4), batch_size=4000, weighting="explicit")
    frac_a = np.mean([s["dataset"] == "a" for s in sampler.sample(0)])
    assert abs(frac_a - 0.9) < 0.02


def test_steps_are_deterministic_and_rank_specific(tmp_path: Path) -> None:
    corpus = corpus_of(tmp_path, {"d": [300] * 20})
    task = FixedWindowTask(32, 8)

    def windows(rank: int, step: int, seed: int = 0) -> np.ndarray:
        s = WindowSampler(corpus, task, batch_size=16, seed=seed, rank=rank)
        return np.stack([x["window"] for x in s.sample(step)])

    np.testing.assert_array_equal(windows(0, 5), windows(0, 5))
    assert not np.array_equal(windows(0, 5), windows(1, 5))
    assert not np.array_equal(windows(0, 5), windows(0, 6))
    assert not np.array_equal(windows(0, 5), windows(0, 5, seed=1))


def test_task_rejections_are_counted(tmp_path: Path) -> None:
    items = make_series(4, [100] * 4)
    for s in items[:2]:
        s.target[:] = np.nan  # all missing -> every context empty -> the task rejects it
    items[0].target[0, 0] = 1.0  # keep it a non-empty series on disk
    items[1].target[0, -1] = 1.0
    write_dataset(items, tmp_path / "d")
    sampler = WindowSampler(Corpus.open([tmp_path / "d"]), FixedWindowTask(10, 2), batch_size=200)
    batch = sampler.sample(0)
    assert len(batch) == 200 and sampler.skipped_by_task > 50
    assert all(not np.isnan(x["window"][:10]).all() for x in batch)


def test_dataloader_workers_yield_the_same_stream_as_one_process(tmp_path: Path) -> None:
    corpus = corpus_of(tmp_path, {"d": [300] * 20})
    task = FixedWindowTask(32, 8)
    sampler = WindowSampler(corpus, task, batch_size=8)

    def run(num_workers: int, start: int = 0) -> list[torch.Tensor]:
        loader = DataLoader(
            BatchStream(sampler, start, 6, tag=True), batch_size=None, num_workers=num_workers
        )
        return [b["context"] for b in loader]

    single, multi = run(0), run(2)
    assert len(single) == len(multi) == 6
    assert all(torch.equal(a, b) for a, b in zip(single, multi))
    resumed = run(2, start=3)  # steps 3..8: the first three equal steps 3..5 of the full run
    assert all(torch.equal(a, b) for a, b in zip(single[3:], resumed[:3]))


def test_release_bounds_mapped_pages(tmp_path: Path) -> None:
    corpus = corpus_of(tmp_path, {"d": [300] * 20})
    calls = []
    corpus.release = lambda: calls.append(1)  # type: ignore[method-assign]
    sampler = WindowSampler(corpus, FixedWindowTask(32, 8), batch_size=100, page_budget_mb=0)
    for step in range(4):
        sampler.sample(step)
    assert len(calls) >= 3
    corpus.datasets[0].release()  # the real madvise works on the mapping
    assert corpus.datasets[0].series(3).target.shape == (1, 300)


def test_uniform_item_weighting_draws_every_series_equally(tmp_path: Path) -> None:
    corpus = corpus_of(tmp_path, {"d": [100, 300, 600, 5]})
    sampler = WindowSampler(corpus, FixedWindowTask(8, 2), batch_size=1, item_weighting="uniform")
    ids = [s.item_id for s in sampler.draw(np.random.default_rng(0), 20000)]
    freq = np.array([ids.count(f"d_{i}") for i in range(4)]) / len(ids)
    np.testing.assert_allclose(freq, [1 / 3, 1 / 3, 1 / 3, 0.0], atol=0.015)
    with pytest.raises(ValueError, match="item_weighting must be 'length' or 'uniform'"):
        WindowSampler(corpus, FixedWindowTask(8, 2), batch_size=1, item_weighting="sqrt")


def test_early_weights_apply_to_the_first_steps_only(tmp_path: Path) -> None:
    corpus = corpus_of(tmp_path, {"a": [200] * 4, "b": [200] * 4}, weights=[0.5, 0.5])
    sampler = WindowSampler(corpus, FixedWindowTask(16, 4), batch_size=2000, weighting="explicit",
                            early_weights=[1.0, 0.0], early_steps=3)
    assert all(s["dataset"] == "a" for s in sampler.sample(2))  # curriculum phase
    late = np.mean([s["dataset"] == "a" for s in sampler.sample(3)])
    assert abs(late - 0.5) < 0.05
    again = WindowSampler(corpus, FixedWindowTask(16, 4), batch_size=2000, weighting="explicit",
                          early_weights=[1.0, 0.0], early_steps=3)
    np.testing.assert_array_equal(np.stack([x["window"] for x in again.sample(1)]),
                                  np.stack([x["window"] for x in sampler.sample(1)]))  # resumable
    with pytest.raises(ValueError, match="early_weights has 1 entries for 2 sub-datasets"):
        WindowSampler(corpus, FixedWindowTask(16, 4), batch_size=2, early_weights=[1.0], early_steps=3)


def _chronos2_task():
    from tsfm.models.chronos2.task import Chronos2Task

    return Chronos2Task(context_length=128, prediction_length=16, patch_size=16, min_past=4, min_future=1)


def test_length_groups_pad_less_and_keep_each_step_a_pure_function_of_the_step(tmp_path: Path) -> None:
    corpus = corpus_of(tmp_path, {"d": [10, 20, 40, 80, 160, 320, 640] * 4})
    task = _chronos2_task()
    plain = WindowSampler(corpus, task, batch_size=8, item_weighting="uniform")
    grouped = WindowSampler(corpus, task, batch_size=8, item_weighting="uniform", length_groups=4)

    def padded(sampler: WindowSampler, steps: range) -> int:  # context values a collated batch holds
        return sum(b["context"].numel() for b in (task.collate(sampler.sample(s)) for s in steps))

    assert padded(grouped, range(40)) < 0.8 * padded(plain, range(40))
    group = [grouped.sample(s) for s in range(8, 12)]  # steps 8..11 share one pool of 4 x 8 samples
    assert all(len(b) == 8 for b in group)
    spans = sorted((min(map(task.sample_length, b)), max(map(task.sample_length, b))) for b in group)
    assert all(hi <= lo2 for (_, hi), (lo2, _) in zip(spans, spans[1:]))  # sorted pool, cut in order
    # resumption: a fresh sampler asked for steps in another order gives identical batches
    again = WindowSampler(corpus, task, batch_size=8, item_weighting="uniform", length_groups=4)
    for s in (11, 9, 3, 8, 10):
        np.testing.assert_array_equal(task.collate(again.sample(s))["context"].numpy(),
                                      task.collate(grouped.sample(s))["context"].numpy())


def test_length_group_rejections_are_counted_once_per_pool(tmp_path: Path) -> None:
    items = make_series(4, [100] * 4)
    items[0].target[:] = np.nan
    items[0].target[0, -1] = 1.0  # the task rejects almost every window of this series
    write_dataset(items, tmp_path / "d")
    corpus = Corpus.open([tmp_path / "d"])
    counts = []
    for groups in (1, 4):
        sampler = WindowSampler(corpus, _chronos2_task(), batch_size=50, item_weighting="uniform", length_groups=groups)
        per_step = []
        for step in range(8):
            before = sampler.skipped_by_task
            sampler.sample(step)
            per_step.append(sampler.skipped_by_task - before)
        counts.append(per_step)
    assert sum(counts[0]) > 20 and abs(sum(counts[1]) - sum(counts[0])) < 0.5 * sum(counts[0])
    assert counts[1][1:4] == [0, 0, 0] and counts[1][4] > 0  # the pool's rejections land on its first step


def test_length_groups_need_a_task_that_pads_to_the_longest(tmp_path: Path) -> None:
    corpus = corpus_of(tmp_path, {"d": [300] * 4})
    with pytest.raises(ValueError, match="FixedWindowTask does not .*data.length_groups=1"):
        WindowSampler(corpus, FixedWindowTask(32, 8), batch_size=4, length_groups=8)
    with pytest.raises(ValueError, match="length_groups must be >= 1"):
        WindowSampler(corpus, _chronos2_task(), batch_size=4, length_groups=0)


def _mixed_freq_corpus(tmp_path: Path) -> Corpus:
    """Sub-dataset ``m``: items 0-1 yearly, 2-5 hourly; sub-dataset ``h``: hourly only."""
    start = np.datetime64("2000-01-01T00:00:00", "s")
    rng = np.random.default_rng(0)
    mixed = [Series(rng.standard_normal((1, 100)).astype(np.float32), "YS" if i < 2 else "h", f"m_{i}", "", start)
             for i in range(6)]
    write_dataset(mixed, tmp_path / "m")
    write_dataset(make_series(3, [100] * 3, prefix="h_"), tmp_path / "h")
    return Corpus.open([tmp_path / "m", tmp_path / "h"], [0.5, 0.5])


def test_freq_weights_reweight_items_within_each_sub_dataset(tmp_path: Path) -> None:
    corpus = _mixed_freq_corpus(tmp_path)
    task = FixedWindowTask(8, 2)
    plain = WindowSampler(corpus, task, batch_size=1, item_weighting="uniform", weighting="explicit")
    ids = [s.item_id for s in plain.draw(np.random.default_rng(0), 40000)]
    yearly = sum(i in ("m_0", "m_1") for i in ids) / len(ids)
    assert abs(yearly - 0.5 * 2 / 6) < 0.01
    # yearly x4 within "m": 2*4 / (2*4 + 4) of m's draws; "m" itself stays at half of all draws
    up = WindowSampler(corpus, task, batch_size=1, item_weighting="uniform", weighting="explicit",
                       freq_weights={"YS": 4.0})
    ids = [s.item_id for s in up.draw(np.random.default_rng(0), 40000)]
    assert abs(sum(i in ("m_0", "m_1") for i in ids) / len(ids) - 0.5 * 8 / 12) < 0.01
    assert abs(sum(i.startswith("m_") for i in ids) / len(ids) - 0.5) < 0.01
    # weight 0 for hourly: "h" has nothing left to draw and drops out; "m" draws yearly only
    only = WindowSampler(corpus, task, batch_size=1, item_weighting="uniform", weighting="explicit",
                         freq_weights={"h": 0.0})
    assert {s.item_id for s in only.draw(np.random.default_rng(0), 2000)} == {"m_0", "m_1"}


def test_freq_weights_reject_unknown_frequencies_and_negative_weights(tmp_path: Path) -> None:
    corpus = _mixed_freq_corpus(tmp_path)
    task = FixedWindowTask(8, 2)
    with pytest.raises(ValueError, match=r"names frequencies no corpus series has: \['YE-DEC'\]; the corpus has \['YS-JAN', 'h'\]"):
        WindowSampler(corpus, task, batch_size=1, freq_weights={"Y": 2.0})
    with pytest.raises(ValueError, match="freq_weights must be >= 0"):
        WindowSampler(corpus, task, batch_size=1, freq_weights={"YS": -1.0})
    with pytest.raises(ValueError, match="weighted 0 by data.freq_weights"):
        WindowSampler(corpus, task, batch_size=1, freq_weights={"YS": 0.0, "h": 0.0})
