"""T5 backbone: fixture teacher forcing, embed, and the sampler's equivalence to plain T5 / generate."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from transformers import GenerationConfig

from tsfm.models.chronos.config import ChronosConfig
from tsfm.models.chronos.convert import load_model
from tsfm.models.chronos.model import ChronosModel, filter_logits, shared_kv_attention
from tsfm.models.chronos.tokenizer import left_pad_stack

TF = "t5_teacher_forcing."


@pytest.fixture(scope="module")
def cases(fixtures_dir):
    return load_file(str(fixtures_dir / "chronos_t5" / "cases.safetensors"))


@pytest.fixture(scope="module")
def model(fixtures_dir):
    return load_model(fixtures_dir / "chronos_t5" / "checkpoint")


def test_teacher_forced_logits_and_loss_match_fixture(model, cases):
    batch = model.tokenize_batch(cases[TF + "context"], cases[TF + "future"])
    assert torch.equal(batch["input_ids"], cases[TF + "input_ids"])
    assert torch.equal(batch["labels"], cases[TF + "labels"])
    with torch.no_grad():
        out = model.t5(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]
        )
        loss = model(batch["input_ids"], batch["attention_mask"], batch["labels"])
    logits = out.logits  # [2, 65, 4096]
    torch.testing.assert_close(
        out.encoder_last_hidden_state, cases[TF + "encoder_last_hidden_state"], atol=1e-5, rtol=0
    )
    torch.testing.assert_close(logits[:, :16], cases[TF + "logits_first16"], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits.logsumexp(-1), cases[TF + "logits_logsumexp"], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits.amax(-1), cases[TF + "logits_max"], atol=1e-5, rtol=0)
    torch.testing.assert_close(logits.mean(-1), cases[TF + "logits_mean"], atol=1e-5, rtol=0)
    assert torch.equal(logits.argmax(-1), cases[TF + "logits_argmax"])
    labels = cases[TF + "labels"]
    at = logits.gather(-1, labels.clamp(min=0)[..., None])[..., 0]
    torch.testing.assert_close(at, cases[TF + "logits_at_labels"], atol=1e-5, rtol=0)
    ce = torch.where(labels == -100, 0.0, logits.logsumexp(-1) - at)
    torch.testing.assert_close(ce, cases[TF + "token_ce"], atol=1e-5, rtol=0)
    torch.testing.assert_close(loss, cases[TF + "loss"], atol=1e-5, rtol=1e-5)


def test_embed_matches_fixture(model, cases):
    ctx = left_pad_stack([cases["pipeline.context.0"], cases["pipeline.context.1"]])
    emb, scale = model.embed(ctx)
    assert emb.shape == (2, 61, 64)
    torch.testing.assert_close(emb, cases["pipeline.embed.embeddings"], atol=1e-5, rtol=0)
    torch.testing.assert_close(scale, cases["pipeline.embed.scale"], rtol=1e-6, atol=0)


def test_sampler_reproduces_reference_samples(model, cases):
    """Same probabilities and the same RNG use as the reference's generate: identical draws."""
    ctx = left_pad_stack([cases["pipeline.context.0"], cases["pipeline.context.1"]])
    ids, mask, _ = model.tokenizer.context_input_transform(ctx)
    torch.manual_seed(0)
    tokens = model.sample_tokens(ids, mask, 8, 5, temperature=1.0, top_k=50, top_p=1.0)
    assert torch.equal(tokens, cases["pipeline.predict.sample_token_ids"])


def test_sampler_step_logits_equal_teacher_forcing(model, cases):
    """Per-step logits of the KV-cached, shared-cross-attention decoder = T5 teacher-forced on the same paths."""
    ctx = left_pad_stack([cases["pipeline.context.0"], cases["pipeline.context.1"]])
    ids, mask, _ = model.tokenizer.context_input_transform(ctx)
    tokens, scores = model.sample_tokens(
        ids, mask, 12, 3, generator=torch.Generator().manual_seed(1), return_scores=True
    )
    b, s, h = tokens.shape
    flat = tokens.reshape(b * s, h)
    dec_in = torch.cat([torch.zeros(b * s, 1, dtype=torch.long), flat[:, :-1]], 1)
    with torch.no_grad():
        ref = model.t5(
            input_ids=ids.repeat_interleave(s, 0),
            attention_mask=mask.repeat_interleave(s, 0),
            decoder_input_ids=dec_in,
        ).logits.reshape(b, s, h, -1)
    ref[..., model.config.eos_token_id] = float("-inf")
    torch.testing.assert_close(scores, ref, atol=1e-5, rtol=0)
    # each sampled token lies in the top-50 of its step
    kth = scores.topk(50, -1).values[..., -1]
    assert (scores.gather(-1, tokens[..., None])[..., 0] >= kth).all()


@pytest.mark.parametrize("opts", [dict(top_k=50), dict(top_k=7, temperature=0.7, top_p=0.9)])
def test_sampler_equals_transformers_generate(model, cases, opts):
    ctx = left_pad_stack([cases["pipeline.context.0"], cases["pipeline.context.1"]])
    ids, mask, _ = model.tokenizer.context_input_transform(ctx)
    torch.manual_seed(3)
    ours = model.sample_tokens(ids, mask, 10, 4, **{"temperature": 1.0, "top_p": 1.0, **opts})
    gen = GenerationConfig(
        min_new_tokens=10, max_new_tokens=10, do_sample=True, num_return_sequences=4, eos_token_id=1, pad_token_id=0,
        **{"temperature": 1.0, "top_p": 1.0, **opts},
    )  # fmt: skip
    torch.manual_seed(3)
    ref = model.t5.generate(input_ids=ids, attention_mask=mask, generation_config=gen)[:, 1:].reshape(
        2, 4, 10
    )
    assert torch.equal(ours, ref)


def test_filter_logits_top_k_top_p_temperature():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    assert torch.isinf(filter_logits(logits, 1.0, 2, 1.0)[0, 2:]).all()
    kept = filter_logits(logits, 1.0, 0, 0.75)  # nucleus 0.75 keeps 0.5 and 0.3
    assert torch.isfinite(kept[0, :2]).all() and torch.isinf(kept[0, 2:]).all()
    torch.testing.assert_close(filter_logits(logits, 2.0, 0, 1.0), logits / 2)


def test_shared_kv_attention_equals_repeated_keys():
    torch.manual_seed(0)
    b, s, h, q, k, d = 3, 4, 2, 2, 7, 5
    query, key, value = torch.randn(b * s, h, q, d), torch.randn(b, h, k, d), torch.randn(b, h, k, d)
    mask = torch.rand(b, 1, 1, k) > 0.3
    mask[..., 0] = True
    bias = torch.randn(1, h, q, k)
    mod = torch.nn.Module()
    mod.is_causal = False
    out, _ = shared_kv_attention(mod, query, key, value, mask, scaling=1.0, position_bias=bias)
    rep = [x.repeat_interleave(s, 0) for x in (key, value, mask)]
    ref, _ = shared_kv_attention(mod, query, rep[0], rep[1], rep[2], scaling=1.0, position_bias=bias)
    assert out.shape == (b * s, q, h, d)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-6)


def test_paper_sizes_parameter_counts():
    expected = {"tiny": 8e6, "mini": 20e6, "small": 46e6, "base": 200e6, "large": 710e6}
    for size, n in expected.items():
        cfg = ChronosConfig.from_name(size)
        with torch.device("meta"):
            m = ChronosModel(cfg)
        count = sum(p.numel() for p in m.parameters())
        assert abs(count - n) / n < 0.06, (size, count)


def test_config_rejects_absurd_sizes():
    with pytest.raises(ValueError, match="d_model"):
        ChronosConfig(d_model=10**9)
    with pytest.raises(ValueError, match="unknown Chronos size"):
        ChronosConfig.from_name("huge")


def test_wraps_a_plain_transformers_t5():
    """A T5 built elsewhere (default SDPA attention) is switched to the shared-K/V attention."""
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = ChronosConfig(
        d_model=16, d_ff=32, d_kv=8, num_heads=2, num_layers=1, num_decoder_layers=1, n_tokens=64
    )
    t5 = T5ForConditionalGeneration(T5Config(**cfg.t5_kwargs()))
    assert t5.decoder.config._attn_implementation == "sdpa"
    model = ChronosModel(cfg, t5).eval()
    ids, mask, _ = model.tokenizer.context_input_transform(torch.randn(3, 20))
    torch.manual_seed(0)
    ours = model.sample_tokens(ids, mask, 6, 4, top_k=10)
    gen = GenerationConfig(min_new_tokens=6, max_new_tokens=6, do_sample=True, num_return_sequences=4,
                           eos_token_id=1, pad_token_id=0, top_k=10)  # fmt: skip
    torch.manual_seed(0)
    ref = model.t5.generate(input_ids=ids, attention_mask=mask, generation_config=gen)[:, 1:].reshape(3, 4, 6)
    assert torch.equal(ours, ref)
    with pytest.raises(ValueError, match="not a multiple"):
        shared_kv_attention(
            torch.nn.Module(), torch.randn(5, 2, 1, 8), torch.randn(2, 2, 3, 8), torch.randn(2, 2, 3, 8), None
        )
