"""Operator decomposition: FLOPs and bytes of every operator against hand-derived formulas.

All expected numbers below are written out from the model's published architecture
(hidden size, heads, ...) and the formulas of `llmsim.cost.ops`' docstring, never taken
from the code's own output.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.cost.ops import Batch, OpBuilder, _pairs, build_ops, uniform_batch
from llmsim.dtypes import bytes_per_element
from llmsim.layout import Parallel, Precision
from llmsim.models import get_model

BF16 = Precision.make("bf16")

# Llama-3.1-8B architecture (HF config.json)
H, NH, NKV, D, I, V, L = 4096, 32, 8, 128, 14336, 128256, 32


@pytest.fixture(scope="module")
def llama8b():
    return get_model("llama-3.1-8b")


@pytest.fixture(scope="module")
def llama70b():
    return get_model("llama-3.1-70b")


def by_name(ops, name):
    found = [o for o in ops if o.name == name]
    assert found, f"no op named {name!r} in {[o.name for o in ops]}"
    return found


def one(ops, name):
    found = by_name(ops, name)
    assert len(found) == 1, f"{name!r} appears {len(found)} times"
    return found[0]


def gemm_bytes_bf16(m, n, k):
    return 2 * (m * k + n * k + m * n)


# ------------------------------------------------------------------ dense prefill, tp=1


@pytest.fixture(scope="module")
def prefill_8b(llama8b):
    return build_ops(llama8b, Parallel(), BF16, uniform_batch([128]))


def test_qkv_proj_prefill(prefill_8b):
    op = one(prefill_8b, "qkv_proj")
    n = (32 + 2 * 8) * 128  # q heads + k heads + v heads, 128 dims each
    assert n == 6144
    assert op.flops == 2 * 128 * n * 4096
    assert op.flops == 2 * 128 * (32 + 2 * 8) * 128 * 4096
    assert op.bytes == gemm_bytes_bf16(128, n, 4096)
    assert op.shape == (128, 6144, 4096)
    assert op.count == 32


def test_o_proj_prefill(prefill_8b):
    op = one(prefill_8b, "o_proj")
    assert op.flops == 2 * 128 * 4096 * (32 * 128)
    assert op.bytes == gemm_bytes_bf16(128, 4096, 4096)


def test_gated_mlp_prefill(prefill_8b):
    up = one(prefill_8b, "mlp_up")
    down = one(prefill_8b, "mlp_down")
    # SwiGLU: gate and up fused into one GEMM of width 2 * I
    assert up.flops == 2 * 128 * (2 * 14336) * 4096
    assert up.bytes == gemm_bytes_bf16(128, 2 * 14336, 4096)
    assert down.flops == 2 * 128 * 4096 * 14336
    assert down.bytes == gemm_bytes_bf16(128, 4096, 14336)


def test_lm_head_only_on_last_prefill_token(prefill_8b):
    op = one(prefill_8b, "lm_head")
    assert op.count == 1
    assert op.shape[0] == 1
    assert op.flops == 2 * 1 * 128256 * 4096
    assert op.bytes == gemm_bytes_bf16(1, 128256, 4096)


def test_lm_head_rows_per_sequence_and_decode_token(llama8b):
    ops = build_ops(llama8b, Parallel(), BF16, Batch([(100, 0), (50, 0)], [300, 400, 500]))
    # 2 prefill chunks -> 2 rows, 3 decode tokens -> 3 rows
    assert one(ops, "lm_head").flops == 2 * 5 * 128256 * 4096


def test_prefill_attention_causal(prefill_8b):
    op = one(prefill_8b, "attn_prefill")
    pairs = 128 * 129 / 2  # token i attends to keys 1..i
    assert pairs == 8256
    assert op.flops == 2 * 32 * pairs * (128 + 128)
    # Q and O of 128 tokens x 32 heads, K,V of the 128-token context read, new K,V written
    q_o = 128 * 32 * 256 * 2
    kv_read = 128 * 8 * 256 * 2
    kv_write = 128 * (2 * 8 * 128 * 2)
    assert op.bytes == q_o + kv_read + kv_write
    assert op.count == 32


def test_prefill_attention_chunk_after_cached_tokens(llama8b):
    # 10 new tokens after 90 cached: token i sees 90 + i keys
    ops = build_ops(llama8b, Parallel(), BF16, Batch([(10, 90)], []))
    pairs = sum(90 + i for i in range(1, 11))
    assert one(ops, "attn_prefill").flops == 2 * 32 * pairs * 256


# ------------------------------------------------------------------ precision


def test_fp8_weight_only_halves_weight_bytes(llama8b):
    w8 = Precision("fp8", "bf16", "bf16")
    a = one(build_ops(llama8b, Parallel(), BF16, uniform_batch([128])), "qkv_proj")
    b = one(build_ops(llama8b, Parallel(), w8, uniform_batch([128])), "qkv_proj")
    weight_bytes_bf16 = 6144 * 4096 * 2
    assert a.bytes - b.bytes == weight_bytes_bf16 / 2
    assert a.flops == b.flops


def test_fp8_w8a8_gemm_bytes(llama8b):
    prec = Precision.make("fp8")  # fp8 weights imply fp8 activations
    assert prec.act == "fp8"
    op = one(build_ops(llama8b, Parallel(), prec, uniform_batch([128])), "mlp_down")
    m, n, k = 128, 4096, 14336
    # fp8 A + fp8 W + bf16 C, plus the quantisation pass of A (read bf16, write fp8)
    assert op.bytes == m * k * 1 + n * k * 1 + m * n * 2 + m * k * (2 + 1)
    assert op.dtype == "fp8"


def test_lm_head_stays_bf16_with_fp8_weights(llama8b):
    op = one(build_ops(llama8b, Parallel(), Precision.make("fp8"), uniform_batch([128])), "lm_head")
    assert op.bytes == gemm_bytes_bf16(1, 128256, 4096)


# ------------------------------------------------------------------ decode attention


@pytest.mark.parametrize("ctx", [1, 777, 4096])
def test_decode_attention_bytes(llama8b, ctx):
    op = one(build_ops(llama8b, Parallel(), BF16, uniform_batch([], [ctx])), "attn_decode")
    cache = ctx * 2 * 8 * 128 * 2  # K and V, 8 KV heads, 128 dims, bf16
    q_o = 1 * 32 * 256 * 2
    assert op.bytes == cache + q_o
    assert op.flops == 2 * 32 * ctx * 256


def test_decode_attention_fp8_kv_halves_cache(llama8b):
    ctx = 2048
    b16 = one(build_ops(llama8b, Parallel(), BF16, uniform_batch([], [ctx] * 4)), "attn_decode")
    b8 = one(build_ops(llama8b, Parallel(), Precision.make("bf16", kv="fp8"), uniform_batch([], [ctx] * 4)), "attn_decode")
    q_o = 4 * 32 * 256 * 2
    assert b16.bytes - q_o == 4 * ctx * 2 * 8 * 128 * 2
    assert b8.bytes - q_o == (b16.bytes - q_o) / 2


def test_decode_batch_sums_contexts(llama8b):
    op = one(build_ops(llama8b, Parallel(), BF16, uniform_batch([], [100, 200, 300])), "attn_decode")
    assert op.bytes == 600 * 4096 + 3 * 32 * 256 * 2


# ------------------------------------------------------------------ tensor parallelism


def test_tp4_splits_heads_and_mlp(llama8b):
    ops = build_ops(llama8b, Parallel(tp=4), BF16, uniform_batch([128]))
    qkv = one(ops, "qkv_proj")
    assert qkv.shape[1] == (8 + 2 * 2) * 128  # 32/4 q heads, 8/4 KV heads
    assert qkv.flops == 2 * 128 * 1536 * 4096
    assert one(ops, "o_proj").shape == (128, 4096, 8 * 128)
    assert one(ops, "mlp_up").shape == (128, 2 * 14336 // 4, 4096)
    assert one(ops, "mlp_down").shape == (128, 4096, 14336 // 4)
    assert one(ops, "lm_head").shape == (1, 128256 // 4, 4096)
    # attention heads split 4 ways
    assert one(ops, "attn_prefill").flops == 2 * 8 * 8256 * 256
    dec = one(build_ops(llama8b, Parallel(tp=4), BF16, uniform_batch([], [1000])), "attn_decode")
    assert dec.bytes == 1000 * 2 * 2 * 128 * 2 + 8 * 256 * 2


def test_tp16_replicates_kv_heads(llama70b):
    # Llama-3.1-70B: 64 heads, 8 KV heads -> tp=16 gives 4 q heads and 1 (replicated) KV head per GPU
    ops = build_ops(llama70b, Parallel(tp=16), BF16, uniform_batch([], [1000]))
    qkv = one(ops, "qkv_proj")
    assert qkv.shape == (1, (4 + 2 * 1) * 128, 8192)
    dec = one(ops, "attn_decode")
    assert dec.bytes == 1000 * 2 * 1 * 128 * 2 + 4 * 256 * 2
    assert dec.count == 80


def test_no_allreduce_at_tp1(prefill_8b):
    assert not [o for o in prefill_8b if o.kind == "comm"]


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_allreduce_at_tp(llama8b, tp):
    T = 3 * 100
    ops = build_ops(llama8b, Parallel(tp=tp), BF16, uniform_batch([100, 100, 100]))
    ars = [o for o in ops if o.kind == "comm" and o.shape[0] == "all_reduce"]
    assert {o.name for o in ars} == {"attn_allreduce", "mlp_allreduce"}
    for o in ars:
        assert o.bytes == T * 4096 * 2
        assert o.shape == ("all_reduce", tp)
        assert o.count == 32
    # the vocab-parallel LM head gathers fp32 logits of the 3 sampled rows
    ag = one(ops, "logits_allgather")
    assert ag.bytes == 3 * 128256 / tp * 4


def test_fused_allreduce_norm_drops_the_norms_up_to_its_token_limit(llama8b):
    """With the engine's all-reduce + residual + RMSNorm fusion, a layer's input and post-attention
    norms run inside the all-reduces (no operator of their own) for up to `fused_norm_tokens`
    tokens per attention rank; above it, at tp = 1 or with attention DP they are back."""
    def norms(par, tokens, limit):
        ops = build_ops(llama8b, par, BF16, uniform_batch([tokens]), fused_norm_tokens=limit)
        return {o.name for o in ops if o.name in ("input_norm", "post_attn_norm", "residual_add")}, ops

    unfused, base = norms(Parallel(tp=4), 100, 0)
    assert unfused == {"input_norm", "post_attn_norm", "residual_add"}
    fused, ops = norms(Parallel(tp=4), 100, 100)
    assert fused == {"residual_add"}  # only the norms go: the residual add stays a kernel of its own
    # nothing else changes: the all-reduces keep their bytes
    assert [(o.name, o.bytes) for o in ops] == [(o.name, o.bytes) for o in base if o.name not in ("input_norm", "post_attn_norm")]
    assert norms(Parallel(tp=4), 101, 100)[0] == unfused  # above the limit: separate kernels
    assert norms(Parallel(tp=1), 100, 100)[0] == unfused  # no all-reduce to ride in
    moe = get_model("mixtral-8x7b")
    dp_ops = build_ops(moe, Parallel(tp=2, dp=2, ep=4), BF16, uniform_batch([100]), fused_norm_tokens=1000)
    assert {"input_norm", "post_attn_norm"} <= {o.name for o in dp_ops}  # attention DP: no fusion


# ------------------------------------------------------------------ sliding-window pairs


def brute_pairs(q, p, window):
    return sum(min(window, p + i) if window else p + i for i in range(1, q + 1))


@settings(max_examples=300, deadline=None)
@given(q=st.integers(1, 300), p=st.integers(0, 300), window=st.integers(0, 400))
def test_pairs_matches_brute_force(q, p, window):
    assert _pairs(q, p, window) == brute_pairs(q, p, window)


def test_sliding_window_caps_prefill_pairs():
    m = get_model("mistral-7b")  # every layer slides over a 4096-token window
    assert m.sliding_window == 4096
    op = one(build_ops(m, Parallel(), BF16, uniform_batch([8192])), "attn_prefill")
    pairs = 4096 * 4097 / 2 + 4096 * 4096
    assert op.flops == 2 * m.num_heads * pairs * (2 * m.head_dim)


def test_sliding_window_caps_decode_context():
    m = get_model("gpt-oss-120b")
    ops = build_ops(m, Parallel(), BF16, uniform_batch([], [10_000]))
    dec = {o.layer_group: o for o in ops if o.kind == "attn_decode"}
    kv_tok = 2 * 8 * 64 * 2
    q_o = 64 * 128 * 2
    assert dec["sliding/moe"].bytes == 128 * kv_tok + q_o
    assert dec["full/moe"].bytes == 10_000 * kv_tok + q_o


# ------------------------------------------------------------------ mixture of experts


@pytest.fixture(scope="module")
def mixtral():
    return get_model("mixtral-8x7b")


def test_moe_router_and_experts_ep1(mixtral):
    T, k = 64, 2
    ops = build_ops(mixtral, Parallel(), BF16, uniform_batch([T]))
    router = one(ops, "moe_router")
    assert router.flops == 2 * T * 8 * 4096
    up = one(ops, "moe_experts_up")
    down = one(ops, "moe_experts_down")
    assert up.flops == pytest.approx(2 * T * k * (2 * 14336) * 4096, rel=1e-12)
    assert down.flops == pytest.approx(2 * T * k * 4096 * 14336, rel=1e-12)
    assert up.count == down.count == 32
    # no dense MLP and no communication on one GPU
    assert not [o for o in ops if o.name.startswith("mlp_") or o.kind == "comm"]


def test_moe_ep2_routed_pairs_and_alltoall(mixtral):
    T, k, ep = 64, 2, 2
    ops = build_ops(mixtral, Parallel(tp=2, ep=ep), BF16, uniform_batch([T]))
    up = one(ops, "moe_experts_up")
    # each GPU holds 4 whole experts (moe_tp = tp/ep = 1) and gets T*k/ep token-expert pairs
    assert up.flops == pytest.approx(2 * (T * k / ep) * (2 * 14336) * 4096, rel=1e-12)
    assert up.shape[1:3] == (2 * 14336, 4096)
    # attention TP (dp = 1): every GPU already holds every token, so no all-to-all; the local
    # experts' partial sums meet in one all-reduce of T x h activations
    comms = {o.name: o for o in ops if o.kind == "comm"}
    assert "moe_dispatch" not in comms and "moe_combine" not in comms
    assert comms["moe_allreduce"].shape[0] == "all_reduce"
    # attention DP (tp=1, dp=2): each rank holds T/2 tokens and sends each of them to its top-k
    # experts: dispatch and combine all-to-alls of (T/2) * k * h activations
    ops = build_ops(mixtral, Parallel(dp=2, ep=ep), BF16, uniform_batch([T]))
    names = {o.name for o in ops if o.kind == "comm" and o.shape[0] == "alltoall"}
    assert names == {"moe_dispatch", "moe_combine"}
    assert one(ops, "moe_combine").bytes == pytest.approx((T / 2) * k * 4096 * 2, rel=1e-12)
    assert "moe_allreduce" not in {o.name for o in ops}
    # tp=2 inside each of 2 attention-DP ranks: the rank's two GPUs hold the same T/2 tokens and
    # each dispatches half of them (sequence-parallel MoE)
    ops = build_ops(mixtral, Parallel(tp=2, dp=2, ep=4), BF16, uniform_batch([T]))
    assert one(ops, "moe_dispatch").bytes == pytest.approx((T / 2 / 2) * k * 4096 * 2, rel=1e-12)


def test_moe_no_alltoall_without_ep(mixtral):
    ops = build_ops(mixtral, Parallel(tp=2), BF16, uniform_batch([64]))
    assert not [o for o in ops if o.kind == "comm" and o.shape[0] == "alltoall"]
    # moe_tp=2 splits each expert's width
    assert one(ops, "moe_experts_up").shape[1:3] == (14336, 4096)


def test_expected_active_experts_uniform_and_skewed():
    """Distinct experts a batch touches: the uniform closed form at zipf 0; under skewed routing
    never more than uniform, never more than the picks or the experts, one token touches exactly
    k, and a large batch touches them all."""
    from llmsim.cost.ops import ROUTING_ZIPF_EXPONENT, expected_active_experts as act

    assert act(8, 2, 4, zipf=0.0) == pytest.approx(8 * (1 - (1 - 2 / 8) ** 4), rel=1e-15)
    assert act(128, 4, 1) == pytest.approx(4.0, rel=1e-12)  # sum of q_i = k when no q_i is clipped
    for E, k in ((8, 2), (128, 4), (256, 8), (384, 8)):
        prev = 0.0
        for T in (1, 2, 4, 16, 64, 256, 1024):
            a = act(E, k, T)
            assert prev < a <= min(E, T * k) + 1e-9 or prev == a == pytest.approx(E, rel=1e-12)  # rises until all are touched
            assert a <= act(E, k, T, zipf=0.0) + 1e-9  # skew concentrates the picks
            assert act(E, k, T, zipf=1.0) <= a + 1e-9
            prev = a
        assert act(E, k, 10**6) == pytest.approx(E, rel=1e-6)
    # the numbers the fit record quotes: at the fitted exponent the most popular of 128 experts
    # takes ~6.0x the mean share of picks and the least popular ~0.53x
    w = [(i + 1) ** -ROUTING_ZIPF_EXPONENT for i in range(128)]
    assert 128 * w[0] / sum(w) == pytest.approx(6.03, abs=0.01)
    assert 128 * w[-1] / sum(w) == pytest.approx(0.533, abs=0.001)


def test_moe_decode_streams_only_the_active_experts(mixtral):
    """A 4-token decode batch on Mixtral (8 experts, top-2): the experts' GEMMs stream the expected
    active experts' weights, a quarter of them per GPU at ep 4, plus each routed pair's activations."""
    from llmsim.cost.ops import expected_active_experts

    T, k, h, i = 4, 2, 4096, 14336
    for ep in (1, 4):
        par = Parallel(tp=ep, ep=ep)
        up = one(build_ops(mixtral, par, BF16, uniform_batch([], [100] * T)), "moe_experts_up")
        A = expected_active_experts(8, k, T) / ep
        r = T * k / ep
        assert up.bytes == pytest.approx(A * (2 * i) * h * 2 + r * (h * 2 + 2 * i * 2), rel=1e-12)
        assert up.shape[0] == pytest.approx(r / A, rel=1e-12)  # tokens per active expert
        assert A < 8 / ep


# ------------------------------------------------------------------ MLA


def test_deepseek_v3_mla_decode_reads_latent():
    m = get_model("deepseek-v3")
    ctx = 1000
    for prec, kvb in ((BF16, 2), (Precision.make("bf16", kv="fp8"), 1)):
        for tp in (1, 8):
            ops = build_ops(m, Parallel(tp=tp), prec, uniform_batch([], [ctx]))
            dec = by_name(ops, "attn_decode")
            assert sum(o.count for o in dec) == 61
            nh = 128 // tp
            for o in dec:
                # latent (512) + rope key (64) per cached token, not split by tp;
                # plus absorbed q (576) and latent output (512) per head in bf16
                assert o.bytes == ctx * (512 + 64) * kvb + nh * (576 + 512) * 2


# ------------------------------------------------------------------ layer counts


def layer_counts(ops):
    c = defaultdict(int)
    for o in ops:
        c[o.name] += o.count
    return c


@pytest.mark.parametrize(
    "name, layers",
    [("llama-3.1-8b", 32), ("llama-3.1-70b", 80), ("mixtral-8x7b", 32), ("gpt-oss-120b", 36), ("deepseek-v3", 61)],
)
def test_layer_counts_sum_to_num_layers(name, layers):
    m = get_model(name)
    assert m.num_layers == layers
    ops = build_ops(m, Parallel(), BF16, uniform_batch([64], [500]))
    c = layer_counts(ops)
    for op_name in ("input_norm", "attn_prefill", "attn_decode", "o_proj", "post_attn_norm", "residual_add"):
        assert c[op_name] == layers, op_name
    assert c["lm_head"] == 1 and c["embedding"] == 1


def test_layer_counts_llama8b_qkv(prefill_8b):
    assert layer_counts(prefill_8b)["qkv_proj"] == 32


def test_gpt_oss_groups():
    m = get_model("gpt-oss-120b")
    ops = build_ops(m, Parallel(), BF16, uniform_batch([64]))
    per_group = defaultdict(int)
    for o in by_name(ops, "qkv_proj"):
        per_group[o.layer_group] += o.count
    assert dict(per_group) == {"sliding/moe": 18, "full/moe": 18}


def test_deepseek_dense_and_moe_layers():
    m = get_model("deepseek-v3")
    c = layer_counts(build_ops(m, Parallel(), BF16, uniform_batch([64])))
    assert c["mlp_up"] == 3  # first_k_dense_replace
    assert c["moe_experts_up"] == 58
    assert c["shared_expert_up"] == 58


# ------------------------------------------------------------------ FLOPs ~ 2 x params x tokens


@pytest.mark.parametrize("name", ["llama-3.1-8b", "llama-3.1-70b", "qwen3-32b"])
def test_prefill_gemm_flops_about_2_params_tokens(name):
    """Every non-embedding weight is one multiply-add per token: a dense decoder's GEMM FLOPs are
    2 x (non-embedding params) x tokens. The LM head runs on 1 row only (not 512), norms and
    biases are not GEMMs, and the embedding is a gather; all of that moves the total < 1%."""
    m = get_model(name)
    tokens = 512
    ops = build_ops(m, Parallel(), BF16, uniform_batch([tokens]))
    gemm_flops = sum(o.flops * o.count for o in ops if o.kind == "gemm")
    non_embedding = m.total_params - m.embedding_params() - m.lm_head_params()
    assert gemm_flops == pytest.approx(2 * non_embedding * tokens, rel=0.01)


def test_prefill_gemm_flops_explicit_llama8b(prefill_8b):
    per_layer = 4096 * (32 + 2 * 8) * 128 + 32 * 128 * 4096 + 3 * 4096 * 14336
    expected = 2 * 128 * 32 * per_layer + 2 * 1 * 128256 * 4096
    assert sum(o.flops * o.count for o in prefill_8b if o.kind == "gemm") == expected


# ------------------------------------------------------------------ data parallel attention


def test_builder_reusable_across_batches(llama8b):
    b = OpBuilder(llama8b, Parallel(), BF16)
    a1 = one(b.build(uniform_batch([], [100])), "attn_decode").bytes
    a2 = one(b.build(uniform_batch([], [200])), "attn_decode").bytes
    assert a2 - a1 == 100 * 4096


def test_bf16_attention_projections_stay_bf16_under_fp4_weights():
    spec = get_model("gpt-oss-120b")  # MXFP4 experts, attention kept in bf16 by the checkpoint
    ops = build_ops(spec, Parallel(), Precision(weight="fp4", act="fp8", kv="fp8"), uniform_batch(decode_ctx=[512] * 4))
    qkv, o, up = by_name(ops, "qkv_proj")[0], by_name(ops, "o_proj")[0], by_name(ops, "moe_experts_up")[0]  # sliding layers
    assert qkv.dtype == o.dtype == "bf16" and not qkv.weight_only_quant
    h, d = spec.hidden_size, spec.head_dim
    n = (spec.num_heads + 2 * spec.num_kv_heads) * d
    assert qkv.bytes >= n * h * 2  # 2-byte weights
    assert up.dtype != "bf16"  # the experts run on the requested low-precision weights
    plain = spec.model_copy(update={"native_unquantized": ()})
    q4 = by_name(build_ops(plain, Parallel(), Precision(weight="fp4", act="fp8", kv="fp8"), uniform_batch(decode_ctx=[512] * 4)), "qkv_proj")[0]
    assert q4.dtype != "bf16" and q4.bytes < qkv.bytes


def test_kimi_int4_quantises_only_the_routed_experts():
    spec = get_model("kimi-k2.5")
    int4 = build_ops(spec, Parallel(tp=8), Precision(weight="int4", act="bf16", kv="bf16"), uniform_batch(decode_ctx=[512] * 4))
    for name in ("q_b_proj", "o_proj", "shared_expert_up", "mlp_up"):
        op = by_name(int4, name)[0]
        assert op.dtype == "bf16" and not op.weight_only_quant, name
    bf16 = build_ops(spec, Parallel(tp=8), Precision(weight="bf16", act="bf16", kv="bf16"), uniform_batch(decode_ctx=[512] * 4))
    assert by_name(int4, "moe_experts_up")[0].bytes < 0.5 * by_name(bf16, "moe_experts_up")[0].bytes  # 4-bit experts
    assert by_name(int4, "o_proj")[0].bytes == by_name(bf16, "o_proj")[0].bytes
    fp4 = build_ops(spec, Parallel(tp=8), Precision(weight="fp4", act="fp8", kv="fp8"), uniform_batch(decode_ctx=[512] * 4))
    # NVIDIA's NVFP4 checkpoint: bf16 self-attention (its own exclusions), fp4 shared expert and dense MLP
    assert by_name(fp4, "o_proj")[0].dtype == "bf16" and by_name(fp4, "q_b_proj")[0].dtype == "bf16"
    assert by_name(fp4, "shared_expert_up")[0].dtype != "bf16" and by_name(fp4, "mlp_up")[0].dtype != "bf16"


def test_mla_absorbed_gemms_run_bf16_whatever_the_weight_format():
    # the engines split W_UK / W_UV out of kv_b_proj at load time and keep them in bf16
    spec = get_model("deepseek-v3")
    ops = build_ops(spec, Parallel(tp=8), Precision(weight="fp4", act="fp8", kv="fp8"), uniform_batch(decode_ctx=[512] * 4))
    for name in ("mla_q_absorb", "mla_v_absorb"):
        op = by_name(ops, name)[0]
        assert op.dtype == "bf16" and not op.weight_only_quant, name
    fp8 = build_ops(spec, Parallel(tp=8), Precision(weight="fp8", act="fp8", kv="fp8"), uniform_batch(decode_ctx=[512] * 4))
    assert by_name(fp8, "q_b_proj")[0].dtype != "bf16"  # the checkpoint's own projections stay quantised
    # NVIDIA's NVFP4 DeepSeek (R1-0528-FP4-v2) keeps the q / kv projections in bf16, quantises o_proj
    assert by_name(ops, "q_b_proj")[0].dtype == "bf16" and by_name(ops, "qkv_a_proj")[0].dtype == "bf16"
    assert by_name(ops, "o_proj")[0].dtype == "fp4"


def test_weights_memory_follows_the_checkpoint_exclusions():
    from llmsim.memory.model import weights_bytes_per_gpu

    spec = get_model("deepseek-v3")
    par = Parallel(tp=8)
    prec = Precision(weight="fp4", act="fp8", kv="fp8")
    plain = spec.model_copy(update={"checkpoint_unquantized": ()})
    extra = weights_bytes_per_gpu(spec, par, prec) - weights_bytes_per_gpu(plain, par, prec)
    qkv = (spec.attention_params() - spec.attention_out_params()) / par.tp * spec.num_layers
    wb = bytes_per_element("fp4")
    assert extra == pytest.approx(qkv * (2.0 - wb), rel=1e-9)


def test_fp4_moe_quantises_its_intermediate_inside_the_fused_kernel():
    from llmsim.cost.model import CostModel
    from llmsim.hardware import get_gpu
    spec = get_model("gpt-oss-120b")
    batch = uniform_batch(decode_ctx=[512] * 32)
    fp4 = build_ops(spec, Parallel(), Precision(weight="fp4", act="fp8", kv="fp8"), batch)
    up, down = by_name(fp4, "moe_experts_up")[0], by_name(fp4, "moe_experts_down")[0]
    assert down.fused_quant and not up.fused_quant  # the input is still quantised by its own pass
    fp8 = build_ops(spec, Parallel(), Precision(weight="fp8", act="fp8", kv="fp8"), batch)
    assert not by_name(fp8, "moe_experts_down")[0].fused_quant  # fp8 MoE: separate passes (Triton fused_moe)
    cm = CostModel(get_gpu("b200-sxm"), None, framework="vllm")
    unfused = dataclasses.replace(down, fused_quant=False)
    assert cm.cost(down).time_s < cm.cost(unfused).time_s
    assert cm.cost(down).source == "roofline-fused-quant"


def test_mla_output_projection_quantises_its_input_in_a_pass_of_its_own():
    """TRT-LLM's attention kernel writes o_proj's fp8 / nvfp4 input itself (no separate
    quantisation kernel), but MLA's o_proj reads the bf16 output of the v-absorb BMM: it keeps
    the separate pass even under an engine that fuses activation quantisation."""
    from llmsim.hardware import get_gpu
    from llmsim.serving.backends import BACKENDS
    batch = uniform_batch(decode_ctx=[1024] * 4)
    fp4 = Precision(weight="fp4", act="fp8", kv="fp8")
    mla = by_name(build_ops(get_model("deepseek-v3"), Parallel(tp=8), fp4, batch), "o_proj")[0]
    gqa = by_name(build_ops(get_model("llama-3.1-70b"), Parallel(tp=8), fp4, batch), "o_proj")[0]
    assert mla.separate_quant and not gqa.separate_quant
    trt = BACKENDS["trtllm"].cost_model(get_gpu("b200"))
    assert trt.cost(gqa).source == "roofline-fused-quant" and trt.cost(mla).source == "roofline"
    fused_twin = dataclasses.replace(mla, separate_quant=False)
    extra = trt.cost(mla).time_s - trt.cost(fused_twin).time_s
    assert extra >= get_gpu("b200").efficiency.gemm_lowp_launch_s * 0.999


def test_block_scaled_fp8_checkpoints_run_fp8_block_gemms():
    spec = get_model("deepseek-v3")
    batch = uniform_batch(decode_ctx=[512] * 8)
    fp8 = build_ops(spec, Parallel(tp=8), Precision(weight="fp8", act="fp8", kv="fp8"), batch)
    for name in ("q_b_proj", "o_proj", "moe_experts_up", "shared_expert_down"):
        assert by_name(fp8, name)[0].dtype == "fp8_block", name
    assert by_name(fp8, "mla_q_absorb")[0].dtype == "bf16"  # absorbed MLA GEMMs stay bf16
    fp4 = build_ops(spec, Parallel(tp=8), Precision(weight="fp4", act="fp8", kv="fp8"), batch)
    assert by_name(fp4, "o_proj")[0].dtype == "fp4"  # NVFP4 is another checkpoint
    plain = spec.model_copy(update={"native_weight_block_size": None})
    assert by_name(build_ops(plain, Parallel(tp=8), Precision(weight="fp8", act="fp8", kv="fp8"), batch), "o_proj")[0].dtype == "fp8"


def test_moe_routing_kernels_only_outside_the_fused_fp4_moe():
    """fp8 / bf16 MoE paths launch top-k, sort-by-expert and weighted-sum kernels of their own;
    the fused fp4 MoE kernels route, permute and sum inside."""
    from llmsim.cost.ops import ACT_BYTES
    spec = get_model("qwen3-235b-a22b")
    batch = uniform_batch(decode_ctx=[512] * 16)
    names = ("moe_topk", "moe_sort", "moe_finalize")
    fp8 = build_ops(spec, Parallel(tp=4, ep=4), Precision(weight="fp8", act="fp8", kv="fp8"), batch)
    for n in names:
        assert len(by_name(fp8, n)) == 1, n
    fin = by_name(fp8, "moe_finalize")[0]
    routed = 16 * spec.experts_per_token / 4  # token-expert pairs on this GPU
    assert fin.bytes == pytest.approx((routed + 16) * spec.hidden_size * ACT_BYTES)  # read k outputs, write the sum
    assert fin.count == spec.num_layers
    fp4 = build_ops(spec, Parallel(tp=4, ep=4), Precision(weight="fp4", act="fp8", kv="fp8"), batch)
    dense = build_ops(get_model("llama-3.1-8b"), Parallel(), Precision(), batch)
    for ops in (fp4, dense):
        assert not {o.name for o in ops} & set(names)


# ------------------------------------------------------------------ expert-parallel load imbalance


def test_ep_imbalance_is_one_without_skew_or_expert_parallelism():
    from llmsim.cost.ops import expected_ep_imbalance

    assert expected_ep_imbalance(256, 1) == 1.0  # no EP: one GPU holds every expert
    assert expected_ep_imbalance(4, 8) == 1.0  # fewer experts than GPUs: not a layout the engines run
    # one expert per GPU: no placement choice, but the GPU holding the most popular expert is the
    # busiest -- ep x its share (8 experts at zipf 0.5: 8 / sum i^-0.5 = 1.83), the largest
    # imbalance of any spread of those experts (it was 1.0, as if balanced)
    top = 8 / sum(i ** -0.5 for i in range(1, 9))
    assert expected_ep_imbalance(8, 8, zipf=0.5) == pytest.approx(top, rel=1e-12) == pytest.approx(1.83, abs=0.005)
    assert expected_ep_imbalance(8, 8, zipf=0.5) > expected_ep_imbalance(8, 4, zipf=0.5) > 1.0
    assert expected_ep_imbalance(256, 256, zipf=0.5) > expected_ep_imbalance(256, 128, zipf=0.5)
    # uniform routing: every GPU's experts take exactly 1/ep of the picks, wherever they land
    assert expected_ep_imbalance(256, 8, zipf=0.0) == pytest.approx(1.0, abs=1e-12)


def test_ep_imbalance_grows_with_skew_and_spread_and_stays_within_its_bounds():
    import numpy as np

    from llmsim.cost.ops import expected_ep_imbalance

    f8, f32 = expected_ep_imbalance(256, 8, zipf=0.5), expected_ep_imbalance(256, 32, zipf=0.5)
    assert 1.0 < f8 < f32  # finer expert sharding leaves more room for a hot GPU
    assert expected_ep_imbalance(256, 8, zipf=0.3) < f8 < expected_ep_imbalance(256, 8, zipf=1.0)
    for E, ep, s in ((256, 8, 0.5), (256, 32, 0.5), (128, 4, 1.0)):
        p = np.arange(1, E + 1, dtype=float) ** -s
        p /= p.sum()
        # no placement does worse than one GPU holding the E/ep most popular experts
        worst = ep * p[: E // ep].sum()
        f = expected_ep_imbalance(E, ep, zipf=s)
        assert 1.0 < f < worst, (E, ep, s, f, worst)
    # deterministic: a fresh computation (cache cleared) gives the same number
    from llmsim.cost import ops as ops_module

    ops_module._EP_IMBALANCE.clear()
    assert expected_ep_imbalance(256, 32, zipf=0.5) == f32


def test_ep_imbalance_scales_the_busiest_gpus_routed_tokens_only_under_expert_parallelism():
    ds = get_model("deepseek-v3")
    fp8 = Precision.make("fp8")
    batch = Batch([], [2048] * 256)  # a large decode batch: MoE compute and all-to-alls grow with routed tokens
    par = Parallel(dp=8, ep=8)
    base = {o.name: o for o in OpBuilder(ds, par, fp8).build(batch)}
    hot = {o.name: o for o in OpBuilder(ds, par, fp8, ep_imbalance=1.5).build(batch)}
    for name in ("moe_experts_up", "moe_experts_down"):
        assert hot[name].flops == pytest.approx(1.5 * base[name].flops)
        assert hot[name].bytes > base[name].bytes  # same expert weights, 1.5x the activations
    for name in ("moe_dispatch", "moe_combine"):
        assert hot[name].bytes == pytest.approx(1.5 * base[name].bytes)
    # attention and the router see the same tokens
    for name in ("attn_decode", "moe_router", "q_b_proj"):
        assert hot[name].flops == base[name].flops and hot[name].bytes == base[name].bytes
    # no expert parallelism: the factor does nothing
    tp8 = Parallel(tp=8)
    assert [(o.name, o.flops, o.bytes) for o in OpBuilder(ds, tp8, fp8, ep_imbalance=1.5).build(batch)] == \
        [(o.name, o.flops, o.bytes) for o in OpBuilder(ds, tp8, fp8).build(batch)]
