"""Analytic pruning: memory fit and latency floors, each rejection with its numbers.

Every candidate passes these checks before anything is simulated; a check that fails removes
the candidate (or its whole family) with a reason a user can act on.

1. Precision: the GPU must have tensor cores for the GEMM format (fp8 W8A8 needs Hopper or
   newer; fp4 needs Blackwell).
2. Memory (the same arithmetic `simulate` uses, `llmsim.memory.model`): weights + activations of
   the largest iteration (max batched tokens) + runtime overhead must fit in the engine's memory
   fraction — else "does not fit by X GiB" — and the KV cache left over must hold the longest
   request (else the KV capacity in tokens against the request's length).
3. Latency floors — a request is never faster than alone on an idle engine, because adding work
   to an iteration never makes it shorter:
   - TTFT floor: its prompt prefilled alone (after a prefix-cache hit on the shared prefix), in
     chunks of max_num_batched_tokens when chunked prefill is on;
   - TPOT floor: its osl - 1 decode steps at batch 1, context growing from isl + 1.
   The floors of every request in the workload pool give a floor for each percentile (the p-th
   percentile of a pointwise-larger set is larger), so "p90 TTFT floor > TTFT SLO" proves that no
   concurrency of that candidate can meet the SLO. Candidates within 1% of the target are kept
   and left to the simulation.
4. Pipeline parallelism (a dominance rule, applied by `plan.py` after the pp = 1 sweeps): a pp-stage
   replica runs pp micro-batches whose iterations each take the whole pipeline's latency (at least
   the pp = 1 iteration time at the same batch), so at equal batch per micro-batch it never has more
   tokens/s per GPU or lower latency than pp = 1. It can only win by holding more KV cache, so pp > 1
   is simulated only when the pp = 1 layout of that GPU / tp / precision / engine does not fit or its
   best concurrency is limited by KV-cache capacity.

`bounds()` also returns two numbers that steer the concurrency search (not pruning): the
concurrency the KV cache can hold (more clients only queue) and the largest decode batch whose
step time alone meets the TPOT target (where the search starts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..hardware.spec import GIB
from ..memory.model import budget_text, kv_pool, memory_breakdown
from ..models.spec import ModelSpec
from ..serving.backends import get_backend
from .cache import get_step_time
from .space import Candidate, Family, precision_supported
from .workload import PlanWorkload

SLACK = 1.01  # candidates whose floor is within 1% of the target are simulated rather than rejected


@dataclass
class Bounds:
    ok: bool
    reason: str
    stage: str  # 'memory' | 'latency' | 'precision' | '' when ok
    kv_tokens_per_replica: int = 0  # all engines of one replica / worker
    kv_concurrency: int = 0  # mean-length requests whose KV fits at once
    ttft_floor_ms: float | None = None  # at the percentile
    tpot_floor_ms: float | None = None
    decode_batch_hint: int = 1  # largest batch whose decode step alone meets the TPOT target
    weights_gib: float = 0.0
    detail: dict | None = None


def _gib(b: float) -> str:
    return f"{b / GIB:.1f} GiB"


def memory_fit(model: ModelSpec, fam: Family, mbt: int, chunked: bool, wl: PlanWorkload) -> tuple[bool, str, int, dict]:
    """(fits, reason, KV tokens per replica, breakdown) with `simulate`'s own memory arithmetic."""
    gpu, par, prec = fam.gpu.spec, fam.par, fam.prec.precision()
    be = get_backend(fam.engine)
    mbt = be.iteration_budget(mbt, chunked, model.max_position_embeddings)  # as simulate
    mem = memory_breakdown(model, gpu, par, prec, batch=1, seq_len=1, max_batched_tokens=mbt // max(par.dp, 1) * par.dp,
                           memory_fraction=be.memory_fraction, block_size=16, fraction_of=be.memory_fraction_of)
    fixed = mem.weights_bytes + mem.activation_bytes + mem.runtime_overhead_bytes
    detail = {"weights_gib": mem.weights_bytes / GIB, "activations_gib": mem.activation_bytes / GIB,
              "runtime_gib": mem.runtime_overhead_bytes / GIB, "usable_gib": mem.usable_bytes / GIB}
    if fixed >= mem.usable_bytes or mem.max_kv_tokens <= 0:
        short = fixed - mem.usable_bytes
        reason = (f"does not fit by {max(short, 0) / GIB:.1f} GiB: weights {_gib(mem.weights_bytes)} + activations "
                  f"{_gib(mem.activation_bytes)} + runtime {_gib(mem.runtime_overhead_bytes)} per GPU vs {_gib(mem.usable_bytes)} usable "
                  f"({budget_text(be.memory_fraction, be.memory_fraction_of, gpu.memory_bytes)})")
        detail["short_gib"] = short / GIB
        return False, reason, 0, detail
    pool = kv_pool(model, par, prec, mem, wl.max_len)  # as simulate's engines count it
    per_engine = pool.capacity_tokens
    need = wl.max_len + 1 + math.ceil(pool.state_tokens)
    if per_engine < need:
        reason = (f"KV cache too small: {per_engine:,} tokens per engine left after {_gib(mem.weights_bytes)} of weights, "
                  f"the longest request needs {need:,}")
        return False, reason, 0, detail
    return True, "fits", pool.replica_tokens, detail


def _prefill_alone_s(st, q: int, p: int, mbt: int, chunked: bool) -> float:
    if not chunked or q <= mbt:
        return st.iteration([(q, p)], 0, 0, 1)
    t, done = 0.0, 0
    while done < q:
        c = min(mbt, q - done)
        t += st.iteration([(c, p + done)], 0, 0, 1 if done + c >= q else 0)
        done += c
    return t


def latency_floors(model: ModelSpec, fam: Family, wl: PlanWorkload, percentile: float, mbt: int, chunked: bool,
                   want_ttft: bool = True, want_tpot: bool = True) -> tuple[float | None, float | None]:
    """(TTFT floor ms, TPOT floor ms) at `percentile` over the workload pool (module docstring)."""
    be = get_backend(fam.engine)
    st = get_step_time(model, fam.gpu.spec, fam.par, fam.prec.precision(), be)
    inp, out = wl.input_len, wl.output_len
    ttft = tpot = None
    if want_ttft:
        vals = {}
        for isl in np.unique(inp):
            isl = int(isl)
            cached = min(wl.prefix_tokens, isl - 1) if wl.prefix_tokens else 0
            vals[isl] = _prefill_alone_s(st, isl - cached, cached, mbt, chunked)
        per_req = np.array([vals[int(i)] for i in inp]) if len(vals) > 1 else np.full(1, next(iter(vals.values())))
        ttft = float(np.percentile(per_req, percentile)) * 1e3
    if want_tpot:
        pairs = {}
        multi = out > 1
        if multi.any():
            ii, oo = inp[multi], out[multi]
            for a, b in set(zip(ii.tolist(), oo.tolist())):
                pairs[(a, b)] = st.decode_run(1, a + 1, b - 1) / (b - 1)
            per_req = np.array([pairs[(a, b)] for a, b in zip(ii.tolist(), oo.tolist())]) if len(pairs) > 1 else np.full(1, next(iter(pairs.values())))
            tpot = float(np.percentile(per_req, percentile)) * 1e3
    return ttft, tpot


def decode_batch_hint(model: ModelSpec, fam: Family, wl: PlanWorkload, tpot_ms: float | None, limit: int) -> int:
    """Largest decode batch whose step alone (mean context) meets the TPOT target: where the
    concurrency search starts."""
    if tpot_ms is None:
        return max(1, limit)
    be = get_backend(fam.engine)
    st = get_step_time(model, fam.gpu.spec, fam.par, fam.prec.precision(), be)
    ctx = wl.mean_isl + wl.mean_osl / 2
    lo, hi = 1, max(1, limit)
    if st.decode_step(1, ctx) * 1e3 > tpot_ms:
        return 1
    while lo < hi:  # decode step time grows with the batch
        mid = (lo + hi + 1) // 2
        if st.decode_step(mid, ctx * mid) * 1e3 <= tpot_ms:
            lo = mid
        else:
            hi = mid - 1
    return lo


def bounds(model: ModelSpec, cand: Candidate, wl: PlanWorkload, *, ttft_ms: float | None, tpot_ms: float | None,
           percentile: float) -> Bounds:
    """Every analytic check for one candidate (module docstring); `ok` False carries the reason."""
    fam = cand.family
    why = precision_supported(fam.gpu.spec, fam.prec)
    if why:
        return Bounds(False, why, "precision")
    fits, reason, kv_tokens, detail = memory_fit(model, fam, cand.max_num_batched_tokens, cand.chunked_prefill, wl)
    if not fits:
        return Bounds(False, reason, "memory", detail=detail, weights_gib=detail["weights_gib"])
    mean_len = wl.mean_isl + wl.mean_osl
    kv_conc = max(1, int(kv_tokens // ((math.ceil(mean_len / 16) + 1) * 16))) if kv_tokens else 0
    want_ttft = cand.role in ("agg", "prefill") and ttft_ms is not None
    want_tpot = cand.role in ("agg", "decode") and tpot_ms is not None
    tt, tp = latency_floors(model, fam, wl, percentile, cand.max_num_batched_tokens, cand.chunked_prefill, want_ttft, want_tpot)
    p = _pct_label(percentile)
    b = Bounds(True, "", "", kv_tokens, kv_conc, tt, tp, 1, detail["weights_gib"], detail)
    if want_ttft and ttft_ms is not None and tt is not None and tt > ttft_ms * SLACK:
        knob = f", chunks of {cand.max_num_batched_tokens} tokens" if cand.chunked_prefill and wl.max_len > cand.max_num_batched_tokens else ""
        b.ok, b.stage = False, "latency"
        b.reason = f"{p} TTFT is at least {tt:.1f} ms > {ttft_ms:g} ms even at batch 1 (prompt prefilled alone{knob})"
        return b
    if want_tpot and tpot_ms is not None and tp is not None and tp > tpot_ms * SLACK:
        b.ok, b.stage = False, "latency"
        b.reason = f"{p} TPOT is at least {tp:.2f} ms > {tpot_ms:g} ms even at batch 1 (decode alone)"
        return b
    if cand.role == "decode":
        b.decode_batch_hint = decode_batch_hint(model, fam, wl, tpot_ms, max(1, kv_conc))
    elif cand.role == "agg":
        b.decode_batch_hint = agg_concurrency_hint(model, fam, wl, tpot_ms, max(1, kv_conc), cand.max_num_batched_tokens, cand.chunked_prefill)
    else:
        b.decode_batch_hint = max(1, kv_conc)
    return b


def agg_concurrency_hint(model: ModelSpec, fam: Family, wl: PlanWorkload, tpot_ms: float | None, limit: int, mbt: int, chunked: bool) -> int:
    """Where an aggregated replica's concurrency search starts: the largest c whose decode step at
    batch c plus the other c - 1 prompts' prefill time spread over a request's osl - 1 tokens meets
    the TPOT target (each client's prompt passes through once per request lifetime)."""
    if tpot_ms is None:
        return max(1, limit)
    be = get_backend(fam.engine)
    st = get_step_time(model, fam.gpu.spec, fam.par, fam.prec.precision(), be)
    isl, osl = wl.mean_isl, max(2.0, wl.mean_osl)
    cached = min(wl.prefix_tokens, int(isl) - 1) if wl.prefix_tokens else 0
    t_pf = _prefill_alone_s(st, int(isl) - cached, cached, mbt, chunked)
    ctx = isl + osl / 2

    def tpot(c: int) -> float:
        return (st.decode_step(c, ctx * c) + (c - 1) * t_pf / (osl - 1)) * 1e3

    lo, hi = 1, max(1, limit)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if tpot(mid) <= tpot_ms:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _pct_label(p: float) -> str:
    return f"p{p:g}"
