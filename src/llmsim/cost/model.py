"""CostModel: time of each operator on one GPU — measured kernel table if one covers it, else roofline.

For every operator the result says how long it takes, what bounds it (compute,
memory, network, or latency: fixed launch/sync cost dominates), where the number
came from ('measured:<table>' or 'roofline') and the efficiency achieved
(fraction of peak FLOP/s, HBM bandwidth or link bandwidth).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from ..hardware.spec import GB, Efficiency, GPUSpec
from . import roofline as rf
from .ops import Op, _pairs

if TYPE_CHECKING:  # pragma: no cover
    from .measured import KernelTables


@dataclass(slots=True)
class OpCost:
    op: Op
    time_s: float  # one execution
    bound: str  # compute | memory | network | latency
    source: str  # roofline | measured ('-custom': the engines' custom all-reduce), ':tier' for collectives
    efficiency: float  # achieved fraction of the bounding resource's peak

    @property
    def total_s(self) -> float:
        return self.time_s * self.op.count

    def to_dict(self) -> dict:
        o = self.op
        return {
            "name": o.name,
            "layers": o.layer_group,
            "kind": o.kind,
            "count": o.count,
            "time_ms": self.time_s * 1e3,
            "total_ms": self.total_s * 1e3,
            "flops": o.flops,
            "bytes": o.bytes,
            "bound": self.bound,
            "source": self.source,
            "efficiency": self.efficiency,
        }


# custom all-reduce only up to 8 MiB (vLLM's CustomAllreduce max_size; TRT-LLM's AUTO also
# switches to NCCL for large messages); larger all-reduces use NCCL's table
CUSTOM_ALLREDUCE_MAX_BYTES = 8 * 1024 * 1024


def roofline_collective_s(gpu: GPUSpec, collective: str, nbytes, group: int, e: Efficiency) -> tuple:
    """(seconds, link tier) of a collective over `group` GPUs by the roofline formulas, on the
    link `GPUSpec.link` gives the group; a group spanning several NVLink domains (nodes) uses the
    hierarchical form: only the traffic leaving a domain crosses the NICs. `nbytes` may be an array."""
    bw, lat, tier = gpu.link(group)
    d = gpu.nvlink_domain_size
    if tier == "network" and gpu.nvlink_bandwidth_gbps > 0 and 1 < d < group and group % d == 0:
        return (rf.hierarchical_collective_time_s(collective, nbytes, group, d, gpu.nvlink_bandwidth_gbps * GB,
                                                  gpu.nvlink_latency_us * 1e-6, bw, lat, e), "nvlink+network")
    return rf.collective_time_s(collective, nbytes, group, bw, lat, e), tier


class CostModel:
    """Times operators on `gpu`, using `kernels` (measured tables) where they cover a shape."""

    def __init__(self, gpu: GPUSpec, kernels: "KernelTables | None" = None, framework: str | None = None,
                 allreduce: str = "nccl", fused_act_quant: bool = False, moe_efficiency: float = 1.0,
                 unfused_quant_ops: tuple[str, ...] = ()):
        """`framework`: which measured GEMM table ('vllm', 'trtllm'; None: any). `allreduce`:
        'nccl', or 'custom' -- the inference engines' one-shot / two-shot all-reduce over NVLink
        peer memory, used for all-reduces of up to CUSTOM_ALLREDUCE_MAX_BYTES inside one NVLink
        domain when faster than NCCL (the engines' automatic choice): TRT-LLM's measured table
        where kernel tables exist, else `roofline.custom_allreduce_time_s`. `fused_act_quant`: the
        engine quantises fp8/fp4 GEMM activations inside the preceding kernel (RMSNorm / SwiGLU
        epilogue, as TRT-LLM does), so a roofline low-precision GEMM pays neither the separate
        quantisation kernel's launch (`gemm_lowp_launch_s`) nor its slower pass
        (`gemm_lowp_quant_bw_fraction`); measured kernel tables are used as measured. Block-scaled
        fp8 GEMMs ('fp8_block') keep their separate per-token-group quantisation either way, and so
        do the GEMMs named in `unfused_quant_ops` (e.g. vLLM's 'o_proj': its compile passes fuse
        the quantisation into RMSNorm and SiLU-and-mul, not into attention).
        `moe_efficiency`: the fraction of the dense GEMM's compute rate that the engine's grouped
        (fused-MoE) expert GEMMs reach on their useful FLOPs: a `moe_gemm` op (which no kernel
        table measures) takes max(roofline time, flops / (P f moe_efficiency)), P f the dense
        GEMM's rate of its format. Binds in long prefills; a few-token decode stays weight-bound
        (1.0: as fast as a dense GEMM of the same shape; `Backend.moe_efficiency` sets it per engine)."""
        if allreduce not in ("nccl", "custom"):
            raise ValueError(f"allreduce must be 'nccl' or 'custom', got {allreduce!r}")
        self.gpu = gpu
        self.kernels = kernels
        self.framework = framework
        self.allreduce = allreduce
        self.fused_act_quant = bool(fused_act_quant)
        self.unfused_quant_ops = tuple(unfused_quant_ops)
        if not (isinstance(moe_efficiency, (int, float)) and not isinstance(moe_efficiency, bool) and 0.0 < moe_efficiency <= 1.0):
            raise ValueError(f"moe_efficiency must be in (0, 1], got {moe_efficiency!r}")
        self.moe_efficiency = float(moe_efficiency)
        self.e = gpu.efficiency
        # efficiency of a low-precision GEMM whose activation quantisation is fused upstream
        self._e_fused = self.e.model_copy(update={"gemm_lowp_launch_s": 0.0, "gemm_lowp_quant_bw_fraction": self.e.mem_bw_fraction})
        self.bw = gpu.memory_bandwidth_bytes_per_s
        self._peak: dict[str, float] = {}
        # the sparse-attention indexer scores in fp8 where the chip has fp8 tensor cores (DeepGEMM's fp8 MQA logits)
        self._index_dtype = "fp8" if gpu.supports("fp8") else "bf16"
        self._cache: dict[tuple, tuple[float, str, str, float]] = {}

    @property
    def settings(self) -> tuple:
        """What besides the GPU and kernel tables changes this model's times (cache keys)."""
        return (self.framework, self.allreduce, self.fused_act_quant, self.unfused_quant_ops, self.moe_efficiency)

    def peak(self, dtype: str) -> float:
        p = self._peak.get(dtype)
        if p is None:
            p = self._peak[dtype] = self.gpu.peak_flops_per_s(dtype)
        return p

    # ---------------------------------------------------------------- public
    def cost(self, op: Op) -> OpCost:
        # (an op's name matters only where it keeps its quantisation pass: `unfused_quant_ops`)
        key = (op.kind, op.dtype, op.weight_only_quant, op.fused_quant, op.separate_quant, op.name in self.unfused_quant_ops, op.shape,
               op.bytes, op.flops)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cost(op)
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[key] = hit
        t, bound, source, eff = hit
        return OpCost(op, t, bound, source, eff)

    def costs(self, ops: Iterable[Op]) -> list[OpCost]:
        return [self.cost(o) for o in ops]

    def step_time_s(self, ops: Iterable[Op]) -> float:
        return sum(self.cost(o).total_s for o in ops)

    # ---------------------------------------------------------------- internals
    def _classify(self, t: float, t_c: float, t_m: float) -> tuple[str, float]:
        """Bound and achieved efficiency from the roofline components of an op taking t seconds."""
        if t_c >= t_m and t_c >= 0.5 * t:
            return "compute", t_c / t
        if t_m > t_c and t_m >= 0.5 * t:
            return "memory", t_m / t
        return "latency", max(t_c, t_m) / t

    def _ideal(self, op: Op) -> tuple[float, float]:
        """Time at 100% of peak compute and of peak bandwidth (for bound / efficiency reporting)."""
        return op.flops / self.peak(self._peak_dtype(op)), op.bytes / self.bw

    def _peak_dtype(self, op: Op) -> str:
        """The format whose peak rate an op's FLOPs run at: GEMMs and prefill attention in their own;
        the sparse-attention indexer in fp8 where the chip has fp8 tensor cores; the rest in bf16."""
        if op.kind in ("gemm", "moe_gemm", "attn_prefill"):
            return op.dtype
        return self._index_dtype if op.kind == "sparse_index" else "bf16"

    def _cost(self, op: Op) -> tuple[float, str, str, float]:
        if op.kind == "comm":
            return self._comm(op)
        t = self._measured(op) if self.kernels is not None else None
        source = "measured"
        if t is None:
            t = self._roofline(op)
            # '-fused-quant': a low-precision GEMM without the separate activation-quantisation pass
            source = "roofline-fused-quant" if self._fused(op) and op.dtype not in rf.WIDE_DTYPES else "roofline"
            if op.kind == "moe_gemm" and t > 0 and t == self._moe_floor_s(op):
                source += "-moe-efficiency"  # the engine's fused-MoE rate bound it, not the dense roofline
        t_c, t_m = self._ideal(op)
        bound, eff = self._classify(t, t_c, t_m)
        if source.endswith("-moe-efficiency"):
            bound = "compute"  # at the fused-MoE rate: eff = t_c / t is that rate's share of peak
        return t, bound, source, eff

    def _fused(self, op: Op) -> bool:
        """Whether a GEMM's activation quantisation happens inside the previous kernel (the
        engine fuses it everywhere, or this op's kernel does)."""
        if op.kind not in ("gemm", "moe_gemm"):
            return False
        # block-scaled fp8 quantises activations per 1 x 128 group in its own kernel in every
        # engine (TRT-LLM's FP8BlockScalesLinearMethod: fp8_quantize_1x128, then the GEMM)
        # (`Op.separate_quant`: its input comes from a kernel that cannot quantise, MLA's bf16 BMM)
        return op.fused_quant or (self.fused_act_quant and not op.separate_quant and op.dtype != "fp8_block"
                                  and op.name not in self.unfused_quant_ops)

    def _moe_floor_s(self, op: Op) -> float:
        """The engine's fused-MoE kernel does a routed-expert GEMM's useful FLOPs at no more than
        moe_efficiency of the dense GEMM's rate (binds in prefill; few-token decode stays
        weight-bound); 0 at moe_efficiency 1."""
        if self.moe_efficiency >= 1.0:
            return 0.0
        return op.flops / (self.peak(op.dtype) * rf.gemm_peak_fraction(op.dtype, self.e) * self.moe_efficiency)

    def _roofline(self, op: Op) -> float:
        g = self.gpu
        e = self._e_fused if self._fused(op) else self.e
        if op.kind == "gemm":
            m, n, k = op.shape
            return float(rf.gemm_time_s(float(m), float(n), float(k), op.bytes, self.peak(op.dtype), self.bw, e, g.num_sms, op.dtype))
        if op.kind == "moe_gemm":
            m_e, n, k, active = op.shape
            if op.flops <= 0:
                return 0.0
            # grouped GEMM: all active experts' tiles in one launch (experts concatenated along n)
            t = float(rf.gemm_time_s(max(m_e, 1.0), n * max(active, 1.0), float(k), op.bytes, self.peak(op.dtype), self.bw, e, g.num_sms, op.dtype))
            return max(t, self._moe_floor_s(op))
        if op.kind == "attn_prefill":
            items, nh, _nkv, _d, window, share, kv_dtype = op.shape
            n = max(len(items), 1)
            nseq = max(len(items) * share, 1e-9)
            q_mean = sum(q for q, _ in items) / n
            kv_last = sum(min(q + p, window) if window else q + p for q, p in items) / n
            windowed = 1.0 if window and any(q + p > window for q, p in items) else 0.0
            pairs = sum(_pairs(q, p, window) for q, p in items) * share * nh
            # fp8 activations, or an fp8 KV cache on a chip with fp8 tensor cores -> fp8 FMHA (as TRT-LLM)
            lowp = op.dtype == "fp8" or (kv_dtype == "fp8" and g.supports("fp8"))
            return float(rf.prefill_attention_time_s(op.flops, op.bytes, pairs, nseq * nh, q_mean, kv_last, windowed,
                                                     self.peak("fp8" if lowp else "bf16"), self.peak("bf16"), self.bw, e, g.num_sms, lowp=lowp))
        if op.kind == "attn_decode":
            n, ctx, nh, nkv, d, _w = op.shape
            # absorbed MLA (one shared latent KV head wider than any real head): one CTA serves a
            # sequence's query heads, like a GQA kernel, instead of one CTA per query head
            latent = nkv == 1 and d > 256
            return float(rf.decode_attention_time_s(op.flops, op.bytes, n, ctx, nh, nkv, self.peak("bf16"), self.bw, e, g.num_sms,
                                                    lowp_kv=op.dtype in ("fp8", "int8", "int4"), force_gqa=latent))
        if op.kind in ("linear_attn", "sparse_index"):
            return float(rf.streamed_attention_time_s(op.flops, op.bytes, op.shape[0], self.peak(self._peak_dtype(op)), self.bw, e))
        if op.kind == "memory":
            return float(rf.elementwise_time_s(op.bytes, self.bw, e))
        raise ValueError(f"no roofline for op kind {op.kind!r}")

    def _comm(self, op: Op) -> tuple[float, str, str, float]:
        collective, group = op.shape
        if group <= 1 or op.bytes <= 0:
            return 0.0, "network", "none", 0.0
        bw, lat, tier = self.gpu.link(group)
        # the engines' peer-memory all-reduce where it applies and beats NCCL ('-custom' in the source)
        custom = self.allreduce == "custom" and collective == "all_reduce" and tier == "nvlink" and op.bytes <= CUSTOM_ALLREDUCE_MAX_BYTES
        t = tc = None
        if self.kernels is not None and tier == "nvlink" and collective != "send_recv":
            t = self.kernels.collective_s(collective, group, op.bytes)
            if custom:
                tc = self.kernels.collective_s(collective, group, op.bytes, implementation="trtllm")
        source = "measured"
        if t is None and tc is None:
            source = "roofline"
            t, tier = roofline_collective_s(self.gpu, collective, op.bytes, group, self.e)
            t = float(t)
            if custom:
                tc = float(rf.custom_allreduce_time_s(op.bytes, group, bw, lat, self.e))
        if tc is not None and (t is None or tc < t):
            t, source = tc, source + "-custom"
        assert t is not None  # measured, the custom all-reduce, or the roofline: one of them timed it
        ideal = op.bytes / bw
        bound = "network" if ideal >= 0.5 * t else "latency"
        return t, bound, f"{source}:{tier}", min(1.0, ideal / t) if t > 0 else 0.0

    def _measured(self, op: Op) -> float | None:
        kt = self.kernels
        assert kt is not None
        if op.kind == "gemm":
            if op.dtype not in ("bf16", "fp8", "fp8_block") or op.weight_only_quant:
                return None
            m, n, k = op.shape
            return kt.gemm_s(m, n, k, op.dtype, framework=self.framework)
        if op.kind == "attn_prefill":
            items, nh, nkv, d, window, share = op.shape[:6]
            total = 0.0
            for (q, p), cnt in Counter(items).items():
                b = max(1, round(cnt * share))
                L = q + p
                t = kt.context_attention_s(b, L, nh, nkv, d, dtype="bf16", kv_dtype="bf16", window=window)
                if t is None:
                    return None
                # a chunk after p cached tokens does pairs(q,p) of the pairs(q+p,0) work of a full prefill
                total += t * (_pairs(q, p, window) / _pairs(L, 0, window)) if p else t
            return total
        if op.kind == "attn_decode":
            n, ctx_mean, nh, nkv, d, window = op.shape
            if op.dtype not in ("bf16", "fp8"):
                return None
            return kt.generation_attention_s(max(1, round(n)), max(1, round(ctx_mean)), nh, nkv, d, kv_dtype=op.dtype, window=window)
        return None
