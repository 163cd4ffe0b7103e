"""Hybrid models: softmax attention alternating with Gated DeltaNet linear attention (Qwen3-Next, Qwen3.5)."""

from __future__ import annotations

import numpy as np
import pytest

from llmsim.cost.ops import Batch, OpBuilder
from llmsim.errors import LlmsimError
from llmsim.layout import Parallel, Precision
from llmsim.cost.ops import GDN_STATE_BYTES
from llmsim.memory.model import kv_bytes_per_sequence, kv_bytes_per_token_per_gpu, linear_state_bytes_per_sequence
from llmsim.models import from_hf_config, get_model
from llmsim.serving.simulate import Deployment, Pool, simulate
from llmsim.serving.workload import make_workload

# a Qwen3-Next-80B-A3B-shaped config, flat (no text_config), layer kinds from full_attention_interval
NEXT = {
    "model_type": "qwen3_next", "hidden_size": 2048, "num_hidden_layers": 48, "num_attention_heads": 16,
    "num_key_value_heads": 2, "head_dim": 256, "vocab_size": 151936, "intermediate_size": 5120,
    "num_experts": 512, "num_experts_per_tok": 10, "moe_intermediate_size": 512, "shared_expert_intermediate_size": 512,
    "full_attention_interval": 4, "linear_num_key_heads": 16, "linear_num_value_heads": 32, "linear_key_head_dim": 128,
    "linear_value_head_dim": 128, "linear_conv_kernel_dim": 4, "max_position_embeddings": 262144,
}


@pytest.fixture(scope="module")
def q35():
    return get_model("Qwen/Qwen3.5-397B-A17B")


def test_qwen35_catalog_entry_matches_its_name(q35):
    # "397B-A17B": 396.3B counted (the vision tower and the MTP layer are not), 17.3B active
    assert q35.num_linear_layers == 45 and q35.num_kv_layers == 15
    assert q35.layer_types[:4] == ("linear", "linear", "linear", "full")
    assert 394e9 < q35.total_params < 398e9
    assert 16.5e9 < q35.active_params < 18e9
    assert q35.attn_output_gate and q35.num_shared_experts == 1


def test_flat_config_layer_kinds_from_the_interval():
    m = from_hf_config(NEXT, name="next")
    assert [g.attention for g in m.layer_groups] == ["linear", "full"]
    assert sum(g.count for g in m.layer_groups if g.attention == "linear") == 36
    assert m.layer_types[3] == "full" and m.layer_types[4] == "linear"
    # explicit layer_types win over the interval
    m2 = from_hf_config({**NEXT, "layer_types": ["full_attention"] * 2 + ["linear_attention"] * 46}, name="x")
    assert m2.layer_types[:3] == ("full", "full", "linear")


@pytest.mark.parametrize("change, match", [
    ({"linear_num_value_heads": None}, "linear_num_value_heads"),
    ({"layer_types": ["mamba"] * 48}, "linear_attention"),
    ({"linear_num_value_heads": 24}, "multiple of the key heads"),
])
def test_bad_hybrid_configs_say_what_is_wrong(change, match):
    with pytest.raises(LlmsimError, match=match):
        from_hf_config({**NEXT, **change}, name="bad")


def test_linear_layer_type_only_for_hybrid_architectures():
    # Mistral reads layer_types for its sliding windows; a linear layer there is not a Gated DeltaNet
    mistral = {"model_type": "mistral", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
               "intermediate_size": 128, "vocab_size": 100, "sliding_window": 32,
               "layer_types": ["linear_attention", "full_attention"]}
    with pytest.raises(LlmsimError, match="unsupported layer type"):
        from_hf_config(mistral, name="m")


def test_kv_cache_only_in_softmax_layers_and_a_fixed_state_per_sequence(q35):
    par, prec = Parallel(4), Precision("fp8", "fp8", "fp8")
    # 15 KV layers x K and V x 1 KV head per GPU (2 heads, tp 4: replicated) x 256 x 1 byte
    assert kv_bytes_per_token_per_gpu(q35, par, prec) == 15 * 2 * 1 * 256 * 1
    state = linear_state_bytes_per_sequence(q35, par)
    conv = 2 * 16 * 128 + 64 * 128
    assert state == pytest.approx(45 * (64 * 128 * 128 * GDN_STATE_BYTES + conv * 3 * 2) / 4)
    # a sequence's bytes: its KV blocks plus the state, whatever its length
    for L in (16, 4096):
        assert kv_bytes_per_sequence(q35, par, prec, L) == pytest.approx(L * 15 * 2 * 256 + state)
    dense = get_model("llama-3.1-8b")
    assert linear_state_bytes_per_sequence(dense, par) == 0.0


def test_linear_attention_decode_cost_does_not_grow_with_context(q35):
    b = OpBuilder(q35, Parallel(8), Precision("bf16"))
    lin, full = (g for g in sorted(q35.layer_groups, key=lambda g: g.attention != "linear"))
    short, long_ = Batch([], [100] * 8), Batch([], [20_000] * 8)
    ops = lambda batch, g: [(o.name, o.flops, o.bytes) for o in b.attention_ops(batch, g, 1.0)]  # noqa: E731
    assert ops(short, lin) == ops(long_, lin) and ops(short, lin)[0][0] == "gdn_decode"
    assert ops(short, full) != ops(long_, full)
    # the recurrence reads and writes each sequence's fp32 state once per token
    (_, _, nbytes), = ops(short, lin)
    assert nbytes > 8 * 2 * (64 // 8) * 128 * 128 * 4
    # prefill: linear in the prompt, not quadratic
    p1 = sum(o.flops for o in b.attention_ops(Batch([(4096, 0)], []), lin, 1.0))
    p2 = sum(o.flops for o in b.attention_ops(Batch([(8192, 0)], []), lin, 1.0))
    assert p2 == pytest.approx(2 * p1)
    names = {o.name for o in b.build(Batch([(512, 0)], [300] * 4))}
    assert {"gdn_in_proj_qkvz", "gdn_conv", "gdn_prefill", "gdn_decode", "gdn_out_proj", "attn_output_gate"} <= names


def test_tp_must_divide_the_linear_attention_heads(q35):
    with pytest.raises(LlmsimError, match="linear-attention"):
        Parallel(32).validate(q35)  # divides the 32 query heads, not the 16 key heads


def test_training_estimate_refuses_linear_attention_clearly(q35):
    from llmsim.training.flops import Geometry

    with pytest.raises(LlmsimError, match="Gated DeltaNet"):
        Geometry.of(q35)


def test_serving_admits_only_what_fits_with_the_state():
    # 32 clients, a KV cache that holds ~15 sequences once each one's linear-attention state
    # (3,126 KV-token equivalents here) is counted: never more admitted at once than fit
    wl = make_workload(num_requests=64, isl=1000, osl=100, concurrency=32, seed=0)
    dep = Deployment(model="qwen3.5-397b", pool=Pool("b200", tp=8), weight_dtype="fp8", kv_dtype="fp8",
                     memory_fraction=0.2695, kernels="none")
    res = simulate(dep, wl)
    assert res.summary["num_completed"] == 64
    state_tokens = res.engines[0].cfg.seq_state_tokens
    assert state_tokens == pytest.approx(3126, abs=1)
    cap = res.summary["kv_capacity_tokens_per_engine"]
    sched, finish = np.frombuffer(res.requests.t_sched), np.frombuffer(res.requests.t_finish)
    in_flight = max(int(np.sum((sched <= t) & (finish > t))) for t in sched)
    assert 1 < in_flight <= cap / (state_tokens + 1001) < 32
    # a request whose KV alone would fit but not with its state: the error says so
    long_prompt = cap - 1000
    with pytest.raises(LlmsimError, match="linear-attention state"):
        simulate(dep, make_workload(num_requests=2, isl=long_prompt, osl=100, concurrency=1))


def test_qwen35_wrapper_reads_its_text_config():
    text = {k: v for k, v in NEXT.items() if k != "model_type"}
    m = from_hf_config({"model_type": "qwen3_5_moe", "text_config": {**text, "model_type": "qwen3_5_moe_text"}}, name="w")
    assert m.num_linear_layers == 36 and m.architecture == "qwen3_5_moe"
    with pytest.raises(LlmsimError, match="text_config"):
        from_hf_config({"model_type": "qwen3_5_moe"}, name="w")
    with pytest.raises(LlmsimError, match="not supported"):
        from_hf_config({"model_type": "qwen3_5_moe", "text_config": {**text, "model_type": "llama"}}, name="w")


def test_sliding_window_layers_hold_only_their_window_in_serving():
    # gpt-oss-120b: half its layers slide over 128 tokens. 16 clients of 4,100 tokens each need
    # 16 x (4,101 + 128) = 67,664 tokens of the full layers' KV: they all run at once in a pool of
    # 75,776 such tokens, which counted in every layer's bytes would hold only 37,888 (9 requests)
    wl = make_workload(num_requests=32, isl=4000, osl=100, concurrency=16, seed=0)
    dep = Deployment(model="gpt-oss-120b", pool=Pool("b200", tp=1), weight_dtype="fp4", kv_dtype="fp8",
                     memory_fraction=0.374, kernels="none")
    res = simulate(dep, wl)
    assert res.summary["num_completed"] == 32 and res.summary["preemptions"] == 0
    eng = res.engines[0].cfg
    assert eng.seq_state_tokens == 128
    cap = res.summary["kv_capacity_tokens_per_engine"]
    all_layers = kv_bytes_per_token_per_gpu(get_model("gpt-oss-120b"), Parallel(), Precision.make("fp4", kv="fp8"))
    assert eng.kv_bytes_per_token == all_layers  # swaps and hand-offs move every layer's KV
    assert 16 * (4101 + 128) <= cap and cap * 0.5 < 9.5 * 4101
    sched, finish = np.frombuffer(res.requests.t_sched), np.frombuffer(res.requests.t_finish)
    assert max(int(np.sum((sched <= t) & (finish > t))) for t in sched) == 16
