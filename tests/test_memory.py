"""Per-GPU memory: weights, KV cache (GQA, replication, MLA, sliding windows), concurrency and fit advice."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmsim.errors import LlmsimError
from llmsim.estimate import estimate
from llmsim.hardware import get_gpu
from llmsim.hardware.spec import GIB
from llmsim.layout import Parallel, Precision
from llmsim.memory.model import (
    kv_bytes_per_sequence,
    kv_bytes_per_token_per_gpu,
    kv_pool,
    memory_breakdown,
    weights_bytes_per_gpu,
)
from llmsim.models import get_model

BF16 = Precision.make("bf16")


@pytest.fixture(scope="module")
def l70():
    return get_model("llama-3.1-70b")


@pytest.fixture(scope="module")
def l8():
    return get_model("llama-3.1-8b")


@pytest.fixture(scope="module")
def h100():
    return get_gpu("h100-sxm")


# ------------------------------------------------------------------ weights


def test_llama70b_weights_tp4(l70):
    # everything but the (replicated, tiny) norms is split 4 ways
    w = weights_bytes_per_gpu(l70, Parallel(tp=4), BF16)
    assert w == pytest.approx(l70.total_params * 2 / 4, rel=0.01)
    assert 70.0e9 * 2 / 4 < w < 71.0e9 * 2 / 4


def test_llama70b_weights_tp4_exact(l70):
    h, L, I, V = 8192, 80, 28672, 128256
    attn = h * 64 * 128 + 2 * h * 8 * 128 + 64 * 128 * h
    mlp = 3 * h * I
    sharded = L * (attn + mlp) + 2 * V * h  # layers + embedding + LM head, all split by tp
    norms = L * 2 * h  # two RMSNorms per layer, replicated on every GPU
    expected = (sharded / 4 + norms) * 2
    # rel 1e-6: the final RMSNorm (8192 params = 16 KB) is not counted (see report)
    assert weights_bytes_per_gpu(l70, Parallel(tp=4), BF16) == pytest.approx(expected, rel=1e-6)


def test_fp8_weights_halve_layers_keep_embeddings_bf16(l8):
    w16 = weights_bytes_per_gpu(l8, Parallel(), BF16)
    w8 = weights_bytes_per_gpu(l8, Parallel(), Precision.make("fp8"))
    h, L, I, V = 4096, 32, 14336, 128256
    layer_params = L * (h * 32 * 128 + 2 * h * 8 * 128 + 32 * 128 * h + 3 * h * I)
    # only the layer matrices go from 2 to 1 byte; embedding, LM head and norms stay bf16
    assert w16 - w8 == pytest.approx(layer_params * 1, rel=1e-12)
    assert w8 > 2 * V * h * 2  # embedding + head in bf16 alone


def test_pp2_weights_half_layers_plus_larger_end(l70):
    h, L, I, V = 8192, 80, 28672, 128256
    per_layer = (h * 64 * 128 + 2 * h * 8 * 128 + 64 * 128 * h + 3 * h * I + 2 * h) * 2
    w = weights_bytes_per_gpu(l70, Parallel(pp=2), BF16)
    # 40 layers and the larger end: the last stage's LM head + final norm (h) beats the embedding
    assert w == pytest.approx(40 * per_layer + (V * h + h) * 2, rel=1e-9)


def test_tp16_replicated_kv_projection_weights(l70):
    h, L, I, V = 8192, 80, 28672, 128256
    q_o = 2 * h * 64 * 128 / 16
    kv = 2 * h * 1 * 128  # one whole (replicated) KV head per GPU
    per_layer = q_o + kv + 3 * h * I / 16 + 2 * h
    expected = (L * per_layer + 2 * V * h / 16) * 2
    assert weights_bytes_per_gpu(l70, Parallel(tp=16), BF16) == pytest.approx(expected, rel=1e-4)


# ------------------------------------------------------------------ KV cache


def test_kv_bytes_per_token_llama70b(l70):
    assert kv_bytes_per_token_per_gpu(l70, Parallel(tp=1), BF16) == 80 * 2 * 8 * 128 * 2 == 327_680
    assert kv_bytes_per_token_per_gpu(l70, Parallel(tp=8), BF16) == 40_960
    assert kv_bytes_per_token_per_gpu(l70, Parallel(tp=4), BF16) == 80 * 2 * 2 * 128 * 2
    # tp=16 > 8 KV heads: each GPU keeps one whole (replicated) KV head
    assert kv_bytes_per_token_per_gpu(l70, Parallel(tp=16), BF16) == 40_960


def test_kv_fp8_halves(l70):
    fp8 = Precision.make("bf16", kv="fp8")
    for tp in (1, 8):
        assert kv_bytes_per_token_per_gpu(l70, Parallel(tp=tp), fp8) * 2 == kv_bytes_per_token_per_gpu(
            l70, Parallel(tp=tp), BF16
        )


def test_kv_pp_splits_layers(l70):
    assert kv_bytes_per_token_per_gpu(l70, Parallel(pp=4), BF16) == 20 * 2 * 8 * 128 * 2


@pytest.mark.parametrize("tp", [1, 8, 16])
def test_deepseek_mla_latent_not_split(tp):
    m = get_model("deepseek-v3")
    assert kv_bytes_per_token_per_gpu(m, Parallel(tp=tp), BF16) == 61 * (512 + 64) * 2 == 70_272


def test_gpt_oss_sliding_layers_capped():
    m = get_model("gpt-oss-120b")
    seq = 10_000
    per_layer_tok = 2 * 8 * 64 * 2  # K+V, 8 KV heads of 64 dims, bf16
    got = kv_bytes_per_sequence(m, Parallel(), BF16, seq, block_size=16)
    # 18 full layers hold all 10,000 tokens, 18 sliding layers only the 128-token window
    assert got == per_layer_tok * (18 * 10_000 + 18 * 128)
    all_full = 36 * seq * per_layer_tok
    assert got < 0.52 * all_full


def test_kv_pool_grows_in_the_full_layers_only():
    # gpt-oss: 18 full + 18 sliding (128-token window) layers. A paged engine's pool grows by the
    # full layers' bytes per token; each sequence holds the 18 sliding layers' window as fixed state
    m, h100 = get_model("gpt-oss-120b"), get_gpu("h100-sxm")
    par, prec = Parallel(), Precision.make("fp4", kv="bf16")
    mem = memory_breakdown(m, h100, par, prec, batch=1, seq_len=1, max_batched_tokens=8192)
    per_layer_tok = 2 * 8 * 64 * 2
    pool = kv_pool(m, par, prec, mem, held_tokens=9216)
    assert pool.token_bytes == 18 * per_layer_tok
    assert pool.state_tokens == 128  # 18 sliding layers x 128 tokens, in 18-full-layer tokens
    space = mem.usable_bytes - mem.weights_bytes - mem.activation_bytes - mem.runtime_overhead_bytes
    assert pool.capacity_tokens == int(space // (18 * per_layer_tok)) // 16 * 16
    assert pool.capacity_tokens == pytest.approx(2 * mem.max_kv_tokens, abs=16)  # every-layer tokens: half as many
    # the same bytes either way for a sequence longer than the window
    seq = 9216
    assert (seq + pool.state_tokens) * pool.token_bytes == kv_bytes_per_sequence(m, par, prec, seq)
    # a short request holds only its own length of window
    assert kv_pool(m, par, prec, mem, held_tokens=40).state_tokens == 48 * 18 / 18
    # without sliding layers: the every-layer count, no state
    l8 = get_model("llama-3.1-8b")
    mem8 = memory_breakdown(l8, h100, par, BF16, batch=1, seq_len=1, max_batched_tokens=8192)
    p8 = kv_pool(l8, par, BF16, mem8, held_tokens=9216)
    assert (p8.capacity_tokens, p8.state_tokens, p8.token_bytes) == (mem8.max_kv_tokens, 0.0, mem8.kv_bytes_per_token)
    # tp=2, pp=2, dp=1: per virtual engine
    p22 = kv_pool(l8, Parallel(tp=2, pp=2), BF16, memory_breakdown(l8, h100, Parallel(tp=2, pp=2), BF16, batch=1, seq_len=1,
                                                                    max_batched_tokens=8192), held_tokens=100)
    assert p22.replica_tokens == 2 * p22.capacity_tokens


def test_kv_sequence_rounds_to_blocks(l8):
    per_tok = 32 * 2 * 8 * 128 * 2
    assert kv_bytes_per_sequence(l8, Parallel(), BF16, 17, block_size=16) == 32 * per_tok
    assert kv_bytes_per_sequence(l8, Parallel(), BF16, 16, block_size=16) == 16 * per_tok


# ------------------------------------------------------------------ budget and concurrency


def breakdown(model, gpu, tp=1, batch=1, seq_len=2048, fraction=0.9, prec=BF16):
    return memory_breakdown(
        model, gpu, Parallel(tp=tp), prec, batch=batch, seq_len=seq_len, max_batched_tokens=2048,
        memory_fraction=fraction,
    )


def test_budget_arithmetic(l8, h100):
    b = breakdown(l8, h100, batch=4, seq_len=2048)
    assert b.capacity_bytes == pytest.approx(79.65 * 1024**3)
    assert b.usable_bytes == pytest.approx(0.9 * 79.65 * 1024**3)
    assert b.runtime_overhead_bytes == 1024**3
    assert b.total_bytes == pytest.approx(b.weights_bytes + b.kv_cache_bytes + b.activation_bytes + b.runtime_overhead_bytes)
    assert b.kv_cache_bytes == 4 * 2048 * 131_072  # 4 sequences x 2048 tokens x 32 layers*2*8*128*2
    kv_space = b.usable_bytes - b.weights_bytes - b.activation_bytes - b.runtime_overhead_bytes
    assert b.max_concurrency == int(kv_space // (2048 * 131_072))
    assert b.max_kv_tokens % 16 == 0
    assert b.max_kv_tokens == int(kv_space // 131_072) // 16 * 16
    assert b.fits and b.message == "fits"


@settings(max_examples=60, deadline=None)
@given(s1=st.integers(1, 100_000), s2=st.integers(1, 100_000))
def test_max_concurrency_non_increasing_in_seq_len(l8, h100, s1, s2):
    a, b = sorted((s1, s2))
    assert breakdown(l8, h100, seq_len=b).max_concurrency <= breakdown(l8, h100, seq_len=a).max_concurrency


@settings(max_examples=60, deadline=None)
@given(f1=st.floats(0.05, 1.0), f2=st.floats(0.05, 1.0), seq=st.integers(1, 32_768))
def test_max_concurrency_non_decreasing_in_memory_fraction(l8, h100, f1, f2, seq):
    a, b = sorted((f1, f2))
    assert breakdown(l8, h100, seq_len=seq, fraction=b).max_concurrency >= breakdown(
        l8, h100, seq_len=seq, fraction=a
    ).max_concurrency


def test_llama70b_one_h100_does_not_fit(l70, h100):
    b = breakdown(l70, h100, tp=1)  # a result, not an exception
    assert b.fits is False
    assert b.max_concurrency == 0
    assert "does not fit" in b.message
    needed = float(re.search(r"needs ([\d.]+) GiB", b.message).group(1))
    # 70.55e9 bf16 weights alone are 131.4 GiB
    assert needed > 70.5e9 * 2 / GIB
    assert needed == pytest.approx(b.total_bytes / GIB, abs=0.051)
    assert "try" in b.message


def test_llama70b_tp4_fits(l70, h100):
    b = breakdown(l70, h100, tp=4)
    assert b.fits is True
    assert b.max_concurrency >= 1


def test_estimate_reports_not_fitting_without_raising():
    r = estimate("llama-3.1-70b", "h100-sxm", tp=1, batch=1, isl=512, osl=8, kernels="none")
    assert r.fits is False
    assert "does not fit" in r.message and "GiB" in r.message and "try" in r.message
    assert r.prefill_ms > 0  # speed is still estimated


def test_kv_advice_when_weights_fit(l8, h100):
    # weights fit, but 64 sequences of 100k tokens (64 x 12.2 GiB of KV) do not
    b = breakdown(l8, h100, batch=64, seq_len=100_000)
    assert not b.fits
    assert "does not fit" in b.message
    assert "lower the batch" in b.message


def test_runtime_overhead_default_is_one_gib(l8, h100):
    assert breakdown(l8, h100).runtime_overhead_bytes == GIB


def test_bf16_attention_weights_counted_at_two_bytes():
    spec = get_model("gpt-oss-120b")
    plain = spec.model_copy(update={"native_unquantized": ()})
    fp4 = Precision.make("fp4")
    extra = weights_bytes_per_gpu(spec, Parallel(tp=2), fp4) - weights_bytes_per_gpu(plain, Parallel(tp=2), fp4)
    # every layer's attention parameters (per GPU) go from fp4 (0.5 byte + block scales) to 2 bytes
    from llmsim.dtypes import bytes_per_element
    per = 2.0 - bytes_per_element("fp4")
    assert extra == pytest.approx(spec.num_layers * spec.attention_params() / 2 * per, rel=1e-9)


def test_free_memory_fraction_is_a_share_of_what_the_weights_leave():
    # TRT-LLM's free_gpu_memory_fraction: the KV cache gets that share of the memory still free after
    # weights, activations and runtime; vLLM / SGLang's fraction bounds everything together
    ds, gpu = get_model("deepseek-r1"), get_gpu("b200")
    par, prec = Parallel(4).validate(ds), Precision.make("fp8", "fp8", "fp8")
    kw = dict(batch=1, seq_len=1, max_batched_tokens=8192, memory_fraction=0.9)
    cap = memory_breakdown(ds, gpu, par, prec, **kw)
    free = memory_breakdown(ds, gpu, par, prec, fraction_of="free", **kw)
    fixed = free.weights_bytes + free.activation_bytes + free.runtime_overhead_bytes
    assert fixed == pytest.approx(cap.weights_bytes + cap.activation_bytes + cap.runtime_overhead_bytes)
    assert cap.usable_bytes - fixed == pytest.approx(0.9 * gpu.memory_bytes - fixed)
    assert free.usable_bytes - fixed == pytest.approx(0.9 * (gpu.memory_bytes - fixed))
    per_block = free.kv_bytes_per_token * 16
    assert free.max_kv_tokens == int((free.usable_bytes - fixed) // per_block) * 16
    assert free.max_kv_tokens > 6 * cap.max_kv_tokens > 0  # the weights fill most of the GPU: the readings differ most
    # a model the GPU cannot hold: no KV room under either reading, and the advice names the tp it needs
    one = Parallel(1).validate(ds)
    for fo in ("capacity", "free"):
        m = memory_breakdown(ds, gpu, one, prec, fraction_of=fo, **kw)
        assert m.max_kv_tokens == 0 and not m.fits and "try tp*pp ≥ 4" in m.message, m.message
    msg = memory_breakdown(ds, gpu, one, prec, fraction_of="free", **kw).message
    assert "of the rest of" in msg and f"has {gpu.memory_bytes / GIB:.1f} GiB usable" in msg, msg  # never more than the GPU
    with pytest.raises(ValueError, match="fraction_of"):
        memory_breakdown(ds, gpu, par, prec, fraction_of="total", **kw)


@pytest.mark.parametrize("kw, needle", [
    (dict(batch=0), "batch must be an integer >= 1"),
    (dict(batch=-1), "batch must be an integer >= 1"),  # gave negative KV bytes
    (dict(seq_len=0), "seq_len must be an integer >= 1"),  # divided by zero
    (dict(block_size=0), "block_size must be an integer >= 1"),
    (dict(memory_fraction=float("nan")), r"memory_fraction must be a number in \(0, 1\]"),
    (dict(memory_fraction=2), r"memory_fraction must be a number in \(0, 1\]"),
    (dict(runtime_overhead_gib=-1), "runtime_overhead_gib must be a finite number >= 0"),
    (dict(fraction_of="x"), "fraction_of must be one of capacity, free"),
    (dict(par=Parallel(tp=3)), "tp=3 does not divide the 32 attention heads"),
    (dict(model="llama-3.1-8b"), "model must be a ModelSpec, got str"),
    (dict(gpu="h100-sxm"), "gpu must be a GPUSpec, got str"),
])
def test_memory_breakdown_refuses_bad_arguments(kw, needle):
    args = dict(model=get_model("llama-3.1-8b"), gpu=get_gpu("h100-sxm"), par=Parallel(tp=1), prec=Precision(),
                batch=8, seq_len=2048, max_batched_tokens=8192)
    args.update(kw)
    model, gpu, par, prec = (args.pop(k) for k in ("model", "gpu", "par", "prec"))
    with pytest.raises(LlmsimError, match=needle):
        memory_breakdown(model, gpu, par, prec, **args)
