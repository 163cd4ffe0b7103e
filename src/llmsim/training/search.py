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

from ..checks import check_bool, is_int
from ..errors import LlmsimError
from ..hardware.spec import GIB
from .estimate import TRAIN_OPTIONS, build_result, make_context, parse_tokens
from .layout import RECOMPUTE, RULES, LayoutArrays, recompute_code, rule_violations
from .result import SearchResults
from .step import evaluate


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _gpus(n: int) -> str:
    return f"{n} GPU" + ("" if n == 1 else "s")


def _choices(name: str, v, hint: str) -> list:
    """A search-space option as a non-empty list: one value, or a list / tuple / set / range / array of them."""
    if isinstance(v, (list, tuple, set, frozenset, range, np.ndarray)):
        items = list(np.asarray(v).ravel()) if isinstance(v, np.ndarray) else list(v)
    else:
        items = [v]
    if not items:
        raise LlmsimError(f"{name} must list at least one value, got {v!r}", hint=hint)
    return items


def _int_choices(name: str, v, *, lo: int, hi: int | None = None, hint: str) -> list[int]:
    out = []
    for x in _choices(name, v, hint):
        if not (is_int(x) and x >= lo and (hi is None or x <= hi)):
            one = x is v
            rng = (f"{'an integer' if one else 'integers'} {lo}-{hi}" if hi is not None
                   else (f"{'a positive integer' if one else 'positive integers'}" if lo == 1 else f"integers >= {lo}"))
            where = "" if x is v else f" (in {v!r})"
            raise LlmsimError(f"{name} must {'be' if x is v else 'list'} {rng}, got {x!r}{where}", hint=hint)
        out.append(int(x))
    return out


def _opt_int(name: str, v, *, lo: int = 1, hint: str, allow_none: bool = True) -> int | None:
    if v is None and allow_none:
        return None
    if not (is_int(v) and v >= lo):
        raise LlmsimError(f"{name} must be an integer >= {lo}, got {v!r}", hint=hint)
    return int(v)


def check_space(*, zero, recompute, micro_batches, max_micro_batch, max_tp, max_cp, max_vpp, ep) -> dict:
    """The search-space options, checked: values that can never be valid are LlmsimErrors naming them."""
    rc = [recompute_code(r) for r in _choices("recompute", recompute, "e.g. recompute=('none', 'full') or recompute='full'")]
    return {
        "zero": _int_choices("zero", zero, lo=0, hi=3, hint="ZeRO stages to search, e.g. zero=(0, 1, 2, 3) or zero=1"),
        "recompute": [RECOMPUTE[c] for c in rc],
        "micro_batches": None if micro_batches is None else _int_choices(
            "micro_batches", micro_batches, lo=1, hint="micro-batch sizes to search, e.g. micro_batches=[1, 2, 4]"),
        "max_micro_batch": _opt_int("max_micro_batch", max_micro_batch, hint="e.g. max_micro_batch=16", allow_none=False),
        "max_tp": _opt_int("max_tp", max_tp, hint="the largest tensor-parallel degree to try, e.g. max_tp=8; None: the NVLink domain"),
        "max_cp": _opt_int("max_cp", max_cp, hint="the largest context-parallel degree to try, e.g. max_cp=4; None: 32 with FlashAttention"),
        "max_vpp": _opt_int("max_vpp", max_vpp, hint="the most virtual pipeline stages to try, e.g. max_vpp=4 (1: no interleaving)",
                            allow_none=False),
        "ep": None if ep is None else _int_choices(
            "ep", ep, lo=1, hint="expert-parallel degrees to search, e.g. ep=[1, 2, 4, 8]; None: every divisor of the expert count"),
    }


def enumerate_layouts(ctx, *, zero=(0, 1, 2, 3), recompute=RECOMPUTE, micro_batches=None, max_micro_batch: int = 16,
                      max_tp: int | None = None, max_cp: int | None = None, max_vpp: int = 8, ep=None) -> tuple[LayoutArrays, int]:
    """(valid layouts, number of candidates looked at)."""
    L, n, _ = _enumerate(ctx, **check_space(zero=zero, recompute=recompute, micro_batches=micro_batches,
                                             max_micro_batch=max_micro_batch, max_tp=max_tp, max_cp=max_cp, max_vpp=max_vpp, ep=ep))
    return L, n


def _why_none(ctx, L: LayoutArrays, viol: np.ndarray) -> str:
    """Why no candidate passes the divisibility rules: the rule most candidates break, with the
    message `train_estimate` would give for one of them."""
    N = ctx.num_gpus
    if len(L) == 0:
        return f"no candidate layouts of {_gpus(N)} with the options given"
    counts = viol.sum(axis=1)
    j = int(np.argmax(counts))
    i = int(np.nonzero(viol[j])[0][0])
    msg, hint = RULES[j].message(ctx.model, L.layout(i).to_dict(), ctx.rules_ctx())
    return (f"no valid layout of {_gpus(N)}: all {len(L):,} candidates break a layout rule, "
            f"{int(counts[j]):,} of them this one: {msg} ({hint})")


def _enumerate(ctx, *, zero, recompute, micro_batches, max_micro_batch, max_tp, max_cp, max_vpp, ep) -> tuple[LayoutArrays, int, str]:
    """(valid layouts, number of candidates looked at, why none is valid or '')."""
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
    viol = rule_violations(model, L, ctx.rules_ctx())
    ok = ~viol.any(axis=0)
    # ZeRO only changes something when a data-parallel (or expert-DP) group exists
    sharded = (L.dp * L.cp > 1) | (model.is_moe & ((L.tp * L.cp * L.dp) // np.maximum(L.ep, 1) > 1))
    masks = [((L.zero == 0) | sharded, f"zero stages {sorted(set(zs.tolist()))} need a data-parallel group (dp*cp > 1) that none of "
                                        "the valid layouts has; include zero=0")]
    if ctx.finetune == "lora":
        masks.append((L.zero <= 2, "zero=3 with LoRA is not modelled; include a zero stage <= 2"))
    if ctx.flash_attention and len(rcs) > 1:
        # FlashAttention never stores the scores and already recomputes them: 'selective' == 'none'
        masks.append((L.rc != 1, "with FlashAttention 'selective' recompute equals 'none'"))
    valid = ok.copy()
    why = ""
    for m, reason in masks:
        nxt = ok & m
        if ok.any() and not nxt.any():
            why = f"no valid layout of {_gpus(N)}: {reason}"
        ok = nxt
    if not valid.any():
        why = _why_none(ctx, L, viol)
    return L.take(np.nonzero(ok)[0]), n_candidates, why


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

    ``zero``, ``recompute``, ``micro_batches`` and ``ep`` take one value or a list of them.
    Values that can never be valid (a ZeRO stage outside 0-3, a non-positive or non-integer
    degree or micro-batch size, a non-bool switch, an unknown option) raise LlmsimError; valid
    values that leave no layout (e.g. an ep that divides no expert count) give an empty result
    whose ``message`` says why (as it does when no layout fits in memory).
    """
    t0 = time.perf_counter()
    unknown = sorted(k for k in options if k not in TRAIN_OPTIONS)
    if unknown:
        own = ("seq_len", "dtype", "top", "zero", "recompute", "micro_batches", "max_micro_batch", "max_tp", "max_cp", "max_vpp",
               "ep", "include_unfit", "tokens", "price_per_hour_usd")
        raise LlmsimError(f"search_layouts got unknown option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}",
                          hint=f"accepted: {', '.join(own + TRAIN_OPTIONS)} (the search chooses tp, pp, vpp, cp, ep, dp, "
                               "zero, micro_batch and recompute itself)")
    include_unfit = check_bool("include_unfit", include_unfit)
    space = check_space(zero=zero, recompute=recompute, micro_batches=micro_batches, max_micro_batch=max_micro_batch,
                        max_tp=max_tp, max_cp=max_cp, max_vpp=max_vpp, ep=ep)
    if not is_int(top) or top < 1:
        raise LlmsimError(f"top must be an integer >= 1, got {top!r}", hint="how many of the fastest fitting layouts to list, e.g. 10")
    ctx = make_context(model, gpu, num_gpus=num_gpus, global_batch=global_batch, seq_len=seq_len, dtype=dtype,
                       price_per_hour_usd=price_per_hour_usd, **options)
    L, n_cand, why = _enumerate(ctx, **space)
    tok = parse_tokens(tokens)
    query = {"model": ctx.model.name, "gpu": ctx.gpu.name, "num_gpus": ctx.num_gpus, "global_batch": ctx.global_batch,
             "seq_len": ctx.seq_len, "dtype": ctx.dtype, "candidates": n_cand}
    if len(L) == 0:
        return SearchResults([], evaluated=0, valid=0, fitting=0, elapsed_s=time.perf_counter() - t0, query=query, message=why)
    a = evaluate(ctx, L)
    fits = a["fits"]
    thr = a["tokens_per_s"]
    keep = np.ones(len(L), bool) if include_unfit else fits
    cand = np.nonzero(keep)[0]
    order = cand[np.lexsort((a["mem_total"][cand], -thr[cand]))]
    elapsed = time.perf_counter() - t0
    results = [build_result(ctx, L, a, int(i), tok) for i in order[: int(top)]]
    message = ""
    if not fits.any():
        i = int(np.argmin(a["mem_total"]))
        lay = L.layout(i)
        message = (f"none of the {len(L):,} valid layouts fits in the {ctx.gpu.memory_bytes / GIB:.1f} GiB of a {ctx.gpu.name}; "
                   f"the smallest (tp={lay.tp} pp={lay.pp} vpp={lay.vpp} cp={lay.cp} ep={lay.ep} dp={lay.dp} zero={lay.zero} "
                   f"micro_batch={lay.micro_batch} recompute={lay.recompute}) needs {float(a['mem_total'][i]) / GIB:.1f} GiB"
                   + ("" if include_unfit else "; pass include_unfit=True to list them anyway")
                   + ", or use more GPUs, a shorter seq_len or GPUs with more memory")
    return SearchResults(results, evaluated=len(L), valid=len(L), fitting=int(fits.sum()), elapsed_s=elapsed, query=query,
                         message=message)
