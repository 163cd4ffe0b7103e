"""Roofline time of one operator, with shape-dependent efficiency.

Every formula takes scalars or numpy arrays (the calibration fits them on whole
kernel tables at once). Symbols: P = dense peak FLOP/s of the format, P16 = 16-bit
peak, B = HBM bandwidth (bytes/s), S = number of SMs, e = `GPUSpec.efficiency`
(every e.* below is a field of `Efficiency`, with its unit in its name).

GEMM (m, n, k), one CTA per tm x tn output tile:
    tm     = 64 if m <= 64 else e.gemm_tile_m;  tn = e.gemm_tile_n
    tiles  = ceil(m / tm) * ceil(n / tn)
    splits = max(1, min(S / tiles, k * tm * tn / (e.gemm_splitk_min_flops / 2)))
             split-K fills idle SMs, but leaves each CTA >= gemm_splitk_min_flops of work
    waves  = ceil(tiles * splits / S)
    t_c    = waves * 2 tm tn (k / splits + e.gemm_k_half_saturation) * S / (P f)
             (waves of CTA main loops at f of peak; a CTA also spends the equivalent of
             gemm_k_half_saturation K-steps on fill and epilogue)
             f = e.gemm_peak_fraction (16-bit) or e.gemm_lowp_peak_fraction (fp8/int8/fp4)
    t_red  = (splits - 1) * m n * 8 / (B e.mem_bw_fraction)    split-K fp32 partial sums
    t_m    = memory_time_s(bytes)                               bytes = A + W + C (+ quantisation)
             (/ e.gemm_fp4_bw_fraction for fp4: block-scaled 4-bit operands stream slower)
           (+ m k (2 + q) (1/e.gemm_lowp_quant_bw_fraction - 1/e.mem_bw_fraction) / B for fp8/fp4:
             the activation-quantisation pass, reading 16-bit and writing q bytes per element,
             reaches only gemm_lowp_quant_bw_fraction of the bandwidth)
    t = max(t_c + t_red, t_m) + e.gemm_launch_s (+ e.gemm_lowp_launch_s for fp8/int8/fp4)
    Block-scaled fp8 ('fp8_block': the 128x128-block checkpoints of DeepSeek-V3/R1, MiniMax-M2.5,
    Qwen3-*-FP8) has its own e.gemm_block_fp8_* parameters (fitted on the H100 tables' fp8_block
    rows); per-tensor fp8 uses e.gemm_lowp_*.

memory_time_s(bytes) = bytes / (B e.mem_bw_fraction) + e.mem_ramp_s * bytes / (bytes + e.mem_half_saturation_bytes)
    a stream's first bytes arrive after a pipeline fill (mem_ramp_s; with half-saturation 0
    every stream pays all of it, so it is also the floor of a tiny GEMM or norm).

Prefill attention (FlashAttention-style): one CTA per (sequence, head, 128-query tile);
inputs are pairs = causal (query, key) pairs summed over sequences and heads, and per
sequence q new tokens, kv_last keys seen by its last query tile, windowed = 1 if a
sliding window cuts the context. FMHA format: fp8 when the KV cache (or the activations)
are fp8 (TRT-LLM then runs an fp8 FMHA), else 16-bit.
    t_pair = flops / pairs / (P f_a) + e.attn_softmax_flops / (P16 e.attn_peak_fraction)
             whole-chip time of one pair: the two matmuls at f_a = e.attn_peak_fraction
             (16-bit) or e.attn_lowp_peak_fraction (fp8), then the softmax, not overlapped
    q_tile = min(q, 128)
    work   = (pairs + sequences*heads * q * (q_tile/2 * (1 + windowed) + e.attn_row_overhead_pairs)) * t_pair
             (masked halves of the diagonal and window-edge tiles, and per query row the
             pipeline fill / epilogue worth attn_row_overhead_pairs keys)
    blocks = sequences*heads * ceil(q / 128);  waves = ceil(blocks / S);  util = blocks / (waves S)
    t_c    = work / util + waves * e.attn_block_s
    t_long = e.attn_block_s + q_tile (kv_last + 128 windowed + e.attn_row_overhead_pairs) t_pair S
             (the last query tile of one sequence runs on one SM)
    t = max(t_c, t_long, memory_time_s(bytes)) + e.attn_launch_s

Decode attention: one CTA per (sequence, KV head) serving its g = heads / KV heads query
heads (GQA kernel, when 1 < g <= e.decode_attn_max_group) or one per query head (MHA and
larger groups; see decode_attention_blocks); split along the context when there are too
few blocks to fill the chip (split-KV):
    splits = max(1, min(S / blocks, ctx / e.decode_attn_split_min_tokens));  waves = ceil(blocks splits / S)
    chunk  = KV bytes / (sequences * KV heads * splits)        what one CTA streams
             (KV bytes = bytes - Q/O bytes, the latter = flops / ctx)
    t_mem  = max(waves chunk / (B e.decode_attn_cta_bw_fraction),
                 bytes / (B e.decode_attn_bw_fraction) + e.decode_attn_ramp_s bytes / (bytes + e.decode_attn_ramp_half_bytes))
             (few CTAs cannot fill HBM; a long stream pays a fill / drain)
    t_set  = (waves - 1) * block set-up    (the first wave's set-up hides in the launch)
             set-up = e.decode_attn_block_s (one-query-head blocks), or for GQA blocks
             e.decode_attn_gqa_block_s * ceil(g / e.decode_attn_gqa_heads) (16-bit KV) /
             e.decode_attn_gqa_lowp_block_s * ceil(g / e.decode_attn_gqa_lowp_heads) (8-bit KV)
    t = max(t_mem, t_set) + e.decode_attn_setup_exposed * min(t_mem, t_set)
        + e.decode_attn_split_s * log2(splits)                  (combining split partial results)
        + launch    (e.decode_attn_gqa_lowp_launch_s for the 8-bit-KV GQA kernel, else e.decode_attn_launch_s)

Elementwise / norms: t = memory_time_s(bytes) + e.elementwise_launch_s.

Gated DeltaNet (linear attention) recurrence and sparse-attention indexer (DeepSeek-V3.2 / GLM-5),
`launches` kernels (recurrence: chunked prefill 6, decode 1; indexer: scores + top-k, 2):
    t = max(flops / (P e.attn_peak_fraction), memory_time_s(bytes)) + launches e.attn_launch_s
    (`streamed_attention_time_s`; no kernel table times them. P: the 16-bit peak for the
    recurrence, whose chunked kernels' small matmuls are priced at the FMHA's tensor-core
    fraction; the fp8 peak for the indexer where the chip has fp8 tensor cores, else the 16-bit
    one. Decode streams each sequence's fixed fp32 state and is memory-bound)

NCCL collectives over a group of g GPUs on a link of bandwidth W (per direction) and
latency L (the tier is chosen by `GPUSpec.link`), message size S bytes:
    all_reduce      t = c_ar a(g) + 2 (g-1)/g * S / (W f) + r(S)
    all_gather, reduce_scatter, alltoall
                    t = c a(g) + (g-1)/g * S / (W f) + r(S)
    send_recv       t = L + S / (W e.comm_bw_fraction)
    a(g) = L * (1 + log2 g);  r(S) = e.collective_ramp_s * S / (S + e.collective_ramp_half_bytes)
    f = e.collective_bw_fraction, c = e.collective_latency_scale, c_ar = e.collective_allreduce_latency_scale
r(S) is the time NCCL's protocols and chunk pipeline add between the latency-bound small
messages and the bandwidth-bound large ones (its bandwidth dips at 1-8 MB on H100). The five
fields were fitted on the shared H100 NCCL 2.27 table (`llmsim.calibrate.fit_collectives`;
`python benchmarks/validate_kernels.py` reports train and held-out groups). Worked example
(H100 defaults, L = 3 us, W = 450 GB/s): an 8-GPU alltoall of 2 MiB takes
0.888 * 3 us * 4 + 7/8 * 2,097,152 / (450e9 * 0.724) + 28.3 us * 2.10 / (2.10 + 6.99)
= 10.6 + 5.6 + 6.5 = 22.8 us (measured 26.4 us; spec-sheet alpha-beta: 13.5 us).
A group larger than one NVLink domain (e.g. 16 GPUs on two 8-GPU nodes) runs hierarchically:
NVLink inside each domain, only the cross-domain share through the NICs
(`hierarchical_collective_time_s`).

Worked example (H100 SXM defaults: P16 = 989.4e12, B = 3.35e12, S = 132): a bf16 GEMM
m = n = k = 4096 has tiles = 32 * 32 = 1024, splits = 1, waves = 8, so
t_c = 8 * 2 * 128 * 128 * (4096 + 208) * 132 / (989.4e12 * 0.89) = 169 us, t_m = 100.7 MB /
(3.35e12 * 0.787) + 2.68 us = 40.9 us, t = 169 us (measured: 174 us TRT-LLM, 174 us vLLM).
"""

from __future__ import annotations

import math
from typing import Union

import numpy as np

from ..hardware.spec import Efficiency

Num = Union[float, np.ndarray]


def _ceil(x: Num) -> Num:
    return np.ceil(x) if isinstance(x, np.ndarray) else float(math.ceil(x))


def _floor(x: Num) -> Num:
    return np.floor(x) if isinstance(x, np.ndarray) else float(math.floor(x))


def _max(a: Num, b: Num) -> Num:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.maximum(a, b)
    return a if a > b else b


def _min(a: Num, b: Num) -> Num:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return np.minimum(a, b)
    return a if a < b else b


def _where(c, a: Num, b: Num) -> Num:
    if isinstance(c, np.ndarray):
        return np.where(c, a, b)
    return a if c else b


def _log2(x: Num) -> Num:
    return np.log2(x) if isinstance(x, np.ndarray) else math.log2(x)


def sm_utilisation(units: Num, num_sms: int) -> Num:
    """Fraction of SM-slots doing work when `units` equal work units run in waves."""
    units = _max(units, 1.0)
    return units / (_ceil(units / num_sms) * num_sms)


WIDE_DTYPES = ("bf16", "fp16", "fp32")  # 16/32-bit GEMMs: no activation quantisation


def gemm_format(dtype: str, e: Efficiency) -> tuple[float, float, float, float]:
    """(peak fraction, extra launch s, quantised-activation bytes per element, bandwidth fraction
    of the activation-quantisation pass) of a GEMM format.

    'fp8_block': block-scaled fp8 (DeepSeek style), the GEMMs of a block-scaled fp8 checkpoint
    (`ModelSpec.block_scaled`)."""
    if dtype in WIDE_DTYPES:
        return e.gemm_peak_fraction, 0.0, 0.0, 1.0
    if dtype == "fp8_block":
        return e.gemm_block_fp8_peak_fraction, e.gemm_block_fp8_launch_s, 1.0, e.gemm_block_fp8_quant_bw_fraction
    return e.gemm_lowp_peak_fraction, e.gemm_lowp_launch_s, 0.5 if dtype in ("fp4", "int4") else 1.0, e.gemm_lowp_quant_bw_fraction


def gemm_peak_fraction(dtype: str, e: Efficiency) -> float:
    return gemm_format(dtype, e)[0]


def _gemm_split(m: Num, n: Num, k: Num, e: Efficiency, num_sms: int):
    """(tm, tn, tiles, splits, waves): output tiles, split-K factor and waves of CTAs."""
    tm = _where(m <= 64, 64.0, float(e.gemm_tile_m))
    tn = float(e.gemm_tile_n)
    tiles = _ceil(m / tm) * _ceil(n / tn)
    # split-K fills idle SMs, but only down to gemm_splitk_min_flops of work per CTA
    splits = _max(1.0, _min(num_sms / tiles, k * tm * tn / (0.5 * e.gemm_splitk_min_flops)))
    waves = _ceil(tiles * splits / num_sms)
    return tm, tn, tiles, splits, waves


def _gemm_main_loop_s(k: Num, tm: Num, tn: float, splits: Num, waves: Num, peak_flops: float, frac: float, e: Efficiency, num_sms: int) -> Num:
    # waves x one CTA's main loop over its K slice (+ fill/epilogue worth gemm_k_half_saturation of K)
    return waves * 2.0 * tm * tn * (k / splits + e.gemm_k_half_saturation) * num_sms / (peak_flops * frac)


def gemm_compute_time_s(m: Num, n: Num, k: Num, peak_flops: float, e: Efficiency, num_sms: int, peak_fraction: float | None = None) -> Num:
    tm, tn, tiles, splits, waves = _gemm_split(m, n, k, e, num_sms)
    frac = e.gemm_peak_fraction if peak_fraction is None else peak_fraction
    return _gemm_main_loop_s(k, tm, tn, splits, waves, peak_flops, frac, e, num_sms)


def memory_time_s(nbytes: Num, bandwidth: float, e: Efficiency) -> Num:
    t = nbytes / (bandwidth * e.mem_bw_fraction)
    if not e.mem_ramp_s:
        return t
    if isinstance(nbytes, np.ndarray):
        d = nbytes + e.mem_half_saturation_bytes
        return t + e.mem_ramp_s * np.divide(nbytes, d, out=np.zeros_like(t), where=d > 0)
    return t + (e.mem_ramp_s * nbytes / (nbytes + e.mem_half_saturation_bytes) if nbytes > 0 else 0.0)


def gemm_time_s(m: Num, n: Num, k: Num, nbytes: Num, peak_flops: float, bandwidth: float, e: Efficiency, num_sms: int, dtype: str = "bf16") -> Num:
    frac, extra_launch, qb, qf = gemm_format(dtype, e)
    tm, tn, tiles, splits, waves = _gemm_split(m, n, k, e, num_sms)
    t_c = _gemm_main_loop_s(k, tm, tn, splits, waves, peak_flops, frac, e, num_sms)
    # split-K partial sums: every extra slice writes and re-reads an fp32 m x n tile after its
    # main loop (on the CTAs' critical path; hidden under a memory-bound operand stream)
    t_red = (splits - 1.0) * m * n * 8.0 / (bandwidth * e.mem_bw_fraction)
    t_m = memory_time_s(nbytes, bandwidth, e)
    if dtype == "fp4":  # block-scaled 4-bit operands stream slower than other formats' (Efficiency.gemm_fp4_bw_fraction)
        t_m = t_m / e.gemm_fp4_bw_fraction
    if qb:
        # fp8/fp4 activations are quantised by a separate pass (read 16-bit, write qb bytes per
        # element; part of nbytes) that reaches only gemm_*_quant_bw_fraction of the bandwidth
        t_m = t_m + m * k * (2.0 + qb) * (1.0 / qf - 1.0 / e.mem_bw_fraction) / bandwidth
        return _max(t_c + t_red, t_m) + e.gemm_launch_s + extra_launch
    return _max(t_c + t_red, t_m) + e.gemm_launch_s


ATTN_TILE_Q = 128.0  # query rows per FlashAttention CTA (and kv columns per tile)


def prefill_attention_time_s(
    flops: Num, nbytes: Num, pairs: Num, seq_heads: Num, q_per_seq: Num, kv_last: Num, windowed: Num,
    peak_flops: float, peak_flops_16: float, bandwidth: float, e: Efficiency, num_sms: int, lowp: bool = False,
) -> Num:
    """FlashAttention-style prefill: one CTA per (sequence, head, 128-query tile); see the module docstring.

    flops / pairs: tensor work and causal (query, key) pairs, both summed over sequences and
    query heads; seq_heads: sequences x query heads; q_per_seq: new tokens per sequence;
    kv_last: keys the last query tile sees; windowed: 1 where a sliding window cuts the
    context (else 0); peak_flops: peak of the FMHA format (fp8 FMHA when `lowp`);
    peak_flops_16: the 16-bit peak (the softmax cost is expressed in it)."""
    tq = ATTN_TILE_Q
    q = _max(q_per_seq, 1.0)
    q_tile = _min(q, tq)
    pairs = _max(pairs, 1.0)
    frac = e.attn_lowp_peak_fraction if lowp else e.attn_peak_fraction
    # whole-chip time of one (q, k) pair: tensor-core MACs of QK^T and PV, then the softmax
    # (exp), which does not overlap them
    t_pair = flops / pairs / (peak_flops * frac) + e.attn_softmax_flops / (peak_flops_16 * e.attn_peak_fraction)
    # computed pairs: masked halves of diagonal (and window-edge) tiles, plus per-row fill/epilogue
    waste = q_tile / 2.0 * (1.0 + windowed) + e.attn_row_overhead_pairs
    work = (pairs + seq_heads * q * waste) * t_pair
    blocks = seq_heads * _ceil(q / tq)
    waves = _ceil(_max(blocks, 1.0) / num_sms)
    util = _max(blocks, 1.0) / (waves * num_sms)
    t_c = work / util + waves * e.attn_block_s
    t_longest = e.attn_block_s + q_tile * (kv_last + q_tile * windowed + e.attn_row_overhead_pairs) * t_pair * num_sms
    return _max(_max(t_c, t_longest), memory_time_s(nbytes, bandwidth, e)) + e.attn_launch_s


def decode_attention_time_s(
    flops: Num, nbytes: Num, n_seqs: Num, ctx: Num, nh: Num, nkv: Num, peak_flops: float, bandwidth: float, e: Efficiency, num_sms: int,
    lowp_kv: bool = False, force_gqa: bool = False,
) -> Num:
    """Decode attention: one CTA per (sequence, KV head) block serving the query-head group (GQA
    kernel) or, for MHA and groups above decode_attn_max_group, one per query head; split along
    the context when too few blocks fill the chip (split-KV / multi-block mode). See the module
    docstring. n_seqs: sequences; ctx: context tokens per sequence; lowp_kv: 8-bit (or smaller)
    KV cache; force_gqa: one block per (sequence, KV head) whatever the group size (absorbed MLA,
    whose query heads all share one latent KV head)."""
    g = nh / nkv
    gqa: bool | np.ndarray  # per element where the shapes are arrays
    if force_gqa:
        gqa, blocks = True, _max(n_seqs * nkv, 1.0)
    else:
        gqa = (g > 1.0) & (g <= e.decode_attn_max_group) if isinstance(g, np.ndarray) else (1.0 < g <= e.decode_attn_max_group)
        blocks = _max(decode_attention_blocks(n_seqs, nh, nkv, e), 1.0)
    if lowp_kv:
        t_set = _where(gqa, e.decode_attn_gqa_lowp_block_s * _ceil(g / e.decode_attn_gqa_lowp_heads), e.decode_attn_block_s)
        launch = _where(gqa, e.decode_attn_gqa_lowp_launch_s, e.decode_attn_launch_s)
    else:
        t_set = _where(gqa, e.decode_attn_gqa_block_s * _ceil(g / e.decode_attn_gqa_heads), e.decode_attn_block_s)
        launch = e.decode_attn_launch_s
    splits = _max(1.0, _min(num_sms / blocks, ctx / e.decode_attn_split_min_tokens))
    waves = _ceil(blocks * splits / num_sms)
    # KV bytes one CTA streams: Q and O (n nh (d_qk + d_v) 16-bit values = flops / ctx bytes) are not re-streamed
    chunk = _max(nbytes - flops / _max(ctx, 1.0), 0.0) / (_max(n_seqs, 1.0) * nkv * splits)
    # streaming: limited by HBM, or by how fast the CTAs in flight can each pull their share
    # (a long stream also pays a pipeline fill / drain, as memory_time_s)
    ramp = e.decode_attn_ramp_s * nbytes / (nbytes + e.decode_attn_ramp_half_bytes)
    t_mem = _max(waves * chunk / (bandwidth * e.decode_attn_cta_bw_fraction), nbytes / (bandwidth * e.decode_attn_bw_fraction) + ramp)
    # per-wave set-up (the first wave's hides in the launch latency) mostly overlaps streaming
    t_set = (waves - 1.0) * t_set
    t_run = _max(t_mem, t_set) + e.decode_attn_setup_exposed * _min(t_mem, t_set)
    t_red = e.decode_attn_split_s * _log2(splits)  # combining the partial results, a tree of log2(splits) levels
    return t_run + t_red + launch


def decode_attention_blocks(n_seqs: Num, nh: Num, nkv: Num, e: Efficiency) -> Num:
    """Thread blocks of a decode-attention kernel: one per (sequence, KV head) while a block can
    serve the whole query-head group (GQA kernels such as TRT-LLM XQA), else one per query head."""
    return _where(nh / nkv <= e.decode_attn_max_group, n_seqs * nkv, n_seqs * nh)


def streamed_attention_time_s(flops: Num, nbytes: Num, launches: int, peak_flops: float, bandwidth: float, e: Efficiency) -> Num:
    """Attention-side kernels no table times -- the Gated DeltaNet recurrence and the sparse-attention
    indexer (see the module docstring): at the FMHA's share of the format's peak, or HBM-bound, plus
    their launches."""
    return _max(flops / (peak_flops * e.attn_peak_fraction), memory_time_s(nbytes, bandwidth, e)) + launches * e.attn_launch_s


def elementwise_time_s(nbytes: Num, bandwidth: float, e: Efficiency) -> Num:
    return memory_time_s(nbytes, bandwidth, e) + e.elementwise_launch_s


def collective_ramp_s(nbytes: Num, e: Efficiency) -> Num:
    """Time NCCL's protocol switch and chunk pipeline add to a collective of `nbytes` (r(S))."""
    return e.collective_ramp_s * nbytes / (nbytes + e.collective_ramp_half_bytes)


def _collective_fixed_s(collective: str, nbytes: Num, group: int, latency_s: float, e: Efficiency) -> Num:
    """The size-independent and ramp parts of an NCCL collective: c a(g) + r(S) (c_ar for all_reduce)."""
    if collective == "all_reduce":
        scale = e.collective_allreduce_latency_scale
    elif collective in ("all_gather", "reduce_scatter", "alltoall"):
        scale = e.collective_latency_scale
    else:
        raise ValueError(f"unknown collective {collective!r}")
    return scale * latency_s * (1.0 + math.log2(group)) + collective_ramp_s(nbytes, e)


def collective_time_s(collective: str, nbytes: Num, group: int, link_bw: float, link_latency_s: float, e: Efficiency) -> Num:
    if group <= 1:
        return 0.0 * nbytes
    if collective == "send_recv":
        return link_latency_s + nbytes / (link_bw * e.comm_bw_fraction)
    volume = (2.0 if collective == "all_reduce" else 1.0) * (group - 1) / group * nbytes
    return _collective_fixed_s(collective, nbytes, group, link_latency_s, e) + volume / (link_bw * e.collective_bw_fraction)


def hierarchical_collective_time_s(collective: str, nbytes: Num, group: int, domain: int, nvl_bw: float, nvl_latency_s: float,
                                   nic_bw: float, nic_latency_s: float, e: Efficiency) -> Num:
    """A collective over `group` GPUs spanning group / domain NVLink domains (nodes), each GPU
    with its own scale-out NIC. Only the traffic that must leave a domain crosses the NICs:
    all_reduce      t = c_ar a(g) + 2 [(d-1)/d S / W_nvl + (g-d)/(g d) S / W_nic] + r(S)
                    (reduce-scatter inside the domain, the domains' 1/d shards reduced across
                    them by d NICs in parallel, all-gather inside: NCCL's rings / trees move the
                    same bytes)
    all_gather, reduce_scatter
                    t = c a(g) + (d-1)/d S / W_nvl + (g-d)/(g d) S / W_nic + r(S)
    alltoall        t = c a(g) + max((d-1)/g S / W_nvl, (g-d)/g S / W_nic) + r(S)
                    (every GPU's share for the g-d remote peers crosses its own NIC, the rest
                    goes over NVLink at the same time)
    a(g) = L_nic (1 + log2 g); W = link bandwidth x e.collective_bw_fraction; c, c_ar, r(S) as
    in `collective_time_s` (fitted inside one NVLink domain; no shared table measures the
    NICs). A flat ring (`collective_time_s` on the NIC) would send (g-1)/g S through every NIC."""
    if group <= domain or domain <= 1:
        return collective_time_s(collective, nbytes, group, nic_bw if group > domain else nvl_bw,
                                 nic_latency_s if group > domain else nvl_latency_s, e)
    if collective == "send_recv":
        return nic_latency_s + nbytes / (nic_bw * e.comm_bw_fraction)
    fixed = _collective_fixed_s(collective, nbytes, group, nic_latency_s, e)
    w_nvl, w_nic = nvl_bw * e.collective_bw_fraction, nic_bw * e.collective_bw_fraction
    if collective == "alltoall":
        return fixed + _max((domain - 1) / group * nbytes / w_nvl, (group - domain) / group * nbytes / w_nic)
    inside = (domain - 1) / domain * nbytes / w_nvl
    across = (group - domain) / (group * domain) * nbytes / w_nic
    return fixed + (2.0 if collective == "all_reduce" else 1.0) * (inside + across)


def custom_allreduce_time_s(nbytes: Num, group: int, link_bw: float, link_latency_s: float, e: Efficiency) -> Num:
    """All-reduce by an inference engine's custom kernel over NVLink peer memory (TRT-LLM's, and
    vLLM's / SGLang's adapted from it), the faster of its two algorithms:
    one-shot -- every rank reads all peers' buffers and reduces locally: one synchronisation
    (link latency) and (group - 1) * nbytes through each rank's links;
    two-shot -- reduce-scatter then all-gather through peer memory: two synchronisations and
    2 * (group - 1) / group * nbytes.
    Unlike NCCL's ring/tree (`collective_time_s`), the latency term does not grow with log2(group)."""
    if group <= 1:
        return 0.0 * nbytes
    bw = link_bw * e.comm_bw_fraction
    one_shot = link_latency_s + (group - 1) * nbytes / bw
    two_shot = 2.0 * link_latency_s + 2.0 * (group - 1) / group * nbytes / bw
    return min(one_shot, two_shot)
