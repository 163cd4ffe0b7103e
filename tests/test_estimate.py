"""The `estimate()` API: JSON contract, identities between its numbers, decode integration,
monotonicity and input validation. (Prediction accuracy/speed is tested elsewhere.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmsim.errors import LlmsimError
from llmsim.estimate import estimate
from llmsim.models import ModelSpec

SMALL = dict(model="llama-3.1-8b", gpu="h100-sxm")


def est(**kw):
    args = {**SMALL, "batch": 1, "isl": 256, "osl": 32, **kw}
    return estimate(args.pop("model"), args.pop("gpu"), **args)


@pytest.fixture(scope="module")
def r70():
    return estimate("llama-3.1-70b", "h100-sxm", tp=4, batch=8, isl=1024, osl=128)


# ------------------------------------------------------------------ JSON contract


def test_to_dict_keys(r70):
    d = r70.to_dict()
    for k in ("prefill_ms", "tpot_ms", "e2e_ms", "ttft_ms", "output_tokens_per_s", "fits", "max_concurrency", "memory"):
        assert k in d, k
    for k in ("weights_bytes", "kv_cache_bytes", "activation_bytes", "total_bytes"):
        assert k in d["memory"], k
    assert isinstance(d["fits"], bool)
    assert isinstance(d["max_concurrency"], int)
    assert "prefill_ops" not in d
    # serialisable as-is
    back = json.loads(json.dumps(d))
    assert back["prefill_ms"] == d["prefill_ms"]


def test_to_dict_explain_has_ops(r70):
    d = r70.to_dict(explain=True)
    assert d["prefill_ops"] and d["decode_ops"]
    for o in d["prefill_ops"] + d["decode_ops"]:
        assert o["bound"] in ("compute", "memory", "network", "latency")
        assert o["total_ms"] == pytest.approx(o["time_ms"] * o["count"])
    assert sum(o["total_ms"] for o in d["prefill_ops"]) == pytest.approx(d["prefill_ms"], rel=1e-9)
    json.dumps(d)


def test_identities(r70):
    assert r70.e2e_ms == pytest.approx(r70.prefill_ms + (128 - 1) * r70.tpot_ms, rel=1e-12)
    assert r70.output_tokens_per_s == pytest.approx(8 * 128 / (r70.e2e_ms / 1e3), rel=1e-12)
    assert r70.output_tokens_per_s_per_gpu == pytest.approx(r70.output_tokens_per_s / 4, rel=1e-12)
    assert r70.total_tokens_per_s == pytest.approx(8 * (1024 + 128) / (r70.e2e_ms / 1e3), rel=1e-12)
    assert r70.ttft_ms == r70.prefill_ms
    assert r70.num_gpus == 4
    m = r70.memory
    assert m.total_bytes == pytest.approx(m.weights_bytes + m.kv_cache_bytes + m.activation_bytes + m.runtime_overhead_bytes)
    assert r70.max_concurrency == m.max_concurrency
    assert r70.fits is True


def test_cost_per_million_tokens(r70):
    # 4 GPUs at the catalog's $3.49/h produce output_tokens_per_s tokens each second
    expected = 4 * 3.49 / 3600 / r70.output_tokens_per_s * 1e6
    assert r70.usd_per_million_output_tokens == pytest.approx(expected, rel=1e-9)


def test_osl1_has_no_decode():
    r = est(osl=1, kernels="none")
    assert r.tpot_ms == 0.0
    assert r.e2e_ms == r.prefill_ms


def test_deterministic():
    a = est(batch=4, isl=700, osl=50).to_dict(explain=True)
    b = est(batch=4, isl=700, osl=50).to_dict(explain=True)
    assert a == b


# ------------------------------------------------------------------ decode integration


def test_tpot_between_first_and_last_context():
    # roofline: decode attention time grows with context; non-attention ops do not depend on it
    kw = dict(batch=16, kernels="none")
    first = est(isl=1024, osl=2, **kw).tpot_ms  # one step, context 1025
    last = est(isl=2022, osl=2, **kw).tpot_ms  # one step, context 2023 = 1024 + 1000 - 1
    mean = est(isl=1024, osl=1000, **kw).tpot_ms  # steps at contexts 1025 .. 2023
    assert first < mean < last
    # KV streaming is linear in context here, so the mean step is the midpoint step
    assert mean == pytest.approx((first + last) / 2, rel=0.01)


def test_tpot_short_osl_uses_every_step():
    # osl-1 = 3 steps at contexts 257, 258, 259: the mean of three one-step estimates
    kw = dict(batch=8, kernels="none")
    steps = [est(isl=c - 1, osl=2, **kw).tpot_ms for c in (257, 258, 259)]
    assert est(isl=256, osl=4, **kw).tpot_ms == pytest.approx(sum(steps) / 3, rel=1e-9)


# ------------------------------------------------------------------ monotonicity


@pytest.mark.parametrize("kernels", ["none", "auto"])
def test_larger_batch_more_throughput(kernels):
    tps = [est(batch=b, isl=512, osl=64, kernels=kernels).output_tokens_per_s for b in (1, 2, 4, 8, 16, 64)]
    assert all(b > a for a, b in zip(tps, tps[1:])), tps


def test_larger_batch_no_lower_tpot_roofline():
    tpots = [est(batch=b, isl=512, osl=64, kernels="none").tpot_ms for b in (1, 2, 4, 8, 16, 64)]
    assert all(b >= a for a, b in zip(tpots, tpots[1:])), tpots


@pytest.mark.xfail(
    strict=True,
    reason="measured-data noise, kept visible: with the bundled H100 tables, Llama-3.1-8B isl=512 tpot at batch=2 is lower "
    "than at batch=1; the generation_attention table itself is non-monotone (32/8 heads, d=128: batch=1 "
    "kv_len=512 measured 15.2 us, batch=2 kv_len=512 12.2 us, batch=1 kv_len=1024 12.6 us) and "
    "KernelTables interpolates it as-is (cost/measured.py, generation_attention_s)",
)
def test_larger_batch_no_lower_tpot_measured():
    tpots = [est(batch=b, isl=512, osl=64, kernels="auto").tpot_ms for b in (1, 2, 4, 8, 16, 64)]
    assert all(b >= a for a, b in zip(tpots, tpots[1:])), tpots


@pytest.mark.parametrize("kernels", ["none", "auto"])
def test_fp8_weights_lower_tpot(kernels):
    # decode at small batch streams the weights: half the bytes
    bf = est(batch=1, isl=512, osl=64, kernels=kernels)
    f8 = est(batch=1, isl=512, osl=64, kernels=kernels, weight_dtype="fp8")
    assert f8.tpot_ms < bf.tpot_ms
    assert f8.memory.weights_bytes < 0.6 * bf.memory.weights_bytes


@pytest.mark.parametrize("kernels", ["none", "auto"])
def test_longer_isl_longer_prefill(kernels):
    pf = [est(batch=2, isl=isl, osl=8, kernels=kernels).prefill_ms for isl in (128, 512, 2048, 8192)]
    assert all(b > a for a, b in zip(pf, pf[1:])), pf


def test_more_tp_lower_tpot_for_70b():
    t = [estimate("llama-3.1-70b", "h100-sxm", tp=tp, batch=1, isl=512, osl=32, kernels="none").tpot_ms for tp in (2, 4, 8)]
    assert t[0] > t[1] > t[2]


def test_moe_and_mla_models_run():
    r = estimate("mixtral-8x7b", "h100-sxm", tp=2, ep=2, batch=4, isl=256, osl=16, kernels="none")
    assert r.prefill_ms > 0 and r.tpot_ms > 0 and r.fits
    r = estimate("deepseek-v3", "h200", tp=8, batch=4, isl=256, osl=16, weight_dtype="fp8", kernels="none")
    assert r.prefill_ms > 0 and r.tpot_ms > 0


def test_ep_imbalance_prices_the_busiest_expert_parallel_gpu():
    """A MoE step under expert parallelism waits for the GPU holding the popular experts: the
    factor scales its routed tokens, so prefill (compute-bound expert GEMMs) slows; 'auto' takes
    `expected_ep_imbalance`; dense models and ep = 1 refuse it; the result reports it."""
    from llmsim.cost.ops import expected_ep_imbalance

    kw = dict(model="deepseek-v3", gpu="b200", dp=8, ep=8, batch=64, isl=1024, osl=16, weight_dtype="fp8", kernels="none")
    even, hot, auto = estimate(**kw), estimate(**kw, ep_imbalance=1.5), estimate(**kw, ep_imbalance="auto")
    assert (even.ep_imbalance, hot.ep_imbalance) == (1.0, 1.5)
    assert auto.ep_imbalance == expected_ep_imbalance(256, 8) and 1.0 < auto.ep_imbalance < 1.5
    assert even.prefill_ms < auto.prefill_ms < hot.prefill_ms
    assert even.tpot_ms <= auto.tpot_ms <= hot.tpot_ms
    assert hot.to_dict()["ep_imbalance"] == 1.5
    # a setting that cannot act is an error, as in `serve`: no experts, or no expert parallelism
    with pytest.raises(LlmsimError, match="llama-3.1-8b is a dense model"):
        estimate("llama-3.1-8b", "h100-sxm", batch=4, isl=256, osl=16, kernels="none", ep_imbalance=1.5)
    with pytest.raises(LlmsimError, match="ep = 1") as e:
        estimate("mixtral-8x7b", "h100-sxm", tp=2, batch=4, isl=256, osl=16, kernels="none", ep_imbalance="auto")
    assert "--ep" in e.value.hint
    assert estimate("llama-3.1-8b", "h100-sxm", batch=4, isl=256, osl=16, kernels="none", ep_imbalance=1.0).ep_imbalance == 1.0
    for bad in (0.9, float("nan"), True, "hot"):
        with pytest.raises(LlmsimError, match="ep_imbalance must be 'auto' or a number >= 1"):
            estimate(**kw, ep_imbalance=bad)


# ------------------------------------------------------------------ bad input


def raises(match, **kw):
    with pytest.raises(LlmsimError, match=match) as ei:
        est(**kw)
    assert "Traceback" not in str(ei.value)
    return ei.value


def test_unknown_model():
    e = raises("unknown model", model="llama-9000")
    assert "models list" in (e.hint or "")


def test_unknown_model_suggests():
    e = raises("unknown model", model="llama-3.1-7b")
    assert "llama-3.1-70b" in (e.hint or "") or "llama-3.1-8b" in (e.hint or "")


def test_unknown_gpu():
    e = raises("unknown GPU", gpu="h999")
    assert "gpus list" in (e.hint or "")


@pytest.mark.parametrize("field, value", [("batch", 0), ("isl", -1), ("osl", 0), ("batch", 2.5), ("batch", True)])
def test_non_positive_integers(field, value):
    raises(f"{field} must be a positive integer", **{field: value})


@pytest.mark.parametrize("kw, match", [
    # attention DP splits whole sequences over its ranks (batch 1 over dp 8 used to time 1/8 of a sequence)
    (dict(dp=8, batch=1), "batch = 1 does not split evenly over dp = 8"),
    (dict(model="mixtral-8x7b", dp=4, ep=4, batch=6), "batch = 6 does not split evenly over dp = 4"),
    (dict(batch=1 << 21), "more than a static batch estimate handles"),  # used to hang building 2M sequences
    (dict(block_size=10**9), "block_size = 1,000,000,000 tokens exceeds the 131,072-token context"),
    (dict(framework="xyz"), "unknown framework 'xyz'"),
    (dict(kv_dtype=""), "unknown dtype ''"),  # used to become bf16
    (dict(model="mixtral-8x7b", tp=2, ep=2, ep_imbalance=3.0), "ep_imbalance = 3.0 is more than ep = 2 allows"),
    (dict(dp=1 << 20, batch=1 << 20), "GPUs in one replica is more than llmsim models"),
])
def test_impossible_requests_are_errors(kw, match):
    raises(match, **kw)


@pytest.mark.parametrize("tp", ["2", None, True, 2.0])
def test_parallel_degrees_must_be_integers(tp):
    raises("tp must be an integer", tp=tp)  # "2" / None were TypeErrors, True ran as tp=1


def test_numpy_integers_are_taken_as_ints():
    # an int16 batch used to be refused, then overflowed in the byte counts
    a = est(batch=np.int16(2), isl=np.int32(256), osl=np.int64(32))
    b = est(batch=2, isl=256, osl=32)
    assert (a.prefill_ms, a.tpot_ms, a.memory.total_bytes) == (b.prefill_ms, b.tpot_ms, b.memory.total_bytes)


def test_memory_advice_when_activations_alone_overflow():
    # the tp*pp hint used to divide by a 1-byte floor: "try tp*pp >= 17179869184"
    r = est(batch=1 << 19, isl=1024, osl=2)
    assert not r.fits and "activations and runtime alone need" in r.message and "tp*pp" not in r.message


def test_tp_not_dividing_heads():
    e = raises("tp=3 does not divide the 64 attention heads", model="llama-3.1-70b", tp=3)
    assert "4" in (e.hint or "") and "8" in (e.hint or "")


def test_tp_neither_divides_nor_multiple_of_kv_heads():
    spec = ModelSpec(
        name="toy-48h", architecture="llama", vocab_size=32000, hidden_size=6144, num_layers=4,
        num_heads=48, num_kv_heads=8, head_dim=128, intermediate_size=16384, max_position_embeddings=8192,
    )
    # 6 divides the 48 heads, but neither divides nor is a multiple of the 8 KV heads
    with pytest.raises(LlmsimError, match="neither divides nor is a multiple of the 8 KV heads"):
        estimate(spec, "h100-sxm", tp=6, batch=1, isl=128, osl=8)
    # tp=4 (divides 8) and tp=16 (multiple of 8, divides 48) are fine
    for tp in (4, 16):
        assert estimate(spec, "h100-sxm", tp=tp, batch=1, isl=128, osl=8, kernels="none").tpot_ms > 0


def test_ep_on_dense_model():
    e = raises("not a mixture-of-experts", ep=2, tp=2)
    assert "ep=1" in (e.hint or "")


def test_ep_must_divide_experts_and_gpus():
    with pytest.raises(LlmsimError, match="ep=4 must divide tp\\*dp=2"):
        estimate("mixtral-8x7b", "h100-sxm", tp=2, ep=4, batch=1, isl=64, osl=4)


def test_fp4_on_a100():
    raises("fp4", gpu="a100", weight_dtype="fp4")


def test_fp8_on_a100():
    e = raises("no fp8 tensor-core support", gpu="a100", weight_dtype="fp8")
    assert "bf16" in (e.hint or "")


def test_fp8_on_h100_ok_fp4_not():
    assert est(weight_dtype="fp8", kernels="none").tpot_ms > 0
    raises("fp4", weight_dtype="fp4")


def test_unknown_dtype():
    raises("unknown dtype", weight_dtype="fp5")


def test_context_too_long():
    raises("exceeds the 131072-token context", isl=130_000, osl=2_000)
    with pytest.raises(LlmsimError, match="2048-token context"):
        estimate("gpt3-175b", "h100-sxm", tp=8, batch=1, isl=2000, osl=100)
    # exactly at the limit is fine
    assert estimate("gpt3-175b", "h100-sxm", tp=8, batch=1, isl=2000, osl=48, kernels="none").fits


@pytest.mark.parametrize("frac", [0, 0.0, 1.5, -0.1])
def test_memory_fraction_out_of_range(frac):
    raises("memory_fraction must be in", memory_fraction=frac)


def test_memory_fraction_one_ok():
    assert est(memory_fraction=1.0, kernels="none").memory.usable_bytes == pytest.approx(79.65 * 1024**3)


def test_error_is_value_error():
    # LlmsimError subclasses ValueError so generic callers can catch it
    with pytest.raises(ValueError):
        est(batch=0)
