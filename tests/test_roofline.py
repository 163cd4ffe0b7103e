"""Roofline and CostModel: bounds, times from spec-sheet peaks, monotonicity, links, measured tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from llmsim.cost import roofline as rf
from llmsim.cost.measured import KernelTables
from llmsim.cost.model import CostModel
from llmsim.cost.ops import Op, build_ops, comm, elementwise, gemm, uniform_batch
from llmsim.estimate import estimate
from llmsim.hardware import get_gpu
from llmsim.layout import Parallel, Precision
from llmsim.models import get_model

H100_BF16_PEAK = 989.4e12  # dense, spec sheet
H100_HBM = 3.35e12  # bytes/s


@pytest.fixture(scope="module")
def h100():
    return get_gpu("h100-sxm")


@pytest.fixture(scope="module")
def cm(h100):
    return CostModel(h100)  # roofline only


@pytest.fixture(scope="module")
def tables():
    return KernelTables.load(None)


def bf16_gemm(m, n, k):
    return gemm("g", m, n, k, 2.0, 2.0, "bf16", 1, "")


# ------------------------------------------------------------------ bounds and absolute times


def test_large_gemm_compute_bound(cm, h100):
    c = cm.cost(bf16_gemm(8192, 8192, 8192))
    assert c.bound == "compute"
    assert c.source == "roofline"
    ideal = 2 * 8192**3 / (H100_BF16_PEAK * h100.efficiency.gemm_peak_fraction)
    assert c.time_s == pytest.approx(ideal, rel=0.10)
    assert c.time_s >= ideal  # tiles, waves and short-K only ever slow it down
    # efficiency reported against 100% of peak
    assert c.efficiency == pytest.approx(2 * 8192**3 / H100_BF16_PEAK / c.time_s, rel=1e-9)


def test_decode_gemm_memory_bound(cm, h100):
    e = h100.efficiency
    op = bf16_gemm(1, 8192, 8192)
    nbytes = 2 * (1 * 8192 + 8192 * 8192 + 1 * 8192)
    assert op.bytes == nbytes
    c = cm.cost(op)
    assert c.bound == "memory"
    ramp = e.mem_ramp_s * nbytes / (nbytes + e.mem_half_saturation_bytes)
    expected = nbytes / (H100_HBM * e.mem_bw_fraction) + ramp + e.gemm_launch_s
    assert c.time_s == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "op",
    [
        gemm("tiny", 1, 64, 64, 2.0, 2.0, "bf16", 1, ""),
        elementwise("tiny_norm", 1024.0, 512.0, 1, ""),
    ],
    ids=["gemm", "elementwise"],
)
def test_tiny_ops_latency_bound(cm, op):
    c = cm.cost(op)
    assert c.bound == "latency"
    assert c.efficiency < 0.5
    assert c.time_s >= 2e-6  # at least a kernel launch


def test_elementwise_time(cm, h100):
    e = h100.efficiency
    nbytes = 4e9
    c = cm.cost(elementwise("big", nbytes, 0.0, 1, ""))
    assert c.bound == "memory"
    ramp = e.mem_ramp_s * nbytes / (nbytes + e.mem_half_saturation_bytes)
    assert c.time_s == pytest.approx(nbytes / (H100_HBM * e.mem_bw_fraction) + ramp + e.elementwise_launch_s, rel=1e-9)


def test_fp8_gemm_uses_fp8_peak(h100):
    cm = CostModel(h100)
    e = h100.efficiency
    op = gemm("g8", 8192, 8192, 8192, 1.0, 1.0, "fp8", 1, "")
    c = cm.cost(op)
    assert c.bound == "compute"
    ideal = 2 * 8192**3 / (1978.9e12 * e.gemm_lowp_peak_fraction)
    assert c.time_s == pytest.approx(ideal, rel=0.10)


# ------------------------------------------------------------------ monotonicity


def gemm_time(cm, m, n, k):
    return cm.cost(bf16_gemm(m, n, k)).time_s


dims = st.integers(1, 20000)


# Monotone to 1e-9 relative: the split-K factor is continuous, so where a few more rows or columns
# fill the last wave (splits 1.000004 -> 1) the fp32 partial-sum pass it drops can outweigh the
# longer main loop by femtoseconds (m 1212 -> 1281, n 1496, k 1120: 2e-10 relative).
MONO_RTOL = 1e-9


@settings(max_examples=150, deadline=None)
@example(m=1212, n=1496, k=1120, dm=69)
@given(m=dims, n=dims, k=dims, dm=st.integers(1, 5000))
def test_gemm_time_monotone_in_m(cm, m, n, k, dm):
    assert gemm_time(cm, m + dm, n, k) >= gemm_time(cm, m, n, k) * (1 - MONO_RTOL)


@settings(max_examples=150, deadline=None)
@given(m=dims, n=dims, k=dims, dn=st.integers(1, 5000))
def test_gemm_time_monotone_in_n(cm, m, n, k, dn):
    assert gemm_time(cm, m, n + dn, k) >= gemm_time(cm, m, n, k) * (1 - MONO_RTOL)


@settings(max_examples=150, deadline=None)
@example(m=128, n=128, k=511, dk=1)
@given(m=dims, n=dims, k=dims, dk=st.integers(1, 5000))
def test_gemm_time_monotone_in_k(cm, m, n, k, dk):
    assert gemm_time(cm, m, n, k + dk) >= gemm_time(cm, m, n, k) * (1 - MONO_RTOL)


@settings(max_examples=100, deadline=None)
@given(
    coll=st.sampled_from(["all_reduce", "all_gather", "reduce_scatter", "alltoall", "send_recv"]),
    nbytes=st.floats(1.0, 1e10),
    factor=st.floats(1.001, 100.0),
    group=st.sampled_from([2, 4, 8, 16, 32]),
)
def test_collective_time_increases_with_message_size(cm, coll, nbytes, factor, group):
    a = cm.cost(comm("c", coll, nbytes, group, 1, "")).time_s
    b = cm.cost(comm("c", coll, nbytes * factor, group, 1, "")).time_s
    assert b > a > 0


@pytest.mark.parametrize("coll", ["all_reduce", "all_gather", "alltoall"])
@pytest.mark.parametrize("nbytes", [1e3, 1e6, 1e9])
def test_collective_time_increases_with_group(cm, coll, nbytes):
    times = [cm.cost(comm("c", coll, nbytes, g, 1, "")).time_s for g in (2, 4, 8, 16, 64)]
    assert all(b > a for a, b in zip(times, times[1:])), times


def test_all_reduce_formula(h100):
    # NCCL all-reduce on 8 GPUs over NVLink: c_ar alpha(8) + 2 * 7/8 * S / (W * f) + ramp(S)
    e = h100.efficiency
    S = 64e6
    t = rf.collective_time_s("all_reduce", S, 8, 450e9, 3e-6, e)
    ramp = e.collective_ramp_s * S / (S + e.collective_ramp_half_bytes)
    assert t == pytest.approx(e.collective_allreduce_latency_scale * 3e-6 * (1 + 3)
                              + 2 * 7 / 8 * S / (450e9 * e.collective_bw_fraction) + ramp, rel=1e-12)
    assert rf.collective_time_s("all_reduce", S, 1, 450e9, 3e-6, e) == 0.0
    # point-to-point keeps the link's own fraction and no ramp
    assert rf.collective_time_s("send_recv", S, 2, 450e9, 3e-6, e) == pytest.approx(3e-6 + S / (450e9 * e.comm_bw_fraction))


def test_roofline_docstring_collective_example(h100):
    # the worked example in cost/roofline.py: an 8-GPU alltoall of 2 MiB on H100 NVLink
    t = rf.collective_time_s("alltoall", 2097152.0, 8, 450e9, 3e-6, h100.efficiency)
    assert t == pytest.approx(22.8e-6, abs=0.05e-6)


@pytest.fixture(scope="module")
def nccl_table():
    from llmsim import calibrate as cal
    path = Path(__file__).resolve().parents[2] / "shared" / "data" / "kernels" / "h100" / "h100_comm_nccl_2.27.3_nccl_perf.parquet"
    if not path.exists():
        pytest.skip("shared NCCL table not available")
    return cal.read_collective_table(path)


def test_collective_fit_reproduces_shipped_values_and_beats_alpha_beta_on_held_out_groups(h100, nccl_table):
    """The shipped collective_* values are what `fit_collectives` finds on the train groups of the
    shared H100 NCCL table, starting from the spec-sheet alpha-beta model; on the held-out groups
    the fitted model's median error is far below that model's."""
    from llmsim import calibrate as cal
    held = cal.collective_holdout_mask(nccl_table)
    assert 0.2 < held.mean() < 0.4 and len(set(nccl_table.group[held])) == 7
    prior = h100.efficiency.model_copy(update=cal.ALPHA_BETA_PRIOR)
    fitted = cal.fit_collectives(h100.model_copy(update={"efficiency": prior}), nccl_table, ~held)
    for name in cal.COLLECTIVE_FIELDS:
        assert getattr(fitted, name) == pytest.approx(getattr(h100.efficiency, name), rel=0.01), name
    y = nccl_table.seconds
    new = cal.stats(cal.predict_collectives(h100, nccl_table)[held], y[held])
    old = cal.stats(cal.predict_collectives(h100, nccl_table, prior)[held], y[held])
    assert new.median_ape < 12.0 and old.median_ape > 25.0, (new, old)


# ------------------------------------------------------------------ link tiers


def comm_sources(tp, kernels=None):
    m = get_model("llama-3.1-70b")
    cm = CostModel(get_gpu("h100-sxm"), kernels)
    ops = build_ops(m, Parallel(tp=tp), Precision.make(), uniform_batch([], [1000] * 8))
    costs = [cm.cost(o) for o in ops if o.kind == "comm"]
    assert costs
    return {c.source for c in costs}


def test_tp16_uses_network():
    # 16 GPUs span two 8-GPU NVLink domains: the hierarchical collective (NVLink inside, NICs across)
    srcs = comm_sources(16)
    assert srcs and all(s.endswith(":nvlink+network") for s in srcs), srcs


def test_tp8_uses_nvlink():
    srcs = comm_sources(8)
    assert srcs and all(s.endswith(":nvlink") for s in srcs), srcs


def test_network_slower_than_nvlink(cm):
    # same per-GPU message: 16 GPUs span two nodes, and the share that crosses them goes through
    # 50 GB/s NICs -- slower than inside one node, faster than a flat ring over the NICs
    from llmsim.cost.roofline import collective_time_s
    g = cm.gpu
    t8 = cm.cost(comm("c", "all_reduce", 1e8, 8, 1, "")).time_s
    t16 = cm.cost(comm("c", "all_reduce", 1e8, 16, 1, "")).time_s
    flat = collective_time_s("all_reduce", 1e8, 16, g.nic_bandwidth_gbps * 1e9, g.nic_latency_us * 1e-6, g.efficiency)
    assert 1.3 * t8 < t16 < flat / 3


# ------------------------------------------------------------------ hardware overrides


def test_double_bandwidth_speeds_up_memory_bound_only(h100):
    fast = h100.with_overrides(memory_bandwidth_gbps=2 * h100.memory_bandwidth_gbps)
    e = h100.efficiency
    a, b = CostModel(h100), CostModel(fast)

    dec = bf16_gemm(1, 16384, 16384)
    ta, tb = a.cost(dec).time_s, b.cost(dec).time_s
    assert a.cost(dec).bound == b.cost(dec).bound == "memory"
    assert 1.7 < ta / tb <= 2.0
    # exactly: the streaming part halves, ramp and launch stay
    fixed = e.mem_ramp_s * dec.bytes / (dec.bytes + e.mem_half_saturation_bytes) + e.gemm_launch_s
    assert tb - fixed == pytest.approx((ta - fixed) / 2, rel=1e-9)

    big = bf16_gemm(8192, 8192, 8192)
    assert a.cost(big).bound == "compute"
    assert b.cost(big).time_s == pytest.approx(a.cost(big).time_s, rel=1e-12)


# ------------------------------------------------------------------ measured tables


def test_measured_bf16_gemm_on_h100(h100, tables):
    cm = CostModel(h100, tables)
    op = bf16_gemm(1024, 4096, 4096)
    c = cm.cost(op)
    assert c.source == "measured"
    # the measured time is physically plausible: not faster than 100% of peak or of HBM bandwidth
    assert c.time_s >= 2 * 1024 * 4096 * 4096 / H100_BF16_PEAK
    assert c.time_s >= op.bytes / H100_HBM


def test_measured_tables_only_on_h100(tables):
    assert tables.matches_gpu("h100-sxm")
    assert not tables.matches_gpu("a100-sxm-80gb")


def test_out_of_range_gemm_falls_back_to_roofline(h100, tables):
    cm = CostModel(h100, tables)
    assert cm.cost(bf16_gemm(1024, 4096, 200_000)).source == "roofline"  # k beyond 65536


def test_elementwise_is_roofline_even_with_tables(h100, tables):
    assert CostModel(h100, tables).cost(elementwise("n", 1e6, 0, 1, "")).source == "roofline"


def test_int4_weights_gemm_uses_roofline(h100, tables):
    m = get_model("llama-3.1-8b")
    cm = CostModel(h100, tables)
    ops = build_ops(m, Parallel(), Precision.make("int4"), uniform_batch([], [1000]))
    qkv = next(o for o in ops if o.name == "qkv_proj")
    assert cm.cost(qkv).source == "roofline"


def test_int4_decode_gemm_faster_than_bf16_roofline(h100):
    # with the roofline, a memory-bound decode GEMM with int4 weights moves ~1/4 of the bytes
    m = get_model("llama-3.1-8b")
    cm = CostModel(h100)
    t = {}
    for w in ("bf16", "int4"):
        ops = build_ops(m, Parallel(), Precision.make(w), uniform_batch([], [1000]))
        t[w] = cm.cost(next(o for o in ops if o.name == "mlp_up")).time_s
    assert t["int4"] < 0.5 * t["bf16"]


def test_a100_estimate_is_roofline():
    r = estimate("llama-3.1-8b", "a100", batch=1, isl=128, osl=4, kernels="auto")
    assert r.kernel_source == "roofline"
    assert all(c.source.split(":")[0] in ("roofline", "none") for c in r.prefill_ops + r.decode_ops)


def test_h100_estimate_uses_measured():
    r = estimate("llama-3.1-8b", "h100-sxm", batch=1, isl=128, osl=4, kernels="auto")
    assert "measured" in r.kernel_source.split("+")
    qkv = next(c for c in r.prefill_ops if c.op.name == "qkv_proj")
    assert qkv.source == "measured"
    r2 = estimate("llama-3.1-8b", "h100-sxm", batch=1, isl=128, osl=4, kernels="none")
    assert r2.kernel_source == "roofline"


def test_cost_op_count_multiplies(cm):
    op1 = gemm("g", 256, 4096, 4096, 2.0, 2.0, "bf16", 1, "")
    op7 = gemm("g", 256, 4096, 4096, 2.0, 2.0, "bf16", 7, "")
    assert cm.cost(op7).total_s == pytest.approx(7 * cm.cost(op1).time_s, rel=1e-12)
    assert cm.step_time_s([op1, op7]) == pytest.approx(8 * cm.cost(op1).time_s, rel=1e-12)


def test_comm_single_gpu_is_free(cm):
    c = cm.cost(Op("c", "comm", 1, 0.0, 1e6, "bf16", ("all_reduce", 1), ""))
    assert c.time_s == 0.0


def test_custom_allreduce_one_shot_small_two_shot_large():
    """The engines' peer-memory all-reduce: one synchronisation for small messages (no log2(n)
    growth, unlike the ring/tree model), two-shot's 2(n-1)/n volume for large ones."""
    from llmsim.cost.roofline import collective_time_s, custom_allreduce_time_s
    from llmsim.hardware.catalog import get_gpu

    g = get_gpu("b200-sxm")
    e, bw, lat = g.efficiency, g.nvlink_bandwidth_gbps * 1e9, g.nvlink_latency_us * 1e-6
    eff_bw = bw * e.comm_bw_fraction
    small = 4 * 8192 * 2
    for n in (2, 4, 8):
        assert custom_allreduce_time_s(small, n, bw, lat, e) == pytest.approx(lat + (n - 1) * small / eff_bw)
        assert custom_allreduce_time_s(small, n, bw, lat, e) < collective_time_s("all_reduce", small, n, bw, lat, e)
    big = 64 * 2**20
    assert custom_allreduce_time_s(big, 8, bw, lat, e) == pytest.approx(2 * lat + 2 * 7 / 8 * big / eff_bw)
    assert custom_allreduce_time_s(small, 1, bw, lat, e) == 0.0


def test_fused_activation_quant_drops_the_quantisation_pass():
    """TRT-LLM quantises GEMM activations inside the preceding kernel: a roofline fp8/fp4 GEMM
    then pays neither the quantisation launch nor its slower pass; 16-bit GEMMs are unchanged."""
    from llmsim.cost.model import CostModel
    from llmsim.cost.ops import Op
    from llmsim.hardware.catalog import get_gpu
    from llmsim.serving.backends import BACKENDS

    gpu = get_gpu("b200")
    plain, fused = CostModel(gpu), CostModel(gpu, fused_act_quant=True)
    m, n, k = 8, 8192, 8192
    for dtype, wb in (("fp8", 1.0), ("fp4", 0.5)):
        op = Op("mlp_up", "gemm", 1, 2.0 * m * n * k, n * k * wb + m * k * 3 + m * n * 2, dtype, (m, n, k))
        d = plain.cost(op).total_s - fused.cost(op).total_s
        assert d >= gpu.efficiency.gemm_lowp_launch_s * 0.999 and d < 3 * gpu.efficiency.gemm_lowp_launch_s
        assert fused.cost(op).source == "roofline-fused-quant" and plain.cost(op).source == "roofline"
    op16 = Op("mlp_up", "gemm", 1, 2.0 * m * n * k, n * k * 2 + m * k * 2 + m * n * 2, "bf16", (m, n, k))
    assert plain.cost(op16).total_s == fused.cost(op16).total_s and fused.cost(op16).source == "roofline"
    assert BACKENDS["trtllm"].fused_act_quant and BACKENDS["vllm"].fused_act_quant and not BACKENDS["sglang"].fused_act_quant
    # vLLM's compile passes fuse the quantisation into RMSNorm and SiLU-and-mul, not into attention:
    # its attention output projection keeps the separate pass
    vllm = BACKENDS["vllm"].cost_model(gpu)
    for name, unfused in (("o_proj", True), ("mlp_up", False), ("qkv_proj", False)):
        op = Op(name, "gemm", 1, 2.0 * m * n * k, n * k + m * k * 3 + m * n * 2, "fp8", (m, n, k))
        assert vllm.cost(op).total_s == pytest.approx((plain if unfused else fused).cost(op).total_s, rel=1e-12), name


def test_hierarchical_collectives_send_only_cross_domain_traffic_over_nics():
    from llmsim.cost.roofline import collective_time_s, hierarchical_collective_time_s
    from llmsim.hardware import get_gpu
    g = get_gpu("b200-sxm")
    e = g.efficiency
    S, d = 256e6, g.nvlink_domain_size
    nvl, nvl_lat = g.nvlink_bandwidth_gbps * 1e9, g.nvlink_latency_us * 1e-6
    nic, nic_lat = g.nic_bandwidth_gbps * 1e9, g.nic_latency_us * 1e-6
    for coll in ("all_reduce", "all_gather", "reduce_scatter", "alltoall"):
        flat = collective_time_s(coll, S, 2 * d, nic, nic_lat, e)
        inside = collective_time_s(coll, S, d, nvl, nvl_lat, e)
        hier = hierarchical_collective_time_s(coll, S, 2 * d, d, nvl, nvl_lat, nic, nic_lat, e)
        assert inside < hier < flat, coll
    # all-to-all over two 8-GPU nodes: half of each GPU's message crosses its NIC
    a2a = hierarchical_collective_time_s("alltoall", S, 16, 8, nvl, nvl_lat, nic, nic_lat, e)
    alpha = nic_lat * (1 + 4)
    ramp = e.collective_ramp_s * S / (S + e.collective_ramp_half_bytes)
    assert a2a == pytest.approx(e.collective_latency_scale * alpha + 0.5 * S / (nic * e.collective_bw_fraction) + ramp, rel=1e-12)
    # all-reduce: each NIC carries 2 (g - d) / (g d) S = S / 8 instead of a flat ring's 2 (g-1)/g S
    ar = hierarchical_collective_time_s("all_reduce", S, 16, 8, nvl, nvl_lat, nic, nic_lat, e)
    w_nvl, w_nic = nvl * e.collective_bw_fraction, nic * e.collective_bw_fraction
    assert ar == pytest.approx(e.collective_allreduce_latency_scale * alpha + 2 * (7 / 8 * S / w_nvl + 8 / 128 * S / w_nic) + ramp,
                               rel=1e-12)
    # inside one domain it is the flat NVLink collective
    assert hierarchical_collective_time_s("all_reduce", S, 8, 8, nvl, nvl_lat, nic, nic_lat, e) == \
        pytest.approx(collective_time_s("all_reduce", S, 8, nvl, nvl_lat, e))


def test_block_scaled_fp8_keeps_its_quantisation_pass_and_uses_the_block_table():
    """A block-scaled fp8 GEMM quantises activations per 1 x 128 group in its own kernel in every
    engine (TRT-LLM included), and where kernel tables exist it is timed by the fp8_block table."""
    gpu = get_gpu("b200")
    plain, fused = CostModel(gpu), CostModel(gpu, fused_act_quant=True)
    m, n, k = 8, 8192, 8192
    blk = Op("mlp_up", "gemm", 1, 2.0 * m * n * k, n * k + m * k * 3 + m * n * 2, "fp8_block", (m, n, k))
    assert plain.cost(blk).total_s == fused.cost(blk).total_s and fused.cost(blk).source == "roofline"
    per_tensor = Op("mlp_up", "gemm", 1, 2.0 * m * n * k, n * k + m * k * 3 + m * n * 2, "fp8", (m, n, k))
    assert fused.cost(per_tensor).total_s < fused.cost(blk).total_s
    kt = KernelTables.load(None)
    h100 = CostModel(get_gpu("h100-sxm"), kt, framework="vllm")
    m, n, k = 16, 4096, 4096
    op = Op("o_proj", "gemm", 1, 2.0 * m * n * k, n * k + m * k * 3 + m * n * 2, "fp8_block", (m, n, k))
    c = h100.cost(op)
    assert c.source == "measured" and c.time_s == pytest.approx(kt.gemm_s(m, n, k, "fp8_block", framework="vllm"))
    assert c.time_s != pytest.approx(kt.gemm_s(m, n, k, "fp8", framework="vllm"), rel=0.05)


def test_moe_efficiency_floors_the_grouped_gemms_useful_flops(h100):
    # an engine's fused-MoE expert GEMMs do their useful FLOPs at no more than moe_efficiency of the
    # dense GEMM's rate: a long prefill (compute-bound) slows to exactly that floor, a few-token
    # decode (weight-bound, tiles padded) and every other op are unchanged
    spec, par, prec = get_model("qwen3-235b-a22b"), Parallel(tp=4), Precision.make("bf16", None, None)
    full, half = CostModel(h100), CostModel(h100, moe_efficiency=0.5)

    def up(batch):
        return next(o for o in build_ops(spec, par, prec, batch) if o.name == "moe_experts_up")

    big = up(uniform_batch([16384]))
    rate = h100.peak_flops_per_s("bf16") * rf.gemm_peak_fraction("bf16", h100.efficiency)
    assert half.cost(big).time_s == pytest.approx(big.flops / (rate * 0.5))
    assert half.cost(big).time_s > 1.5 * full.cost(big).time_s
    # the explanation names the bound: compute, at the fused-MoE rate
    assert (half.cost(big).source, half.cost(big).bound) == ("roofline-moe-efficiency", "compute")
    assert full.cost(big).source == "roofline" and half.cost(up(uniform_batch([], [1000] * 8))).source == "roofline"
    small = up(uniform_batch([], [1000] * 8))
    assert half.cost(small).time_s == full.cost(small).time_s
    for o in build_ops(spec, par, prec, uniform_batch([16384])):
        if o.kind != "moe_gemm":
            assert half.cost(o).time_s == full.cost(o).time_s, o.name
    assert full.settings != half.settings  # step-time caches keep them apart
    for bad in (0.0, 1.5, -0.2, True):
        with pytest.raises(ValueError, match="moe_efficiency"):
            CostModel(h100, moe_efficiency=bad)
