"""MoiraiTask: windows, patch sizes, masking, concatenation and first-fit-decreasing packing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsfm.data.types import Series, TaskBuilder
from tsfm.models.moirai.config import MoiraiConfig
from tsfm.models.moirai.model import MoiraiModel
from tsfm.models.moirai.task import MoiraiTask, _first_fit_decreasing


def _corpus(n: int = 120, seed: int = 0) -> list[Series]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        v = 1 if i % 3 else int(rng.integers(2, 5))
        t = int(rng.integers(40, 2500))
        x = rng.normal(size=(v, t)).astype(np.float32).cumsum(-1)
        x[:, rng.random(t) < 0.05] = np.nan
        cov = rng.normal(size=(2, t)).astype(np.float32) if i % 7 == 0 else None
        out.append(Series(x, ["h", "D", "W", "ME", "15min"][i % 5], dataset=f"ds{i % 3}", past_feat_dynamic_real=cov))
    return out


def test_is_a_task_builder():
    assert isinstance(MoiraiTask(), TaskBuilder)
    assert MoiraiTask().min_length == 16 and MoiraiTask(patch_size=32).min_length == 64


def test_windows_respect_limits():
    task, rng = MoiraiTask(concat_univariate=False), np.random.default_rng(0)
    for s in _corpus():
        x = task(s, rng)
        if x is None:
            continue
        p = x["patch_size"]
        assert p in task.allowed(s.freq) and "full" not in x
        v, t = x["target"].shape
        c = 0 if x["cov"] is None else x["cov"].shape[0]
        assert t % p == 0 and t // p >= 2 and (v + c) * (t // p) <= 512
        assert 0.15 <= x["ratio"] <= 0.5 and 1 <= x["k"] <= 128


def test_concatenated_groups_fit_and_keep_windows_long():
    task, rng = MoiraiTask(concat_univariate=True), np.random.default_rng(0)
    uni = [Series(np.arange(3000, dtype=np.float32)[None] + 10000 * i, "D", dataset="same") for i in range(64)]
    samples = [task(s, rng) for s in uni]
    assert all("full" in x for x in samples)
    merged = task._concat(samples)
    assert sum(m["target"].shape[0] for m in merged) == 64 and task.stats["concatenated"] > 0
    for m in merged:
        k, length = m["target"].shape
        n = length // m["patch_size"]
        assert 2 <= n and k * n <= 512
        # each variate is a contiguous window of its own series (values are arange + offset)
        assert (np.diff(m["target"], axis=1) == 1).all()
    # the window length follows U[2, 512 // k], not the shortest member
    assert np.mean([m["target"].shape[1] // m["patch_size"] * m["target"].shape[0] for m in merged]) > 100


def test_short_series_skipped_and_counted():
    task = MoiraiTask()
    short = Series(np.ones((1, 40), np.float32), "h")  # hourly needs 2 x 32 steps
    assert task(short, np.random.default_rng(0)) is None
    assert task.stats["skipped_short"] == 1


def test_fixed_patch_size_validated_against_freq():
    task = MoiraiTask(patch_size=16)
    with pytest.raises(ValueError, match=r"allowed patch sizes: \[32, 64\]"):
        task(Series(np.ones((1, 500), np.float32), "h"), np.random.default_rng(0))
    with pytest.raises(ValueError, match="not one of the model's patch sizes"):
        MoiraiTask(patch_size=24)


def test_same_rng_same_batch():
    corpus = _corpus(60)

    def batch(seed):
        task, rng = MoiraiTask(), np.random.default_rng(seed)
        return task.collate([task(s, rng) for s in corpus])

    a, b = batch(1), batch(1)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_collate_packs_consistently():
    task, rng = MoiraiTask(concat_univariate=True), np.random.default_rng(0)
    samples = [task(s, rng) for s in _corpus() * 4]
    batch = task.collate(samples)
    r, seq, w = batch["target"].shape
    assert seq == 512 and w == max(s["patch_size"] for s in samples if s)
    assert task.padding_fraction < 0.05 and task.stats["concatenated"] > 0
    sid, ps, pred = batch["sample_id"], batch["patch_size"], batch["prediction_mask"]
    obs = batch["observed_mask"]
    pos = torch.arange(w)
    assert not (obs & (pos >= ps.unsqueeze(-1))).any()  # nothing observed beyond a token's patch
    assert ((sid == 0) == (ps == 0)).all() and not pred[sid == 0].any()
    assert torch.isfinite(batch["target"]).all()
    for row in range(r):  # tokens of a sample are contiguous, padding only at the end of a row
        s = sid[row]
        n = int((s > 0).sum())
        assert (s[n:] == 0).all() and (s[:n] > 0).all()
        assert batch["series_id"][row].max() < 512
        for k in s.unique().tolist():
            tok = s == k
            if k == 0:
                continue
            where = tok.nonzero().squeeze(1)
            assert where[-1] - where[0] + 1 == where.numel()
            assert pred[row][tok].any() and (~pred[row][tok]).any()  # context and horizon
            assert len(ps[row][tok].unique()) == 1


def test_packed_batch_trains_tiny_model():
    task, rng = MoiraiTask(), np.random.default_rng(0)
    batch = task.collate([task(s, rng) for s in _corpus(30)])
    batch = {k: v[:2] for k, v in batch.items()}
    model = MoiraiModel(MoiraiConfig(d_model=64, num_layers=1))
    loss = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and model.in_proj.weight.grad.abs().sum() > 0


def test_first_fit_decreasing():
    rows, offs = _first_fit_decreasing(np.array([300, 200, 250, 212, 50]), 512)
    # 300 -> row 0, 250 -> row 1, 212 -> row 0 (512), 200 -> row 1 (450), 50 -> row 1 (500)
    np.testing.assert_array_equal(rows, [0, 1, 1, 0, 1])
    np.testing.assert_array_equal(offs, [0, 250, 0, 300, 450])


def test_the_structural_corpus_trains_every_patch_size_the_dev_suite_forecasts_with():
    """Regression (issue 11): KernelSynth is stored as hourly, so a Moirai trained on it only ever
    trained its patch-32/64 projections, while yearly/quarterly/monthly forecasts use patch 8/16."""
    from omegaconf import OmegaConf

    from tsfm.data.synthetic.kernelsynth import generate_kernelsynth
    from tsfm.data.synthetic.structural import generate_structural
    from tsfm.models.moirai.config import allowed_patch_sizes

    task, rng = MoiraiTask(concat_univariate=False), np.random.default_rng(0)
    kernelsynth = {task(s, rng)["patch_size"] for s in generate_kernelsynth(20, length=256)}
    assert kernelsynth <= {32, 64}
    structural = [s for g in ("trend_seasonal", "ets", "arima") for s in generate_structural(g, 150, seed=0)]
    trained = {x["patch_size"] for s in structural if (x := task(s, rng)) is not None}
    from pathlib import Path

    dev = OmegaConf.load(Path(__file__).resolve().parents[3] / "conf" / "eval" / "dev.yaml").datasets
    used = {p for d in dev for p in allowed_patch_sizes(d.freq, task.patch_sizes)}
    assert used <= trained, f"patch sizes used by the dev suite but never trained: {used - trained}"


def test_univariate_concatenation_is_off_by_default():
    # unrelated univariate series stacked into one sample almost stopped learning (experiments/parity/README.md)
    task, rng = MoiraiTask(), np.random.default_rng(0)
    samples = [task(s, rng) for s in _corpus() * 4]
    task.collate([x for x in samples if x])
    assert task.concat_univariate is False and task.stats["concatenated"] == 0
