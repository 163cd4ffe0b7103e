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
              sum_i g_i x_i <= N,  sum_i p_i x_i <= B,           the plan's budgets, where given:
              sum_i w_i x_i <= W                                 --max-gpus, --budget-usd-per-hour,
                                                                 --max-power-w (w_i: GPUs x TDP)
              A_{b,i} = 0 where c_{b,i} = 0

Mélange's instance is one GPU; here an instance is one replica (g_i GPUs in a layout), which is the
same program with per-instance prices and capacities. Solved with HiGHS through
`scipy.optimize.milp`. When no mix fits the budgets, the program is solved again without them to
say which budget excluded the cheapest mix that serves the rate (`MixResult.extra`). The load constraint treats an instance's capacity as shareable across
buckets in proportion to the time each request takes, as in the paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TypedDict

import numpy as np

from ..errors import LlmsimError


@dataclass
class Instance:
    name: str
    gpu: str
    gpus: int
    usd_per_hour: float  # per instance
    capacity: list[float]  # requests/s per bucket within the SLOs (0: cannot serve)
    tdp_w: float = 0.0  # provisioned power per instance (its GPUs x TDP), W


@dataclass
class MixResult:
    feasible: bool
    usd_per_hour: float
    counts: dict[str, int]
    shares: list[dict[str, float]]  # per bucket: instance -> share
    message: str = ""
    extra: dict = field(default_factory=dict)


class _Limits(TypedDict):
    """The plan's budgets as `solve_mix` takes them (None: no limit)."""

    max_gpus: int | None
    max_usd_per_hour: float | None
    max_power_w: float | None


_BUDGET_FLAGS = {"max_gpus": "--max-gpus", "usd_per_hour": "--budget-usd-per-hour", "power_w": "--max-power-w"}


def _mix_totals(instances: list[Instance], counts: dict[str, int]) -> dict[str, float]:
    by = {i.name: i for i in instances}
    return {"max_gpus": sum(by[k].gpus * n for k, n in counts.items()),
            "usd_per_hour": sum(by[k].usd_per_hour * n for k, n in counts.items()),
            "power_w": sum(by[k].tdp_w * n for k, n in counts.items())}


def _budget_text(name: str, need: float, cap: float) -> str:
    if name == "max_gpus":
        return f"needs {need:,.0f} GPUs > {_BUDGET_FLAGS[name]} {cap:g}"
    if name == "usd_per_hour":
        return f"costs ${need:,.2f}/h > {_BUDGET_FLAGS[name]} {cap:g}"
    return f"draws up to {need:,.0f} W (GPUs x TDP) > {_BUDGET_FLAGS[name]} {cap:g}"


def solve_mix(instances: list[Instance], rates: list[float], *, gpus_available: dict[str, int] | None = None,
              slack: float = 0.0, time_limit_s: float = 30.0, max_gpus: int | None = None,
              max_usd_per_hour: float | None = None, max_power_w: float | None = None) -> MixResult:
    """Solve the Mélange integer program (module docstring) with HiGHS.

    `gpus_available`: GPUs per type; `max_gpus` (GPUs in all), `max_usd_per_hour` and `max_power_w`
    (instances' GPUs x TDP, `Instance.tdp_w`): the plan's budgets, None for none. A mix violating
    one is never returned; when none fits, `message` says which budget excluded the cheapest mix
    that would serve the rate, and `extra` holds that mix (`cheapest_without_budgets`) and the
    budgets it exceeds (`excluded_by`)."""
    budgets = {k: v for k, v in (("max_gpus", max_gpus), ("usd_per_hour", max_usd_per_hour), ("power_w", max_power_w)) if v is not None}
    for k, v in budgets.items():
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0):
            raise LlmsimError(f"the mix budget {_BUDGET_FLAGS[k]} must be a positive, finite number, got {v!r}")
    res = _solve(instances, rates, gpus_available, slack, time_limit_s, budgets)
    if res.feasible or not budgets or not res.extra.get("solved"):
        return res
    # infeasible within the budgets: which one excluded the mix?
    free = _solve(instances, rates, gpus_available, slack, time_limit_s, {})
    if not free.feasible:
        return free  # not the budgets: the GPUs available cannot serve the rate at all
    tot = _mix_totals(instances, free.counts)
    over = {k: cap for k, cap in budgets.items() if tot[k] > cap * (1 + 1e-9)}
    alone = [k for k in budgets if _solve(instances, rates, gpus_available, slack, time_limit_s,
                                          {j: v for j, v in budgets.items() if j != k}).feasible]
    desc = " + ".join(f"{n}x {k}" for k, n in free.counts.items())
    why = "; ".join(_budget_text(k, tot[k], cap) for k, cap in over.items())
    msg = (f"no mix within the budgets: the cheapest mix that serves the rate, {desc} ({tot['max_gpus']:,.0f} GPUs, "
           f"${tot['usd_per_hour']:,.2f}/h, {tot['power_w']:,.0f} W), {why}")
    if alone and set(alone) != set(over):
        msg += "; dropping " + " or ".join(_BUDGET_FLAGS[k] for k in alone) + " alone would allow a mix"
    res.message = msg
    res.extra = {"excluded_by": [_BUDGET_FLAGS[k] for k in over], "binding_alone": [_BUDGET_FLAGS[k] for k in alone],
                 "cheapest_without_budgets": {"instances": dict(free.counts), "num_gpus": tot["max_gpus"],
                                              "usd_per_hour": tot["usd_per_hour"], "provisioned_power_w": tot["power_w"]}}
    return res


def _solve(instances: list[Instance], rates: list[float], gpus_available: dict[str, int] | None, slack: float,
           time_limit_s: float, budgets: dict[str, float]) -> MixResult:
    """One HiGHS solve of the program; `budgets`: 'max_gpus' / 'usd_per_hour' / 'power_w' caps."""
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
    for name, cap_b in budgets.items():  # the plan's budgets over the whole mix
        row = np.zeros(nv)
        for i, inst in enumerate(instances):
            row[i] = {"max_gpus": inst.gpus, "usd_per_hour": inst.usd_per_hour, "power_w": inst.tdp_w}[name]
        rows.append(row)
        lo.append(-np.inf)
        hi.append(float(cap_b) * (1 + 1e-9))
    res = milp(c, integrality=integrality, bounds=Bounds(lb, ub), constraints=LinearConstraint(np.array(rows), lo, hi),
               options={"time_limit": time_limit_s, "presolve": True})
    if res.x is None or res.status not in (0,):
        within = " and the budgets" if budgets else ""
        return MixResult(False, math.inf, {}, [], f"no mix of the available GPUs{within} serves the rate within the SLOs ({res.message})",
                         {"solved": res.status == 2})  # 2: proven infeasible (not a time limit)
    x = np.round(res.x[:nI]).astype(int)
    shares: list[dict[str, float]] = [dict() for _ in range(nB)]
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


def plan_mix(ctx, res, *, rate: float | None, per_type: int = 2, budget=None) -> dict:
    """Mélange on top of a plan: instance types = the best aggregated layouts of each GPU type in
    the plan (up to `per_type`, by SLO-meeting requests/s per $), capacities per request-size
    bucket from the simulator, then `solve_mix` within the plan's budgets (`budget`, a
    `compose.Budget`; default `res.budget`): GPUs per type, --max-gpus, --budget-usd-per-hour and
    --max-power-w."""
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
                                  f.gpu.name, f.num_gpus, f.num_gpus * f.gpu.price_per_hour_usd, caps, f.num_gpus * f.gpu.tdp_w))
    rates = [bk["share"] * rate for bk in buckets]
    avail = {g.name: g.max_count for g in res.gpus}
    if budget is None:
        budget = getattr(res, "budget", None)
    limits: _Limits = {"max_gpus": getattr(budget, "max_gpus", None), "max_usd_per_hour": getattr(budget, "usd_per_hour", None),
                      "max_power_w": getattr(budget, "power_w", None)}
    if budget is not None and getattr(budget, "per_type", None):
        avail = {k: min(v, budget.per_type.get(k, v)) for k, v in avail.items()}
    mix = solve_mix(instances, rates, gpus_available=avail, **limits)
    singles = {}
    for t in sorted({i.gpu for i in instances}):
        sub = [i for i in instances if i.gpu == t]
        s = solve_mix(sub, rates, gpus_available=avail, **limits)
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
        "num_gpus": sum(v * next(i.gpus for i in instances if i.name == k) for k, v in mix.counts.items()) if mix.feasible else None,
        "provisioned_power_w": sum(v * next(i.tdp_w for i in instances if i.name == k) for k, v in mix.counts.items()) if mix.feasible else None,
        "budget": {"max_gpus": limits["max_gpus"], "usd_per_hour": limits["max_usd_per_hour"], "power_w": limits["max_power_w"]},
        "excluded_by_budget": mix.extra.get("excluded_by", []) if not mix.feasible else [],
        **({"cheapest_without_budgets": mix.extra["cheapest_without_budgets"]} if "cheapest_without_budgets" in mix.extra else {}),
        "capacities_requests_per_s": {i.name: i.capacity for i in instances},
        "single_type_usd_per_hour": singles,
        "best_single_type_usd_per_hour": best_single,
        "formulation": ("min sum_i p_i x_i  s.t.  sum_i A_bi = 1;  sum_b A_bi r_b / c_bi <= x_i;  sum_{i of type t} g_i x_i <= N_t;  "
                        "budgets: sum_i g_i x_i <= N, sum_i p_i x_i <= B, sum_i w_i x_i <= W  (Mélange)"),
    }
    return out
