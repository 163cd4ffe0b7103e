"""`train_estimate`: step time, throughput, MFU, memory and time / cost / energy of a training job.

    from llmsim.training import train_estimate
    r = train_estimate("llama-3.1-70b", "h100-sxm", num_gpus=1024, tp=8, pp=4, vpp=5,
                       micro_batch=1, global_batch=1024, seq_len=8192, zero=1,
                       recompute="selective", tokens="15T")
    r.to_dict()["mfu"]; r.render(console)

Every number comes from `step.evaluate` on a one-layout batch (the same code the layout search
runs on thousands of layouts). Bad inputs raise LlmsimError; a layout that does not fit in
memory is a result with ``fits=False`` and a message saying what to change.

Time / cost / energy to train on D tokens: steps = ceil(D / (global_batch * seq_len));
time = steps * step_time; cost = num_gpus * hours * $/GPU-hour; energy = num_gpus * TDP * time
(GPU board power at TDP, no host / network / cooling; multiply by your PUE). Total training FLOPs
= model FLOPs per token * D, reported next to 6 * N_active * D.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from ..checks import check_bool, is_int, is_number
from ..errors import LlmsimError
from ..hardware.catalog import get_gpu
from ..hardware.spec import GIB, GPUSpec
from ..models.catalog import get_model
from ..models.spec import ModelSpec
from .flops import Geometry
from .layout import LayoutArrays, TrainLayout, check_layout, recompute_code
from .result import TrainResult
from .step import SUSTAINED_COMPUTE_FRACTION, TrainContext, evaluate

_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15}
TRAIN_DTYPES = ("bf16", "fp16", "fp8")


def parse_tokens(tokens) -> float | None:
    """'15T' -> 1.5e13, '300B' -> 3e11, '2.5e12' / 2.5e12 -> 2.5e12; None stays None."""
    if tokens is None:
        return None
    if isinstance(tokens, (int, float)) and not isinstance(tokens, bool):
        v = float(tokens)
    else:
        mt = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([kKmMbBgGtTpP]?)\s*(?:tokens?)?\s*", str(tokens))
        if not mt:
            raise LlmsimError(f"cannot read a token count from {tokens!r}", hint="write e.g. 15T, 300B, 2.5e12 or 1000000")
        v = float(mt.group(1)) * _SUFFIX[mt.group(2).lower()]
    if not (v > 0 and math.isfinite(v)):
        raise LlmsimError(f"tokens must be a positive number, got {tokens!r}")
    return v


def _pos_int(name: str, v) -> int:
    if not is_int(v) or v <= 0:
        raise LlmsimError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def _real(name: str, v, *, lo: float, hi: float = math.inf, lo_open: bool = False, hi_open: bool = False,
          hint: str | None = None) -> float:
    """A real, finite number in [lo, hi] (bounds open as asked); bools and strings are errors."""
    lb, rb = "(" if lo_open else "[", ")" if hi_open or hi == math.inf else "]"
    rng = f"{lb}{lo:g}, {'inf' if hi == math.inf else f'{hi:g}'}{rb}"
    if not is_number(v):
        raise LlmsimError(f"{name} must be a number in {rng}, got {v!r}", hint=hint)
    f = float(v)
    ok = math.isfinite(f) and (f > lo if lo_open else f >= lo) and (f < hi if hi_open else f <= hi)
    if not ok:
        raise LlmsimError(f"{name} must be a finite number in {rng}, got {v!r}", hint=hint)
    return f


def _check_gpu(gpu) -> None:
    if isinstance(gpu, (bool, np.bool_)) or not isinstance(gpu, (str, os.PathLike, GPUSpec)):
        raise LlmsimError(f"gpu must be a catalog id, a GPU YAML/JSON file or a GPUSpec, got {gpu!r}",
                          hint="e.g. gpu='h100-sxm' (see `llmsim gpus list`)")


# the on/off switches of make_context (and so of train_estimate / search_layouts)
SWITCHES = ("sequence_parallel", "overlap_grad_reduce", "overlap_param_gather", "flash_attention", "fp32_grads",
            "uneven_layers", "cp_load_balance")
# every keyword option make_context takes besides the job's size (search_layouts' **options)
TRAIN_OPTIONS = SWITCHES + ("finetune", "lora_rank", "dropout", "fragmentation", "runtime_overhead_gib", "bucket_params",
                            "compute_efficiency")


def make_context(model, gpu, *, num_gpus: int, global_batch: int, seq_len: int | None, dtype: str = "bf16",
                 price_per_hour_usd: float | None = None, sequence_parallel: bool = True, overlap_grad_reduce: bool = True,
                 overlap_param_gather: bool = True, flash_attention: bool = True, fp32_grads: bool = False,
                 uneven_layers: bool = False, finetune: str = "full", lora_rank: int = 16, dropout: bool | None = None,
                 cp_load_balance: bool = True, fragmentation: float = 0.05, runtime_overhead_gib: float = 2.0,
                 bucket_params: float = 40e6, compute_efficiency: float | None = None) -> TrainContext:
    _check_gpu(gpu)
    spec = model if isinstance(model, ModelSpec) else get_model(model)
    hw = gpu if isinstance(gpu, GPUSpec) else get_gpu(gpu, price_per_hour_usd=price_per_hour_usd)
    if isinstance(gpu, GPUSpec) and price_per_hour_usd is not None:
        hw = get_gpu(gpu, price_per_hour_usd=price_per_hour_usd)
    d = str(dtype).strip().lower()
    d = {"bfloat16": "bf16", "float16": "fp16", "fp8_e4m3": "fp8", "e4m3": "fp8"}.get(d, d)
    if d not in TRAIN_DTYPES:
        raise LlmsimError(f"training dtype {dtype!r} is not supported", hint="use bf16 (mixed precision) or fp8 (fp8 GEMMs, bf16 elsewhere)")
    d = "bf16" if d == "fp16" else d
    hw.peak_flops_per_s(d)  # a clear error if the chip lacks fp8
    _pos_int("num_gpus", num_gpus)
    _pos_int("global_batch", global_batch)
    if seq_len is None:
        seq_len = min(4096, spec.max_position_embeddings)
    _pos_int("seq_len", seq_len)
    if spec.learned_pos_embeddings and seq_len > spec.max_position_embeddings:
        raise LlmsimError(
            f"seq_len {seq_len} exceeds the {spec.max_position_embeddings} learned position embeddings of {spec.name}",
            hint=f"use seq_len <= {spec.max_position_embeddings}",
        )
    ft = str(finetune).strip().lower()
    if ft in ("pretrain", "pretraining", "none", "full_finetune", "sft"):
        ft = "full"
    if ft not in ("full", "lora"):
        raise LlmsimError(f"finetune must be 'full' or 'lora', got {finetune!r}",
                          hint="'full' trains every weight (pre-training or full fine-tuning), 'lora' only low-rank adapters")
    _pos_int("lora_rank", lora_rank)
    sw = {k: check_bool(k, v) for k, v in (
        ("sequence_parallel", sequence_parallel), ("overlap_grad_reduce", overlap_grad_reduce),
        ("overlap_param_gather", overlap_param_gather), ("flash_attention", flash_attention), ("fp32_grads", fp32_grads),
        ("uneven_layers", uneven_layers), ("cp_load_balance", cp_load_balance))}
    # dropout: on / off, or None for the model's era default (layernorm-era models trained with it)
    dropout = check_bool("dropout", dropout, allow_none=True, hint="pass dropout=True or dropout=False (None: the model's default)")
    fragmentation = _real("fragmentation", fragmentation, lo=0.0, hi=1.0, hi_open=True,
                          hint="the share of activation memory lost to allocator fragmentation, e.g. 0.05 for 5%")
    if compute_efficiency is not None:
        compute_efficiency = _real("compute_efficiency", compute_efficiency, lo=0.0, hi=1.0, lo_open=True,
                                   hint="the achieved share of peak GEMM FLOP/s, e.g. 0.7; leave it out for the default")
    runtime_overhead_gib = _real("runtime_overhead_gib", runtime_overhead_gib, lo=0.0,
                                 hint="GiB per GPU for the CUDA context, NCCL buffers and the like, e.g. 2.0")
    bucket_params = _real("bucket_params", bucket_params, lo=0.0, lo_open=True,
                          hint="parameters per gradient-reduction bucket, e.g. 40e6")
    return TrainContext(
        model=spec, gpu=hw, geo=Geometry.of(spec, dropout), num_gpus=int(num_gpus), global_batch=int(global_batch),
        seq_len=int(seq_len), dtype=d, sequence_parallel=sw["sequence_parallel"],
        overlap_grad_reduce=sw["overlap_grad_reduce"], overlap_param_gather=sw["overlap_param_gather"],
        flash_attention=sw["flash_attention"], fp32_grads=sw["fp32_grads"], uneven_layers=sw["uneven_layers"],
        cp_load_balance=sw["cp_load_balance"], finetune=ft, lora_rank=int(lora_rank),
        fragmentation=fragmentation, runtime_overhead_bytes=runtime_overhead_gib * GIB, bucket_params=bucket_params,
        compute_efficiency=SUSTAINED_COMPUTE_FRACTION if compute_efficiency is None else compute_efficiency,
    )


def _fit_message(ctx: TrainContext, lay: TrainLayout, a: dict, i: int) -> str:
    cap = ctx.gpu.memory_bytes
    tot = float(a["mem_total"][i])
    if tot <= cap:
        return f"fits: {tot / GIB:.1f} of {cap / GIB:.1f} GiB per GPU"
    parts = {
        "weights": float(a["mem_weights"][i]), "gradients": float(a["mem_gradients"][i]),
        "optimizer states": float(a["mem_optimizer"][i]), "activations": float(a["mem_activations"][i] + a["mem_fragmentation"][i]),
    }
    big = sorted(parts.items(), key=lambda kv: -kv[1])[:2]
    tips = []
    if parts["activations"] > 0.25 * tot:
        if lay.recompute != "full":
            tips.append(f"recompute='{'selective' if lay.recompute == 'none' and not ctx.flash_attention else 'full'}'")
        if lay.micro_batch > 1:
            tips.append("a smaller micro_batch")
        tips.append("more tp / cp (activations split) or pp")
    if parts["optimizer states"] + parts["gradients"] > 0.25 * tot and lay.zero < 3 and ctx.finetune == "full":
        tips.append(f"zero={min(3, lay.zero + 1)}" + (" (needs dp*cp > 1)" if lay.dp * lay.cp == 1 else ""))
    if parts["weights"] > 0.25 * tot:
        tips.append("more tp or pp" + (" or zero=3" if ctx.finetune == "full" and lay.zero < 3 else ""))
    tips.append("or a GPU with more memory (or llmsim.training.search_layouts)")
    return (f"out of memory: needs {tot / GIB:.1f} GiB per GPU, the {ctx.gpu.name} has {cap / GIB:.1f} GiB "
            f"(largest: " + ", ".join(f"{k} {v / GIB:.1f} GiB" for k, v in big) + "); try " + ", ".join(tips))


def build_result(ctx: TrainContext, L: LayoutArrays, a: dict, i: int, tokens: float | None = None) -> TrainResult:
    lay = L.layout(i)
    g = lambda k: float(a[k][i])
    step = g("step_time_s")
    breakdown = {
        "compute": g("compute_s") - g("recompute_s"),
        "recompute": g("recompute_s"),
        "tp_comm": g("tp_comm_s"),
        "cp_comm": g("cp_comm_s"),
        "ep_comm": g("ep_comm_s"),
        "pp_comm": g("pp_comm_s"),
        "dp_comm": g("dp_comm_s"),
        "pipeline_bubble": g("bubble_s"),
        "optimizer": g("optimizer_s"),
    }
    mem = {
        "weights": g("mem_weights"), "gradients": g("mem_gradients"), "optimizer_states": g("mem_optimizer"),
        "zero3_gather_buffer": g("mem_zero3_buffer"), "activations": g("mem_activations"),
        "fragmentation": g("mem_fragmentation"), "runtime_overhead": g("mem_runtime"),
    }
    gpu = ctx.gpu
    tiers = {"tp": gpu.link(lay.tp)[2] if lay.tp > 1 else "-",
             "cp": gpu.link(lay.tp * lay.cp)[2] if lay.cp > 1 else "-",
             "ep": gpu.link(lay.ep)[2] if lay.ep > 1 else "-",
             "dp": gpu.link(lay.tp * lay.cp * lay.dp)[2] if lay.dp * lay.cp > 1 else "-",
             "pp": gpu.link(ctx.num_gpus)[2] if lay.pp > 1 else "-"}
    tokens_step = ctx.global_batch * ctx.seq_len
    mf_tok = ctx.geo.model_flops_per_token(ctx.seq_len, train_weights=ctx.finetune != "lora")
    training = None
    if tokens is not None:
        if tokens < tokens_step:
            raise LlmsimError(f"tokens = {tokens:,.6g} is less than one optimizer step trains ({tokens_step:,} tokens = "
                              f"global batch {ctx.global_batch} x sequence length {ctx.seq_len})",
                              hint="give the whole training run's tokens, e.g. 300B or 15T")
        steps = math.ceil(tokens / tokens_step)
        secs = steps * step
        hours = secs / 3600.0
        six_nd = 6.0 * ctx.model.active_params * tokens
        training = {
            "tokens": tokens, "steps": steps, "time_s": secs, "time_days": secs / 86400.0,
            "gpu_hours": hours * ctx.num_gpus, "price_per_gpu_hour_usd": gpu.price_per_hour_usd,
            "cost_usd": hours * ctx.num_gpus * gpu.price_per_hour_usd,
            "energy_mwh": ctx.num_gpus * gpu.tdp_w * secs / 3.6e9,
            "energy_note": "GPU boards at TDP; excludes host, network and cooling (multiply by PUE)",
            "train_flops": mf_tok * tokens, "six_n_d_flops": six_nd, "flops_vs_6nd": mf_tok * tokens / six_nd,
        }
    return TrainResult(
        model=ctx.model.name, gpu=gpu.name, num_gpus=ctx.num_gpus, layout=lay.to_dict(), dtype=ctx.dtype, seq_len=ctx.seq_len,
        global_batch=ctx.global_batch, micro_batches_per_step=int(a["microbatches"][i]), tokens_per_step=tokens_step,
        options={"sequence_parallel": ctx.sequence_parallel, "overlap_grad_reduce": ctx.overlap_grad_reduce,
                 "overlap_param_gather": ctx.overlap_param_gather, "flash_attention": ctx.flash_attention,
                 "fp32_grads": ctx.fp32_grads, "uneven_layers": ctx.uneven_layers, "finetune": ctx.finetune,
                 "lora_rank": ctx.lora_rank if ctx.finetune == "lora" else None, "dropout": ctx.geo.dropout,
                 "fragmentation": ctx.fragmentation, "runtime_overhead_gib": ctx.runtime_overhead_bytes / GIB,
                 "compute_efficiency": ctx.compute_efficiency},
        fits=bool(a["fits"][i]), message=_fit_message(ctx, lay, a, i),
        step_time_s=step, step_time_breakdown_s=breakdown, bubble_fraction=g("bubble_fraction"),
        tokens_per_s=g("tokens_per_s"), tokens_per_s_per_gpu=g("tokens_per_s_per_gpu"),
        model_flops_per_token=mf_tok, model_tflops_per_gpu=g("model_tflops_per_gpu"), mfu=g("mfu"), hfu=g("hfu"),
        peak_tflops_per_gpu=ctx.peak_gemm / 1e12, memory_per_gpu_bytes=g("mem_total"), memory_breakdown_bytes=mem,
        memory_capacity_bytes=gpu.memory_bytes, comm_tiers=tiers, params_total=ctx.model.total_params,
        params_active=ctx.model.active_params, params_per_gpu=g("stage_params"), training=training,
    )


def train_estimate(
    model: str | ModelSpec,
    gpu: str | GPUSpec = "h100-sxm",
    *,
    num_gpus: int | None = None,
    tp: int = 1,
    pp: int = 1,
    vpp: int = 1,
    cp: int = 1,
    ep: int = 1,
    dp: int | None = None,
    zero: int = 1,
    micro_batch: int = 1,
    global_batch: int | None = None,
    seq_len: int | None = None,
    recompute: str = "none",
    dtype: str = "bf16",
    tokens=None,
    price_per_hour_usd: float | None = None,
    sequence_parallel: bool = True,
    overlap_grad_reduce: bool = True,
    overlap_param_gather: bool = True,
    flash_attention: bool = True,
    fp32_grads: bool = False,
    uneven_layers: bool = False,
    finetune: str = "full",
    lora_rank: int = 16,
    dropout: bool | None = None,
    fragmentation: float = 0.05,
    runtime_overhead_gib: float = 2.0,
    compute_efficiency: float | None = None,
) -> TrainResult:
    """Estimate one training layout. ``dp`` defaults to num_gpus / (tp*pp*cp); ``num_gpus`` to tp*pp*cp*dp.

    ``global_batch`` (sequences per optimizer step) defaults to micro_batch * dp * (4 * pp when
    pipelined, else 1); ``seq_len`` to min(4096, the model's context). ``tokens`` (e.g. '15T')
    adds time / cost / energy to train on that many tokens.
    """
    for name, v in (("tp", tp), ("pp", pp), ("vpp", vpp), ("cp", cp), ("ep", ep), ("micro_batch", micro_batch)):
        _pos_int(name, v)
    if isinstance(zero, bool) or not isinstance(zero, (int, np.integer)):
        raise LlmsimError(f"zero must be an integer 0-3, got {zero!r}")
    recompute_code(recompute)
    if num_gpus is None and dp is None:
        raise LlmsimError("give num_gpus (or dp)", hint="e.g. num_gpus=64 with tp=8, pp=2 derives dp=4")
    if dp is None:
        assert num_gpus is not None  # (raised above when both are None)
        _pos_int("num_gpus", num_gpus)
        mp = tp * pp * cp
        if num_gpus % mp:
            raise LlmsimError(
                f"tp*pp*cp = {tp}*{pp}*{cp} = {mp} does not divide num_gpus = {num_gpus}",
                hint="tp*pp*cp*dp must equal the number of GPUs; change a degree or the GPU count",
            )
        dp = num_gpus // mp
    _pos_int("dp", dp)
    if num_gpus is None:
        num_gpus = tp * pp * cp * dp
    if global_batch is None:
        global_batch = micro_batch * dp * (4 * pp if pp > 1 else 1)
    ctx = make_context(
        model, gpu, num_gpus=num_gpus, global_batch=global_batch, seq_len=seq_len, dtype=dtype,
        price_per_hour_usd=price_per_hour_usd, sequence_parallel=sequence_parallel, overlap_grad_reduce=overlap_grad_reduce,
        overlap_param_gather=overlap_param_gather, flash_attention=flash_attention, fp32_grads=fp32_grads,
        uneven_layers=uneven_layers, finetune=finetune, lora_rank=lora_rank, dropout=dropout,
        fragmentation=fragmentation, runtime_overhead_gib=runtime_overhead_gib, compute_efficiency=compute_efficiency,
    )
    lay = TrainLayout(tp=int(tp), pp=int(pp), vpp=int(vpp), cp=int(cp), ep=int(ep), dp=int(dp), zero=int(zero),
                      micro_batch=int(micro_batch), recompute=str(recompute).strip().lower())
    check_layout(ctx.model, lay, ctx.rules_ctx())
    L = LayoutArrays.from_layout(lay)
    arrays = evaluate(ctx, L)
    return build_result(ctx, L, arrays, 0, parse_tokens(tokens))
