"""Roofline time of one operator, with shape-dependent efficiency.

Every formula takes scalars or numpy arrays (the calibration fits them on whole
kernel tables at once). Symbols: P = dense peak FLOP/s for the dtype,
B = HBM bandwidth (bytes/s), e = `GPUSpec.efficiency`.

GEMM (m, n, k):
    tiles  = ceil(m / tm) * ceil(n / tn)            tm = 64 when m <= 64 else e.gemm_tile_m
    splits = max(1, min(SMs / tiles, k / 256))       split-K filling idle SMs when tiles < SMs
    util   = units / (ceil(units / SMs) * SMs)      units = tiles * splits  (last-wave idling)
    pad    = tiles * tm * tn / (m * n)              (tile padding)
    k_eff  = kc / (kc + e.gemm_k_half_saturation)   kc = k / splits (short-K pipelines never fill)
    t_compute = 2 m n k * pad / (P * f * util * k_eff)
                f = e.gemm_peak_fraction (bf16) or e.gemm_lowp_peak_fraction (fp8/int8/fp4)
    t_memory  = bytes / (B * e.mem_bw_fraction) + e.mem_ramp_s * bytes / (bytes + e.mem_half_saturation_bytes)
                (large streaming kernels pay a pipeline fill; tiny ones do not)
    t = max(t_compute, t_memory) + e.gemm_launch_s (+ e.gemm_lowp_launch_s for fp8/int8/fp4)

Prefill attention (FlashAttention-style, causal): like a GEMM whose work is the
causal pairs, with blocks = sequences x heads x ceil(q / 128) and
q_eff = q / (q + e.attn_q_half_saturation) per sequence.

Decode attention: streams the KV cache; t = max(flops / (P e.attn_peak_fraction),
bytes / (B e.decode_attn_bw_fraction), waves x e.decode_attn_block_s) + e.decode_attn_launch_s, where
waves = ceil(sequences x KV heads / SMs): each (sequence, KV head) block has a
set-up cost that dominates short contexts at large batch. Prefill has the same
block-wave floor with blocks = sequences x heads x ceil(q / 128).

Elementwise / norms: t = bytes / (B e.mem_bw_fraction) + e.elementwise_launch_s.

Collectives over a group of g GPUs on a link of bandwidth W (per direction) and
latency L (the tier is chosen by `GPUSpec.link`), message size S bytes:
    all_reduce      t = a(g) + 2 (g-1)/g * S / (W e.comm_bw_fraction)
    all_gather, reduce_scatter, alltoall
                    t = 0.7 a(g) + (g-1)/g * S / (W e.comm_bw_fraction)
    send_recv       t = L + S / (W e.comm_bw_fraction)
    a(g) = L * (1 + log2 g)
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


def sm_utilisation(units: Num, num_sms: int) -> Num:
    """Fraction of SM-slots doing work when `units` equal work units run in waves."""
    units = _max(units, 1.0)
    return units / (_ceil(units / num_sms) * num_sms)


def gemm_compute_time_s(m: Num, n: Num, k: Num, peak_flops: float, e: Efficiency, num_sms: int, peak_fraction: float | None = None) -> Num:
    tm = _where(m <= 64, 64.0, float(e.gemm_tile_m))
    tn = float(e.gemm_tile_n)
    tiles = _ceil(m / tm) * _ceil(n / tn)
    splits = _max(1.0, _min(num_sms / tiles, k / 256.0))
    util = sm_utilisation(tiles * splits, num_sms)
    pad = tiles * tm * tn / (m * n)
    k_chunk = k / splits
    k_eff = k_chunk / (k_chunk + e.gemm_k_half_saturation)
    frac = e.gemm_peak_fraction if peak_fraction is None else peak_fraction
    return 2.0 * m * n * k * pad / (peak_flops * frac * util * k_eff)


def memory_time_s(nbytes: Num, bandwidth: float, e: Efficiency) -> Num:
    ramp = e.mem_ramp_s * nbytes / (nbytes + e.mem_half_saturation_bytes) if e.mem_ramp_s else 0.0
    return nbytes / (bandwidth * e.mem_bw_fraction) + ramp


def gemm_peak_fraction(dtype: str, e: Efficiency) -> float:
    return e.gemm_peak_fraction if dtype in ("bf16", "fp16", "fp32") else e.gemm_lowp_peak_fraction


def gemm_time_s(m: Num, n: Num, k: Num, nbytes: Num, peak_flops: float, bandwidth: float, e: Efficiency, num_sms: int, dtype: str = "bf16") -> Num:
    lowp = dtype not in ("bf16", "fp16", "fp32")
    t_c = gemm_compute_time_s(m, n, k, peak_flops, e, num_sms, gemm_peak_fraction(dtype, e))
    return _max(t_c, memory_time_s(nbytes, bandwidth, e)) + e.gemm_launch_s + (e.gemm_lowp_launch_s if lowp else 0.0)


def prefill_attention_time_s(
    flops: Num, nbytes: Num, q_per_seq: Num, blocks: Num, peak_flops: float, bandwidth: float, e: Efficiency, num_sms: int
) -> Num:
    q_eff = q_per_seq / (q_per_seq + e.attn_q_half_saturation)
    util = sm_utilisation(blocks, num_sms)
    t_c = flops / (peak_flops * e.attn_peak_fraction * q_eff * util)
    t_blocks = _ceil(blocks / num_sms) * e.attn_block_s
    return _max(_max(t_c, memory_time_s(nbytes, bandwidth, e)), t_blocks) + e.attn_launch_s


def decode_attention_time_s(flops: Num, nbytes: Num, blocks: Num, peak_flops: float, bandwidth: float, e: Efficiency, num_sms: int) -> Num:
    t_blocks = _ceil(blocks / num_sms) * e.decode_attn_block_s
    t = _max(flops / (peak_flops * e.attn_peak_fraction), nbytes / (bandwidth * e.decode_attn_bw_fraction))
    return _max(t, t_blocks) + e.decode_attn_launch_s


def decode_attention_blocks(n_seqs: Num, nh: Num, nkv: Num, e: Efficiency) -> Num:
    """Thread blocks of a decode-attention kernel: one per (sequence, KV head) while a block can
    serve the whole query-head group (GQA kernels such as TRT-LLM XQA), else one per query head."""
    return _where(nh / nkv <= e.decode_attn_max_group, n_seqs * nkv, n_seqs * nh)


def elementwise_time_s(nbytes: Num, bandwidth: float, e: Efficiency) -> Num:
    return memory_time_s(nbytes, bandwidth, e) + e.elementwise_launch_s


def collective_time_s(collective: str, nbytes: Num, group: int, link_bw: float, link_latency_s: float, e: Efficiency) -> Num:
    if group <= 1:
        return 0.0 * nbytes
    bw = link_bw * e.comm_bw_fraction
    alpha = link_latency_s * (1.0 + math.log2(group))
    frac = (group - 1) / group
    if collective == "all_reduce":
        return alpha + 2.0 * frac * nbytes / bw
    if collective in ("all_gather", "reduce_scatter", "alltoall"):
        return 0.7 * alpha + frac * nbytes / bw
    if collective == "send_recv":
        return link_latency_s + nbytes / bw
    raise ValueError(f"unknown collective {collective!r}")
