"""The training estimator (`llmsim.training`): hand-derived memory, bubble and MFU numbers, the
divisibility rules, the JSON contract, determinism, monotonicity and OOM-as-a-result."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest

from llmsim import get_gpu, get_model
from llmsim.errors import LlmsimError
from llmsim.models.spec import ModelSpec
from llmsim.training import MFU_DEFINITION, parse_tokens, train_estimate
from llmsim.training.flops import Geometry
from llmsim.training.memory import act_bytes_per_token_layer
from llmsim.training.schedule import bubble_fraction, inflight_microbatches

H100 = "h100-sxm"


def gpt_like(h=4096, a=32, l=32, V=51200, s=2048, kv=None, f=None, name="gpt-test") -> ModelSpec:
    return ModelSpec(
        name=name, architecture="gpt2", vocab_size=V, hidden_size=h, num_layers=l, num_heads=a, num_kv_heads=kv or a,
        head_dim=h // a, intermediate_size=f or 4 * h, gated_mlp=False, activation="gelu", norm="layernorm",
        qkv_bias=True, o_bias=True, mlp_bias=True, tie_word_embeddings=True, learned_pos_embeddings=True,
        max_position_embeddings=s,
    )


@pytest.fixture(scope="module")
def r70():
    return train_estimate("llama-3.1-70b", H100, num_gpus=64, tp=8, pp=2, vpp=5, global_batch=128, seq_len=4096, tokens="1T")


# ------------------------------------------------------------------ JSON contract


def test_json_contract(r70):
    d = r70.to_dict()
    for k in ("step_time_s", "tokens_per_s_per_gpu", "model_tflops_per_gpu", "mfu", "hfu", "fits", "memory_per_gpu_bytes",
              "step_time_breakdown_s", "memory_breakdown_bytes", "layout", "comm_tiers", "training", "mfu_definition"):
        assert k in d, k
    for k in ("tp", "pp", "vpp", "cp", "ep", "dp", "zero", "micro_batch", "recompute"):
        assert k in d["layout"], k
    assert d["layout"]["dp"] == 4
    assert isinstance(d["fits"], bool)
    json.loads(json.dumps(d))
    # the breakdowns add up
    assert sum(d["step_time_breakdown_s"].values()) == pytest.approx(d["step_time_s"], rel=1e-12)
    assert sum(d["memory_breakdown_bytes"].values()) == pytest.approx(d["memory_per_gpu_bytes"], rel=1e-12)
    assert d["tokens_per_s_per_gpu"] == pytest.approx(128 * 4096 / d["step_time_s"] / 64)
    assert d["mfu_definition"] == MFU_DEFINITION


def test_comm_tiers_follow_placement():
    r = train_estimate("llama-3.1-70b", H100, num_gpus=64, tp=8, pp=2, global_batch=64, seq_len=2048)
    assert r.comm_tiers["tp"] == "nvlink" and r.comm_tiers["dp"] == "network" and r.comm_tiers["pp"] == "network"
    # 8 GPUs: tp=2 x dp=4 fits in the NVLink domain; so does the DP group
    r = train_estimate("llama-3.1-8b", H100, num_gpus=8, tp=2, global_batch=8, seq_len=2048)
    assert r.comm_tiers["tp"] == "nvlink" and r.comm_tiers["dp"] == "nvlink"
    # TP wider than the NVLink domain crosses nodes
    r = train_estimate("llama-3.1-70b", H100, num_gpus=16, tp=16, global_batch=4, seq_len=2048)
    assert r.comm_tiers["tp"] == "network"
    # CP placed after TP: tp=4 x cp=2 inside a node, tp=8 x cp=2 across nodes
    a = train_estimate("llama-3.1-8b", H100, num_gpus=8, tp=4, cp=2, global_batch=8, seq_len=8192)
    b = train_estimate("llama-3.1-8b", H100, num_gpus=16, tp=8, cp=2, global_batch=8, seq_len=8192)
    assert a.comm_tiers["cp"] == "nvlink" and b.comm_tiers["cp"] == "network"


# ------------------------------------------------------------------ ZeRO memory (hand-derived)


@pytest.mark.parametrize("zero,per_param", [(0, 16.0), (1, 4 + 12 / 8), (2, 2 + (2 + 12) / 8), (3, 16 / 8)])
def test_zero_stage_memory_7b(zero, per_param):
    m = get_model("llama-2-7b")
    P = m.total_params  # ~6.7e9; tp=pp=1: every parameter on every GPU before sharding
    r = train_estimate(m, H100, num_gpus=8, zero=zero, global_batch=8, seq_len=1024)
    mem = r.memory_breakdown_bytes
    states = mem["weights"] + mem["gradients"] + mem["optimizer_states"]
    assert states == pytest.approx(per_param * P, rel=1e-12)
    if zero == 3:  # two layers of gathered bf16 weights (prefetch)
        assert mem["zero3_gather_buffer"] == pytest.approx(2 * 2 * (P / m.num_layers), rel=1e-12)
    else:
        assert mem["zero3_gather_buffer"] == 0


def test_fp32_grads_and_tp_pp_sharding():
    m = get_model("llama-2-7b")
    a = train_estimate(m, H100, num_gpus=8, zero=0, global_batch=8, seq_len=1024, fp32_grads=True)
    assert a.memory_breakdown_bytes["gradients"] == pytest.approx(4 * m.total_params, rel=1e-12)
    b = train_estimate(m, H100, num_gpus=8, tp=2, pp=2, zero=0, global_batch=8, seq_len=1024)
    # roughly a quarter of the parameters per GPU (+ the embedding/head of the first/last stage)
    assert 0.24 < b.params_per_gpu / m.total_params < 0.30


def test_korthikanti_activation_formula():
    """34 s b h / t (+ 5 a s^2 b / t without recompute) per layer with SP; selective drops the
    score term; full keeps the 2 s b h input (Korthikanti et al. 2022)."""
    h, a, s, t = 6144, 48, 2048, 8
    geo = Geometry.of(gpt_like(h=h, a=a, s=s))
    kept, _ = act_bytes_per_token_layer(geo, False, np.array([t]), s, True, False, np.array([0]))
    assert kept[0] == pytest.approx(34 * h / t + 5 * a * s / t)
    kept, _ = act_bytes_per_token_layer(geo, False, np.array([t]), s, True, False, np.array([1]))
    assert kept[0] == pytest.approx(34 * h / t)
    kept, _ = act_bytes_per_token_layer(geo, False, np.array([t]), s, True, False, np.array([2]))
    assert kept[0] == pytest.approx(2 * h / t)
    # no sequence parallelism: 10 + 24/t
    kept, _ = act_bytes_per_token_layer(geo, False, np.array([t]), s, False, False, np.array([1]))
    assert kept[0] == pytest.approx(h * (10 + 24 / t))
    # FlashAttention never stores the scores
    kept, _ = act_bytes_per_token_layer(geo, False, np.array([t]), s, True, True, np.array([0]))
    assert kept[0] == pytest.approx(34 * h / t)


# ------------------------------------------------------------------ schedule


def test_bubble_fractions():
    assert bubble_fraction(4, 1, 8) == pytest.approx(3 / 8)
    assert bubble_fraction(4, 2, 8) == pytest.approx(3 / 16)
    assert bubble_fraction(8, 3, 64) == pytest.approx(7 / 192)
    assert bubble_fraction(1, 1, 8) == 0
    assert inflight_microbatches(4, 1, 16) == 4
    assert inflight_microbatches(4, 1, 2) == 2
    assert inflight_microbatches(4, 2, 16) == pytest.approx(4 * (1 + 3 / 8))
    assert inflight_microbatches(1, 1, 16) == 1


@pytest.mark.parametrize("pp,vpp", [(4, 1), (4, 2), (8, 4)])
def test_bubble_in_step_time(pp, vpp):
    m = gpt_like(l=32)
    r = train_estimate(m, H100, num_gpus=8 * pp, tp=8, pp=pp, vpp=vpp, global_batch=16 * pp, seq_len=2048, zero=0)
    mb = r.micro_batches_per_step
    assert mb == 16 * pp
    assert r.bubble_fraction == pytest.approx((pp - 1) / (vpp * mb))
    b = r.step_time_breakdown_s
    ideal = b["compute"] + b["recompute"] + b["tp_comm"] + b["cp_comm"] + b["ep_comm"]
    assert b["pipeline_bubble"] == pytest.approx(r.bubble_fraction * ideal, rel=1e-9)


# ------------------------------------------------------------------ MFU (hand computation)


def test_mfu_hand_computation():
    m = get_model("llama-3.1-8b")  # untied: embedding lookup excluded, LM head counted
    s, gb, n = 4096, 64, 8
    r = train_estimate(m, H100, num_gpus=n, global_batch=gb, seq_len=s, zero=1)
    norms = 2 * m.num_layers * m.hidden_size + m.hidden_size  # RMSNorm weights: not matmul weights
    n_mm = m.total_params - m.vocab_size * m.hidden_size - norms
    attn = 6 * m.num_layers * m.num_heads * (2 * m.head_dim) * s / 2  # = 12 L h s / 2 (h = heads x head_dim)
    assert attn == pytest.approx(12 * m.num_layers * m.num_heads * m.head_dim * s / 2)
    per_token = 6 * n_mm + attn
    assert r.model_flops_per_token == pytest.approx(per_token, rel=1e-12)
    mfu = per_token * gb * s / (r.step_time_s * n * 989.4e12)
    assert r.mfu == pytest.approx(mfu, rel=1e-12)
    assert r.model_tflops_per_gpu == pytest.approx(per_token * gb * s / r.step_time_s / n / 1e12, rel=1e-12)
    assert r.hfu == pytest.approx(r.mfu)  # no recomputation


def test_mfu_tied_gpt3_and_hfu_with_full_recompute():
    m = get_model("gpt3-175b")  # GPT-2 style: tied embeddings, learned positions
    s = 2048
    r = train_estimate(m, "a100", num_gpus=64, tp=8, pp=8, global_batch=64, seq_len=s, recompute="full", zero=1)
    norms = 2 * (2 * m.num_layers * m.hidden_size + m.hidden_size)  # LayerNorm weights + biases
    n_mm = m.total_params - m.embedding_params() + m.vocab_size * m.hidden_size - norms
    assert r.model_flops_per_token == pytest.approx(6 * n_mm + 6 * m.num_layers * m.hidden_size * s, rel=1e-12)
    # HFU counts the recomputed forward of the layers (not the LM head)
    fwd_layers = 2 * (n_mm - m.vocab_size * m.hidden_size) + 2 * m.num_layers * m.hidden_size * s
    assert r.hfu / r.mfu == pytest.approx((r.model_flops_per_token + fwd_layers) / r.model_flops_per_token, rel=1e-9)
    assert r.peak_tflops_per_gpu == pytest.approx(312.0)


def test_fp8_uses_fp8_peak_and_is_faster():
    kw = {"num_gpus": 8, "tp": 8, "global_batch": 8, "seq_len": 4096}
    a = train_estimate("llama-3.1-70b", H100, dtype="bf16", **kw)
    b = train_estimate("llama-3.1-70b", H100, dtype="fp8", **kw)
    assert b.peak_tflops_per_gpu == pytest.approx(1978.9)
    assert b.step_time_s < a.step_time_s
    assert b.mfu == pytest.approx(b.model_tflops_per_gpu / 1978.9, rel=1e-9)
    with pytest.raises(LlmsimError, match="fp8"):
        train_estimate("llama-3.1-8b", "a100", dtype="fp8", num_gpus=8)


# ------------------------------------------------------------------ divisibility rules (each one)


@pytest.mark.parametrize(
    "model,kw,match",
    [
        ("llama-3.1-70b", {"num_gpus": 24, "tp": 3}, "does not divide the 64 attention heads"),
        ("llama-3.1-8b", {"num_gpus": 3, "tp": 3, "pp": 1, "dp": 1}, "does not divide the 32 attention heads"),
        ("llama-3.1-8b", {"num_gpus": 8, "tp": 4, "pp": 3}, "= 12 does not divide num_gpus = 8"),
        ("llama-3.1-8b", {"num_gpus": 8, "tp": 2, "dp": 2}, "is not num_gpus = 8"),
        ("llama-3.1-8b", {"num_gpus": 24, "pp": 3}, "pp=3 does not divide the 32 layers"),
        ("llama-3.1-8b", {"num_gpus": 8, "pp": 4, "vpp": 3}, "pp\\*vpp = 4\\*3 = 12 does not divide the 32 layers"),
        ("llama-3.1-8b", {"num_gpus": 8, "vpp": 2}, "needs pp >= 2"),
        ("llama-3.1-8b", {"num_gpus": 8, "micro_batch": 2, "global_batch": 24}, "not divisible by micro_batch\\*dp = 2\\*8"),
        ("llama-3.1-8b", {"num_gpus": 8, "pp": 4, "vpp": 2, "global_batch": 6}, "multiple of pp=4"),
        ("llama-3.1-8b", {"num_gpus": 8, "cp": 4, "seq_len": 4100}, "2\\*cp = 8"),
        ("llama-3.1-8b", {"num_gpus": 8, "cp": 2, "seq_len": 4096, "flash_attention": False}, "needs flash_attention"),
        ("llama-3.1-8b", {"num_gpus": 8, "tp": 8, "seq_len": 4100, "global_batch": 1}, "sequence parallelism"),
        ("llama-3.1-8b", {"num_gpus": 8, "ep": 2}, "not a mixture-of-experts"),
        ("mixtral-8x7b", {"num_gpus": 24, "ep": 3}, "does not divide the 8 experts"),
        ("mixtral-8x7b", {"num_gpus": 16, "pp": 4, "tp": 4, "ep": 8}, "must divide tp\\*cp\\*dp = 4"),
        ("llama-3.1-8b", {"num_gpus": 8, "zero": 4}, "zero must be 0, 1, 2 or 3"),
        ("llama-3.1-8b", {"num_gpus": 8, "recompute": "some"}, "recompute must be one of"),
        ("llama-3.1-8b", {"num_gpus": 8, "dtype": "int4"}, "training dtype"),
        ("llama-3.1-8b", {"num_gpus": 8, "finetune": "lora", "zero": 3}, "zero=3 with LoRA"),
        ("llama-3.1-8b", {"num_gpus": 0}, "num_gpus must be a positive integer"),
        ("llama-3.1-8b", {"num_gpus": 8, "micro_batch": 0}, "micro_batch must be a positive integer"),
        ("llama-3.1-8b", {"num_gpus": 8, "tokens": "lots"}, "cannot read a token count"),
        ("gpt3-175b", {"num_gpus": 8, "tp": 8, "seq_len": 4096}, "exceeds the 2048 learned position embeddings"),
        ("llama-3.1-8b", {}, "give num_gpus"),
    ],
)
def test_divisibility_and_input_errors(model, kw, match):
    with pytest.raises(LlmsimError, match=match) as ei:
        train_estimate(model, H100, **kw)
    assert ei.value.hint or "must" in ei.value.message or "cannot" in ei.value.message


def test_kv_head_and_ffn_rules():
    # 12 heads, 4 KV heads: tp=6 divides the heads but neither divides nor is a multiple of the KV heads
    m = ModelSpec(name="odd-gqa", architecture="llama", vocab_size=1000, hidden_size=768, num_layers=4, num_heads=12,
                  num_kv_heads=4, head_dim=64, intermediate_size=3072)
    with pytest.raises(LlmsimError, match="neither divides nor is a multiple of the 4 KV heads"):
        train_estimate(m, H100, num_gpus=6, tp=6, seq_len=1200)
    train_estimate(m, H100, num_gpus=12, tp=12, seq_len=1200)  # a multiple: KV heads replicated
    m2 = ModelSpec(name="odd-ffn", architecture="llama", vocab_size=1000, hidden_size=768, num_layers=4, num_heads=12,
                   num_kv_heads=12, head_dim=64, intermediate_size=3070)
    with pytest.raises(LlmsimError, match="MLP width 3070"):
        train_estimate(m2, H100, num_gpus=4, tp=4, seq_len=1024)


def test_uneven_layers_allows_llama3_pp16():
    m = get_model("llama-3.1-405b")  # 126 layers
    with pytest.raises(LlmsimError, match="does not divide the 126 layers"):
        train_estimate(m, H100, num_gpus=128, tp=8, pp=16, seq_len=8192)
    r = train_estimate(m, H100, num_gpus=128, tp=8, pp=16, seq_len=8192, uneven_layers=True, recompute="full")
    assert r.extra == {} and r.layout["pp"] == 16


# ------------------------------------------------------------------ determinism, monotonicity, OOM


def test_deterministic():
    kw = {"num_gpus": 32, "tp": 4, "pp": 2, "vpp": 2, "cp": 2, "global_batch": 64, "seq_len": 8192, "recompute": "full", "zero": 2, "tokens": "300B"}
    a = train_estimate("llama-3.1-70b", H100, **kw).to_dict()
    b = train_estimate("llama-3.1-70b", H100, **kw).to_dict()
    assert a == b


@pytest.mark.parametrize("model,kw", [
    ("llama-3.1-70b", {"num_gpus": 64, "tp": 8, "pp": 4, "global_batch": 64}),
    ("gpt3-175b", {"num_gpus": 64, "tp": 8, "pp": 8, "vpp": 3, "global_batch": 64, "flash_attention": False}),
    ("gpt3-175b", {"num_gpus": 64, "tp": 8, "pp": 8, "global_batch": 64, "flash_attention": False, "sequence_parallel": False}),
    ("mixtral-8x7b", {"num_gpus": 32, "tp": 2, "pp": 2, "ep": 8, "global_batch": 64}),
])
def test_more_recompute_never_raises_activation_memory(model, kw):
    acts = [train_estimate(model, H100, seq_len=2048, recompute=rc, **kw).memory_breakdown_bytes["activations"]
            for rc in ("none", "selective", "full")]
    assert acts[0] >= acts[1] >= acts[2]
    assert acts[2] < acts[0]


@pytest.mark.parametrize("zero", [0, 1, 3])
def test_more_gpus_never_beat_the_compute_bound(zero):
    """Scaling dp at a fixed per-GPU layout (same micro-batches per replica): step time never drops
    below the compute time of one replica, and per-GPU throughput never rises (zero 0)."""
    m = get_model("llama-3.1-8b")
    prev = None
    for dp in (1, 2, 4, 8, 16, 64):
        r = train_estimate(m, H100, num_gpus=2 * dp, tp=2, micro_batch=1, global_batch=4 * dp, seq_len=4096, zero=zero)
        b = r.step_time_breakdown_s
        assert r.step_time_s >= b["compute"] + b["recompute"] + b["pipeline_bubble"]
        if zero == 0 and prev is not None:
            assert r.tokens_per_s_per_gpu <= prev * (1 + 1e-12)
        prev = r.tokens_per_s_per_gpu


def test_oom_is_a_result():
    r = train_estimate("llama-3.1-70b", H100, num_gpus=1, global_batch=1, seq_len=4096)
    assert r.fits is False
    assert "out of memory" in r.message and "try" in r.message
    d = r.to_dict()
    assert d["fits"] is False and d["memory_per_gpu_bytes"] > get_gpu(H100).memory_bytes
    assert r.step_time_s > 0  # still a full estimate


def test_oom_message_suggests_zero_and_recompute():
    r = train_estimate("llama-3.1-70b", H100, num_gpus=8, zero=0, global_batch=8, seq_len=4096, micro_batch=1)
    assert not r.fits and "zero=1" in r.message


# ------------------------------------------------------------------ time / cost / energy, tokens, LoRA


def test_tokens_parsing():
    assert parse_tokens("15T") == 15e12
    assert parse_tokens("300B") == 3e11
    assert parse_tokens("2.5e12") == 2.5e12
    assert parse_tokens(1_000_000) == 1e6
    assert parse_tokens("500M tokens") == 5e8
    assert parse_tokens(None) is None
    with pytest.raises(LlmsimError):
        parse_tokens("-5B")


def test_time_cost_energy(r70):
    tr = r70.training
    gpu = get_gpu(H100)
    steps = math.ceil(1e12 / (128 * 4096))
    assert tr["steps"] == steps
    assert tr["time_s"] == pytest.approx(steps * r70.step_time_s)
    assert tr["gpu_hours"] == pytest.approx(64 * tr["time_s"] / 3600)
    assert tr["cost_usd"] == pytest.approx(tr["gpu_hours"] * gpu.price_per_hour_usd)
    assert tr["energy_mwh"] == pytest.approx(64 * gpu.tdp_w * tr["time_s"] / 3.6e9)
    six_nd = 6 * get_model("llama-3.1-70b").active_params * 1e12
    assert tr["six_n_d_flops"] == pytest.approx(six_nd)
    assert 0.95 < tr["flops_vs_6nd"] < 1.3  # 6 N_mm + attention vs 6 N (embedding excluded, attention added)
    r = train_estimate("llama-3.1-70b", H100, num_gpus=64, tp=8, pp=2, vpp=5, global_batch=128, seq_len=4096,
                       tokens="1T", price_per_hour_usd=1.0)
    assert r.training["cost_usd"] == pytest.approx(r.training["gpu_hours"])


def test_lora_is_cheaper_than_full_finetune():
    kw = {"num_gpus": 8, "tp": 8, "global_batch": 8, "seq_len": 2048}
    full = train_estimate("llama-3.1-70b", H100, **kw)
    lora = train_estimate("llama-3.1-70b", H100, finetune="lora", lora_rank=16, **kw)
    assert lora.step_time_s < full.step_time_s
    assert lora.memory_per_gpu_bytes < full.memory_per_gpu_bytes
    assert lora.memory_breakdown_bytes["optimizer_states"] < 0.01 * full.memory_breakdown_bytes["optimizer_states"]
    assert lora.model_flops_per_token < full.model_flops_per_token


def test_render_runs(r70):
    from rich.console import Console

    con = Console(record=True, width=160)
    r70.render(con)
    text = con.export_text()
    assert "step time" in text and "memory per GPU" in text and "MFU" in text


def test_cli_free():
    code = "import sys, llmsim.training; bad = [m for m in ('llmsim.cli', 'typer') if m in sys.modules]; sys.exit(1 if bad else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ------------------------------------------------------------------ bad option types and ranges


_SWITCHES = ("sequence_parallel", "overlap_grad_reduce", "overlap_param_gather", "flash_attention", "fp32_grads", "uneven_layers",
             "dropout")


@pytest.mark.parametrize("name", _SWITCHES)
@pytest.mark.parametrize("bad", ["no", "False", 0, 1, 1.0])
def test_switches_must_be_real_bools(name, bad):
    # bool("no") is True: a string or number would silently turn the switch on (or off)
    with pytest.raises(LlmsimError, match=f"{name} must be True or False.*got {bad!r}") as ei:
        train_estimate("llama-3.1-8b", H100, num_gpus=8, global_batch=8, seq_len=4096, **{name: bad})
    assert name in ei.value.hint


def test_switches_accept_numpy_bools_and_dropout_none():
    kw = {"num_gpus": 8, "global_batch": 8, "seq_len": 4096}
    r = train_estimate("llama-3.1-8b", H100, sequence_parallel=np.bool_(False), dropout=np.bool_(True), **kw)
    assert r.options["sequence_parallel"] is False and r.options["dropout"] is True
    assert train_estimate("llama-3.1-8b", H100, dropout=None, **kw).options["dropout"] is False  # RMSNorm era: no dropout


@pytest.mark.parametrize("kw,text", [
    ({"fragmentation": "0.1"}, "fragmentation must be a number in [0, 1), got '0.1'"),
    ({"fragmentation": 1.0}, "fragmentation must be a finite number in [0, 1), got 1.0"),
    ({"fragmentation": float("nan")}, "fragmentation must be a finite number in [0, 1), got nan"),
    ({"fragmentation": True}, "fragmentation must be a number in [0, 1), got True"),
    ({"compute_efficiency": True}, "compute_efficiency must be a number in (0, 1], got True"),
    ({"compute_efficiency": 0}, "compute_efficiency must be a finite number in (0, 1], got 0"),
    ({"compute_efficiency": "0.5"}, "compute_efficiency must be a number in (0, 1], got '0.5'"),
    ({"runtime_overhead_gib": float("inf")}, "runtime_overhead_gib must be a finite number in [0, inf), got inf"),
    ({"runtime_overhead_gib": -1}, "runtime_overhead_gib must be a finite number in [0, inf), got -1"),
    ({"runtime_overhead_gib": "2"}, "runtime_overhead_gib must be a number in [0, inf), got '2'"),
])
def test_numeric_options_must_be_finite_numbers_in_range(kw, text):
    with pytest.raises(LlmsimError) as ei:
        train_estimate("llama-3.1-8b", H100, num_gpus=8, global_batch=8, seq_len=4096, **kw)
    assert text in ei.value.message and ei.value.hint


def test_numeric_options_in_range_are_accepted():
    r = train_estimate("llama-3.1-8b", H100, num_gpus=8, global_batch=8, seq_len=4096, fragmentation=np.float64(0.0),
                       compute_efficiency=1, runtime_overhead_gib=0)
    assert r.options["compute_efficiency"] == 1.0 and r.options["runtime_overhead_gib"] == 0.0


@pytest.mark.parametrize("gpu", [None, 5, 1.5, True, ["h100-sxm"]])
def test_gpu_argument_type(gpu):
    with pytest.raises(LlmsimError, match=f"gpu must be a catalog id, a GPU YAML/JSON file or a GPUSpec, got {re.escape(repr(gpu))}") as ei:
        train_estimate("llama-3.1-8b", gpu, num_gpus=8, global_batch=8, seq_len=4096)
    assert "h100-sxm" in ei.value.hint
