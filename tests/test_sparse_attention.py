"""DeepSeek Sparse Attention (DeepSeek-V3.2, GLM-5): MLA whose queries read only the indexer's top-k keys."""

from __future__ import annotations

import pytest

from llmsim.cost.model import CostModel
from llmsim.cost.ops import Batch, OpBuilder, _pairs
from llmsim.errors import LlmsimError
from llmsim.hardware.catalog import get_gpu
from llmsim.layout import Parallel, Precision
from llmsim.memory.model import kv_bytes_per_token_per_gpu, weights_bytes_per_gpu
from llmsim.models import from_hf_config, get_model

# a DeepSeek-V3.2-shaped config (its published sizes: V3's, plus a 64-head indexer of width 128, top-2048)
V32 = {
    "model_type": "deepseek_v32", "hidden_size": 7168, "num_hidden_layers": 61, "num_attention_heads": 128,
    "num_key_value_heads": 128, "vocab_size": 129280, "intermediate_size": 18432, "q_lora_rank": 1536,
    "kv_lora_rank": 512, "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "v_head_dim": 128,
    "n_routed_experts": 256, "n_shared_experts": 1, "num_experts_per_tok": 8, "moe_intermediate_size": 2048,
    "first_k_dense_replace": 3, "topk_method": "noaux_tc", "index_n_heads": 64, "index_head_dim": 128, "index_topk": 2048,
}
FP8 = Precision("fp8", "fp8", "fp8")


@pytest.fixture(scope="module")
def glm5():
    return get_model("zhipuai/GLM-5")


def test_glm5_catalog_entry(glm5):
    assert glm5.name == "glm-5" and glm5.architecture == "glm_moe_dsa"
    assert (glm5.index_n_heads, glm5.index_head_dim, glm5.index_topk) == (32, 128, 2048)
    assert glm5.is_mla and glm5.is_sparse_attention and glm5.block_scaled("fp8")
    # indexer per layer: wq_b 2048 x 32 x 128, wk 6144 x 128, k_norm 2 x 128, weights_proj 6144 x 32
    assert glm5.indexer_params() == 2048 * 32 * 128 + 6144 * 128 + 2 * 128 + 6144 * 32 == 9_371_904
    # fp8 keys + one fp32 scale per 128, whatever the KV format
    assert glm5.index_cache_bytes_per_token_per_layer == 132
    assert glm5.summary()["index_cache_bytes_per_token"] == 78 * 132


def test_deepseek_v32_reads_as_v3_plus_an_indexer():
    m = from_hf_config(V32, name="v32")
    dense = from_hf_config({**V32, "model_type": "deepseek_v3"}, name="v3")
    assert m.is_sparse_attention and not dense.is_sparse_attention
    assert m.total_params - dense.total_params == 61 * (1536 * 64 * 128 + 7168 * 128 + 2 * 128 + 7168 * 64)


@pytest.mark.parametrize("change, match", [
    ({"index_topk": None}, "index_topk"),
    ({"index_n_heads": None}, "index_n_heads"),
    ({"indexer_types": ["full", "shared"] * 30 + ["full"]}, "indexer_types"),
    ({"index_topk_freq": 4}, "index_topk_freq"),
])
def test_bad_sparse_configs_say_what_is_wrong(change, match):
    with pytest.raises(LlmsimError, match=match):
        from_hf_config({**V32, **change}, name="bad")


def _attn(m, batch: Batch, name: str, tp: int = 8):
    ops = OpBuilder(m, Parallel(tp), FP8).build(batch)
    return [o for o in ops if o.name == name]


def test_attention_reads_at_most_topk_keys_but_the_indexer_scores_them_all(glm5):
    dec = {c: _attn(glm5, Batch([], [c] * 8), "attn_decode")[0] for c in (1024, 4096, 16384)}
    idx = {c: _attn(glm5, Batch([], [c] * 8), "dsa_indexer")[0] for c in (1024, 4096, 16384)}
    assert dec[4096].flops == dec[16384].flops == pytest.approx(dec[1024].flops * 2)
    assert dec[4096].bytes == dec[16384].bytes
    # the indexer's work grows with the whole context: 2 x 32 heads x 128 per (query, key) pair
    assert idx[16384].flops == pytest.approx(4 * idx[4096].flops)
    assert idx[16384].flops == pytest.approx(2 * 32 * 128 * 8 * 16384)
    assert idx[16384].bytes > 3.9 * idx[4096].bytes
    # prefill: a window's pair count of 2048 keys per query; a prompt within it is dense attention
    pre = _attn(glm5, Batch([(8192, 0)], []), "attn_prefill")[0]
    full = _attn(glm5.model_copy(update={"index_topk": 0, "index_n_heads": 0}), Batch([(8192, 0)], []), "attn_prefill")[0]
    nh, d = 64 // 8, glm5.q_head_dim + glm5.v_head_dim
    assert pre.flops == pytest.approx(2 * nh * _pairs(8192, 0, 2048) * d)
    assert full.flops == pytest.approx(2 * nh * _pairs(8192, 0, 0) * d)
    assert full.flops > 2 * pre.flops
    short = _attn(glm5, Batch([(1024, 0)], []), "attn_prefill")[0]
    assert short.flops == pytest.approx(2 * nh * _pairs(1024, 0, 0) * d)


def test_indexer_is_timed_and_counts_in_an_iteration(glm5):
    cm = CostModel(get_gpu("b200"))
    op = _attn(glm5, Batch([], [8192] * 64), "dsa_indexer")[0]
    c = cm.cost(op)
    assert c.total_s > 0 and c.source == "roofline"
    ops = OpBuilder(glm5, Parallel(8), FP8).build(Batch([], [8192] * 64))
    assert {"dsa_index_q_proj", "dsa_index_k_proj", "dsa_index_weights_proj", "dsa_indexer"} <= {o.name for o in ops}
    dense = glm5.model_copy(update={"index_topk": 0, "index_n_heads": 0})

    def step(m, ctx):
        return sum(cm.cost(o).total_s for o in OpBuilder(m, Parallel(8), FP8).build(Batch([], [ctx] * 64)))

    # within the top-k the indexer is pure overhead; at a long context reading 2048 keys instead of
    # all of them saves more than scoring them costs
    assert step(glm5, 2048) > step(dense, 2048)
    assert step(glm5, 65536) < 0.8 * step(dense, 65536)


def test_memory_counts_the_index_cache_and_replicated_indexer_weights(glm5):
    par = Parallel(8)
    assert kv_bytes_per_token_per_gpu(glm5, par, FP8) == 78 * ((512 + 64) * 1 + 132)
    bf16_kv = Precision("fp8", "fp8", "bf16")
    assert kv_bytes_per_token_per_gpu(glm5, par, bf16_kv) == 78 * ((512 + 64) * 2 + 132)
    dense = glm5.model_copy(update={"index_topk": 0, "index_n_heads": 0})
    # every tp rank holds the whole indexer (fp8 weights; the checkpoint's bf16 weights_proj is counted as fp8 too)
    diff = weights_bytes_per_gpu(glm5, par, FP8) - weights_bytes_per_gpu(dense, par, FP8)
    assert diff == pytest.approx(78 * glm5.indexer_params() * 1.0)


def test_training_estimate_refuses_sparse_attention_clearly(glm5):
    from llmsim.training.flops import Geometry

    with pytest.raises(LlmsimError, match="sparse attention"):
        Geometry.of(glm5)
