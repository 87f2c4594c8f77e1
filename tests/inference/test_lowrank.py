"""Low-rank per-prompt image tokens: every step equals the dense computation it replaces."""

import torch

from mobilesam.inference.lowrank import (
    LowRankTokens,
    Scratch,
    attend,
    image_logits,
    normalised,
    split_heads,
    split_heads_t,
)
from mobilesam.modeling.transformer import Attention

B, J, K, N, C, T = 3, 4, 6, 20, 12, 5


def _state(g: torch.Generator, with_scale: bool = True) -> tuple[LowRankTokens, torch.Tensor]:
    scale = torch.rand(B, N, generator=g, dtype=torch.float64) + 0.5 if with_scale else None
    L = torch.rand(B, J, N, generator=g, dtype=torch.float64)
    R = torch.randn(B, J, C, generator=g, dtype=torch.float64)
    shared = torch.randn(N, C, generator=g, dtype=torch.float64)
    return LowRankTokens(scale, L, R), shared


def _attention(g: torch.Generator) -> Attention:
    torch.manual_seed(int(torch.randint(0, 1000, (1,), generator=g)))
    return Attention(C, num_heads=2, downsample_rate=2).double()


def test_normalised_is_the_layer_norm_of_the_updated_tokens():
    g = torch.Generator().manual_seed(0)
    for with_scale in (True, False):
        state, shared = _state(g, with_scale)
        const = torch.randn(C, generator=g, dtype=torch.float64)
        weights = torch.rand(B, K, N, generator=g, dtype=torch.float64)
        update = torch.randn(B, K, C, generator=g, dtype=torch.float64)
        norm = torch.nn.LayerNorm(C).double()
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5, generator=g)
            norm.bias.normal_(generator=g)
            dense = state.dense(shared, const) + weights.transpose(1, 2) @ update
            expected = norm(dense)

        def centred(x):
            return x - x.mean(-1, keepdim=True)

        lw = torch.cat([state.L, weights, torch.ones(B, 1, N).double()], 1)
        rows = torch.cat([centred(state.R), centred(update), centred(const).expand(B, 1, C)], 1)
        sc = centred(shared)
        dots = torch.einsum("nc,bjc->bjn", sc, rows)
        out = normalised(state.scale, lw, rows, dots, sc.square().sum(-1), norm)
        got = out.dense(sc * norm.weight, norm.bias).detach()
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


def test_logits_and_attention_output_equal_the_dense_attention():
    g = torch.Generator().manual_seed(1)
    state, shared = _state(g)
    const = torch.randn(C, generator=g, dtype=torch.float64)
    pe = torch.randn(N, C, generator=g, dtype=torch.float64)
    att = _attention(g)
    h, dh = att.num_heads, att.internal_dim // att.num_heads
    tokens = torch.randn(B, T, C, generator=g, dtype=torch.float64)
    with torch.no_grad():
        x = state.dense(shared, const)  # B x N x C
        k = att.k_proj(x + pe).reshape(B, N, h, dh)
        v = att.v_proj(x).reshape(B, N, h, dh)
        q = att.q_proj(tokens).reshape(B, T, h, dh) / dh**0.5
        ref_logits = torch.einsum("bthd,bnhd->bhtn", q, k)
        w = torch.softmax(ref_logits, -1)
        ref_out = torch.einsum("bhtn,bnhd->bthd", w, v).reshape(B, T, h * dh)

        wk, wv = att.k_proj.weight, att.v_proj.weight
        ws = Scratch()
        logits = image_logits(
            q,
            split_heads_t(shared @ wk.T, h),
            split_heads_t(att.k_proj(const + pe), h),
            (state.R @ wk.T).reshape(B, J, h, dh),
            state,
            ws,
        )
        torch.testing.assert_close(logits, ref_logits, rtol=1e-9, atol=1e-9)
        out = attend(
            w.clone(),
            split_heads(shared @ wv.T, h),
            (state.R @ wv.T).reshape(B, J, h, dh),
            att.v_proj(const),
            state,
            ws,
        )
        torch.testing.assert_close(out, ref_out, rtol=1e-9, atol=1e-9)


def test_state_indexing_and_scratch_reuse():
    g = torch.Generator().manual_seed(2)
    state, shared = _state(g)
    const = torch.zeros(C, dtype=torch.float64)
    idx = torch.tensor([2, 0])
    torch.testing.assert_close(state[idx].dense(shared, const), state.dense(shared, const)[idx])
    assert len(state[idx]) == 2
    ws = Scratch()
    a = ws("x", 4, 5)
    b = ws("x", 2, 3)  # smaller: the same memory
    assert b.data_ptr() == a.data_ptr() and b.shape == (2, 3) and b.is_contiguous()
    c = ws("x", 10, 10)  # larger: grown
    assert c.shape == (10, 10) and c.numel() == 100
    assert ws("y", 3).data_ptr() != ws("x", 3).data_ptr()
