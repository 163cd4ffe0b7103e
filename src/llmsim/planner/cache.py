"""Step-time models shared across planner candidates.

`llmsim.serving.simulate` builds a fresh `StepTimeModel` (and `CostModel`) for every pool of
every run, so each run re-costs the same operators from scratch. A planner runs hundreds of
simulations of the same few layouts, so every (model, GPU, layout, precision, engine) gets one
`StepTimeModel` here, reused by the analytic bounds (`prune.py`) and by every simulation of
that layout (`evaluate.py`). The cached values are exact functions of their arguments (the
step-time model's grids and memo tables only remember what it computed), so sharing changes
no result, only the time: a warm layout simulates ~3-5x faster than a cold one.

Simulations use them by passing `step_time_model=step_time_model` to `simulate()`. The key is
what `_build_pool` passes in — the model spec, the layout, the
precision, the cost model's GPU / kernel tables / `settings` (GEMM framework, all-reduce kind, fused quantisation) and the CPU overhead — so two
pools share a model only if they would compute identical step times.
"""

from __future__ import annotations

import threading

from ..cost.model import CostModel
from ..estimate import resolve_kernels
from ..hardware.spec import GPUSpec
from ..layout import Parallel, Precision
from ..models.spec import ModelSpec
from ..serving.backends import Backend
from ..serving.steptime import StepTimeModel

_MODELS: dict[tuple, StepTimeModel] = {}
_GPU_KEYS: dict[int, tuple[GPUSpec, str]] = {}
_LOCK = threading.RLock()
_MAX_MODELS = 512


def _gpu_key(gpu: GPUSpec) -> str:
    hit = _GPU_KEYS.get(id(gpu))
    if hit is not None and hit[0] is gpu:
        return hit[1]
    k = gpu.model_dump_json()
    if len(_GPU_KEYS) > 4096:
        _GPU_KEYS.clear()
    _GPU_KEYS[id(gpu)] = (gpu, k)
    return k


def _key(spec: ModelSpec, par: Parallel, prec: Precision, cost: CostModel, cpu_overhead_s: float,
         cpu_per_seq_s: float = 0.0, prefill_layer_s: float = 0.0, prefill_moe_layer_s: float = 0.0,
         prefill_table_moe_layer_s: float = 0.0, prefill_mla_layer_s: float = 0.0, fused_norm_tokens: int = 0,
         ep_imbalance: float = 1.0, spec_draft_tokens: int = 0, spec_tokens_per_step: float = 1.0,
         prefill_a2a_bw_bytes_s: float = 0.0) -> tuple:
    return (spec, par, prec, _gpu_key(cost.gpu), id(cost.kernels) if cost.kernels is not None else None, cost.settings,
            float(cpu_overhead_s), float(cpu_per_seq_s), float(prefill_layer_s), float(prefill_moe_layer_s),
            float(prefill_table_moe_layer_s), float(prefill_mla_layer_s), int(fused_norm_tokens), float(ep_imbalance),
            int(spec_draft_tokens), float(spec_tokens_per_step), float(prefill_a2a_bw_bytes_s))


def step_time_model(spec: ModelSpec, par: Parallel, prec: Precision, cost: CostModel, cpu_overhead_s: float = 0.0,
                    cpu_per_seq_s: float = 0.0, prefill_layer_s: float = 0.0, prefill_moe_layer_s: float = 0.0,
                    prefill_table_moe_layer_s: float = 0.0, prefill_mla_layer_s: float = 0.0, fused_norm_tokens: int = 0,
                    ep_imbalance: float = 1.0, spec_draft_tokens: int = 0, spec_tokens_per_step: float = 1.0,
                    prefill_a2a_bw_bytes_s: float = 0.0) -> StepTimeModel:
    """The shared StepTimeModel for this (model, layout, precision, cost model, overheads);
    same signature as the `StepTimeModel` constructor so it can stand in for it."""
    key = _key(spec, par, prec, cost, cpu_overhead_s, cpu_per_seq_s, prefill_layer_s, prefill_moe_layer_s,
               prefill_table_moe_layer_s, prefill_mla_layer_s, fused_norm_tokens, ep_imbalance, spec_draft_tokens,
               spec_tokens_per_step, prefill_a2a_bw_bytes_s)
    st = _MODELS.get(key)
    if st is None:
        with _LOCK:
            st = _MODELS.get(key)
            if st is None:
                if len(_MODELS) >= _MAX_MODELS:
                    _MODELS.clear()
                st = _MODELS[key] = StepTimeModel(spec, par, prec, cost, cpu_overhead_s, cpu_per_seq_s,
                                                         prefill_layer_s, prefill_moe_layer_s, prefill_table_moe_layer_s,
                                                         prefill_mla_layer_s, fused_norm_tokens, ep_imbalance,
                                                         spec_draft_tokens, spec_tokens_per_step, prefill_a2a_bw_bytes_s)
    return st


def get_step_time(spec: ModelSpec, gpu: GPUSpec, par: Parallel, prec: Precision, backend: Backend, kernels="auto") -> StepTimeModel:
    """The StepTimeModel a simulation of this pool on `backend` would use (`Backend.step_time`, as `_build_pool`), shared."""
    return backend.step_time(spec, gpu, par, prec, resolve_kernels(kernels, gpu), step_time_model)


def cache_size() -> int:
    return len(_MODELS)


def clear() -> None:
    _MODELS.clear()
    _GPU_KEYS.clear()
