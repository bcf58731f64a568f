"""Tokenizer: exact equality with the reference fixture, plus the bad-input behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tsfm.models.chronos.config import ChronosConfig
from tsfm.models.chronos.tokenizer import MeanScaleUniformBins, left_pad_stack


@pytest.fixture(scope="module")
def cases(fixtures_dir):
    return load_file(str(fixtures_dir / "chronos_t5" / "cases.safetensors"))


@pytest.fixture(scope="module")
def tok():
    return MeanScaleUniformBins(ChronosConfig())


def test_centers_and_boundaries_bitwise(tok, cases):
    assert torch.equal(tok.centers, cases["tokenizer_context.centers"])
    assert torch.equal(tok.boundaries, cases["tokenizer_context.boundaries"])
    # the float32 linspace asymmetry is real: a float64 linspace cast down differs
    f64 = torch.linspace(-15, 15, 4093, dtype=torch.float64).float()
    assert not torch.equal(f64, tok.centers)


def test_context_transform_exact(tok, cases):
    ids, mask, scale = tok.context_input_transform(cases["tokenizer_context.context"])
    assert ids.shape == (8, 513) and ids.dtype == torch.int64
    assert torch.equal(ids, cases["tokenizer_context.token_ids"])
    assert torch.equal(mask, cases["tokenizer_context.attention_mask"])
    torch.testing.assert_close(scale, cases["tokenizer_context.scale"], rtol=1e-6, atol=0)


def test_label_and_edge_transform_exact(tok, cases):
    ids, mask = tok.label_input_transform(cases["tokenizer_label.label"], cases["tokenizer_label.scale"])
    assert torch.equal(ids, cases["tokenizer_label.token_ids"])
    assert torch.equal(mask, cases["tokenizer_label.attention_mask"])
    ids, mask = tok.label_input_transform(cases["tokenizer_label.edge_label"], torch.ones(1))
    assert torch.equal(ids, cases["tokenizer_label.edge_token_ids"])
    assert torch.equal(mask, cases["tokenizer_label.edge_attention_mask"])


def test_output_transform_exact(tok, cases):
    values = tok.output_transform(cases["tokenizer_output.samples"], cases["tokenizer_output.scale"])
    assert torch.equal(values, cases["tokenizer_output.values"])


def test_all_nan_and_all_zero_rows_get_scale_one(tok):
    ctx = torch.tensor([[float("nan")] * 5, [0.0] * 5, [2.0, -2.0, float("nan"), 4.0, 0.0]])
    ids, mask, scale = tok.context_input_transform(ctx)
    assert scale.tolist() == [1.0, 1.0, 2.0]
    assert ids[0, :-1].eq(0).all() and not mask[0, :-1].any()  # NaN -> PAD, mask off
    assert ids[:, -1].eq(1).all() and mask[:, -1].all()  # EOS appended, mask on
    zero_id = int(torch.bucketize(torch.tensor(0.0), tok.boundaries, right=True)) + 2
    assert ids[1, :-1].eq(zero_id).all()
    assert tok.centers[zero_id - 3].abs() < 1e-6  # zero decodes back to ~0


def test_long_context_truncated_and_scaled_on_last_512(tok):
    x = torch.cat([torch.full((100,), 1000.0), torch.ones(512)])[None]  # [1, 612]
    ids, mask, scale = tok.context_input_transform(x)
    assert ids.shape == (1, 513)
    assert scale.item() == 1.0  # the 1000s were dropped before scaling


def test_values_beyond_limits_clip_to_edge_bins(tok):
    x = torch.ones(1, 202)
    x[0, 100], x[0, 150] = 1000.0, -1000.0  # scale ~10.9, so these are ~+-92 scales
    ids, _, scale = tok.context_input_transform(x)
    assert (x.abs() / scale).max() > 15
    assert ids[0, 100] == 4095 and ids[0, 150] == 3  # the edge bins
    dec = tok.output_transform(ids[:, None, :-1], scale)[0, 0]
    assert dec[100].item() == pytest.approx(15 * scale.item())
    assert dec[150].item() == pytest.approx(-15 * scale.item())
    # labels (tokenised with the context scale) may hold +-inf: top / lowest-but-unused ids
    lab, _ = tok.label_input_transform(torch.tensor([[float("inf"), -1e30]]), torch.ones(1))
    assert lab[0, :2].tolist() == [4095, 2]


def test_left_pad_stack_pads_left_and_truncates():
    out = left_pad_stack([np.arange(3.0), np.arange(5.0)])
    assert out.shape == (2, 5)
    assert torch.isnan(out[0, :2]).all() and out[0, 2:].tolist() == [0.0, 1.0, 2.0]
    assert left_pad_stack([np.arange(10.0)], max_length=4)[0].tolist() == [6.0, 7.0, 8.0, 9.0]
    with pytest.raises(ValueError, match="non-empty"):
        left_pad_stack([])
    with pytest.raises(ValueError, match="1-D"):
        left_pad_stack([np.zeros((2, 3))])
