"""`estimate`: latency, throughput and memory of a static batch — the question a roofline calculator answers.

A batch of `batch` sequences, each with `isl` prompt tokens, is prefilled in one
iteration, then generates `osl` tokens together (the first comes out of the prefill,
the other osl-1 from decode steps whose context grows by one token each).

    prefill_ms = time of the prefill iteration                        (= TTFT of every sequence)
    tpot_ms    = mean decode-step time over the osl-1 decode steps    (time per output token)
    e2e_ms     = prefill_ms + (osl - 1) * tpot_ms
    output_tokens_per_s = batch * osl / e2e

Decode steps differ only in attention (context isl+1 ... isl+osl-1); the other
operators are costed once and attention is integrated over the context range
(trapezoid rule on 5 points; exact when attention time is linear in context, and within
0.4% of a 9-point rule on 80 random configurations).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .checks import is_int, is_number
from .cost.model import CostModel, OpCost
from .cost.ops import Batch, OpBuilder, check_ep_imbalance, resolve_ep_imbalance
from .dtypes import gemm_compute_dtype
from .errors import LlmsimError
from .hardware.catalog import get_gpu
from .hardware.spec import GPUSpec
from .layout import Parallel, Precision
from .memory.model import MemoryBreakdown, memory_breakdown
from .models.catalog import get_model
from .models.spec import ModelSpec
from .serving.backends import BACKENDS

_DECODE_SAMPLES = 5
MAX_BATCH = 1 << 20  # sequences in one static batch (the op list holds one entry per sequence)


@dataclass
class EstimateResult:
    model: str
    gpu: str
    tp: int
    pp: int
    dp: int
    ep: int
    num_gpus: int
    weight_dtype: str
    act_dtype: str
    kv_dtype: str
    batch: int
    isl: int
    osl: int
    fits: bool
    message: str
    prefill_ms: float
    tpot_ms: float
    e2e_ms: float
    output_tokens_per_s: float
    output_tokens_per_s_per_gpu: float
    total_tokens_per_s: float
    max_concurrency: int
    usd_per_million_output_tokens: float
    memory: MemoryBreakdown
    kernel_source: str
    # expert-parallel load imbalance the MoE layers were priced at (1.0: balanced; see `estimate`)
    ep_imbalance: float = 1.0
    prefill_ops: list[OpCost] = field(default_factory=list, repr=False)
    decode_ops: list[OpCost] = field(default_factory=list, repr=False)

    @property
    def ttft_ms(self) -> float:
        return self.prefill_ms

    def to_dict(self, explain: bool = False) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("memory", "prefill_ops", "decode_ops")}
        d["ttft_ms"] = self.ttft_ms
        d["memory"] = self.memory.to_dict()
        if explain:
            d["prefill_ops"] = [c.to_dict() for c in self.prefill_ops]
            d["decode_ops"] = [c.to_dict() for c in self.decode_ops]
        return d


def _positive(name: str, v: int) -> int:
    if not is_int(v) or v <= 0:
        raise LlmsimError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def resolve_kernels(kernels: str | Path | None, gpu: GPUSpec):
    """Which measured kernel tables the cost model uses on `gpu`:

    'auto' → the bundled engine tables (AIConfigurator, H100) if measured on this GPU, else
    none (roofline); 'none' → roofline only; 'profile' → the bundled `llmsim profile` run
    (PyTorch kernels) measured on this GPU, an error if there is none; a path → that
    directory of tables (e.g. your own `llmsim profile --out DIR`)."""
    if kernels is not None and not isinstance(kernels, (str, Path)):
        raise LlmsimError(f"kernels must be 'auto', 'none', 'profile' or a directory path, got {kernels!r}",
                          hint="e.g. kernels='auto' (measured tables where they exist) or kernels='none' (roofline)")
    if kernels is None or str(kernels).lower() in ("none", "roofline", "off"):
        return None
    from .cost.measured import BUNDLED_DEVICE, KernelTables, bundled_profile, bundled_profiles, device_matches, load_cached

    if str(kernels).lower() == "auto":
        # by name or alias: a calibrated spec ('h100-sxm-calibrated', aliases [h100-sxm]) keeps the tables
        return KernelTables.load(None) if device_matches(BUNDLED_DEVICE, gpu) and _measured_silicon(gpu) else None
    if str(kernels).lower() == "profile":
        kt = bundled_profile(gpu)
        if kt is None:
            raise LlmsimError(f"no bundled llmsim profile was measured on {gpu.name}",
                              hint=f"bundled profiles: {', '.join(bundled_profiles()) or 'none'}; measure this GPU with "
                                   "`llmsim profile --out DIR` and pass --kernels DIR, or use --kernels auto")
        return kt
    return load_cached(kernels)


def _measured_silicon(gpu: GPUSpec) -> bool:
    """Whether `gpu` is the chip the bundled tables were measured on, not only its name: a GPU
    file that keeps the name but edits the peaks, bandwidths or SM count describes another chip,
    which the roofline times from those numbers (price, power and memory size may differ)."""
    from .cost.measured import BUNDLED_DEVICE, device_matches
    from .hardware.catalog import list_gpus

    ref = next((g for g in list_gpus() if device_matches(BUNDLED_DEVICE, g.name)), None)
    keys = ("peak_tflops", "memory_bandwidth_gbps", "num_sms", "nvlink_bandwidth_gbps", "nvlink_domain_size")
    return ref is not None and all(getattr(gpu, k) == getattr(ref, k) for k in keys)


_COST_MODELS: dict[tuple, CostModel] = {}


def _cost_model(hw: GPUSpec, kernels, framework: str | None) -> CostModel:
    """A CostModel per (GPU spec, kernel tables, framework), reused across calls so that its
    per-operator cache serves repeated shapes (sweeps change one knob at a time)."""
    key = (hw.model_dump_json(), str(kernels), framework)
    cm = _COST_MODELS.get(key)
    if cm is None:
        if len(_COST_MODELS) > 64:
            _COST_MODELS.clear()
        # an inference engine named: its kernels as serving models them (custom all-reduce, fused quantisation)
        be = BACKENDS.get(framework) if framework else None
        kt = resolve_kernels(kernels, hw)
        cm = _COST_MODELS[key] = be.cost_model(hw, kt) if be is not None else CostModel(hw, kt, framework)
    return cm


def estimate(
    model: str | ModelSpec = "llama-3.1-70b",
    gpu: str | GPUSpec = "h100-sxm",
    *,
    tp: int = 1,
    pp: int = 1,
    dp: int = 1,
    ep: int = 1,
    batch: int = 1,
    isl: int = 1024,
    osl: int = 128,
    weight_dtype: str = "bf16",
    act_dtype: str | None = None,
    kv_dtype: str | None = None,
    kernels: str | Path | None = "auto",
    framework: str | None = None,
    memory_fraction: float = 0.9,
    block_size: int = 16,
    price_per_hour_usd: float | None = None,
    cost_model: CostModel | None = None,
    ep_imbalance: float | str | None = None,
) -> EstimateResult:
    """Predict prefill latency, TPOT, end-to-end latency, throughput and memory for a static batch.

    `ep_imbalance` (MoE with ep > 1): the busiest expert-parallel GPU's share of the routed tokens
    over the mean share, which sets the MoE step -- None or 1.0 balanced (default), a number >= 1,
    or 'auto' from the model's routing skew (`cost.ops.expected_ep_imbalance`); the same setting
    as `Deployment.ep_imbalance` in serving."""
    spec = model if isinstance(model, ModelSpec) else get_model(model)
    hw = get_gpu(gpu, price_per_hour_usd=price_per_hour_usd)  # (a GPUSpec takes the price too)
    # (numpy integers are taken, as Python ints: an int16 batch would overflow in the byte counts)
    batch, isl, osl, block_size = (_positive(name, v) for name, v in
                                   (("batch", batch), ("isl", isl), ("osl", osl), ("block_size", block_size)))
    if batch > MAX_BATCH:
        raise LlmsimError(f"batch = {batch:,} sequences is more than a static batch estimate handles ({MAX_BATCH:,})",
                          hint="a static batch is what one engine runs at once; use `llmsim serve` for request streams")
    if block_size > spec.max_position_embeddings:
        raise LlmsimError(f"block_size = {block_size:,} tokens exceeds the {spec.max_position_embeddings:,}-token context of {spec.name}",
                          hint="KV-cache blocks hold a few tokens each, e.g. 16 (vLLM) or 32 / 64 (TRT-LLM)")
    if framework is not None and framework not in BACKENDS:
        raise LlmsimError(f"unknown framework {framework!r}", hint=f"use one of {', '.join(sorted(BACKENDS))}, or leave it out")
    if not is_number(memory_fraction) or not 0 < memory_fraction <= 1:
        raise LlmsimError(f"memory_fraction must be in (0, 1], got {memory_fraction}")
    if isl + osl > spec.max_position_embeddings:
        raise LlmsimError(
            f"isl + osl = {isl + osl} exceeds the {spec.max_position_embeddings}-token context of {spec.name}",
            hint="shorten the prompt or the output",
        )
    par = Parallel(tp, pp, dp, ep).validate(spec)
    if batch % par.dp:
        # attention data parallelism splits the batch's sequences over the dp ranks; a rank's step
        # is timed on its share (`OpBuilder`'s dp_share), which must be whole sequences
        raise LlmsimError(f"batch = {batch} does not split evenly over dp = {par.dp} attention data-parallel ranks",
                          hint=f"use a batch that is a multiple of {par.dp} (e.g. {par.dp * max(1, -(-batch // par.dp))}), or dp = 1")
    prec = Precision.make(weight_dtype, act_dtype, kv_dtype)
    hw.peak_flops_per_s(gemm_compute_dtype(prec.weight, prec.act))  # clear error if the chip lacks the format
    if prec.weight == "fp4" and not hw.supports("fp4"):
        raise LlmsimError(f"{hw.name} cannot run fp4 weights", hint="use fp8/int8/int4 weights or a Blackwell GPU")

    check_ep_imbalance(ep_imbalance)
    if ep_imbalance not in (None, 1, 1.0) and not (spec.is_moe and par.ep > 1):
        # as `serve` (simulate.check_unused_settings): a setting that cannot act is an error, not a no-op
        why = f"{spec.name} is a dense model" if not spec.is_moe else "ep = 1"
        raise LlmsimError(f"ep_imbalance ({ep_imbalance!r}) applies to MoE layers run with expert parallelism, but {why}",
                          hint="drop --ep-imbalance" + ("" if not spec.is_moe else ", or give an ep degree (--ep)"))
    if cost_model is not None and not isinstance(cost_model, CostModel):
        raise LlmsimError(f"cost_model must be a CostModel, got {type(cost_model).__name__}", hint="leave it out to build one from gpu and kernels")
    cm = cost_model or _cost_model(hw, kernels, framework)
    builder = OpBuilder(spec, par, prec, ep_imbalance=resolve_ep_imbalance(ep_imbalance, spec.num_experts, par.ep))

    # prefill: the whole batch in one iteration
    pre_ops = cm.costs(builder.build(Batch([(isl, 0)] * batch, [])))
    prefill_s = sum(c.total_s for c in pre_ops)

    # decode: osl-1 steps, context isl+1 .. isl+osl-1
    steps = osl - 1
    if steps > 0:
        mid = isl + (steps + 1) // 2
        dec_ops = cm.costs(builder.build(Batch([], [mid] * batch)))
        non_attn = sum(c.total_s for c in dec_ops if c.op.kind != "attn_decode")
        pts = list(range(isl + 1, isl + steps + 1)) if steps <= _DECODE_SAMPLES else [
            isl + 1 + round(i * (steps - 1) / (_DECODE_SAMPLES - 1)) for i in range(_DECODE_SAMPLES)
        ]
        attn = []
        for c in pts:
            b = Batch([], [c] * batch)
            attn.append(sum(cm.cost(o).total_s for g in spec.layer_groups for o in builder.attention_ops(b, g, 1.0 / par.dp)))
        if steps <= _DECODE_SAMPLES:
            attn_mean = sum(attn) / len(attn)
        else:  # trapezoid over the sampled contexts
            attn_mean = (sum(attn) - 0.5 * (attn[0] + attn[-1])) / (len(attn) - 1)
        tpot_s = non_attn + attn_mean
    else:
        dec_ops, tpot_s = [], 0.0

    e2e_s = prefill_s + steps * tpot_s
    mem = memory_breakdown(
        spec, hw, par, prec, batch=batch, seq_len=isl + osl, max_batched_tokens=batch * isl,
        memory_fraction=memory_fraction, block_size=block_size,
    )
    out_tps = batch * osl / e2e_s
    usd_per_mtok = hw.price_per_hour_usd * par.num_gpus / 3600.0 / out_tps * 1e6
    sources = {c.source.split(":")[0] for c in pre_ops + dec_ops if c.op.kind != "comm"}
    return EstimateResult(
        model=spec.name, gpu=hw.name, tp=par.tp, pp=par.pp, dp=par.dp, ep=par.ep, num_gpus=par.num_gpus,
        weight_dtype=prec.weight, act_dtype=prec.act, kv_dtype=prec.kv,
        batch=batch, isl=isl, osl=osl, fits=mem.fits, message=mem.message,
        prefill_ms=prefill_s * 1e3, tpot_ms=tpot_s * 1e3, e2e_ms=e2e_s * 1e3,
        output_tokens_per_s=out_tps, output_tokens_per_s_per_gpu=out_tps / par.num_gpus,
        total_tokens_per_s=batch * (isl + osl) / e2e_s,
        max_concurrency=mem.max_concurrency,
        usd_per_million_output_tokens=usd_per_mtok,
        memory=mem,
        kernel_source="+".join(sorted(sources)) or "roofline",
        ep_imbalance=builder.ep_imbalance,
        prefill_ops=pre_ops, decode_ops=dec_ops,
    )
