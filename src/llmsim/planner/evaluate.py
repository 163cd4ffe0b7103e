"""Simulate the survivors: the largest concurrency each candidate sustains within the SLOs.

For one candidate the question is a closed-loop benchmark (`vllm bench serve --max-concurrency
C`, genai-perf / aiperf `--concurrency C`): C clients, each sending its next request when the
previous one completes, against one replica (aggregated) or one worker (disaggregated). The SLO
holds at C when the chosen percentile of TTFT and of TPOT (each over the measured requests,
after C warm-up completions) is within its target and every request completed; the engine's
max_num_seqs is set to C, as the launch command will. Latency grows and throughput saturates
with C, so the largest feasible C is found by a galloping + binary search over a grid of
concurrencies (1..8, then steps of ~1/4 octave: 10, 12, 14, 16, 20, 24, 28, 32, 40, ...; the values
one would pass as --max-num-seqs), starting at an analytic hint and bounded above by the KV
cache (clients beyond what it holds only queue). Throughput per GPU at that C is the
candidate's goodput per GPU; replicas for a rate R are ceil(R / its request rate).

Roles:
- ``agg``: one replica, prefill and decode together; both SLOs apply.
- ``prefill``: one prefill worker, every request generating a single token (the prefill engine's
  view: TTFT is first token - arrival, queueing included); the TTFT SLO applies. A prefill pool
  is fed by the completions of many decode slots, close to a Poisson stream, so its capacity is
  the largest Poisson arrival rate meeting the TTFT SLO (a conservative choice: real arrivals
  are smoother), searched over fractions of the worker's saturated throughput (5%..95%). Its
  TTFT includes the front end's fixed hand-off (`Point.ttft_handoff_ms`) where the client's first
  token comes from the decode worker; the KV transfer and the decode worker's first step depend
  on the decode worker it is paired with, so `plan.py` adds them per pairing (`compose.py`) and
  re-picks the rate on the same grid (`prefill_point_for_ttft`).
- ``decode``: one decode worker behind a prefill pool sized never to be the bottleneck (1.5x the
  decode worker's best-case request rate, same GPU and layout); the TPOT SLO applies, TPOT
  including the KV hand-off and waiting for decode slots as `simulate` reports it.

Measurement: a closed-loop run has c warm-up completions, then the measured requests, then c
completions while the loop drains; percentiles come from the middle and throughput from the
response-time law X = c / mean E2E (see `_steady_state`). Open-loop (prefill) runs drop their first
10% as warm-up.

Caching: every simulation of a layout reuses one step-time model (`cache.py`); results are
memoised per (candidate, concurrency). Parallel backends: candidates are grouped by family
(same step-time model) and the groups run on a process pool (`jobs` > 1; forked workers
inherit the warm caches) or on Ray (`backend='ray'`); results are assembled in enumeration
order, so the plan is identical for any `jobs` or backend.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import LlmsimError
from ..models.spec import ModelSpec
from ..serving.backends import get_backend
from ..serving.metrics import SLO
from ..serving.simulate import Deployment, Pool, busy_fraction, simulate
from .cache import step_time_model
from .space import Candidate
from .workload import PlanWorkload

GRID: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224,
                         256, 320, 384, 448, 512, 640, 768, 896, 1024, 1280, 1536, 1792, 2048)
_STD_PCTS = {50.0: "p50", 90.0: "p90", 95.0: "p95", 99.0: "p99"}


@dataclass
class EvalContext:
    """Everything a worker needs to simulate a candidate (picklable)."""

    model: ModelSpec
    workload: PlanWorkload
    ttft_ms: float | None
    tpot_ms: float | None
    percentile: float = 90.0
    kernels: str = "auto"
    min_measured: int = 40  # measured (steady-state) requests per closed-loop simulation at least ...
    per_client: float = 1.0  # ... and this many per client
    max_concurrency: int = GRID[-1]
    seed: int = 0
    open_loop_requests: int = 240  # Poisson simulations of prefill workers
    router: str = "least_outstanding"  # 'prefix' when requests share prefixes (cache-aware routing)

    def slo(self, role: str) -> SLO | None:
        t = self.ttft_ms if role in ("agg", "prefill", "system") else None
        p = self.tpot_ms if role in ("agg", "decode", "system") else None
        return SLO(t, p) if (t or p) else None

    def num_requests(self, c: int) -> int:
        """c warm-up + the measured middle + c draining (see `_steady_state`)."""
        return 2 * c + max(self.min_measured, int(math.ceil(self.per_client * c)))


@dataclass
class Point:
    """One simulated concurrency of one candidate (or of a whole deployment)."""

    concurrency: int  # closed-loop clients (0 for an open-loop point)
    ttft_ms: float | None  # at the plan's percentile
    tpot_ms: float | None
    ttft_stats_ms: dict
    tpot_stats_ms: dict
    e2e_mean_ms: float | None
    output_tokens_per_s: float
    requests_per_s: float
    gpus: int  # GPUs of the role evaluated (a replica, a prefill worker, a decode worker)
    avg_power_w: float  # mean draw of ONE of those GPUs, W (total: `total_power_w`)
    prefix_cache_hit_rate: float
    preemptions: int
    incomplete: int
    meets: bool
    sim_wall_s: float = 0.0
    rate: float | None = None  # offered Poisson rate (open-loop points)
    # prefill workers whose client sees the first token from the decode worker: the front end's
    # fixed hand-off time (`Backend.disagg_handoff_s`) already added to ttft_ms / ttft_stats_ms
    ttft_handoff_ms: float = 0.0

    @property
    def avg_power_per_gpu_w(self) -> float:
        """Mean draw of one GPU of the role (`avg_power_w` is per GPU)."""
        return self.avg_power_w

    @property
    def total_power_w(self) -> float:
        """Mean draw of all `gpus` GPUs together."""
        return self.avg_power_w * self.gpus

    @property
    def output_tokens_per_s_per_gpu(self) -> float:
        return self.output_tokens_per_s / self.gpus

    @property
    def tokens_per_s_per_user(self) -> float | None:
        m = self.tpot_stats_ms.get("mean") if self.tpot_stats_ms else None
        return 1e3 / m if m else None

    def to_dict(self) -> dict:
        return {
            "concurrency": self.concurrency or None, "offered_rate_per_s": self.rate, "ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms,
            "ttft_stats_ms": self.ttft_stats_ms, "tpot_stats_ms": self.tpot_stats_ms, "e2e_mean_ms": self.e2e_mean_ms,
            "output_tokens_per_s": self.output_tokens_per_s, "output_tokens_per_s_per_gpu": self.output_tokens_per_s_per_gpu,
            "tokens_per_s_per_user": self.tokens_per_s_per_user, "requests_per_s": self.requests_per_s, "gpus": self.gpus,
            "avg_power_per_gpu_w": self.avg_power_per_gpu_w, "total_power_w": self.total_power_w,
            "avg_power_w": self.avg_power_w,  # legacy key: per GPU (= avg_power_per_gpu_w)
            "ttft_includes_handoff_ms": self.ttft_handoff_ms or None, "prefix_cache_hit_rate": self.prefix_cache_hit_rate,
            "preemptions": self.preemptions, "incomplete_requests": self.incomplete, "meets_slo": self.meets,
        }


@dataclass
class Sweep:
    """The concurrency search of one candidate."""

    candidate: Candidate
    points: list[Point] = field(default_factory=list)  # every simulated concurrency, ascending
    best: Point | None = None  # largest concurrency meeting the SLOs
    c_cap: int = 0  # concurrency ceiling (KV cache)
    kv_limited: bool = False  # best reached the ceiling
    sims: int = 0
    wall_s: float = 0.0
    error: str | None = None

    saturated_requests_per_s: float | None = None  # prefill workers: throughput with a full queue
    # prefill workers: the simulated Poisson rates by `U_GRID` index (rate U_GRID[i] x the saturated
    # throughput); `prefill_point_for_ttft` adds to it
    rate_grid: dict[int, Point] = field(default_factory=dict)


# ----------------------------------------------------------------------------- one simulation


def _pct(stats: dict, p: float, fallback: np.ndarray | None) -> float | None:
    key = _STD_PCTS.get(float(p))
    if key is not None:
        return stats.get(key)
    if fallback is None or not fallback.size:
        return None
    return float(np.percentile(fallback, p))


def _measured_arrays(res, warmup: int) -> tuple[np.ndarray, np.ndarray]:
    """(TTFT ms, TPOT ms) of the measured requests (completion order, warm-up dropped), as summarize does."""
    r = res.requests
    arr, first, fin = np.frombuffer(r.arrival), np.frombuffer(r.t_first), np.frombuffer(r.t_finish)
    out = np.frombuffer(r.out, dtype=np.int64)
    done = np.flatnonzero(np.isfinite(fin))
    order = done[np.argsort(fin[done], kind="stable")][min(warmup, max(len(done) - 1, 0)):]
    ttft = (first[order] - arr[order]) * 1e3
    multi = out[order] > 1
    tpot = (fin[order][multi] - first[order][multi]) / (out[order][multi] - 1) * 1e3
    return ttft, tpot


def _deployment(ctx: EvalContext, cand: Candidate, c: int) -> Deployment:
    fam = cand.family
    gpu, par = fam.gpu.spec, fam.par
    pool = Pool(gpu, par.tp, par.pp, par.dp, par.ep, 1)
    common: dict[str, Any]  # Deployment's fields, of several types
    # mixing as the candidate is launched (`Candidate.mixed_batches`)
    common = dict(model=ctx.model, backend=fam.engine, weight_dtype=fam.prec.weight, kv_dtype=fam.prec.kv, max_num_seqs=c,
                  max_num_batched_tokens=cand.max_num_batched_tokens, chunked_prefill=cand.chunked_prefill, mixed_batches=cand.mixed_batches, kernels=ctx.kernels,
                  router=ctx.router)
    if cand.role != "decode":
        return Deployment(pool=pool, **common)
    return Deployment(prefill=Pool(gpu, par.tp, par.pp, par.dp, par.ep, _reference_prefill_workers(ctx, cand, c)), decode=pool, **common)


def _reference_prefill_workers(ctx: EvalContext, cand: Candidate, c: int) -> int:
    """Prefill workers feeding a decode worker in its characterisation: 1.5x its best-case request
    rate (decode alone at batch 1) times a prompt's prefill time alone."""
    from .prune import latency_floors

    tt, tp = latency_floors(ctx.model, cand.family, ctx.workload, 50.0, 8192, True)
    t_req = (ctx.workload.mean_osl - 1) * (tp or 0.0) / 1e3 + (tt or 0.0) / 1e3
    rate = c / max(t_req, 1e-6)
    return int(min(64, max(1, math.ceil(1.5 * rate * (tt or 0.0) / 1e3))))


def run_simulation(dep: Deployment, make_workload, n: int, slo: SLO | None):
    """simulate() of n requests with the step-time models shared across candidates."""
    wl = make_workload(n)
    return simulate(dep, wl, slo=slo, keep_itl=False, step_time_model=step_time_model), wl


def simulate_point(ctx: EvalContext, cand: Candidate, c: int) -> Point:
    """Simulate candidate `cand` at concurrency `c` (closed loop) and read the SLO percentiles."""
    dep = _deployment(ctx, cand, c)
    res, wl = run_simulation(dep, lambda n: ctx.workload.closed_loop(c, n, output_one=cand.role == "prefill"), ctx.num_requests(c),
                             ctx.slo(cand.role))
    return point_from_result(ctx, res, c, wl.warmup, role=cand.role, gpus=cand.family.num_gpus)


def simulate_rate(ctx: EvalContext, cand: Candidate, rate: float, max_num_seqs: int) -> Point:
    """A prefill worker under Poisson arrivals at `rate` requests/s (one output token each)."""
    dep = _deployment(ctx, cand, max_num_seqs)

    def make(n: int):
        wl = ctx.workload.open_loop(rate, n, ctx.seed, warmup=n // 10)
        wl.output_len = np.ones_like(wl.output_len)
        return wl

    res, wl = run_simulation(dep, make, ctx.open_loop_requests, ctx.slo(cand.role))
    p = point_from_result(ctx, res, 0, wl.warmup, role=cand.role, gpus=cand.family.num_gpus)
    p.rate = rate
    return p


def _stats(x: np.ndarray) -> dict:
    if x.size == 0:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    q = np.percentile(x, (50, 90, 99))
    return {"mean": float(x.mean()), "p50": float(q[0]), "p90": float(q[1]), "p99": float(q[2])}


def _steady_state(res, c: int) -> dict:
    """Latency and throughput of a closed loop of `c` clients in steady state.

    Requests are ranked by completion; the first `c` completions are the warm-up and the last `c`
    ran while the loop was draining (no client had a next request, so the batch shrank). The
    requests in between saw `c` clients throughout: their latencies give the percentiles, and the
    throughput is the response-time law X = c / mean E2E (exact for a closed system at steady state;
    measuring tokens over a time window instead counts tokens generated before the window opens
    and is biased upward for short runs)."""
    r = res.requests
    arr, first, fin = np.frombuffer(r.arrival), np.frombuffer(r.t_first), np.frombuffer(r.t_finish)
    out = np.frombuffer(r.out, dtype=np.int64)
    done = np.flatnonzero(np.isfinite(fin))
    order = done[np.argsort(fin[done], kind="stable")]
    lo, hi = min(c, len(order)), max(min(c, len(order)), len(order) - c)
    if hi - lo < 8:  # too short a run for a clean middle: keep what there is after warm-up
        hi = len(order)
    sel = order[lo:hi]
    e2e = fin[sel] - arr[sel]
    ttft = (first[sel] - arr[sel]) * 1e3
    multi = out[sel] > 1
    tpot = (fin[sel][multi] - first[sel][multi]) / (out[sel][multi] - 1) * 1e3
    x = c / float(e2e.mean()) if e2e.size and e2e.mean() > 0 else 0.0
    return {"ttft": ttft, "tpot": tpot, "e2e_mean_ms": float(e2e.mean() * 1e3) if e2e.size else None, "requests_per_s": x,
            "output_tokens_per_s": x * float(out[sel].mean()) if sel.size else 0.0}


def point_from_result(ctx: EvalContext, res, c: int, warmup: int, *, role: str, gpus: int) -> Point:
    """Read a Point off a simulation: closed loop (c > 0) from the steady-state middle of the run
    (`_steady_state`), open loop (c == 0) from the summary after its warm-up."""
    s = res.summary
    p = float(ctx.percentile)
    handoff_ms = 0.0
    if c > 0:
        ss = _steady_state(res, c)
        ttft_a, tpot_a = ss["ttft"], ss["tpot"]
        ttft = float(np.percentile(ttft_a, p)) if ttft_a.size else None
        tpot = float(np.percentile(tpot_a, p)) if tpot_a.size else None
        ttft_stats, tpot_stats = _stats(ttft_a), _stats(tpot_a)
        e2e_mean, req_s, out_tps = ss["e2e_mean_ms"], ss["requests_per_s"], ss["output_tokens_per_s"]
    else:
        fallback = _measured_arrays(res, warmup) if p not in _STD_PCTS else (None, None)
        ttft = _pct(s["ttft_ms"], p, fallback[0])
        tpot = _pct(s["tpot_ms"], p, fallback[1])
        ttft_stats = {k: s["ttft_ms"].get(k) for k in ("mean", "p50", "p90", "p99")}
        tpot_stats = {k: s["tpot_ms"].get(k) for k in ("mean", "p50", "p90", "p99")}
        e2e_mean, req_s, out_tps = s["e2e_ms"].get("mean"), float(s.get("requests_per_s") or 0.0), float(s.get("output_tokens_per_s") or 0.0)
    if role == "prefill":
        out_tps = req_s * ctx.workload.mean_osl  # the output the prefills enable
        # where the client's first token comes from the decode worker, the front end's fixed
        # hand-off time (Backend.disagg_handoff_s) is part of every TTFT the SLO judges
        be = get_backend(s["backend"])
        shift_ms = be.disagg_handoff_s * 1e3 if be.disagg_first_token == "decode" else 0.0
        handoff_ms = shift_ms
        if shift_ms:
            ttft = None if ttft is None else ttft + shift_ms
            ttft_stats = {k: None if v is None else v + shift_ms for k, v in ttft_stats.items()}
    # mean draw of the GPUs of this role: idle + (TDP - idle) x busy fraction of its engines
    engines = res.engines
    if role == "decode":
        engines = [e for e in engines if e.cfg.role == "decode"]
    elif role == "prefill":
        engines = [e for e in engines if e.cfg.role in ("prefill", "both")]
    t_end = float(np.nanmax(np.frombuffer(res.requests.t_finish))) if s["num_completed"] else 0.0
    busy = busy_fraction(engines, t_end)
    g = res.engines[-1].st.cost.gpu if res.engines else None
    tdp = float(getattr(g, "tdp_w", 0.0) or 0.0)
    idle = float(getattr(g, "idle_power_w", tdp) or 0.0)
    power = idle + (tdp - idle) * busy
    slo_ok = True
    if ctx.ttft_ms is not None and role in ("agg", "prefill", "system"):
        slo_ok &= ttft is not None and ttft <= ctx.ttft_ms * (1 + 1e-9)
    if ctx.tpot_ms is not None and role in ("agg", "decode", "system"):
        slo_ok &= tpot is None or tpot <= ctx.tpot_ms * (1 + 1e-9)
    incomplete = int(s.get("num_incomplete", 0))
    return Point(
        concurrency=c, ttft_ms=ttft, tpot_ms=tpot if role != "prefill" else None, ttft_stats_ms=ttft_stats,
        tpot_stats_ms=tpot_stats if role != "prefill" else {}, e2e_mean_ms=e2e_mean, output_tokens_per_s=float(out_tps),
        requests_per_s=float(req_s), gpus=gpus, avg_power_w=power, prefix_cache_hit_rate=float(s.get("prefix_cache_hit_rate", 0.0)),
        preemptions=int(s.get("preemptions", 0)), incomplete=incomplete, meets=bool(slo_ok and incomplete == 0),
        sim_wall_s=float(s.get("simulation_wall_s", 0.0)), ttft_handoff_ms=handoff_ms,
    )


# ----------------------------------------------------------------------------- the concurrency search


def _grid_index_at_most(v: int) -> int:
    i = 0
    for j, g in enumerate(GRID):
        if g <= v:
            i = j
    return i


def _cap_index(c_kv: int, limit: int) -> int:
    """Smallest grid value >= the KV concurrency (more clients only queue), within `limit`."""
    lim = _grid_index_at_most(max(1, limit))
    for j, g in enumerate(GRID):
        if g >= c_kv:
            return min(j, lim)
    return lim


def sweep(ctx: EvalContext, cand: Candidate, c_kv: int, hint: int) -> Sweep:
    """Largest grid concurrency meeting the SLOs for `cand` (galloping from `hint`, then bisection)."""
    t0 = time.perf_counter()
    sw = Sweep(cand)
    limit = ctx.max_concurrency
    if cand.chunked_prefill:  # engines require max_num_batched_tokens >= max_num_seqs
        limit = min(limit, cand.max_num_batched_tokens)
    cap = _cap_index(c_kv, limit)
    sw.c_cap = GRID[cap]
    memo: dict[int, Point] = {}
    failed: dict[int, str] = {}

    def ok(i: int) -> bool:
        if i in failed:
            return False
        if i not in memo:
            try:
                memo[i] = simulate_point(ctx, cand, GRID[i])
            except LlmsimError as e:  # this concurrency cannot run (the simulator says why): infeasible
                failed[i] = e.message
                sw.error = sw.error or e.message
                return False
        return memo[i].meets

    lo = _search(cap + 1, _grid_index_at_most(max(1, hint)), ok)
    if lo is not None:
        sw.best = memo[lo]
        sw.kv_limited = lo == cap and GRID[cap] >= c_kv
        sw.error = None
    sw.points = [memo[k] for k in sorted(memo)]
    sw.sims = len(memo) + len(failed)
    sw.wall_s = time.perf_counter() - t0
    return sw


U_GRID: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05 .. 0.95


def _search(n: int, start: int, ok) -> int | None:
    """Largest index in [0, n) with ok(index) (ok assumed monotone: true then false), galloping
    from `start`, then bisecting; None if ok(0) is false."""
    i = min(max(start, 0), n - 1)
    lo: int | None
    hi: int | None
    if ok(i):
        lo, hi, step = i, None, 1
        while lo < n - 1:
            j = min(lo + step, n - 1)
            if ok(j):
                lo, step = j, step * 2
            else:
                hi = j
                break
    else:
        hi, lo, step = i, None, 1
        while hi > 0:
            j = max(hi - step, 0)
            if ok(j):
                lo = j
                break
            hi, step = j, step * 2
    if lo is not None and hi is not None:
        while hi - lo > 1:
            m = (lo + hi) // 2
            if ok(m):
                lo = m
            else:
                hi = m
    return lo


def sweep_prefill(ctx: EvalContext, cand: Candidate, c_kv: int) -> Sweep:
    """Largest Poisson rate (a fraction of the saturated throughput) at which a prefill worker
    meets the TTFT SLO."""
    t0 = time.perf_counter()
    sw = Sweep(cand)
    wl = ctx.workload
    q = max(1.0, wl.mean_isl - wl.prefix_tokens)
    c_sat = int(min(max(2, math.ceil(2 * cand.max_num_batched_tokens / q) + 1), max(2, c_kv)))
    seqs = max(c_sat, 64)
    sw.c_cap = seqs
    memo = sw.rate_grid
    try:
        sat = simulate_point(ctx, cand, c_sat)
        mu = sat.requests_per_s
        sw.saturated_requests_per_s = mu
        if mu > 0:
            def ok(i: int) -> bool:
                if i not in memo:
                    memo[i] = simulate_rate(ctx, cand, U_GRID[i] * mu, seqs)
                return memo[i].meets

            lo = _search(len(U_GRID), len(U_GRID) // 2, ok)
            if lo is not None:
                sw.best = memo[lo]
    except LlmsimError as e:
        sw.error = e.message
    sw.points = [memo[k] for k in sorted(memo)]
    sw.sims = len(memo) + 1
    sw.wall_s = time.perf_counter() - t0
    return sw


def prefill_point_for_ttft(ctx: EvalContext, sw: Sweep, target_ms: float) -> Point | None:
    """The prefill worker's operating point with the largest Poisson rate (on `sweep_prefill`'s
    grid of fractions of its saturated throughput) whose TTFT at the plan's percentile, the front
    end's hand-off included, is at most `target_ms` and where every request completed; None if
    even the lightest load misses. Used when the decode side of a pairing (KV transfer, first
    decode step) takes part of the TTFT budget. The points come from the sweep's `rate_grid`,
    which it extends: every target of one sweep shares them, so the answer depends only on the
    sweep and the target (deterministic)."""
    mu = sw.saturated_requests_per_s
    if not mu or mu <= 0:
        return None
    memo = sw.rate_grid
    seqs = max(sw.c_cap, 1)

    def ok(i: int) -> bool:
        if i not in memo:
            try:
                memo[i] = simulate_rate(ctx, sw.candidate, U_GRID[i] * mu, seqs)
            except LlmsimError:  # this rate cannot run: treat as a miss
                return False
        q = memo[i]
        return q.ttft_ms is not None and q.ttft_ms <= target_ms * (1 + 1e-9) and q.incomplete == 0

    start = len(U_GRID) // 2
    if sw.best is not None and sw.best.rate is not None:
        best_rate = sw.best.rate
        start = min(range(len(U_GRID)), key=lambda i: abs(U_GRID[i] * mu - best_rate))
    lo = _search(len(U_GRID), start, ok)
    return memo[lo] if lo is not None else None


@dataclass
class SweepTask:
    """Candidates of one family (one step-time model), searched in order; each starts from the
    previous one's answer when it has one."""

    candidates: list[Candidate]
    c_kv: list[int]
    hints: list[int]


def run_task(ctx: EvalContext, task: SweepTask) -> list[Sweep]:
    out: list[Sweep] = []
    prev: int | None = None
    for cand, c_kv, hint in zip(task.candidates, task.c_kv, task.hints):
        if cand.role == "prefill":
            out.append(sweep_prefill(ctx, cand, c_kv))
            continue
        h = prev if prev is not None else hint
        sw = sweep(ctx, cand, c_kv, h)
        out.append(sw)
        if sw.best is not None:
            prev = sw.best.concurrency
    return out


# ----------------------------------------------------------------------------- backends


def _run_chunk(args) -> list[list[Sweep]]:
    ctx, tasks = args
    return [run_task(ctx, t) for t in tasks]


def run_tasks(ctx: EvalContext, tasks: list[SweepTask], *, jobs: int | None = 1, backend: str = "local") -> list[list[Sweep]]:
    """Run every task; results in task order whatever the backend."""
    if not tasks:
        return []
    backend = (backend or "local").lower()
    if backend == "ray":
        return _run_ray(ctx, tasks, jobs)
    if backend not in ("local", "process", "multiprocessing"):
        raise LlmsimError(f"unknown execution backend {backend!r}", hint="use local or ray")
    n = default_jobs(jobs)
    if n <= 1 or len(tasks) == 1:
        return [run_task(ctx, t) for t in tasks]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # longest-first round robin over n workers keeps the pool busy; order is restored after
    order = sorted(range(len(tasks)), key=lambda i: -len(tasks[i].candidates))
    chunks: list[list[int]] = [[] for _ in range(min(n, len(tasks)))]
    for k, i in enumerate(order):
        chunks[k % len(chunks)].append(i)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    results: list[list[Sweep] | None] = [None] * len(tasks)
    with ProcessPoolExecutor(max_workers=len(chunks), mp_context=mp.get_context(method)) as ex:
        futs = [ex.submit(_run_chunk, (ctx, [tasks[i] for i in ch])) for ch in chunks]
        for ch, f in zip(chunks, futs):
            for i, r in zip(ch, f.result()):
                results[i] = r
    return results  # type: ignore[return-value]


def default_jobs(jobs: int | None) -> int:
    if jobs is None or jobs <= 0:
        return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    return int(jobs)


def _run_ray(ctx: EvalContext, tasks: list[SweepTask], jobs: int | None) -> list[list[Sweep]]:
    try:
        import ray
    except ImportError:
        raise LlmsimError("the Ray backend needs ray", hint="pip install 'llmsim[ray]' (or pip install ray), or use --backend local") from None
    started = False
    if not ray.is_initialized():
        ray.init(num_cpus=default_jobs(jobs), include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        started = True
    try:
        remote = ray.remote(run_task)
        ref = ray.put(ctx)
        futs = [remote.remote(ref, t) for t in tasks]
        return list(ray.get(futs))
    finally:
        if started:
            ray.shutdown()


def engine_defaults(engine: str) -> dict:
    be = get_backend(engine)
    return {"max_num_seqs": be.max_num_seqs, "max_num_batched_tokens": be.max_num_batched_tokens,
            "chunked_prefill": be.chunked_prefill, "memory_fraction": be.memory_fraction}
