"""Step time of one training iteration, written once on numpy arrays of layouts.

`evaluate(ctx, L)` returns every number of the estimate for a whole batch of layouts; the
scalar `train_estimate` evaluates a 1-element batch and the layout search thousands at once,
so both always agree.

Per micro-batch, on the busiest pipeline stage (its layers + LM head, or everything when pp=1):

    t_f(layer) = GEMMs fwd + attention core fwd + elementwise fwd + exposed TP/CP/EP comm fwd
    t_b(layer) = GEMMs dgrad + wgrad + attention bwd + elementwise bwd + exposed comm bwd
    t_rc(layer)= full: t_f (one more forward);  selective: the attention core forward (none with
                 FlashAttention, whose backward already recomputes it);  none: 0
    t_mb       = sum over the stage's layers of (t_f + t_b + t_rc) + LM head / embedding

    step = m * t_mb                                   compute + exposed TP/CP/EP communication
         + (pp - 1) / vpp * t_mb                      pipeline bubble
         + 2 vpp m t_p2p                              pipeline send/recv (pp > 1)
         + exposed DP communication                   (see below)
         + optimizer                                  Adam over the local shard, memory-bound

GEMMs: `roofline.gemm_time_s` with the per-GPU shapes of `flops` (fp8 GEMMs at the fp8 rate when
dtype='fp8'; attention core, router and LM head stay bf16). Attention core (FlashAttention):
causal FLOPs / (bf16 peak * e.attn_peak_fraction) + e.attn_launch_s forward, 2.5x the FLOPs
backward (FlashAttention-2: 5 matmuls backward vs 2 forward). Without FlashAttention: batched
GEMMs on the full score matrix + memory-bound softmax / dropout (9 B per score forward, 11 B
backward). Elementwise (norms, residual, dropout, RoPE, activation): bytes / (HBM bandwidth *
e.mem_bw_fraction) + e.elementwise_launch_s per kernel; backward moves 2x the forward bytes.

Every kernel time above is divided by ``compute_efficiency`` (SUSTAINED_COMPUTE_FRACTION, the one
training-specific parameter; see its comment for how it was fitted and on what).

Communication exposure: TP collectives and EP all-to-alls sit on the critical path (exposed);
the CP ring overlaps the attention core (only max(0, t_ring - t_attention) shows); PP send/recv
is exposed. DP gradient reduction overlaps the backward of the last micro-batch when
overlap_grad_reduce (exposed: max(0, t_reduce - t_backward) + the last bucket's reduction),
parameter all-gathers (zero>=1) overlap the first forward when overlap_param_gather; zero 2
reduce-scatters every micro-batch; zero 3 (FSDP) gathers parameters before every micro-batch's
forward and backward (the first layer's gather is exposed). Without overlap everything is exposed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..cost.roofline import gemm_time_s
from ..hardware.spec import GPUSpec
from ..models.spec import ModelSpec
from .comm import coll
from .flops import Geometry
from .layout import LayoutArrays
from .memory import (
    activation_bytes,
    lora_params_per_layer,
    model_state_bytes,
    stage_params,
)
from .schedule import bubble_fraction, heaviest_layers_counts, layers_per_stage

ADAM_BYTES = 24.0  # read + write fp32 master, m, v

# The one training-specific efficiency: the fraction of the kernel-level roofline speed (Efficiency
# defaults, fitted on isolated H100 kernel measurements) that GEMM / attention / elementwise /
# optimizer kernels sustain inside an end-to-end training step (clocks under sustained power,
# launch gaps, data loading, logging). Fitted by `python benchmarks/validate_training.py --fit` on
# the 8 rows of Korthikanti et al. 2022 Table 5 ONLY (least squares on log step time); every other
# validation row is held out. Refitted 2026-11-23 (0.8875 -> 0.9025) when the NCCL collective
# model was fitted on the shared H100 NCCL table (`Efficiency.collective_*`).
SUSTAINED_COMPUTE_FRACTION = 0.9025


def _eff(e, name: str, default: float) -> float:
    return float(getattr(e, name, default))


@dataclass
class TrainContext:
    """Everything a layout batch is evaluated against: model, GPU, workload, switches."""

    model: ModelSpec
    gpu: GPUSpec
    geo: Geometry
    num_gpus: int
    global_batch: int
    seq_len: int
    dtype: str = "bf16"
    sequence_parallel: bool = True
    overlap_grad_reduce: bool = True
    overlap_param_gather: bool = True
    flash_attention: bool = True
    fp32_grads: bool = False
    uneven_layers: bool = False
    finetune: str = "full"  # 'full' (pre-training / full fine-tuning) or 'lora'
    lora_rank: int = 16
    cp_load_balance: bool = True
    fragmentation: float = 0.05
    runtime_overhead_bytes: float = 2.0 * 1024**3
    bucket_params: float = 40e6
    compute_efficiency: float = SUSTAINED_COMPUTE_FRACTION
    extra: dict = field(default_factory=dict)

    def rules_ctx(self) -> dict:
        return {
            "num_gpus": self.num_gpus, "global_batch": self.global_batch, "seq_len": self.seq_len,
            "uneven_layers": self.uneven_layers, "sequence_parallel": self.sequence_parallel,
            "flash_attention": self.flash_attention, "cp_load_balance": self.cp_load_balance,
            "finetune": self.finetune, "fp32_grads": self.fp32_grads, "lora_rank": self.lora_rank,
        }

    @property
    def peak_gemm(self) -> float:
        return self.gpu.peak_flops_per_s(self.dtype)

    @property
    def peak16(self) -> float:
        return self.gpu.peak_flops_per_s("bf16")


def _gemm_bytes(m, n, k, ab):
    q = m * k * (2.0 + ab) if ab < 2.0 else 0.0
    return m * k * ab + n * k * ab + m * n * 2.0 + q


class _Gemms:
    """Accumulates forward / backward GEMM time and FLOPs for one layer kind."""

    def __init__(self, ctx: TrainContext, train_weights: bool, grad_bytes: float):
        self.ctx = ctx
        self.gpu = ctx.gpu
        self.e = ctx.gpu.efficiency
        self.tw = train_weights
        self.gb = grad_bytes
        self.fwd = 0.0
        self.bwd = 0.0
        self.flops_fwd = 0.0

    def add(self, m, n, k, lowp: bool = True, count=1.0):
        ctx, e, g = self.ctx, self.e, self.gpu
        dtype = ctx.dtype if lowp else "bf16"
        peak = g.peak_flops_per_s(dtype)
        ab = 1.0 if dtype == "fp8" else 2.0
        B, sms = g.memory_bandwidth_bytes_per_s, g.num_sms
        m = np.maximum(np.asarray(m, float), 1.0)
        n = np.asarray(n, float) + 0.0 * m
        k = np.asarray(k, float) + 0.0 * m
        launch = _eff(e, "gemm_launch_s", 2.65e-6)
        grouped = lambda t: count * (t - launch) + launch
        f = gemm_time_s(m, n, k, _gemm_bytes(m, n, k, ab), peak, B, e, sms, dtype)
        dg = gemm_time_s(m, k, n, _gemm_bytes(m, k, n, ab), peak, B, e, sms, dtype)
        self.fwd = self.fwd + grouped(f)
        self.bwd = self.bwd + grouped(dg)
        if self.tw:
            # wgrad also reads and writes the gradient accumulation buffer (fp32 main_grad or bf16)
            wg = gemm_time_s(n, k, m, _gemm_bytes(n, k, m, ab) + 2.0 * self.gb * n * k, peak, B, e, sms, dtype)
            self.bwd = self.bwd + grouped(wg)
        self.flops_fwd = self.flops_fwd + 2.0 * count * m * n * k


def _mem_time(nbytes, gpu: GPUSpec, kernels: float):
    e = gpu.efficiency
    return nbytes / (gpu.memory_bandwidth_bytes_per_s * _eff(e, "mem_bw_fraction", 0.78)) + kernels * _eff(e, "elementwise_launch_s", 3e-6)


def evaluate(ctx: TrainContext, L: LayoutArrays) -> dict:
    """All estimate numbers for a batch of valid layouts (arrays of len(L))."""
    geo, gpu = ctx.geo, ctx.gpu
    e = gpu.efficiency
    N = len(L)
    f64 = lambda a: np.asarray(a, float) + np.zeros(N)
    tp, cp, pp, vpp, _dp, ep, mb = (f64(x) for x in (L.tp, L.cp, L.pp, L.vpp, L.dp, L.ep, L.mb))
    tpi = L.tp
    s = float(ctx.seq_len)
    h = float(geo.h)
    lora = ctx.finetune == "lora"
    gbytes = 4.0 if ctx.fp32_grads else 2.0
    sp = (tp > 1) & bool(ctx.sequence_parallel)
    flash = bool(ctx.flash_attention)
    m_steps = f64(ctx.global_batch // (L.mb * L.dp))  # micro-batches per step per replica
    T = mb * s / cp  # token rows of one micro-batch on this GPU
    Tn = np.where(sp, T / tp, T)  # rows in the norm / residual regions
    Tsp = T / tp  # token-sharded rows (MoE dispatch)
    nh_l = geo.nh / tp
    g_l = (np.maximum(1.0, geo.nkv / tp) if not geo.mla else nh_l)
    drop = 1.0 if geo.dropout else 0.0
    attn_frac = _eff(e, "attn_peak_fraction", 0.6)
    attn_launch = _eff(e, "attn_launch_s", 1.3e-5)
    P16 = ctx.peak16
    span_tp, span_cp, span_dp = L.tp, L.tp * L.cp, L.tp * L.cp * L.dp
    span_pp = np.full(N, ctx.num_gpus, np.int64)

    # one tensor-parallel "all-reduce equivalent" on S bytes: AR, or AG + RS with sequence parallelism
    S_act = T * h * 2.0
    ar = coll("all_reduce", S_act, L.tp, span_tp, gpu)
    agrs = coll("all_gather", S_act, L.tp, span_tp, gpu) + coll("reduce_scatter", S_act, L.tp, span_tp, gpu)
    tp_one = np.where(sp, agrs, ar)

    per_kind: dict[str, list[np.ndarray]] = {k: [] for k in ("gemm_f", "gemm_b", "attn_f", "attn_b", "ew_f", "ew_b", "tp_f", "cp_f", "cp_b", "ep_f", "rc", "flops_f", "attn_flops_f")}
    for kind in geo.kinds:
        G = _Gemms(ctx, not lora, gbytes)
        for _, n, k, _split in geo.attn_gemms(tpi):
            G.add(T, n, k)
        n_tp_coll = 1.0
        ew_bytes = Tn * (20.0 * h + 2.0 * drop * h)  # 2 norms (r+w) + 2 residual adds (+ dropout masks)
        if geo.rope:
            ew_bytes = ew_bytes + T * (nh_l + g_l) * geo.d_qk * 4.0  # RoPE on q, k (read + write)
        kernels_f = 6.0
        ep_f = 0.0 * T
        if kind.moe:
            G.add(Tsp, geo.E, h, lowp=False)  # router (replicated, on token-sharded rows)
            m_e = Tsp * geo.top_k * ep / geo.E
            for _, n, k in geo.mlp_gemms(float(geo.f_e)):
                G.add(m_e, n, k, count=geo.E / ep)
            act_w = (3.0 if geo.gated else 2.0) * 2.0
            ew_bytes = ew_bytes + Tsp * geo.top_k * (act_w * geo.f_e + 8.0 * h)  # activation + permute / unpermute
            kernels_f += 4.0
            if geo.f_shared:
                for _, n, k in geo.mlp_gemms(geo.f_shared / tp):
                    G.add(T, n, k)
                ew_bytes = ew_bytes + T * act_w * geo.f_shared / tp
                n_tp_coll += 1.0
            a2a = coll("alltoall", Tsp * geo.top_k * h * 2.0, L.ep, L.ep, gpu)
            ep_f = 2.0 * a2a  # dispatch + combine
        else:
            for _, n, k in geo.mlp_gemms(geo.f / tp):
                G.add(T, n, k)
            ew_bytes = ew_bytes + T * (3.0 if geo.gated else 2.0) * 2.0 * geo.f / tp
            n_tp_coll += 1.0

        # attention core
        attn_flops: np.ndarray | float
        if flash:
            pairs = mb * geo.pairs_per_seq(s, kind.window) / cp
            fl = 2.0 * nh_l * (geo.d_qk + geo.d_v) * pairs
            attn_f = fl / (P16 * attn_frac) + attn_launch
            attn_b = 2.5 * fl / (P16 * attn_frac) + attn_launch
            attn_flops = fl
        else:  # Megatron-style unfused attention on the full s x s score matrix (cp = 1)
            heads = mb * nh_l
            A = _Gemms(ctx, False, gbytes)
            A.add(s * heads, s, geo.d_qk, lowp=False)
            A.add(s * heads, geo.d_v, s, lowp=False)
            score = heads * s * s
            attn_f = A.fwd + _mem_time(9.0 * score, gpu, 2.0)
            attn_b = A.bwd + _mem_time(11.0 * score, gpu, 2.0)
            attn_flops = A.flops_fwd
        ce = ctx.compute_efficiency
        G.fwd, G.bwd, attn_f, attn_b = G.fwd / ce, G.bwd / ce, attn_f / ce, attn_b / ce
        # context-parallel ring: cp-1 K/V exchanges per layer, overlapped with the attention core
        kv_chunk = mb * (s / cp) * g_l * (geo.d_qk + geo.d_v) * 2.0
        ring = (cp - 1.0) * coll("send_recv", kv_chunk, L.cp, span_cp, gpu)
        cp_f = np.maximum(0.0, ring - attn_f)
        cp_b = np.maximum(0.0, 2.0 * ring - attn_b)

        ew_f = _mem_time(ew_bytes, gpu, kernels_f) / ce
        ew_b = _mem_time(2.0 * ew_bytes, gpu, 1.7 * kernels_f) / ce
        tp_f = n_tp_coll * tp_one
        fwd_total = G.fwd + attn_f + ew_f + tp_f + cp_f + ep_f
        rc = np.where(L.rc == 2, fwd_total, np.where((L.rc == 1) & (not flash), attn_f, 0.0))
        for key, val in (("gemm_f", G.fwd), ("gemm_b", G.bwd), ("attn_f", attn_f), ("attn_b", attn_b), ("ew_f", ew_f),
                         ("ew_b", ew_b), ("tp_f", tp_f), ("cp_f", cp_f), ("cp_b", cp_b), ("ep_f", ep_f), ("rc", rc),
                         ("flops_f", G.flops_fwd), ("attn_flops_f", attn_flops)):
            per_kind[key].append(f64(val))

    K = {k: np.stack(v) for k, v in per_kind.items()}  # (kinds, N)
    layer_total = (K["gemm_f"] + K["gemm_b"] + K["attn_f"] + K["attn_b"] + K["ew_f"] + K["ew_b"]
                   + 2.0 * K["tp_f"] + K["cp_f"] + K["cp_b"] + 2.0 * K["ep_f"] + K["rc"])
    n_layers = f64(layers_per_stage(geo.L, L.pp, L.vpp, ctx.uneven_layers))
    W = heaviest_layers_counts(layer_total, [k.count for k in geo.kinds], n_layers)
    S_ = lambda a: (W * a).sum(axis=0)

    # recompute split into compute and communication parts (full recompute repeats the forward comm)
    rc_comm = np.where(L.rc == 2, 1.0, 0.0) * (K["tp_f"] + K["cp_f"] + K["ep_f"])
    comp_f = S_(K["gemm_f"] + K["attn_f"] + K["ew_f"])
    comp_b = S_(K["gemm_b"] + K["attn_b"] + K["ew_b"])
    comp_rc = S_(K["rc"] - rc_comm)
    tp_mb = S_(2.0 * K["tp_f"] + np.where(L.rc == 2, 1.0, 0.0) * K["tp_f"])
    cp_mb = S_(K["cp_f"] + K["cp_b"] + np.where(L.rc == 2, 1.0, 0.0) * K["cp_f"])
    ep_mb = S_(2.0 * K["ep_f"] + np.where(L.rc == 2, 1.0, 0.0) * K["ep_f"])

    # LM head (+ final norm, cross-entropy) on the last stage; embedding on the first (both when pp = 1)
    Hd = _Gemms(ctx, not lora, gbytes)
    Hd.add(T, geo.V / tp, h, lowp=False)
    ce_bytes = T * geo.V / tp * 4.0 * 3.0 + Tn * 4.0 * h
    ce = ctx.compute_efficiency
    head_f = (Hd.fwd + _mem_time(ce_bytes, gpu, 3.0)) / ce
    head_b = (Hd.bwd + _mem_time(ce_bytes, gpu, 3.0)) / ce
    emb = _mem_time(T * h * 2.0 * 3.0, gpu, 2.0) * (L.pp == 1) / ce
    comp_f = comp_f + head_f + 0.5 * emb
    comp_b = comp_b + head_b + 0.5 * emb
    compute_mb = comp_f + comp_b + comp_rc
    comm_mb = tp_mb + cp_mb + ep_mb
    t_mb = compute_mb + comm_mb

    bubble = bubble_fraction(pp, vpp, m_steps) * m_steps * t_mb
    p2p = coll("send_recv", T * h * 2.0 / tp, np.where(L.pp > 1, 2, 1), span_pp, gpu)
    pp_comm = np.where(L.pp > 1, 2.0 * vpp * m_steps * p2p, 0.0)

    # ---------------------------------------------------------------- data-parallel communication
    P_dense, P_exp, _ = stage_params(geo, L, ctx.uneven_layers)
    if lora:
        P_dense = n_layers * lora_params_per_layer(geo, L.tp, float(ctx.lora_rank))
        P_exp = 0.0 * P_dense
    nd = L.dp * L.cp
    ned = np.maximum(1, (L.tp * L.cp * L.dp) // np.maximum(L.ep, 1)) if geo.E else np.ones(N, np.int64)
    z = L.zero
    red = lambda name: coll(name, P_dense * gbytes, nd, span_dp, gpu) + coll(name, P_exp * gbytes, ned, span_dp, gpu)
    t_grad = np.where(z == 0, red("all_reduce"), red("reduce_scatter"))
    t_gather = coll("all_gather", P_dense * 2.0, nd, span_dp, gpu) + coll("all_gather", P_exp * 2.0, ned, span_dp, gpu)
    frac_bucket = np.minimum(1.0, ctx.bucket_params / np.maximum(P_dense + P_exp, 1.0))
    bwd_window = comp_b + comp_rc + S_(K["tp_f"])  # backward (+ recompute) of one micro-batch on this stage
    fwd_window = comp_f + S_(K["tp_f"])
    og, opg = bool(ctx.overlap_grad_reduce), bool(ctx.overlap_param_gather)
    if og:
        grad_once = np.maximum(0.0, t_grad - bwd_window) + frac_bucket * t_grad
        grad_each = m_steps * np.maximum(0.0, t_grad - bwd_window) + frac_bucket * t_grad
        z3_f = m_steps * (np.maximum(0.0, t_gather - fwd_window) + t_gather / np.maximum(n_layers, 1.0))
        z3_b = m_steps * np.maximum(0.0, t_gather + t_grad - bwd_window) + frac_bucket * t_grad
    else:
        grad_once, grad_each = t_grad, m_steps * t_grad
        z3_f, z3_b = m_steps * t_gather, m_steps * (t_gather + t_grad)
    gather_once = (np.maximum(0.0, t_gather - fwd_window) + frac_bucket * t_gather) if opg else t_gather
    dp_exposed = np.select(
        [z == 0, z == 1, z == 2],
        [grad_once, grad_once + gather_once, grad_each + gather_once],
        z3_f + z3_b,
    )

    # ---------------------------------------------------------------- optimizer (Adam, memory-bound)
    shard_d = np.where(z >= 1, nd, 1)
    shard_e = np.where(z >= 1, ned, 1)
    p_local = P_dense / shard_d + P_exp / shard_e
    opt_bytes = p_local * (ADAM_BYTES + 2.0 * gbytes + 2.0)  # + grad read (update, norm), bf16 weight write
    optimizer = _mem_time(opt_bytes, gpu, 4.0) / ctx.compute_efficiency

    compute = m_steps * compute_mb
    step = compute + m_steps * comm_mb + bubble + pp_comm + dp_exposed + optimizer

    # ---------------------------------------------------------------- memory
    states = model_state_bytes(geo, L, ctx.rules_ctx())
    acts = activation_bytes(geo, L, ctx.rules_ctx(), m_steps)
    static = states["weights"] + states["gradients"] + states["optimizer"] + states["zero3_buffer"]
    frag = ctx.fragmentation * acts
    total_mem = static + acts + frag + ctx.runtime_overhead_bytes

    # ---------------------------------------------------------------- FLOPs and rates
    tokens_step = float(ctx.global_batch) * s
    mf_tok = geo.model_flops_per_token(ctx.seq_len, train_weights=not lora)
    model_flops = mf_tok * tokens_step
    # recomputed forward FLOPs (HFU): full = layers' forward; selective without FlashAttention = attention core
    layer_fwd_flops_tok = 2.0 * (geo.mm_params_per_token() - geo.V * geo.h) + geo.attention_flops_per_token_fwd(ctx.seq_len)
    attn_fwd_tok = geo.attention_flops_per_token_fwd(ctx.seq_len)
    rc_flops = tokens_step * np.where(L.rc == 2, layer_fwd_flops_tok, np.where((L.rc == 1) & (not flash), attn_fwd_tok, 0.0))
    peak = ctx.peak_gemm
    G_ = float(ctx.num_gpus)
    return {
        "step_time_s": step,
        "compute_s": compute,
        "tp_comm_s": m_steps * tp_mb,
        "cp_comm_s": m_steps * cp_mb,
        "ep_comm_s": m_steps * ep_mb,
        "pp_comm_s": pp_comm,
        "dp_comm_s": dp_exposed,
        "bubble_s": bubble,
        "optimizer_s": optimizer,
        "recompute_s": m_steps * comp_rc,
        "microbatches": m_steps,
        "t_microbatch_s": t_mb,
        "bubble_fraction": bubble_fraction(pp, vpp, m_steps),
        "dp_grad_comm_s": t_grad,
        "dp_gather_comm_s": t_gather,
        "tokens_per_s": tokens_step / step,
        "tokens_per_s_per_gpu": tokens_step / step / G_,
        "model_flops_per_step": model_flops + 0.0 * step,
        "model_tflops_per_gpu": model_flops / step / G_ / 1e12,
        "mfu": model_flops / (step * G_ * peak),
        "hfu": (model_flops + rc_flops) / (step * G_ * peak),
        "mem_weights": states["weights"],
        "mem_gradients": states["gradients"],
        "mem_optimizer": states["optimizer"],
        "mem_zero3_buffer": states["zero3_buffer"],
        "mem_activations": acts,
        "mem_fragmentation": frag,
        "mem_runtime": np.full(N, float(ctx.runtime_overhead_bytes)),
        "mem_total": total_mem,
        "fits": total_mem <= gpu.memory_bytes,
        "stage_params": P_dense + P_exp,
        "layers_per_stage": n_layers,
    }
