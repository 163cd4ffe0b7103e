"""GPUSpec and SystemSpec: what a chip can do, and how chips are wired together.

Units are in the field names. Spec-sheet numbers are *dense* peak (no 2:4
sparsity). Bandwidths are per GPU and per direction (NVLink 4 on H100: 900 GB/s
bidirectional = 450 GB/s each way).

`Efficiency` holds the calibrated, shape-dependent efficiency curve parameters of
the roofline cost model (see `llmsim.cost.roofline` for the formulas). They are
fitted on measured kernels (`llmsim calibrate`); chips without measurements
inherit the defaults, which were fitted on the shared H100 tables.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..dtypes import canonical
from ..errors import LlmsimError

GIB = 1024**3
GB = 1e9


class Efficiency(BaseModel):
    """Parameters of the shape-dependent roofline (see cost/roofline.py for each formula).

    Defaults were fitted by `python benchmarks/validate_kernels.py --fit` on the training
    split (70% of shapes, seed 0) of the shared H100 SXM kernel tables
    (ai-dynamo/aiconfigurator, TRT-LLM 1.3.0rc20 + vLLM 0.19.0). Other chips inherit them
    until calibrated on their own measurements (`llmsim calibrate`).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    gemm_peak_fraction: float = Field(0.873, gt=0, le=1, description="best sustained fraction of peak FLOP/s on large GEMMs")
    gemm_lowp_peak_fraction: float = Field(0.543, gt=0, le=1, description="same for fp8/int8/fp4 GEMMs (scaling overheads keep them further from peak)")
    gemm_tile_m: int = Field(128, gt=0, description="output tile rows used for tile/wave quantisation")
    gemm_tile_n: int = Field(128, gt=0, description="output tile columns")
    gemm_k_half_saturation: float = Field(102.0, ge=0, description="K at which per-tile pipeline efficiency is 1/2 of its max")
    gemm_launch_s: float = Field(2.65e-06, ge=0, description="fixed kernel time floor (launch + prologue/epilogue)")
    gemm_lowp_launch_s: float = Field(6.45e-06, ge=0, description="extra floor of fp8/int8/fp4 GEMMs (activation-quantisation kernel)")
    mem_bw_fraction: float = Field(0.78, gt=0, le=1, description="best sustained fraction of HBM bandwidth")
    mem_ramp_s: float = Field(1.39e-05, ge=0, description="pipeline fill time a large streaming kernel adds")
    mem_half_saturation_bytes: float = Field(138000000.0, ge=0, description="bytes moved at which half of mem_ramp_s is paid")
    attn_peak_fraction: float = Field(0.486, gt=0, le=1, description="best sustained fraction of peak on prefill attention")
    attn_q_half_saturation: float = Field(1084.0, ge=0, description="query tokens per head at which prefill attention reaches 1/2 of its rate")
    attn_launch_s: float = Field(1.01e-05, ge=0, description="attention kernel time floor")
    attn_block_s: float = Field(8.41e-06, ge=0, description="minimum time of one wave of attention thread blocks (per-sequence/head set-up)")
    decode_attn_bw_fraction: float = Field(0.638, gt=0, le=1, description="sustained fraction of HBM bandwidth when streaming the KV cache")
    decode_attn_launch_s: float = Field(8.52e-06, ge=0, description="decode attention kernel time floor")
    decode_attn_block_s: float = Field(2.11e-06, ge=0, description="minimum time of one wave of (sequence, KV head) blocks")
    decode_attn_max_group: int = Field(32, gt=0, description="query heads per KV head one decode block serves; larger groups run a block per query head")
    elementwise_launch_s: float = Field(3e-6, ge=0, description="norm/activation/elementwise kernel time floor")
    comm_bw_fraction: float = Field(0.80, gt=0, le=1, description="achieved fraction of link bandwidth for large collectives")


class GPUSpec(BaseModel):
    """One accelerator. Add your own in YAML/JSON with these field names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="lower-case id, e.g. 'h100-sxm'")
    display_name: str = ""
    aliases: tuple[str, ...] = ()
    vendor: str = "nvidia"
    source: str = Field("", description="spec sheets the numbers come from")

    peak_tflops: dict[str, float] = Field(description="dense peak TFLOP/s by dtype (bf16, fp16, fp8, int8, fp4, fp32)")
    memory_gib: float = Field(gt=0, description="HBM capacity, GiB")
    memory_bandwidth_gbps: float = Field(gt=0, description="HBM bandwidth, GB/s")
    num_sms: int = Field(132, gt=0, description="streaming multiprocessors / compute units (wave quantisation)")
    tdp_w: float = Field(700.0, gt=0)
    idle_power_w: float = Field(100.0, ge=0)
    price_per_hour_usd: float = Field(2.0, ge=0, description="default on-demand $/GPU-hour; override with --price")

    # node / cluster interconnect
    gpus_per_node: int = Field(8, gt=0)
    nvlink_domain_size: int = Field(8, gt=0, description="GPUs reachable over NVLink/NVSwitch (72 on NVL72)")
    nvlink_bandwidth_gbps: float = Field(0.0, ge=0, description="per GPU, per direction, GB/s; 0 = no NVLink")
    nvlink_latency_us: float = Field(3.0, ge=0)
    pcie_bandwidth_gbps: float = Field(64.0, gt=0, description="per direction, GB/s (Gen5 x16 = 64)")
    pcie_latency_us: float = Field(5.0, ge=0)
    nic_bandwidth_gbps: float = Field(50.0, gt=0, description="scale-out NIC per GPU, per direction, GB/s (400 Gb/s = 50)")
    nic_latency_us: float = Field(8.0, ge=0)

    efficiency: Efficiency = Efficiency()

    @field_validator("peak_tflops")
    @classmethod
    def _canon_dtypes(cls, v: dict[str, float]) -> dict[str, float]:
        out = {canonical(k): float(x) for k, x in v.items()}
        if "bf16" not in out and "fp16" in out:
            out["bf16"] = out["fp16"]
        if "fp16" not in out and "bf16" in out:
            out["fp16"] = out["bf16"]
        if "bf16" not in out:
            raise ValueError("peak_tflops needs at least bf16 (or fp16)")
        return out

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
        data = self.model_dump()
        data.update(kw)
        return GPUSpec.model_validate(data)
