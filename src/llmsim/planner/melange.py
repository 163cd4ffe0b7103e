"""Heterogeneous GPU mix (Mélange, Griggs et al. 2024): the cheapest set of instances of several
GPU types that serves a request-size histogram at a rate within the SLOs.

Different GPU types are the cheapest per request for different request sizes (small requests on
cheap, low-bandwidth GPUs; long ones on big-memory, high-bandwidth GPUs), so a mix can beat any
single type. Mélange states the choice as an integer program:

Inputs
    buckets b with arrival rate  r_b   (the workload's (input, output)-length histogram x rate)
    instance types i             a GPU type and layout (tp/pp/...): g_i GPUs of type t(i) at
                                 price p_i $/h per instance
    capacities  c_{b,i}          the largest request rate of bucket-b requests one instance of
                                 type i serves within the SLOs (from the simulator: the planner's
                                 concurrency search on requests of that bucket's size; 0 = cannot)

Variables
    x_i in Z>=0                  instances of type i
    A_{b,i} in [0, 1]            share of bucket b's requests sent to type i (fractional)

Minimise      sum_i p_i x_i
subject to    sum_i A_{b,i} = 1                                 for every bucket b with r_b > 0
              sum_b A_{b,i} r_b / c_{b,i} <= (1 - s) x_i        for every type i (load <= capacity,
                                                                 s = over-provisioning slack)
              sum_{i: t(i) = t} g_i x_i <= N_t                   GPUs available per GPU type
              A_{b,i} = 0 where c_{b,i} = 0

Mélange's instance is one GPU; here an instance is one replica (g_i GPUs in a layout), which is the
same program with per-instance prices and capacities. Solved with HiGHS through
`scipy.optimize.milp`. The load constraint treats an instance's capacity as shareable across
buckets in proportion to the time each request takes, as in the paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import LlmsimError


@dataclass
class Instance:
    name: str
    gpu: str
    gpus: int
    usd_per_hour: float  # per instance
    capacity: list[float]  # requests/s per bucket within the SLOs (0: cannot serve)


@dataclass
class MixResult:
    feasible: bool
    usd_per_hour: float
    counts: dict[str, int]
    shares: list[dict[str, float]]  # per bucket: instance -> share
    message: str = ""
    extra: dict = field(default_factory=dict)


def solve_mix(instances: list[Instance], rates: list[float], *, gpus_available: dict[str, int] | None = None,
              slack: float = 0.0, time_limit_s: float = 30.0) -> MixResult:
    """Solve the Mélange integer program (module docstring) with HiGHS."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    nI, nB = len(instances), len(rates)
    if nI == 0:
        return MixResult(False, math.inf, {}, [], "no instance types")
    if not 0 <= slack < 1:
        raise LlmsimError(f"slack must be in [0, 1), got {slack}")
    for inst in instances:
        if len(inst.capacity) != nB:
            raise LlmsimError(f"instance {inst.name} has {len(inst.capacity)} capacities for {nB} buckets")
    cap = np.array([[max(0.0, float(inst.capacity[b])) for inst in instances] for b in range(nB)])  # [b, i]
    r = np.array([max(0.0, float(x)) for x in rates])
    for b in range(nB):
        if r[b] > 0 and not (cap[b] > 0).any():
            return MixResult(False, math.inf, {}, [], f"no instance type can serve bucket {b} within the SLOs")
    # variable layout: x_0..x_{nI-1}, then A[b, i] for the (b, i) pairs that can be used
    pairs = [(b, i) for b in range(nB) for i in range(nI) if r[b] > 0 and cap[b, i] > 0]
    nv = nI + len(pairs)
    c = np.zeros(nv)
    c[:nI] = [inst.usd_per_hour for inst in instances]
    integrality = np.zeros(nv)
    integrality[:nI] = 1
    lb = np.zeros(nv)
    ub = np.full(nv, np.inf)
    ub[nI:] = 1.0
    rows, lo, hi = [], [], []
    for b in range(nB):  # every bucket fully assigned
        if r[b] <= 0:
            continue
        row = np.zeros(nv)
        for k, (bb, i) in enumerate(pairs):
            if bb == b:
                row[nI + k] = 1.0
        rows.append(row)
        lo.append(1.0)
        hi.append(1.0)
    for i in range(nI):  # load within capacity
        row = np.zeros(nv)
        row[i] = -(1.0 - slack)
        for k, (b, ii) in enumerate(pairs):
            if ii == i:
                row[nI + k] = r[b] / cap[b, i]
        rows.append(row)
        lo.append(-np.inf)
        hi.append(0.0)
    if gpus_available:
        for t, n in gpus_available.items():
            row = np.zeros(nv)
            for i, inst in enumerate(instances):
                if inst.gpu == t:
                    row[i] = inst.gpus
            if row.any():
                rows.append(row)
                lo.append(-np.inf)
                hi.append(float(n))
    res = milp(c, integrality=integrality, bounds=Bounds(lb, ub), constraints=LinearConstraint(np.array(rows), lo, hi),
               options={"time_limit": time_limit_s, "presolve": True})
    if res.x is None or res.status not in (0,):
        return MixResult(False, math.inf, {}, [], f"no mix of the available GPUs serves the rate within the SLOs ({res.message})")
    x = np.round(res.x[:nI]).astype(int)
    shares = [dict() for _ in range(nB)]
    for k, (b, i) in enumerate(pairs):
        v = float(res.x[nI + k])
        if v > 1e-9:
            shares[b][instances[i].name] = v
    counts = {instances[i].name: int(x[i]) for i in range(nI) if x[i] > 0}
    return MixResult(True, float(sum(instances[i].usd_per_hour * x[i] for i in range(nI))), counts, shares)


# ----------------------------------------------------------------------------- from a workload


def histogram(inp: np.ndarray, out: np.ndarray, in_edges=(1, 256, 1024, 4096, 16384, 65536, 1 << 40),
              out_edges=(1, 128, 512, 2048, 1 << 40)) -> list[dict]:
    """Request-size buckets (log-spaced input x output ranges) with each bucket's share and mean lengths."""
    n = len(inp)
    bi = np.searchsorted(np.asarray(in_edges), inp, side="right") - 1
    bo = np.searchsorted(np.asarray(out_edges), out, side="right") - 1
    out_b = []
    for a in sorted(set(bi.tolist())):
        for o in sorted(set(bo[bi == a].tolist())):
            m = (bi == a) & (bo == o)
            if m.any():
                out_b.append({"input_tokens": int(round(inp[m].mean())), "output_tokens": int(round(out[m].mean())), "share": float(m.sum() / n),
                              "input_range": [int(in_edges[a]), int(in_edges[a + 1]) - 1], "output_range": [int(out_edges[o]), int(out_edges[o + 1]) - 1]})
    return out_b


def plan_mix(ctx, res, *, rate: float | None, per_type: int = 2) -> dict:
    """Mélange on top of a plan: instance types = the best aggregated layouts of each GPU type in
    the plan (up to `per_type`, by SLO-meeting requests/s per $), capacities per request-size
    bucket from the simulator, then `solve_mix`."""
    from .evaluate import SweepTask, run_task
    from .prune import bounds
    from .space import Candidate
    from .workload import build_workload

    if rate is None:
        return {"feasible": False, "message": "a heterogeneous mix needs a target rate (--rate)"}
    wl = ctx.workload
    buckets = histogram(wl.input_len, wl.output_len)
    by_type: dict[str, list] = {}
    for sw in res.sweeps:
        if sw.candidate.role == "agg" and sw.best is not None:
            f = sw.candidate.family
            score = sw.best.requests_per_s / max(f.num_gpus * f.gpu.price_per_hour_usd, 1e-9)
            by_type.setdefault(f.gpu.name, []).append((score, sw))
    chosen = []
    for t, lst in by_type.items():
        seen = set()
        for _s, sw in sorted(lst, key=lambda z: -z[0]):
            f = sw.candidate.family
            if (f.par, f.prec, f.engine) in seen:
                continue
            seen.add((f.par, f.prec, f.engine))
            chosen.append(sw.candidate)
            if len(seen) >= per_type:
                break
    if len(by_type) < 1 or not chosen:
        return {"feasible": False, "message": "no aggregated configuration meets the SLOs on any GPU type"}
    instances = []
    for cand in chosen:
        caps = []
        for bk in buckets:
            bw = build_workload(isl=bk["input_tokens"], osl=bk["output_tokens"], prefix=min(wl.prefix_requested, bk["input_tokens"] - 1),
                                seed=ctx.seed)
            bctx = replace(ctx, workload=bw)
            c = Candidate("agg", cand.family, cand.max_num_batched_tokens, cand.chunked_prefill)
            b = bounds(ctx.model, c, bw, ttft_ms=ctx.ttft_ms, tpot_ms=ctx.tpot_ms, percentile=ctx.percentile)
            if not b.ok:
                caps.append(0.0)
                continue
            sw = run_task(bctx, SweepTask([c], [b.kv_concurrency], [b.decode_batch_hint]))[0]
            caps.append(sw.best.requests_per_s if sw.best is not None else 0.0)
        f = cand.family
        instances.append(Instance(f"{f.label} ({'mbt ' + str(cand.max_num_batched_tokens) if cand.chunked_prefill else 'no chunking'})",
                                  f.gpu.name, f.num_gpus, f.num_gpus * f.gpu.price_per_hour_usd, caps))
    rates = [bk["share"] * rate for bk in buckets]
    avail = {g.name: g.max_count for g in res.gpus}
    mix = solve_mix(instances, rates, gpus_available=avail)
    singles = {}
    for t in sorted({i.gpu for i in instances}):
        sub = [i for i in instances if i.gpu == t]
        s = solve_mix(sub, rates, gpus_available=avail)
        singles[t] = s.usd_per_hour if s.feasible else None
    best_single = min((v for v in singles.values() if v is not None), default=None)
    out = {
        "feasible": mix.feasible,
        "message": mix.message or (f"mix ${mix.usd_per_hour:,.2f}/h" + (f" vs best single GPU type ${best_single:,.2f}/h" if best_single else "")),
        "usd_per_hour": mix.usd_per_hour if mix.feasible else None,
        "instances": [{"instance": k, "count": v, "gpu": next(i.gpu for i in instances if i.name == k),
                       "gpus": v * next(i.gpus for i in instances if i.name == k),
                       "usd_per_hour": v * next(i.usd_per_hour for i in instances if i.name == k)} for k, v in mix.counts.items()],
        "buckets": [{**bk, "rate_per_s": r, "assignment": mix.shares[j] if mix.feasible else {}} for j, (bk, r) in enumerate(zip(buckets, rates))],
        "capacities_requests_per_s": {i.name: i.capacity for i in instances},
        "single_type_usd_per_hour": singles,
        "best_single_type_usd_per_hour": best_single,
        "formulation": "min sum_i p_i x_i  s.t.  sum_i A_bi = 1;  sum_b A_bi r_b / c_bi <= x_i;  sum_{i of type t} g_i x_i <= N_t  (Mélange)",
    }
    return out
