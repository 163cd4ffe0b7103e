"""GPUSpec and SystemSpec: what a chip can do, and how chips are wired together.

Units are in the field names. Spec-sheet numbers are *dense* peak (no 2:4
sparsity). Bandwidths are per GPU and per direction (NVLink 4 on H100: 900 GB/s
bidirectional = 450 GB/s each way).

`Efficiency` holds the calibrated, shape-dependent efficiency curve parameters of
the roofline cost model (see `llmsim.cost.roofline` for the formulas). They are
fitted on measured kernels (`llmsim.calibrate.fit_efficiency`); chips without measurements
inherit the defaults, which were fitted on the shared H100 tables.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from ..dtypes import canonical
from ..errors import LlmsimError

GIB = 1024**3
GB = 1e9


class Efficiency(BaseModel):
    """Parameters of the shape-dependent roofline (see cost/roofline.py for each formula).

    Units are in the names: *_fraction of the chip's spec-sheet peak FLOP/s or HBM bandwidth,
    *_s seconds, *_bytes bytes, *_flops FLOP, *_tokens / *_pairs / *_heads counts.

    Defaults were fitted by `llmsim.calibrate.fit_efficiency` (`python
    benchmarks/validate_kernels.py --fit`) on the training split only (70% of shapes grouped
    by (n, k, dtype) or (heads, KV heads, head dim, window, KV dtype), seed 0) of the shared
    H100 SXM kernel tables (ai-dynamo/aiconfigurator: TRT-LLM 1.3.0rc20 + vLLM 0.19.0 GEMMs,
    TRT-LLM attention), by robust least squares on log(predicted / measured), in stages:
    GEMM parameters shared by all formats on the 16-bit GEMM rows, then the fp8 and
    block-scaled fp8 parameters on their own rows, then prefill and decode attention.
    decode_attn_gqa_heads / decode_attn_gqa_lowp_heads / decode_attn_max_group and the
    tile sizes are integers read off the train-split per-wave timings, not least-squares
    fitted; elementwise_launch_s and comm_bw_fraction are priors (no table measures them). The
    collective_* fields were fitted by `llmsim.calibrate.fit_collectives` on the train split (70%
    of the (collective, GPUs, dtype) groups, seed 0) of the shared H100 NCCL 2.27 table.
    Other chips inherit these values until calibrated on their own measurements
    (`llmsim.calibrate.fit_efficiency`) -- except b200 / b300, whose bandwidth and GEMM / FMHA
    peak fractions were fitted on the shared serving rows (gpus.yaml header); most are fractions of the chip's own peaks, counts,
    or per-wave / per-kernel latencies.
    """

    # allow_inf_nan=False: every float must be finite (.inf / .nan in a user file is an error)
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    # ------------------------------------------------------------ GEMM
    gemm_peak_fraction: float = Field(default=0.89, gt=0, le=1, description="sustained fraction of the 16-bit peak FLOP/s in a GEMM main loop")
    gemm_lowp_peak_fraction: float = Field(default=0.607, gt=0, le=1, description="same for fp8/int8/fp4 GEMMs, as a fraction of that format's peak")
    gemm_lowp_launch_s: float = Field(default=5.9e-06, ge=0, description="extra floor of fp8/int8/fp4 GEMMs (activation-quantisation kernel launch)")
    gemm_lowp_quant_bw_fraction: float = Field(default=0.364, gt=0, le=1, description="fraction of HBM bandwidth the activation-quantisation pass (read 16-bit, write 8-bit) reaches")
    gemm_fp4_bw_fraction: float = Field(default=1.0, gt=0, le=1, description="rate of an fp4 (NVFP4 / MXFP4) GEMM's memory stream relative to other GEMMs' (mem_bw_fraction): its weight-bound decode GEMMs")
    gemm_block_fp8_peak_fraction: float = Field(default=0.511, gt=0, le=1, description="block-scaled fp8 GEMM peak fraction (the GEMMs of 128x128-block fp8 checkpoints; per-tensor fp8 uses gemm_lowp_*)")
    gemm_block_fp8_launch_s: float = Field(default=6.86e-06, ge=0, description="block-scaled fp8 extra floor (its per-token-group activation-quantisation kernel)")
    gemm_block_fp8_quant_bw_fraction: float = Field(default=0.262, gt=0, le=1, description="block-scaled fp8 quantisation-pass bandwidth fraction")
    gemm_tile_m: int = Field(default=128, gt=0, description="output tile rows per CTA (64 when m <= 64)")
    gemm_tile_n: int = Field(default=128, gt=0, description="output tile columns per CTA")
    gemm_k_half_saturation: float = Field(default=208.0, ge=0, description="K slice at which a CTA's main loop reaches half its rate (prologue/epilogue, in K elements)")
    gemm_splitk_min_flops: float = Field(default=3.67e7, gt=0, description="least work (FLOP) a split-K GEMM leaves to one CTA")
    gemm_launch_s: float = Field(default=0.0, ge=0, description="fixed GEMM time beyond the operand-stream fill mem_ramp_s (fitted ~0)")
    mem_bw_fraction: float = Field(default=0.787, gt=0, le=1, description="sustained fraction of HBM bandwidth of a streaming (memory-bound) kernel")
    mem_ramp_s: float = Field(default=2.68e-06, ge=0, description="pipeline fill time a streaming kernel adds (its first bytes' latency): the floor of every GEMM and elementwise kernel")
    mem_half_saturation_bytes: float = Field(default=0.0, ge=0, description="bytes moved at which half of mem_ramp_s is paid (0: every stream pays all of it)")
    # ------------------------------------------------------------ prefill (context) attention
    attn_peak_fraction: float = Field(default=0.925, gt=0, le=1, description="fraction of the 16-bit peak the FMHA matmuls (QK^T, PV) sustain")
    attn_lowp_peak_fraction: float = Field(default=0.612, gt=0, le=1, description="fraction of the fp8 peak an fp8 FMHA (fp8 KV cache or activations) sustains")
    attn_softmax_flops: float = Field(default=226.0, ge=0, description="softmax (exp, rescale) cost of one (query, key) pair, in 16-bit tensor FLOPs at attn_peak_fraction; not overlapped with the matmuls")
    attn_row_overhead_pairs: float = Field(default=587.0, ge=0, description="per query row, extra keys' worth of work a CTA spends on pipeline fill and epilogue")
    attn_launch_s: float = Field(default=1.17e-05, ge=0, description="prefill attention time floor (FMHA and its pre-processing kernels)")
    attn_block_s: float = Field(default=3.51e-06, ge=0, description="set-up time of one wave of FMHA CTAs")
    # ------------------------------------------------------------ decode (generation) attention
    decode_attn_bw_fraction: float = Field(default=0.919, gt=0, le=1, description="sustained fraction of HBM bandwidth when streaming the KV cache")
    decode_attn_cta_bw_fraction: float = Field(default=0.0108, gt=0, le=1, description="fraction of HBM bandwidth one decode CTA pulls on its own (few CTAs cannot fill HBM)")
    decode_attn_ramp_s: float = Field(default=2.68e-05, ge=0, description="fill / drain time a long KV stream adds")
    decode_attn_ramp_half_bytes: float = Field(default=1.5e08, gt=0, description="KV bytes at which half of decode_attn_ramp_s is paid")
    decode_attn_setup_exposed: float = Field(default=0.604, ge=0, le=1, description="fraction of the CTAs' set-up time (beyond the first wave) not hidden behind KV streaming")
    decode_attn_launch_s: float = Field(default=9.81e-06, ge=0, description="decode attention time floor (16-bit KV cache; one-block-per-query-head kernels)")
    decode_attn_block_s: float = Field(default=1.22e-06, ge=0, description="set-up time of one wave of one-query-head blocks (MHA, or groups above decode_attn_max_group)")
    decode_attn_gqa_block_s: float = Field(default=4.79e-06, ge=0, description="set-up time of one wave of (sequence, KV head) blocks serving a query-head group, 16-bit KV cache")
    decode_attn_gqa_heads: int = Field(default=32, gt=0, description="query heads a 16-bit GQA block serves per pass (its set-up repeats per pass)")
    decode_attn_gqa_lowp_block_s: float = Field(default=1.04e-06, ge=0, description="same as decode_attn_gqa_block_s with an 8-bit KV cache")
    decode_attn_gqa_lowp_heads: int = Field(default=8, gt=0, description="query heads an 8-bit-KV GQA block serves per pass")
    decode_attn_gqa_lowp_launch_s: float = Field(default=6.71e-06, ge=0, description="time floor of the 8-bit-KV GQA decode kernel")
    decode_attn_split_min_tokens: float = Field(default=26.4, gt=0, description="fewest context tokens a split-KV (multi-block) CTA is given")
    decode_attn_split_s: float = Field(default=8.48e-07, ge=0, description="time per level of the split-KV partial-result reduction (log2(splits) levels)")
    decode_attn_max_group: int = Field(default=32, gt=0, description="query heads per KV head one decode block serves; larger groups run a block per query head")
    # ------------------------------------------------------------ other
    elementwise_launch_s: float = Field(default=3.2e-07, ge=0, description="norm/activation/elementwise kernel time on top of mem_ramp_s (prior, not fitted: ~3 us floor in all)")
    comm_bw_fraction: float = Field(default=0.80, gt=0, le=1, description="achieved fraction of link bandwidth of point-to-point transfers and the engines' peer-memory all-reduce (prior)")
    # ------------------------------------------------------------ NCCL collectives (fitted: `llmsim.calibrate.fit_collectives`)
    collective_bw_fraction: float = Field(default=0.724, gt=0, le=1, description="achieved fraction of link bandwidth of NCCL all_reduce / all_gather / reduce_scatter / alltoall on large messages")
    collective_latency_scale: float = Field(default=0.888, gt=0, description="latency of one all_gather / reduce_scatter / alltoall, in units of L (1 + log2 g)")
    collective_allreduce_latency_scale: float = Field(default=1.22, gt=0, description="latency of one all_reduce, in units of L (1 + log2 g)")
    collective_ramp_s: float = Field(default=2.83e-05, ge=0, description="protocol / pipelining time a collective adds on top of latency and bandwidth, reached by large messages")
    collective_ramp_half_bytes: float = Field(default=6.99e06, gt=0, description="message bytes at which half of collective_ramp_s is paid")


def _uncalibrated_values() -> dict:
    """Neutral values: every fraction at 100% of peak, every overhead at zero (structural
    choices — tile sizes, split thresholds, head-group limits — kept)."""
    out = {}
    for name, f in Efficiency.model_fields.items():
        if name.endswith("_fraction") and name != "decode_attn_setup_exposed":
            out[name] = 1.0
        elif name.endswith("_s") or name in ("attn_softmax_flops", "attn_row_overhead_pairs", "gemm_k_half_saturation",
                                             "mem_half_saturation_bytes", "decode_attn_setup_exposed"):
            out[name] = 0.0
        elif name.endswith("_latency_scale"):
            out[name] = 1.0
    return out


def uncalibrated_efficiency() -> Efficiency:
    """The plain spec-sheet roofline (what a spreadsheet or an uncalibrated calculator assumes):
    the baseline `llmsim calibrate` reports its improvement against."""
    return Efficiency(**_uncalibrated_values())


MIN_PEAK_TFLOPS = 1e-3  # 1 GFLOP/s: smaller peaks are a unit slip (the field is TFLOP/s)


class GPUSpec(BaseModel):
    """One accelerator. Add your own in YAML/JSON with these field names.

    Every float is finite (allow_inf_nan=False), every peak at least `MIN_PEAK_TFLOPS`, HBM at least
    1 GB/s and 0.01 GiB (a unit slip, not a chip, below those), and idle power at most TDP.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = Field(description="lower-case id, e.g. 'h100-sxm'")
    display_name: str = ""
    aliases: tuple[str, ...] = ()
    vendor: str = "nvidia"
    source: str = Field(default="", description="spec sheets the numbers come from")

    peak_tflops: dict[str, float] = Field(description="dense peak TFLOP/s by dtype (bf16, fp16, fp8, int8, fp4, fp32)")
    memory_gib: float = Field(ge=0.01, description="HBM capacity, GiB")
    memory_bandwidth_gbps: float = Field(ge=1.0, description="HBM bandwidth, GB/s")
    num_sms: int = Field(default=132, gt=0, description="streaming multiprocessors / compute units (wave quantisation)")
    tdp_w: float = Field(default=700.0, gt=0)
    idle_power_w: float = Field(default=100.0, ge=0)
    price_per_hour_usd: float = Field(default=2.0, ge=0, description="default on-demand $/GPU-hour; override with --price")

    # node / cluster interconnect
    gpus_per_node: int = Field(default=8, gt=0)
    nvlink_domain_size: int = Field(default=8, gt=0, description="GPUs reachable over NVLink/NVSwitch (72 on NVL72)")
    nvlink_bandwidth_gbps: float = Field(default=0.0, ge=0, description="per GPU, per direction, GB/s; 0 = no NVLink")
    nvlink_latency_us: float = Field(default=3.0, ge=0)
    pcie_bandwidth_gbps: float = Field(default=64.0, ge=0.01, description="per direction, GB/s (Gen5 x16 = 64)")
    pcie_latency_us: float = Field(default=5.0, ge=0)
    nic_bandwidth_gbps: float = Field(default=50.0, ge=0.01, description="scale-out NIC per GPU, per direction, GB/s (400 Gb/s = 50)")
    nic_latency_us: float = Field(default=8.0, ge=0)

    efficiency: Efficiency = Efficiency()

    @field_validator("peak_tflops")
    @classmethod
    def _canon_dtypes(cls, v: dict[str, float]) -> dict[str, float]:
        out = {canonical(k): float(x) for k, x in v.items()}
        for k, x in out.items():
            if not (math.isfinite(x) and x >= MIN_PEAK_TFLOPS):
                raise ValueError(f"{k} must be a finite number of at least {MIN_PEAK_TFLOPS:g} TFLOP/s (got {x!r}); "
                                 "leave out a dtype the chip does not support")
        if "bf16" not in out and "fp16" in out:
            out["bf16"] = out["fp16"]
        if "fp16" not in out and "bf16" in out:
            out["fp16"] = out["bf16"]
        if "bf16" not in out:
            raise ValueError("peak_tflops needs at least bf16 (or fp16)")
        return out

    @field_validator("idle_power_w")
    @classmethod
    def _idle_below_tdp(cls, v: float, info: ValidationInfo) -> float:
        """Idle power cannot exceed the board's TDP (tdp_w is declared first, so it is in info.data)."""
        tdp = info.data.get("tdp_w")
        if tdp is not None and v > tdp:
            raise ValueError(f"must be at most tdp_w ({tdp!r}) (got {v!r})")
        return v

    # ---------------------------------------------------------------- derived, SI units
    @property
    def memory_bytes(self) -> float:
        return self.memory_gib * GIB

    @property
    def memory_bandwidth_bytes_per_s(self) -> float:
        return self.memory_bandwidth_gbps * GB

    def supports(self, dtype: str) -> bool:
        return canonical(dtype) in self.peak_tflops

    def peak_flops_per_s(self, dtype: str) -> float:
        """Dense peak for a compute dtype; a clear error if the chip lacks it (fp4 on A100)."""
        d = canonical(dtype)
        if d == "fp16":
            d = "bf16" if "fp16" not in self.peak_tflops else d
        t = self.peak_tflops.get(d)
        if t is None:
            have = ", ".join(sorted(self.peak_tflops))
            raise LlmsimError(
                f"{self.name} has no {d} tensor-core support",
                hint=f"it supports {have}; choose one of those or another GPU",
            )
        return t * 1e12

    def link(self, group_size: int) -> tuple[float, float, str]:
        """(bandwidth bytes/s per direction, latency s, tier name) of the slowest link a group uses.

        GPUs of a group are placed contiguously: a group that fits in the NVLink domain
        talks over NVLink/NVSwitch, one that fits in a node but has no NVLink over PCIe,
        anything larger over the scale-out NIC.
        """
        if group_size <= self.nvlink_domain_size and self.nvlink_bandwidth_gbps > 0:
            return self.nvlink_bandwidth_gbps * GB, self.nvlink_latency_us * 1e-6, "nvlink"
        if group_size <= self.gpus_per_node:
            return self.pcie_bandwidth_gbps * GB, self.pcie_latency_us * 1e-6, "pcie"
        return self.nic_bandwidth_gbps * GB, self.nic_latency_us * 1e-6, "network"

    def with_overrides(self, **kw) -> "GPUSpec":
        """A copy with the given fields replaced (e.g. memory_gib=141), validated as a catalog entry is."""
        from .catalog import _validate  # (catalog imports this module)

        data = self.model_dump()
        data.update(kw)
        return _validate(data, f"override of {self.name}")
