"""Equivalence with the uni2ts 2.0.0 golden fixture (tests/fixtures/moirai_tiny), README tolerances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tsfm.models.moirai.convert import load_model
from tsfm.models.moirai.forecast_layout import convert_series, forecast_layout, stack_rows

KEYS = ("target", "observed_mask", "sample_id", "time_id", "variate_id", "prediction_mask", "patch_size")


@pytest.fixture(scope="module")
def cases(fixtures_dir):
    return load_file(str(fixtures_dir / "moirai_tiny" / "cases.safetensors"))


@pytest.fixture(scope="module")
def model(fixtures_dir):
    return load_model(fixtures_dir / "moirai_tiny" / "checkpoint").eval()


def _close(actual, expected, rtol=1e-5, atol=1e-4):
    torch.testing.assert_close(torch.as_tensor(actual), torch.as_tensor(expected), rtol=rtol, atol=atol)


@pytest.fixture(scope="module")
def packed(cases, model):
    batch = {k: cases[f"packed.{k}"] for k in KEYS}
    with torch.no_grad():
        h, loc, scale, _ = model.encode(**batch)
        distr = model.full_distribution(h, batch["patch_size"])  # all 128 positions, reference layout
        loss = model.loss(batch)
    return batch, h, loc, scale, distr, loss


def test_packed_scaler_bitwise(cases, packed):
    _, _, loc, scale, _, _ = packed
    assert torch.equal(loc, cases["packed.loc"])  # float64 segment sums, as the reference
    assert torch.equal(scale, cases["packed.scale"])


def test_packed_encoder_and_params(cases, packed):
    _, h, _, _, distr, _ = packed
    _close(h, cases["packed.encoder_out"], rtol=0, atol=1e-5)
    b, seq = h.shape[:2]
    names = {"0_studentt": 0, "1_normalfixed": 1, "2_negbin": 2, "3_lognormal": 3}
    for key, t in cases.items():
        if key.startswith("packed.distr_param.") and key != "packed.distr_param.weights_logits":
            comp, param = key.split(".")[2:]
            _close(distr.params[names[comp]][param].view(b, seq, -1), t, rtol=0, atol=1e-5)
    _close(distr.logits.view(b, seq, -1, 4), cases["packed.distr_param.weights_logits"], rtol=0, atol=1e-5)


def test_packed_mixture_layout_quirk(packed):
    """Patch <= 32: logits of components 1..3 are bias-only, hence equal across such tokens."""
    batch, h, _, _, distr, _ = packed
    logits = distr.logits.view(*h.shape[:2], -1, 4)
    tok16 = (batch["patch_size"] == 16).nonzero()
    first, other = logits[tuple(tok16[0])], logits[tuple(tok16[1])]
    assert torch.equal(first[:, 1:], other[:, 1:])
    assert not torch.equal(first[:, 0], other[:, 0])


def test_packed_log_prob_mean_variance_loss(cases, packed):
    batch, h, loc, scale, distr, loss = packed
    b, seq, p = batch["target"].shape
    args = (loc.reshape(-1, 1), scale.reshape(-1, 1))
    lp = distr.log_prob(batch["target"].reshape(b * seq, p), *args).view(b, seq, p)
    _close(lp, cases["packed.log_prob"], rtol=0, atol=1e-3)
    _close(distr.mean(*args).view(b, seq, p), cases["packed.mean"])
    _close(distr.variance(args[1]).view(b, seq, p), cases["packed.variance"])
    _close(loss, cases["packed.loss"], rtol=1e-5, atol=0)


def test_loss_on_narrow_batch_equals_full_width(cases, model, packed):
    """Batches carry only the widest active patch (64 here), not 128: same loss."""
    batch = {k: v.clone() for k, v in packed[0].items()}
    batch["target"], batch["observed_mask"] = batch["target"][..., :64], batch["observed_mask"][..., :64]
    with torch.no_grad():
        _close(model.loss(batch), cases["packed.loss"], rtol=1e-5, atol=0)


@pytest.mark.parametrize("case,h", [("forecast", 24), ("forecast_unaligned", 20)])
def test_forecast_layout_and_means(cases, model, case, h):
    g = {k.split(".", 1)[1]: v.numpy() for k, v in cases.items() if k.startswith(case + ".")}
    rows = [
        convert_series(
            g["past_target"][i].T, g["past_observed_target"][i].T, g["past_is_pad"][i], h, 16,
            g["feat_dynamic_real"][i].T, g["observed_feat_dynamic_real"][i].T.astype(bool),
            g["past_feat_dynamic_real"][i].T, g["past_observed_feat_dynamic_real"][i].T.astype(bool),
        )
        for i in range(g["past_target"].shape[0])
    ]
    st = stack_rows(rows, 16)
    for k in ("sample_id", "time_id", "variate_id", "prediction_mask"):
        np.testing.assert_array_equal(st[k], g[f"packed.{k}"], err_msg=k)
    for k in ("target", "observed_mask"):  # ours is patch-wide; the reference pads to 128 with 0/False
        np.testing.assert_array_equal(st[k], g[f"packed.{k}"][..., :16], err_msg=k)
        assert not g[f"packed.{k}"][..., 16:].any()
    batch = {k: torch.from_numpy(v) for k, v in st.items()}
    b, d = g["past_target"].shape[0], g["past_target"].shape[2]
    with torch.no_grad():
        hid, loc, scale, _ = model.encode(**batch)
        assert torch.equal(loc, torch.from_numpy(g["loc"])) and torch.equal(scale, torch.from_numpy(g["scale"]))
        full = model.full_distribution(hid, batch["patch_size"], 128)
        _close(full.mean(loc.reshape(-1, 1), scale.reshape(-1, 1)).view(b, -1, 128), g["mean_packed"])
        idx = batch["prediction_mask"].reshape(-1).nonzero().squeeze(1)
        distr = model.distribution(hid.reshape(-1, hid.shape[-1])[idx], 16)
        mean = distr.mean(loc.reshape(-1, 1)[idx], scale.reshape(-1, 1)[idx]).view(b, -1, 16).numpy()
        var = distr.variance(scale.reshape(-1, 1)[idx]).view(b, -1, 16).numpy()
    mean, var = forecast_layout(mean, d, h, 16), forecast_layout(var, d, h, 16)  # [B, D, H]
    exp_mean, exp_var = g["forecast_mean"], g["forecast_variance"]
    if d == 1:
        exp_mean, exp_var = exp_mean[:, None], exp_var[:, None]
    else:
        exp_mean, exp_var = exp_mean.transpose(0, 2, 1), exp_var.transpose(0, 2, 1)
    _close(mean, exp_mean)
    _close(var, exp_var)
