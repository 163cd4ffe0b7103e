"""Vectorised layout search: every valid (tp, pp, vpp, cp, ep, dp, zero, micro_batch, recompute)
for a GPU count, evaluated at once with numpy and ranked by throughput with memory fit checked.

Candidates: tp among the divisors of num_gpus up to the NVLink domain (``max_tp``; TP across
nodes is never competitive), cp among the divisors up to ``max_cp`` (only with FlashAttention),
pp among the divisors up to the layer count, vpp 1..``max_vpp``, micro_batch among the divisors
of the global batch up to ``max_micro_batch``, ep among the divisors of the expert count (MoE),
every ZeRO stage and recompute mode asked for. The divisibility rules of `layout` (the same
code `train_estimate` raises from) mask the invalid ones; ZeRO stages are only distinct when
something is sharded, so zero>0 is dropped where dp*cp = 1 (and no expert-DP group exists), and
with FlashAttention 'selective' (identical to 'none' there) is dropped.
The survivors go through `step.evaluate` in one call; the ranking is by tokens/s, then by
lower memory. `SearchResults.evaluated` / `.elapsed_s` give the evaluation rate.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import LlmsimError
from .estimate import build_result, make_context, parse_tokens
from .layout import RECOMPUTE, LayoutArrays, recompute_code, valid_mask
from .result import SearchResults
from .step import evaluate


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def enumerate_layouts(ctx, *, zero=(0, 1, 2, 3), recompute=RECOMPUTE, micro_batches=None, max_micro_batch: int = 16,
                      max_tp: int | None = None, max_cp: int | None = None, max_vpp: int = 8, ep=None) -> tuple[LayoutArrays, int]:
    """(valid layouts, number of candidates looked at)."""
    model, gpu, N = ctx.model, ctx.gpu, ctx.num_gpus
    divs = _divisors(N)
    if max_tp is None:
        max_tp = max(gpu.nvlink_domain_size, gpu.gpus_per_node)
    if max_cp is None:
        max_cp = 32 if ctx.flash_attention else 1
    tps = [d for d in divs if d <= max_tp and model.num_heads % d == 0]
    cps = [d for d in divs if d <= max_cp]
    pps = [d for d in divs if d <= model.num_layers]
    grid = [(t, c, p) for t in tps for c in cps for p in pps if N % (t * c * p) == 0]
    tcp = np.array(grid, dtype=np.int64).reshape(-1, 3)
    vpps = np.arange(1, max_vpp + 1, dtype=np.int64)
    if micro_batches is None:
        micro_batches = [d for d in _divisors(ctx.global_batch) if d <= max_micro_batch]
    mbs = np.array(sorted({int(x) for x in micro_batches}), dtype=np.int64)
    if ep is None:
        ep = _divisors(model.num_experts) if model.is_moe else [1]
    eps = np.array(sorted({int(x) for x in ep}), dtype=np.int64)
    zs = np.array(sorted({int(z) for z in zero}), dtype=np.int64)
    rcs = np.array(sorted({recompute_code(r) for r in recompute}), dtype=np.int64)
    idx = np.meshgrid(np.arange(len(tcp)), np.arange(len(vpps)), np.arange(len(mbs)), np.arange(len(eps)),
                      np.arange(len(zs)), np.arange(len(rcs)), indexing="ij")
    i_tcp, i_v, i_m, i_e, i_z, i_r = (a.ravel() for a in idx)
    t, c, p = tcp[i_tcp, 0], tcp[i_tcp, 1], tcp[i_tcp, 2]
    L = LayoutArrays(tp=t, cp=c, pp=p, dp=N // (t * c * p), vpp=vpps[i_v], mb=mbs[i_m], ep=eps[i_e], zero=zs[i_z], rc=rcs[i_r])
    n_candidates = len(L)
    ok = valid_mask(model, L, ctx.rules_ctx())
    # ZeRO only changes something when a data-parallel (or expert-DP) group exists
    sharded = (L.dp * L.cp > 1) | (model.is_moe & ((L.tp * L.cp * L.dp) // np.maximum(L.ep, 1) > 1))
    ok &= (L.zero == 0) | sharded
    if ctx.finetune == "lora":
        ok &= L.zero <= 2
    if ctx.flash_attention and len(rcs) > 1:
        # FlashAttention never stores the scores and already recomputes them: 'selective' == 'none'
        ok &= L.rc != 1
    return L.take(np.nonzero(ok)[0]), n_candidates


def search_layouts(
    model,
    gpu="h100-sxm",
    num_gpus: int = 8,
    *,
    global_batch: int,
    seq_len: int | None = None,
    dtype: str = "bf16",
    top: int = 20,
    zero=(0, 1, 2, 3),
    recompute=RECOMPUTE,
    micro_batches=None,
    max_micro_batch: int = 16,
    max_tp: int | None = None,
    max_cp: int | None = None,
    max_vpp: int = 8,
    ep=None,
    include_unfit: bool = False,
    tokens=None,
    price_per_hour_usd: float | None = None,
    **options,
) -> SearchResults:
    """Rank every valid layout of `num_gpus` GPUs by training throughput (tokens/s).

    Layouts that do not fit in memory are dropped unless ``include_unfit``. ``options`` are the
    switches of `train_estimate` (sequence_parallel, overlap_grad_reduce, flash_attention,
    fp32_grads, uneven_layers, finetune, lora_rank, dropout, fragmentation, runtime_overhead_gib).
    """
    t0 = time.perf_counter()
    ctx = make_context(model, gpu, num_gpus=num_gpus, global_batch=global_batch, seq_len=seq_len, dtype=dtype,
                       price_per_hour_usd=price_per_hour_usd, **options)
    L, n_cand = enumerate_layouts(ctx, zero=zero, recompute=recompute, micro_batches=micro_batches,
                                  max_micro_batch=max_micro_batch, max_tp=max_tp, max_cp=max_cp, max_vpp=max_vpp, ep=ep)
    tok = parse_tokens(tokens)
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise LlmsimError(f"top must be an integer >= 1, got {top!r}", hint="how many of the fastest fitting layouts to list, e.g. 10")
    query = {"model": ctx.model.name, "gpu": ctx.gpu.name, "num_gpus": ctx.num_gpus, "global_batch": ctx.global_batch,
             "seq_len": ctx.seq_len, "dtype": ctx.dtype, "candidates": n_cand}
    if len(L) == 0:
        return SearchResults([], evaluated=0, valid=0, fitting=0, elapsed_s=time.perf_counter() - t0, query=query)
    a = evaluate(ctx, L)
    fits = a["fits"]
    thr = a["tokens_per_s"]
    keep = np.ones(len(L), bool) if include_unfit else fits
    cand = np.nonzero(keep)[0]
    order = cand[np.lexsort((a["mem_total"][cand], -thr[cand]))]
    elapsed = time.perf_counter() - t0
    results = [build_result(ctx, L, a, int(i), tok) for i in order[: int(top)]]
    return SearchResults(results, evaluated=len(L), valid=len(L), fitting=int(fits.sum()), elapsed_s=elapsed, query=query)
