"""The Transformer's defining properties: causality, padding invariance, shapes, sizes; and
that the explicit attention of the pictures computes what SDPA computes in translation."""

from __future__ import annotations

import math

import pytest
import torch

from transformer_mt.config import TransformerConfig
from transformer_mt.model import Transformer
from transformer_mt.model import multi_head_attention as mha
from transformer_mt.model.layers import sinusoidal_table


def tiny(**overrides) -> Transformer:
    torch.manual_seed(0)
    cfg = TransformerConfig.preset(
        "tiny", vocab_size=40, d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2,
        n_decoder_layers=2, max_positions=64, **overrides,
    )
    return Transformer(cfg).eval()


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_is_causal(norm_first: bool) -> None:
    model = tiny(norm_first=norm_first)
    src = torch.randint(4, 40, (2, 7))
    tgt = torch.randint(4, 40, (2, 9))
    changed = tgt.clone()
    t = 4
    changed[:, t + 1 :] = torch.randint(4, 40, (2, 9 - t - 1))
    out, out_changed = model(src, tgt), model(src, changed)
    torch.testing.assert_close(out[:, : t + 1], out_changed[:, : t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(out[:, t + 1 :], out_changed[:, t + 1 :])


def test_padding_invariance() -> None:
    model = tiny()
    short_src, short_tgt = torch.randint(4, 40, (1, 5)), torch.randint(4, 40, (1, 4))
    long_src, long_tgt = torch.randint(4, 40, (1, 12)), torch.randint(4, 40, (1, 10))
    src = torch.zeros(3, 12, dtype=torch.long)
    tgt = torch.zeros(3, 10, dtype=torch.long)
    src[0, :5], tgt[0, :4] = short_src, short_tgt
    src[1], tgt[1] = long_src, long_tgt
    # row 2 is entirely padding
    batched = model(src, tgt)
    alone = model(short_src, short_tgt)
    torch.testing.assert_close(batched[0, :4], alone[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batched[1], model(long_src, long_tgt)[0], rtol=1e-5, atol=1e-5)
    assert torch.isfinite(batched).all(), "a fully padded row must not produce NaN"


def test_padding_mask_hides_pad_keys() -> None:
    """Changing what sits in padded source positions must not change anything."""
    model = tiny()
    src = torch.randint(4, 40, (1, 8))
    src[0, 5:] = 0
    tgt = torch.randint(4, 40, (1, 6))
    memory, mask = model.encode(src)
    assert mask.shape == (1, 1, 1, 8) and mask[0, 0, 0].tolist() == [True] * 5 + [False] * 3
    out = model.decode(tgt, memory, mask)
    memory_noisy = memory.clone()
    memory_noisy[0, 5:] = torch.randn(3, 32) * 100
    torch.testing.assert_close(model.decode(tgt, memory_noisy, mask), out)


def test_incremental_decoding_matches_full_forward() -> None:
    model = tiny()
    src = torch.randint(4, 40, (3, 7))
    src[1, 4:] = 0
    tgt = torch.randint(4, 40, (3, 8))
    full = model(src, tgt)
    memory, mask = model.encode(src)
    state = model.start_decoding(memory, mask)
    steps = torch.stack([model.decode_step(tgt[:, i], state) for i in range(8)], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-5, atol=1e-5)


def _both_paths(attention: mha.MultiHeadAttention, *args, **kwargs) -> tuple[torch.Tensor, ...]:
    """The output through SDPA (what translation runs) and through the explicit softmax (what
    `Transformer.attention_weights` and the pictures run), and the explicit probabilities."""
    sdpa, none = attention(*args, **kwargs)
    explicit, weights = attention(*args, **kwargs, need_weights=True)
    assert none is None and weights is not None
    return sdpa, explicit, weights


@pytest.mark.parametrize("case", ["self", "self_padded", "causal", "cross_padded",
                                  "cross_grouped"])
def test_explicit_attention_equals_sdpa(case: str) -> None:
    """Random queries, keys and masks, each case the way the model calls it: encoder
    self-attention with and without a padding mask, causal decoder self-attention, and
    cross-attention with a padding mask, also with g = 2 query rows per memory row (beams)."""
    torch.manual_seed(5)
    cross = case.startswith("cross")
    attention = mha.MultiHeadAttention(32, 4, dropout=0.1, self_attention=not cross).eval()
    query, memory = torch.randn(6, 7, 32), torch.randn(3 if case == "cross_grouped" else 6, 9, 32)
    lengths = torch.tensor([9, 4, 1, 7, 2, 5])[: memory.size(0)]
    keys = memory if cross else query
    mask = (torch.arange(keys.size(1)) < lengths[:, None, None, None].clamp(max=keys.size(1)))
    if case == "self":
        outputs = _both_paths(attention, query)
    elif case == "self_padded":
        outputs = _both_paths(attention, query, mask=mask)
    elif case == "causal":
        outputs = _both_paths(attention, query, is_causal=True)
    else:
        outputs = _both_paths(attention, query, memory, mask=mask)
    sdpa, explicit, weights = outputs
    torch.testing.assert_close(explicit, sdpa, rtol=1e-5, atol=1e-6)
    if case in ("self_padded", "cross_padded"):  # the masked keys really get no probability
        hidden = ~mask.expand(-1, 4, weights.size(2), -1)
        assert weights[hidden].abs().max() == 0 and (~hidden).any(dim=-1).all()
    if case == "causal":
        assert torch.equal(weights.triu(1), torch.zeros_like(weights))


def test_model_through_the_explicit_path_equals_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole model on a padded batch, every attention call routed through the explicit
    path instead of SDPA, gives the same logits."""
    model = tiny()
    src, tgt = torch.randint(4, 40, (3, 8)), torch.randint(4, 40, (3, 6))
    src[0, 5:], src[2, 2:], tgt[1, 3:] = 0, 0, 0
    sdpa = model(src, tgt)

    def explicit(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False):
        assert dropout_p == 0.0
        return mha._explicit_attention(q, k, v, attn_mask, is_causal)[0]

    monkeypatch.setattr(mha.F, "scaled_dot_product_attention", explicit)
    torch.testing.assert_close(model(src, tgt), sdpa, rtol=1e-5, atol=1e-5)


def test_embeddings_are_shared_and_scaled() -> None:
    model = tiny()
    assert model.tgt_embed is model.embed
    assert not hasattr(model, "output_proj")
    h = torch.randn(1, 1, 32)
    torch.testing.assert_close(model.logits(h), h @ model.embed.weight.T)
    assert model.embed_scale == pytest.approx(math.sqrt(32))
    assert model.embed.weight[0].abs().sum() == 0  # padding row starts at zero
    untied = Transformer(TransformerConfig.preset("tiny", vocab_size=40, share_embeddings=False))
    assert untied.tgt_embed is not untied.embed


def test_sinusoidal_positions_follow_the_paper() -> None:
    table = sinusoidal_table(50, 16)
    pos, i = 7, 3
    assert table[pos, 2 * i].item() == pytest.approx(math.sin(pos / 10000 ** (2 * i / 16)))
    assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(pos / 10000 ** (2 * i / 16)))


def analytic_parameter_count(v: int, d: int, d_ff: int, n_enc: int, n_dec: int) -> int:
    attention = 4 * (d * d + d)
    ffn = d * d_ff + d_ff + d_ff * d + d
    layer_norm = 2 * d
    encoder_layer = attention + ffn + 2 * layer_norm
    decoder_layer = 2 * attention + ffn + 3 * layer_norm
    return v * d + n_enc * encoder_layer + n_dec * decoder_layer


def test_base_parameter_count() -> None:
    model = Transformer(TransformerConfig.preset("base", vocab_size=37000))
    expected = analytic_parameter_count(37000, 512, 2048, 6, 6)
    assert model.num_parameters() == expected
    assert 62e6 < expected < 64e6  # the paper's ~63M (Table 3 reports 65M with its vocab)


def test_big_preset_matches_table_3() -> None:
    cfg = TransformerConfig.preset("big")
    assert (cfg.d_model, cfg.d_ff, cfg.n_heads, cfg.dropout) == (1024, 4096, 16, 0.3)
    with pytest.raises(ValueError, match="unknown preset"):
        TransformerConfig.preset("huge")
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig(d_model=100, n_heads=8)
