"""`plan`: which GPUs, how many, in what layout, at what cost — for model M, a workload and SLOs.

Pipeline (each stage in its own module):

1. space    — GPU types x precisions x engines x layouts (tp/pp/dp/ep) x engine knobs, in three
              roles: aggregated replica, prefill worker, decode worker (`space.py`);
2. prune    — memory fit and latency floors per candidate, each rejection with its numbers
              (`prune.py`); pipeline parallelism is tried only where pp = 1 is memory- or
              KV-limited (a dominance rule, applied stage by stage: pp 2, then 4, then 8);
3. evaluate — every survivor simulated: the largest closed-loop concurrency meeting the SLOs at
              the chosen percentile (prefill workers: the largest Poisson rate), with step-time
              caches shared across candidates and an optional process pool or Ray (`evaluate.py`);
4. compose  — replicas / prefill:decode worker counts for the objective and budgets (`compose.py`);
5. rank     — by the objective; configurations are re-simulated end to end (the whole
              deployment, all replicas or both pools, closed loop at its total concurrency) in
              predicted order until one meets the SLOs and no unchecked one is predicted to do
              better, at most VERIFY_MAX (16) of them; only a deployment whose re-simulation
              meets the SLOs at the percentile is chosen. The ranked list puts verified-passing
              configurations first (the chosen one at the top), then unchecked ones (predicted
              numbers, `verification_status` 'unchecked'), then verified-failing ones; the message
              says when the cap left configurations predicted to do better unchecked;
6. report   — ranked list, Pareto frontiers (`pareto.py`), rejected families with reasons,
              launch + benchmark commands (`launch.py`), JSON and HTML (`report.py`).

Objectives: 'goodput' (max output tokens/s per GPU; the default without a rate), 'cost' (min $ per
million output tokens), 'gpus' (min GPUs, then $/h, for a target rate; the default with a rate),
'energy' (min J per output token). With a rate every configuration is sized to serve it.

Deterministic for a seed: the request pool, the Poisson streams and the search order are seeded
or fixed, and results do not depend on `jobs` or the backend.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..checks import check_bool, check_seed, is_int, is_number
from ..errors import LlmsimError
from ..hardware.spec import GIB
from ..layout import Parallel
from ..models.catalog import get_model
from ..serving.simulate import Deployment, Pool, busy_fraction
from ..serving.backends import get_backend
from .compose import OBJECTIVES, Budget, Config, compose_agg, compose_disagg, disagg_ttft_parts
from .evaluate import GRID, EvalContext, Point, Sweep, SweepTask, point_from_result, prefill_point_for_ttft, run_simulation, run_tasks
from .pareto import frontiers
from .prune import Bounds, bounds
from .space import (
    AGG_KNOBS,
    DECODE_KNOBS,
    PREFILL_KNOBS,
    Candidate,
    Family,
    GpuOption,
    PrecisionOption,
    Rejection,
    enumerate_layouts,
    parse_duration_ms,
    parse_engines,
    parse_gpus,
    parse_precisions,
    precision_supported,
)
from .workload import PlanWorkload, build_workload

# configurations re-simulated end to end at most (each up to 1 + `_verify_and_fix`'s tries
# simulations): verification goes on in predicted order until one passes and no unchecked
# configuration is predicted to do better, or this many were checked
VERIFY_MAX = 16


@dataclass
class PlanResult:
    model: str
    model_id: str
    workload: PlanWorkload
    ttft_ms: float | None
    tpot_ms: float | None
    percentile: float
    rate: float | None
    objective: str
    gpus: list[GpuOption]
    precisions: list[PrecisionOption]
    engines: list[str]
    modes: list[str]
    budget: Budget
    configs: list[Config] = field(default_factory=list)  # ranked, best first
    best: Config | None = None
    feasible: bool = False
    message: str = ""
    closest: dict | None = None
    rejected: list[Rejection] = field(default_factory=list)
    sweeps: list[Sweep] = field(default_factory=list)
    fronts: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    seed: int = 0
    mix: dict | None = None

    # ------------------------------------------------------------------ outputs
    @property
    def slo_text(self) -> str:
        p = f"p{self.percentile:g}"
        parts = []
        if self.ttft_ms is not None:
            parts.append(f"{p} TTFT <= {self.ttft_ms:g} ms")
        if self.tpot_ms is not None:
            parts.append(f"{p} TPOT <= {self.tpot_ms:g} ms")
        return " and ".join(parts) or "no latency target"

    def launch(self) -> dict | None:
        if self.best is None:
            return None
        from .launch import launch_commands

        return launch_commands(self.best, self.model_id, self.workload, ttft_ms=self.ttft_ms, tpot_ms=self.tpot_ms,
                               percentile=self.percentile, seed=self.seed, rate=self.rate, searched_engines=tuple(self.engines))

    def to_dict(self, top: int = 10) -> dict:
        """JSON-ready (strict: no NaN / infinity — undefined numbers are null); unit-suffixed keys."""
        return _jsonable(self._dict(_check_top(top)))

    def _dict(self, top: int) -> dict:
        p = f"p{self.percentile:g}"
        return {
            "model": self.model,
            "model_id": self.model_id,
            "workload": self.workload.to_dict(),
            "slo": {f"ttft_{p}_ms": self.ttft_ms, f"tpot_{p}_ms": self.tpot_ms, "percentile": self.percentile},
            "target_rate_requests_per_s": self.rate,
            "objective": self.objective,
            "search_space": {
                "gpus": [g.to_dict() for g in self.gpus],
                "precisions": [{"weight_dtype": q.weight, "kv_dtype": q.kv} for q in self.precisions],
                "engines": self.engines,
                "modes": self.modes,
                "budget": {"max_gpus": self.budget.max_gpus, "usd_per_hour": self.budget.usd_per_hour, "power_w": self.budget.power_w},
            },
            "feasible": self.feasible,
            "message": self.message,
            "best": self.best.to_dict(self.percentile) if self.best else None,
            "closest": self.closest,
            "ranked": [c.to_dict(self.percentile) for c in self.configs[:top]],
            "pareto": {
                "throughput_vs_interactivity": [q.to_dict() for q in self.fronts.get("throughput_vs_interactivity", [])],
                "cost_vs_latency": [q.to_dict() for q in self.fronts.get("cost_vs_latency", [])],
            },
            "rejected": [r.to_dict() for r in self.rejected],
            "launch": self.launch(),
            "heterogeneous_mix": self.mix,
            "stats": self.stats,
        }

    def render(self, console, top: int = 10) -> None:
        from .report import render_console

        render_console(self, console, top=_check_top(top))

    def write_report(self, path) -> str:
        from .report import write_html

        return write_html(self, path)


# ----------------------------------------------------------------------------- helpers


def _jsonable(v):
    """numpy scalars -> Python numbers, non-finite floats -> None, recursively."""
    import numpy as np

    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return _jsonable(v.tolist())
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    return v


def _check_top(top) -> int:
    if not (is_int(top) and top >= 1):
        raise LlmsimError(f"top must be an integer >= 1, got {top!r}", hint="how many of the best configurations to list, e.g. --top 10")
    return int(top)


def _check_kernels(kernels, gpu_opts: list[GpuOption]) -> None:
    """Fail fast on a --kernels value no GPU type can use (a missing directory, `profile` with no
    bundled profile for any of them): otherwise every simulation fails alike and the plan only
    says that nothing meets the SLOs."""
    from ..estimate import resolve_kernels

    if kernels is None or str(kernels).lower() in ("auto", "none", "roofline", "off"):
        return
    first = None
    for g in gpu_opts:
        try:
            resolve_kernels(kernels, g.spec)
            return  # at least one GPU type can use them; the others are rejected per candidate with the reason
        except LlmsimError as e:
            first = first or e
    if first is not None:
        raise LlmsimError(f"--kernels {str(kernels)!r}: {first.message}",
                          hint=(first.hint + "; " if first.hint else "") + "or use --kernels auto (bundled tables) or none (roofline)")


def _family_key(f: Family) -> tuple:
    return (f.gpu.name, f.par.tp, f.par.dp, f.par.ep, f.prec, f.engine)


def _violation(p: Point, ttft: float | None, tpot: float | None, role: str) -> float:
    v = 0.0
    if ttft is not None and role in ("agg", "prefill") and p.ttft_ms is not None:
        v = max(v, p.ttft_ms / ttft)
    if tpot is not None and role in ("agg", "decode") and p.tpot_ms is not None:
        v = max(v, p.tpot_ms / tpot)
    return v


def _verify(ctx: EvalContext, cfg: Config) -> Point:
    """Simulate the whole deployment (closed loop at its total concurrency)."""
    c_eng = cfg.per_engine_concurrency
    if cfg.mode == "aggregated":
        cand = cfg.agg_sweep.candidate
        f = cand.family
        pool = Pool(f.gpu.spec, f.par.tp, f.par.pp, f.par.dp, f.par.ep, cfg.replicas)
        dep = Deployment(model=ctx.model, pool=pool, backend=f.engine, weight_dtype=f.prec.weight, kv_dtype=f.prec.kv, max_num_seqs=c_eng,
                         max_num_batched_tokens=cand.max_num_batched_tokens, chunked_prefill=cand.chunked_prefill, mixed_batches=cand.mixed_batches, kernels=ctx.kernels,
                         router=ctx.router)
        total = cfg.replicas * c_eng
    else:
        pc, dc = cfg.prefill_sweep.candidate, cfg.decode_sweep.candidate
        pf, df = pc.family, dc.family
        dep = Deployment(model=ctx.model, prefill=Pool(pf.gpu.spec, pf.par.tp, pf.par.pp, pf.par.dp, pf.par.ep, cfg.prefill_workers),
                         decode=Pool(df.gpu.spec, df.par.tp, df.par.pp, df.par.dp, df.par.ep, cfg.decode_workers),
                         backend=df.engine, weight_dtype=df.prec.weight, kv_dtype=df.prec.kv, max_num_seqs=c_eng,
                         max_num_batched_tokens=pc.max_num_batched_tokens, chunked_prefill=pc.chunked_prefill, mixed_batches=pc.mixed_batches, kernels=ctx.kernels,
                         router=ctx.router)
        total = cfg.decode_workers * c_eng
    res, wl = run_simulation(dep, lambda n: ctx.workload.closed_loop(total, n), ctx.num_requests(total), ctx.slo("system"))
    pt = point_from_result(ctx, res, total, wl.warmup, role="system", gpus=cfg.num_gpus)
    # power per pool (different GPU types may draw differently)
    import numpy as np

    t_end = float(np.nanmax(np.frombuffer(res.requests.t_finish))) if res.summary["num_completed"] else 0.0
    watts = 0.0
    for role, (cand, n_workers) in zip(("both",) if cfg.mode == "aggregated" else ("prefill", "decode"), cfg.parts):
        engs = [e for e in res.engines if e.cfg.role == role]
        busy = busy_fraction(engs, t_end)
        g = cand.family.gpu.spec
        watts += n_workers * cand.family.num_gpus * (g.idle_power_w + (g.tdp_w - g.idle_power_w) * busy)
    pt.avg_power_w = watts / cfg.num_gpus
    return pt


def _lower(c: int) -> int | None:
    i = GRID.index(c) if c in GRID else max(j for j, g in enumerate(GRID) if g <= c)
    return GRID[i - 1] if i > 0 else None


def _verify_and_fix(ctx: EvalContext, cfg: Config, rate: float | None, budget: Budget, tries: int = 4) -> Config:
    """Re-simulate the whole deployment; if it misses, adjust within the budgets (one more prefill
    worker when only TTFT misses in a disaggregated plan; else one concurrency step fewer per
    engine; one more replica / decode worker when short of the rate) and re-simulate, at most
    `tries` times. `cfg.verified` always describes the configuration as it ends up."""
    for attempt in range(tries + 1):
        pt = _verify(ctx, cfg)
        cfg.verified = pt
        ok_rate = rate is None or pt.requests_per_s >= rate * 0.995
        cfg.verified_meets = bool(pt.meets and ok_rate)
        if cfg.verified_meets or attempt == tries:
            return cfg
        ttft_bad = ctx.ttft_ms is not None and (pt.ttft_ms is None or pt.ttft_ms > ctx.ttft_ms)
        tpot_bad = ctx.tpot_ms is not None and pt.tpot_ms is not None and pt.tpot_ms > ctx.tpot_ms
        change: dict = {}
        if cfg.mode == "disaggregated" and ttft_bad and not tpot_bad:
            change, note = {"prefill_workers": cfg.prefill_workers + 1}, "one more prefill worker"
            trial = Config(**{**cfg.__dict__, **change})
            if budget.check(trial.gpus_by_type, trial.usd_per_hour, trial.tdp_w) is not None:
                change = {}
        if not change and (ttft_bad or tpot_bad or pt.incomplete):
            lower = _lower(cfg.per_engine_concurrency)
            if lower is None:
                return cfg
            change, note = {"engine_concurrency": lower}, f"max_num_seqs lowered to {lower}"
        elif not change and not ok_rate:
            key = "replicas" if cfg.mode == "aggregated" else "decode_workers"
            change, note = {key: getattr(cfg, key) + 1}, "one more worker to reach the rate"
        if not change:
            return cfg
        trial = Config(**{**cfg.__dict__, **change})
        if budget.check(trial.gpus_by_type, trial.usd_per_hour, trial.tdp_w) is not None:
            return cfg
        for k, v in change.items():
            setattr(cfg, k, v)
        cfg.note = "; ".join(filter(None, [cfg.note, note + " after end-to-end simulation"]))
    return cfg


# ----------------------------------------------------------------------------- the planner


def plan(
    model: str,
    *,
    gpus=None,
    isl: int | None = None,
    osl: int | None = None,
    input_dist: str | None = None,
    output_dist: str | None = None,
    lengths_from: str | None = None,
    trace: str | None = None,
    prefix: int = 0,
    ttft=None,
    tpot=None,
    rate: float | None = None,
    objective: str | None = None,
    percentile: float = 90.0,
    engines="vllm",
    disagg: bool = True,
    aggregated: bool = True,
    precisions=None,  # 'bf16,fp8' style; None: bf16, fp8 and (on Blackwell) fp4
    max_gpus: int | None = None,
    budget_usd_per_hour: float | None = None,
    max_power_w: float | None = None,
    jobs: int | None = 1,
    backend: str = "local",
    seed: int = 0,
    kernels: str = "auto",
    verify: bool = True,
    mix: bool = False,
    max_num_batched_tokens=None,
    chunked_prefill: bool | None = None,
    max_concurrency: int | None = None,
    progress=None,
) -> PlanResult:
    """Search deployments of `model` for the workload and SLOs; see the module docstring.

    `max_num_batched_tokens` (a list, or 'A,B,...') replaces the token budgets searched for
    aggregated replicas and prefill workers; `chunked_prefill` True/False restricts aggregated
    replicas and prefill workers to chunked prefill on/off (None: both for aggregated replicas,
    chunked for prefill workers); `max_concurrency` caps the concurrency
    search (clients per engine)."""
    t0 = time.perf_counter()
    say = progress or (lambda msg: None)
    disagg = check_bool("disagg", disagg, hint="disagg=False (--no-disagg) leaves disaggregated serving out of the search")
    aggregated = check_bool("aggregated", aggregated, hint="aggregated=False (--no-agg) leaves aggregated serving out of the search")
    verify = check_bool("verify", verify, hint="verify=False skips the end-to-end simulation of the best configurations")
    mix = check_bool("mix", mix, hint="mix=True (--mix) also plans a heterogeneous GPU mix")
    chunked_prefill = check_bool("chunked_prefill", chunked_prefill, allow_none=True,
                                  hint="chunked_prefill=True / False restricts aggregated replicas to chunked prefill on / off; None searches both")
    check_seed(seed, hint="e.g. --seed 0")
    spec = get_model(model)
    ttft_ms = parse_duration_ms(ttft, "TTFT target (--ttft)") if ttft is not None else None
    tpot_ms = parse_duration_ms(tpot, "TPOT target (--tpot)") if tpot is not None else None
    if not (is_number(percentile) and 0 < float(percentile) <= 100):
        raise LlmsimError(f"percentile must be in (0, 100], got {percentile!r}", hint="e.g. --percentile 90")
    percentile = float(percentile)
    if rate is not None and not (is_number(rate) and math.isfinite(rate) and rate > 0):
        raise LlmsimError(f"rate must be a positive, finite number of requests/s, got {rate!r}",
                          hint="e.g. --rate 20; leave --rate out to size for the best goodput instead")
    if objective is not None and not isinstance(objective, str):
        raise LlmsimError(f"objective must be a string, got {objective!r}", hint=f"use one of {', '.join(OBJECTIVES)}")
    objective = (objective or ("gpus" if rate is not None else "goodput")).lower()
    if objective not in OBJECTIVES:
        raise LlmsimError(f"unknown objective {objective!r}", hint=f"use one of {', '.join(OBJECTIVES)}")
    if objective == "gpus" and rate is None:
        raise LlmsimError("objective 'gpus' (fewest GPUs) needs a target rate", hint="give --rate, or use --objective goodput|cost|energy")
    if mix and rate is None:
        raise LlmsimError("a heterogeneous GPU mix (--mix) needs a target rate, and none was given",
                          hint="give --rate (requests/s the mix must serve), e.g. --rate 20 --mix, or drop --mix")
    if mix and not aggregated:
        raise LlmsimError("a heterogeneous GPU mix (--mix) is built from aggregated replicas, but aggregated serving is off (--no-agg)",
                          hint="drop --no-agg, or drop --mix")
    if max_gpus is not None and not (is_int(max_gpus) and max_gpus >= 1):
        raise LlmsimError(f"max_gpus must be an integer >= 1, got {max_gpus!r}",
                          hint="e.g. --max-gpus 16; leave it out for no limit beyond the --gpus counts")
    if budget_usd_per_hour is not None and not (is_number(budget_usd_per_hour) and math.isfinite(budget_usd_per_hour) and budget_usd_per_hour > 0):
        raise LlmsimError(f"the $/hour budget must be a positive, finite number, got {budget_usd_per_hour!r}",
                          hint="e.g. --budget-usd-per-hour 50; leave it out for no cost limit")
    if max_power_w is not None and not (is_number(max_power_w) and math.isfinite(max_power_w) and max_power_w > 0):
        raise LlmsimError(f"the power budget must be a positive, finite number of watts, got {max_power_w!r}",
                          hint="e.g. --max-power-w 6000; leave it out for no power limit")
    if max_concurrency is not None and not (is_int(max_concurrency) and max_concurrency >= 1):
        raise LlmsimError(f"max_concurrency must be an integer >= 1, got {max_concurrency!r}",
                          hint="e.g. --max-concurrency 64; leave it out to search every concurrency")
    if jobs is not None and not (is_int(jobs) and jobs >= 1):
        raise LlmsimError(f"jobs must be an integer >= 1, got {jobs!r}", hint="e.g. --jobs 4; leave --jobs out to use every core")
    if str(backend or "local").lower() not in ("local", "process", "multiprocessing", "ray"):
        raise LlmsimError(f"unknown execution backend {backend!r}", hint="use --backend local or --backend ray")
    modes = (["aggregated"] if aggregated else []) + (["disaggregated"] if disagg else [])
    if not modes:
        raise LlmsimError("nothing to search: both aggregated and disaggregated serving are off (--no-agg --no-disagg)",
                          hint="drop --no-agg or --no-disagg")
    gpu_opts = parse_gpus(gpus, max_gpus)
    _check_kernels(kernels, gpu_opts)
    auto_prec = precisions is None  # default: bf16 and fp8 everywhere, fp4 where the GPU has it (Blackwell)
    precs = parse_precisions("bf16,fp8,fp4" if auto_prec else precisions)
    engs = parse_engines(engines)
    wl = build_workload(isl=isl, osl=osl, input_dist=input_dist, output_dist=output_dist, lengths_from=lengths_from, trace=trace,
                        prefix=prefix, seed=seed)
    if wl.max_len > spec.max_position_embeddings:
        raise LlmsimError(f"requests of up to {wl.max_len} tokens exceed the {spec.max_position_embeddings}-token context of {spec.name}",
                          hint="shorten the requests or choose a longer-context model")
    budget = Budget(max_gpus, budget_usd_per_hour, max_power_w, {g.name: g.max_count for g in gpu_opts})
    ctx = EvalContext(spec, wl, ttft_ms, tpot_ms, percentile, kernels=kernels, seed=seed,
                      router="prefix" if wl.hash_ids is not None else "least_outstanding")
    if not wl.fixed:  # lengths vary: larger samples so each simulation sees the distribution's tail
        ctx.min_measured, ctx.per_client, ctx.open_loop_requests = 160, 2.0, 400
    res = PlanResult(spec.name, spec.hf_id or spec.name, wl, ttft_ms, tpot_ms, percentile, rate, objective, gpu_opts, precs, engs, modes,
                     budget, seed=seed)
    rej = res.rejected
    roles = (["agg"] if aggregated else []) + (["prefill", "decode"] if disagg else [])
    knobs = _knob_sets(max_num_batched_tokens, chunked_prefill)
    if max_concurrency is not None:
        ctx.max_concurrency = int(max_concurrency)
    stats: dict[str, Any] = {"families": 0, "candidates": 0, "pruned_precision": 0, "pruned_memory": 0, "pruned_latency": 0, "pruned_rule_pp": 0,
                             "simulated_candidates": 0, "simulations": 0, "operating_points": 0, "verification_simulations": 0}
    floors: list[tuple[float, Candidate, Bounds]] = []

    # ---------------------------------------------------------------- 1-2: enumerate and prune
    layouts: dict[str, list[Parallel]] = {}
    for g in gpu_opts:
        ok, bad = enumerate_layouts(spec, g)
        layouts[g.name] = ok
        rej.extend(bad)
    fams_by_pp: dict[int, list[Family]] = {}
    for g in gpu_opts:
        for q in precs:
            why = precision_supported(g.spec, q)
            if why and auto_prec and q.weight == "fp4":
                continue  # not asked for: fp4 is only tried where it exists
            if why:
                rej.append(Rejection(f"{g.name} {q.label}", why, "precision"))
                stats["pruned_precision"] += 1
                continue
            for e in engs:
                why = get_backend(e).check_gpu(g.spec)
                if why:  # e.g. TensorRT-LLM on an AMD GPU
                    rej.append(Rejection(f"{g.name} {q.label} {e}", why, "precision"))
                    stats["pruned_precision"] += 1
                    continue
                for par in layouts[g.name]:
                    fams_by_pp.setdefault(par.pp, []).append(Family(g, par, q, e))

    def prune(fams: list[Family]) -> tuple[list[SweepTask], dict[tuple, dict]]:
        """Bounds for every candidate of these families; tasks for the survivors; per (family,
        role) what happened (for the pp rule)."""
        tasks: list[SweepTask] = []
        status: dict[tuple, dict] = {}
        for f in fams:
            stats["families"] += 1
            for role in roles:
                cands, ckv, hints = [], [], []
                reasons: dict[str, list[str]] = {}
                details: dict[str, dict] = {}
                mem_fail = 0
                for mbt, ch in knobs[role]:
                    cand = Candidate(role, f, mbt, ch)
                    stats["candidates"] += 1
                    b = bounds(spec, cand, wl, ttft_ms=ttft_ms, tpot_ms=tpot_ms, percentile=percentile)
                    if not b.ok:
                        stats[f"pruned_{b.stage}"] = stats.get(f"pruned_{b.stage}", 0) + 1
                        reasons.setdefault(b.stage + "\0" + b.reason, []).append(_knob_text(cand))
                        if b.stage == "memory" and b.detail:
                            details[b.stage + "\0" + b.reason] = {"gpu": f.gpu.name, **{k: round(v, 3) for k, v in b.detail.items()}}
                        mem_fail += b.stage == "memory"
                        if b.stage == "latency":
                            v = max((b.ttft_floor_ms or 0) / ttft_ms if ttft_ms else 0, (b.tpot_floor_ms or 0) / tpot_ms if tpot_ms else 0)
                            floors.append((v, cand, b))
                        continue
                    cands.append(cand)
                    ckv.append(b.kv_concurrency)
                    hints.append(b.decode_batch_hint)
                # memory failures differ only by the activations of each token budget: one line, the closest knob
                mem_keys = [k for k in reasons if k.startswith("memory\0")]
                if len(mem_keys) > 1:
                    best = min(mem_keys, key=lambda k: details.get(k, {}).get("short_gib", math.inf))
                    ks_all = [x for k in mem_keys for x in reasons[k]]
                    for k in mem_keys:
                        if k != best:
                            del reasons[k]
                    reasons[best] = ks_all
                for key, ks in reasons.items():
                    stage, reason = key.split("\0", 1)
                    if len(ks) == len(knobs[role]):
                        what = f"{role} {f.label}" + (" (every token budget)" if len(ks) > 1 else "")
                    else:
                        what = f"{role} {f.label} ({', '.join(ks)})"
                    rej.append(Rejection(what, reason, stage, details.get(key, {})))
                status[(_family_key(f), role)] = {"memory_fail": mem_fail == len(knobs[role]), "n": len(cands)}
                if cands:
                    tasks.append(SweepTask(cands, ckv, hints))
        return tasks, status

    def run(tasks: list[SweepTask]) -> list[Sweep]:
        out: list[Sweep] = []
        for group in run_tasks(ctx, tasks, jobs=jobs, backend=backend):
            for sw in group:
                out.append(sw)
                stats["simulated_candidates"] += 1
                stats["simulations"] += sw.sims
                stats["operating_points"] += len(sw.points)
                if sw.error:
                    rej.append(Rejection(sw.candidate.label, sw.error, "simulation"))
                elif sw.best is None:
                    p = min(sw.points, key=lambda q: _violation(q, ttft_ms, tpot_ms, sw.candidate.role)) if sw.points else None
                    if p is not None:
                        rej.append(Rejection(sw.candidate.label, _miss_text(p, ttft_ms, tpot_ms, percentile, sw.candidate.role), "simulation"))
        return out

    say("pruning and simulating pp=1 layouts")
    tasks, status = prune(fams_by_pp.get(1, []))
    sweeps = run(tasks)

    # pipeline stages only where the shallower layout was memory- or KV-limited
    pp = 1
    while (pp * 2) in fams_by_pp:
        nxt = pp * 2
        want: list[Family] = []
        skipped = 0
        for f in fams_by_pp[nxt]:
            base = _family_key(f)
            needed = False
            for role in roles:
                st = status.get((base, role))
                limited = any(sw.kv_limited for sw in sweeps if sw.candidate.role == role and _family_key(sw.candidate.family) == base
                              and sw.candidate.family.par.pp == pp)
                if (st is not None and st["memory_fail"]) or limited:
                    needed = True
            if needed:
                want.append(f)
            else:
                skipped += 1
        if not want:
            deeper = sum(len(v) for k, v in fams_by_pp.items() if k > pp)
            stats["pruned_rule_pp"] += deeper
            rej.append(Rejection(f"pp>={nxt} layouts ({deeper} families)",
                                 f"not simulated: at every tp the pp={pp} layout fits and is not limited by KV-cache capacity, and "
                                 "pipeline stages add latency without raising tokens/s per GPU at equal batch", "rule"))
            break
        stats["pruned_rule_pp"] += skipped
        if skipped:
            rej.append(Rejection(f"pp={nxt} layouts ({skipped} families)",
                                 f"not simulated: at the same tp the pp={pp} layout fits and is not limited by KV-cache capacity, and "
                                 "pipeline stages add latency without raising tokens/s per GPU at equal batch", "rule"))
        say(f"pp={nxt}: {len(want)} families")
        t2, s2 = prune(want)
        status.update(s2)
        sweeps += run(t2)
        pp = nxt
    res.sweeps = sweeps

    # no GPU type can hold the model at all: a clear error
    if not sweeps and not floors:
        lines = []
        for g in gpu_opts:
            mem = [r for r in rej if r.stage == "memory" and r.detail.get("gpu") == g.name]
            if mem:
                r = min(mem, key=lambda x: x.detail.get("short_gib", math.inf))
                lines.append(f"on {g.max_count}x {g.name} the closest, {r.what}, {r.reason}")
            else:
                whys = [r.reason for r in rej if r.what.startswith(g.name) and r.stage in ("precision", "layout")]
                lines.append(f"{g.name}: " + ("; ".join(whys[:2]) if whys else "no valid layout"))
        given = f"({', '.join(f'{g.name} x{g.max_count}' for g in gpu_opts)}; {', '.join(q.label for q in precs)})"
        if not any(r.stage == "memory" for r in rej):
            # nothing was even sized: every GPU type lacks the precision or the engine asked for
            raise LlmsimError(f"none of the GPU types given can run {spec.name} as asked {given}: " + " | ".join(lines),
                              hint="choose a precision and an engine these GPUs support (--precision, --backend-engine), "
                                   "or other GPU types (--gpus)")
        g0 = gpu_opts[0]
        raise LlmsimError(
            f"{spec.name} fits on none of the GPU types given {given}: " + " | ".join(lines),
            hint=f"allow more GPUs per type (e.g. --gpus {g0.name}:{2 * g0.max_count}), "
                 + ("fp8 weights (--precision fp8)" if any(g.spec.supports("fp8") for g in gpu_opts) else "int8 / int4 weights (--precision int4)")
                 + ", or GPUs with more memory",
        )

    # ---------------------------------------------------------------- 4: compose
    configs: list[Config] = []
    over_budget: dict[str, str] = {}  # configuration label -> the budget it exceeds (for the "closest" message)
    if aggregated:
        for sw in sweeps:
            if sw.candidate.role == "agg" and sw.best is not None:
                cfg, why = compose_agg(sw, rate, budget, wl.mean_osl)
                if cfg is not None:
                    configs.append(cfg)
                elif why:
                    rej.append(Rejection(sw.candidate.label, why, "budget"))
                    over_budget.setdefault(sw.candidate.label, why)
    if disagg:
        pre = [sw for sw in sweeps if sw.candidate.role == "prefill" and sw.best is not None]
        dec = [sw for sw in sweeps if sw.candidate.role == "decode" and sw.best is not None]
        # KV moved per request: the prompt (at the plan's percentile of the input lengths) + 1 token
        kv_tokens = int(math.ceil(float(np.percentile(wl.input_len, percentile)))) + 1
        ttft_short: dict[int, list] = {}  # prefill sweep -> [pairings, lightest-load TTFT, smallest decode side, decode label]
        n_over = 0
        over_example: tuple[str, str] | None = None
        for d in dec:
            for p in pre:
                pf, df = p.candidate.family, d.candidate.family
                if (pf.prec, pf.engine) != (df.prec, df.engine):
                    continue
                assert d.best is not None  # `dec` holds only sweeps with a best point
                parts = disagg_ttft_parts(spec, p.candidate, d.candidate, d.best, kv_tokens)
                point = None
                if ttft_ms is not None and parts.extra_ms > 0:
                    # the decode side takes part of the TTFT budget: the prefill worker's rate must leave room for it
                    point = prefill_point_for_ttft(ctx, p, ttft_ms - parts.extra_ms)
                    if point is None:
                        short = ttft_short.setdefault(id(p), [0, None, math.inf, ""])
                        short[0] += 1
                        light = [q for q in p.rate_grid.values() if q.ttft_ms is not None]
                        if light:
                            short[1] = min(light, key=lambda q: q.rate or 0.0)
                        if parts.extra_ms < short[2]:
                            short[2], short[3] = parts.extra_ms, d.candidate.label
                        continue
                cfg, why = compose_disagg(p, d, rate, budget, wl.mean_osl, objective, prefill_point=point, ttft=parts)
                if cfg is not None:
                    configs.append(cfg)
                elif why:
                    n_over += 1
                    lab = f"{p.candidate.label} + {d.candidate.label}"
                    over_budget.setdefault(lab, why)
                    over_example = over_example or (lab, why)
        stats["prefill_ttft_simulations"] = sum(len(sw.rate_grid) - len(sw.points) for sw in pre)
        stats["simulations"] += stats["prefill_ttft_simulations"]
        by_id = {id(p): p for p in pre}
        for k, (n_pairs, light, extra, dlab) in ttft_short.items():
            sw = by_id[k]
            lab = f"p{percentile:g}"
            at = (f"{lab} TTFT {light.ttft_ms:.1f} ms at {light.rate:.2f} req/s (incl. the {light.ttft_handoff_ms:g} ms front-end hand-off)"
                  if light is not None else "its TTFT")
            rej.append(Rejection(f"disaggregated {sw.candidate.label} with {n_pairs} decode worker type(s)",
                                 f"the decode side adds at least {extra:.1f} ms to TTFT (KV transfer + first decode step, with {dlab}), "
                                 f"and even the lightest simulated prefill load, {at}, leaves no room within {ttft_ms:g} ms", "simulation"))
        if n_over and over_example is not None:
            rej.append(Rejection(f"{n_over} disaggregated pairing(s)", f"over the budgets, e.g. {over_example[0]}: {over_example[1]}", "budget"))
    configs.sort(key=lambda c: c.objective_key(objective))

    # ---------------------------------------------------------------- 5: verify, best predicted first
    chosen: Config | None = None
    n_checked = 0
    cap_reached = False
    if configs:
        if verify:
            verified: list[Config] = []
            order = list(configs)  # predicted order (`_verify_and_fix` may change a configuration)
            for i, cfg in enumerate(order):
                if i >= VERIFY_MAX:
                    cap_reached = True  # none passed yet, or an unchecked one is still predicted to do better
                    break
                say(f"verifying {cfg.label}")
                _verify_and_fix(ctx, cfg, rate, budget)
                n_checked += 1
                stats["verification_simulations"] += 1
                if cfg.verified_meets:
                    verified.append(cfg)
                next_cfg = order[i + 1] if i + 1 < len(order) else None
                best_v = min(verified, key=lambda c: c.objective_key(objective)) if verified else None
                if best_v is not None and (next_cfg is None or best_v.objective_key(objective) <= next_cfg.objective_key(objective)):
                    break
            if verified:
                chosen = min(verified, key=lambda c: c.objective_key(objective))
        else:
            chosen = configs[0]
        # verified-passing first (the chosen one on top), then unchecked (predicted), then verified-failing
        configs.sort(key=lambda c: (c is not chosen, c.rank_key(objective)))
    stats["verified_configurations"] = n_checked
    stats["unchecked_configurations"] = len(configs) - n_checked
    stats["verify_cap"] = VERIFY_MAX
    stats["verify_cap_reached"] = cap_reached
    res.configs = configs
    res.best = chosen
    res.feasible = chosen is not None
    kv_tok = int(math.ceil(float(np.percentile(wl.input_len, percentile)))) + 1  # as the pairing above
    res.fronts = frontiers(sweeps, wl.mean_osl, lambda p, d, q: disagg_ttft_parts(spec, p, d, q, kv_tok).extra_ms, ttft_ms)
    unchecked = len(configs) - n_checked

    if chosen is not None:
        res.message = (f"best ({objective}): {chosen.label} — {chosen.output_tokens_per_s_per_gpu:,.0f} output tok/s/GPU on "
                       f"{chosen.num_gpus} GPUs, {res.slo_text} met")
        if not verify:
            res.message += " (predicted from the parts; not re-simulated end to end)"
        elif cap_reached:
            better = sum(1 for c in configs if c.verified is None and c.objective_key(objective) < chosen.objective_key(objective))
            res.message += (f"; {better} configuration(s) predicted to do better were left unchecked (at most {VERIFY_MAX} are "
                            "re-simulated end to end)")
    else:
        tried = [(c, c.verified) for c in configs if c.verified is not None]
        if tried:  # parts met the SLOs but no whole deployment did: the nearest end-to-end attempt
            c, v = min(tried, key=lambda k: _violation(k[1], ttft_ms, tpot_ms, "agg"))
            lab = f"p{percentile:g}"
            ach = ", ".join(x for x in (f"{lab} TTFT {v.ttft_ms:.1f} ms" if v.ttft_ms is not None else "",
                                        f"{lab} TPOT {v.tpot_ms:.2f} ms" if v.tpot_ms is not None else "") if x)
            res.closest = {"configuration": c.label, "concurrency": v.concurrency, f"ttft_{lab}_ms": v.ttft_ms, f"tpot_{lab}_ms": v.tpot_ms,
                           "slo_ratio": _violation(v, ttft_ms, tpot_ms, "agg"),
                           "achieved": f"{ach} at concurrency {v.concurrency} (whole deployment simulated)"}
        else:
            res.closest = _closest(sweeps, floors, ttft_ms, tpot_ms, percentile)
            _mark_over_budget(res.closest, over_budget)
        why = "no configuration meets " + res.slo_text
        if configs:
            why += " in end-to-end simulation"
            if unchecked:
                why += (f" (the {n_checked} best-predicted of {len(configs)} configurations were re-simulated; {unchecked} left unchecked: "
                        f"at most {VERIFY_MAX} are)")
        elif any(r.stage == "budget" for r in rej):
            why += " within the budgets"
        res.message = why + (f"; closest: {res.closest['configuration']} with {res.closest['achieved']}" if res.closest else "")

    if mix:
        from .melange import plan_mix

        res.mix = plan_mix(ctx, res, rate=rate, budget=budget)

    stats["wall_s"] = time.perf_counter() - t0
    stats["candidates_per_s"] = stats["candidates"] / stats["wall_s"] if stats["wall_s"] > 0 else None
    stats["simulated_candidates_per_s"] = stats["simulated_candidates"] / stats["wall_s"] if stats["wall_s"] > 0 else None
    res.stats = stats
    return res


_MBT_HINT = "give token counts >= 16 separated by commas, e.g. --max-num-batched-tokens 2048,8192"


def _token_budget(v, mbt) -> int:
    """One --max-num-batched-tokens entry as an int >= 16, or a clear error naming it."""
    if isinstance(v, str):
        t = v.strip()
        n = int(t) if re.fullmatch(r"\+?\d+", t) else None
    elif is_int(v):
        n = int(v)
    elif is_number(v) and math.isfinite(v) and float(v).is_integer():
        n = int(v)
    else:
        n = None
    where = "" if str(v).strip() == str(mbt).strip() else f" (in {mbt!r})"
    if n is None:
        raise LlmsimError(f"max_num_batched_tokens entry {v!r}{where} is not a whole number of tokens", hint=_MBT_HINT)
    if n < 16:
        raise LlmsimError(f"max_num_batched_tokens must be token counts >= 16, got {v!r}{where}", hint=_MBT_HINT)
    return n


def _knob_sets(mbt, chunked: bool | None) -> dict[str, tuple]:
    agg, pre = list(AGG_KNOBS), list(PREFILL_KNOBS)
    if mbt is not None:
        if isinstance(mbt, str):
            items = [x for x in mbt.split(",") if x.strip()]
        elif isinstance(mbt, (list, tuple)):
            items = [x for x in mbt if not (isinstance(x, str) and not x.strip())]
        else:
            items = [mbt]
        if not items:
            raise LlmsimError(f"max_num_batched_tokens must be token counts >= 16, got {mbt!r}", hint=_MBT_HINT)
        vals = sorted({_token_budget(v, mbt) for v in items})
        agg = [(v, True) for v in vals] + [(max(vals), False)]
        pre = [(v, True) for v in vals]
    if chunked is True:
        agg = [k for k in agg if k[1]]
    elif chunked is False:
        # aggregated replicas and disaggregated prefill workers alike (decode workers run no prompts)
        agg = [k for k in agg if not k[1]] or [(max(v for v, _ in agg), False)]
        pre = [(max(v for v, _ in pre), False)]
    return {"agg": tuple(agg), "prefill": tuple(pre), "decode": DECODE_KNOBS}


def _knob_text(c: Candidate) -> str:
    return f"mbt {c.max_num_batched_tokens}" if c.chunked_prefill else "no chunking"


def _miss_text(p: Point, ttft: float | None, tpot: float | None, pct: float, role: str) -> str:
    lab = f"p{pct:g}"
    parts = []
    if ttft is not None and role in ("agg", "prefill") and p.ttft_ms is not None and p.ttft_ms > ttft:
        parts.append(f"{lab} TTFT {p.ttft_ms:.1f} ms{_handoff_text(p)} > {ttft:g} ms")
    if tpot is not None and role in ("agg", "decode") and p.tpot_ms is not None and p.tpot_ms > tpot:
        parts.append(f"{lab} TPOT {p.tpot_ms:.2f} ms > {tpot:g} ms")
    if p.incomplete:
        parts.append(f"{p.incomplete} requests never completed")
    where = f"at concurrency {p.concurrency}" if p.concurrency else f"at {p.rate:.2f} req/s"
    return (", ".join(parts) or "misses the SLOs") + f" even {where} (simulated)"


def _mark_over_budget(closest: dict | None, over_budget: dict[str, str]) -> None:
    """A "closest" configuration that meets the SLOs is only closest because of the budgets: say so,
    and which budget it exceeds."""
    if closest is None or closest.get("slo_ratio") is None or closest["slo_ratio"] > 1 + 1e-9:
        return
    why = over_budget.get(closest["configuration"])
    if why:
        closest["over_budget"] = why
        closest["achieved"] += f"; it meets the SLOs but is over budget: {why}"
    else:
        closest["achieved"] += "; it meets the SLOs on its own, but no deployment of it within the budgets could be composed"


def _handoff_text(p: Point) -> str:
    return f" (incl. the {p.ttft_handoff_ms:g} ms front-end hand-off)" if p.ttft_handoff_ms else ""


def _closest(sweeps: list[Sweep], floors, ttft, tpot, pct) -> dict | None:
    lab = f"p{pct:g}"
    best = None
    for sw in sweeps:
        role = sw.candidate.role
        for p in sw.points:
            v = _violation(p, ttft, tpot, role)
            if role != "agg":
                continue
            if best is None or v < best[0]:
                best = (v, sw.candidate.label, p)
    # disaggregated: the best prefill and the best decode worker of a precision / engine
    pre: dict[tuple, tuple[float, str, Point]] = {}
    for sw in sweeps:
        if sw.candidate.role in ("prefill", "decode") and sw.points:
            f = sw.candidate.family
            p = min(sw.points, key=lambda q: _violation(q, ttft, tpot, sw.candidate.role))
            k = (f.prec, f.engine, sw.candidate.role)
            v = _violation(p, ttft, tpot, sw.candidate.role)
            if k not in pre or v < pre[k][0]:
                pre[k] = (v, sw.candidate.label, p)
    for (prec, eng, role), (vp, labp, pp) in list(pre.items()):
        if role != "prefill" or (prec, eng, "decode") not in pre:
            continue
        vd, labd, pd = pre[(prec, eng, "decode")]
        v = max(vp, vd)
        if best is None or v < best[0]:
            best = (v, f"{labp} + {labd}", Point(pd.concurrency, pp.ttft_ms, pd.tpot_ms, pp.ttft_stats_ms, pd.tpot_stats_ms, None,
                                                  pd.output_tokens_per_s, pd.requests_per_s, pd.gpus, pd.avg_power_w, 0.0, 0, 0, False,
                                                  ttft_handoff_ms=pp.ttft_handoff_ms))
    if best is not None:
        v, label, p = best
        ach = []
        if p.ttft_ms is not None:
            ach.append(f"{lab} TTFT {p.ttft_ms:.1f} ms{_handoff_text(p)}")
        if p.tpot_ms is not None:
            ach.append(f"{lab} TPOT {p.tpot_ms:.2f} ms")
        return {"configuration": label, "concurrency": p.concurrency, f"ttft_{lab}_ms": p.ttft_ms, f"tpot_{lab}_ms": p.tpot_ms,
                "slo_ratio": v, "achieved": ", ".join(ach) + f" at concurrency {p.concurrency} (simulated)"}
    if floors:
        v, cand, b = min(floors, key=lambda t: t[0])
        ach = []
        if b.ttft_floor_ms is not None:
            ach.append(f"{lab} TTFT >= {b.ttft_floor_ms:.1f} ms")
        if b.tpot_floor_ms is not None:
            ach.append(f"{lab} TPOT >= {b.tpot_floor_ms:.2f} ms")
        return {"configuration": cand.label, "concurrency": 1, f"ttft_{lab}_ms": b.ttft_floor_ms, f"tpot_{lab}_ms": b.tpot_floor_ms,
                "slo_ratio": v, "achieved": ", ".join(ach) + " even at batch 1 (analytic floor)"}
    return None


# ----------------------------------------------------------------------------- CLI entry


def plan_command(*, model: str, gpus=None, isl: int | None = None, osl: int | None = None, input_dist: str | None = None,
                 output_dist: str | None = None, lengths_from: str | None = None, trace: str | None = None, prefix: int = 0,
                 ttft=None, tpot=None, rate: float | None = None, objective: str | None = None, percentile: float = 90.0,
                 backend_engine: str = "vllm", disagg: bool = True, aggregated: bool = True, precision: str | None = None,
                 max_gpus: int | None = None, budget_usd_per_hour: float | None = None, max_power_w: float | None = None,
                 report=None, jobs: int | None = None, backend: str = "local", seed: int = 0, kernels: str = "auto",
                 mix: bool = False, max_num_batched_tokens=None, chunked_prefill: bool | None = None, max_concurrency: int | None = None,
                 top: int = 10, console=None, as_json: bool = False):
    """What `llmsim plan` runs: plan, optionally write the HTML report, render or return JSON.

    Returns the JSON dict when `as_json`, else the PlanResult (rendered on `console` if given)."""
    top = _check_top(top)  # before the search: a bad --top should not cost a whole plan
    prog = None
    if console is not None and not as_json:
        prog = lambda msg: None  # noqa: E731 - quiet; the result table says everything
    r = plan(model, gpus=gpus, isl=isl, osl=osl, input_dist=input_dist, output_dist=output_dist, lengths_from=lengths_from, trace=trace,
             prefix=prefix, ttft=ttft, tpot=tpot, rate=rate, objective=objective, percentile=percentile, engines=backend_engine,
             disagg=disagg, aggregated=aggregated, precisions=precision, max_gpus=max_gpus, budget_usd_per_hour=budget_usd_per_hour,
             max_power_w=max_power_w, jobs=jobs, backend=backend, seed=seed, kernels=kernels, mix=mix,
             max_num_batched_tokens=max_num_batched_tokens, chunked_prefill=chunked_prefill, max_concurrency=max_concurrency, progress=prog)
    if report is not None:
        r.write_report(report)
    if as_json:
        d = r.to_dict(top=top)
        if report is not None:
            d["report_file"] = str(report)
        return d
    if console is not None:
        r.render(console, top=top)
        if report is not None:
            console.print(f"report written to {report}")
    return r


__all__ = ["PlanResult", "plan", "plan_command", "GIB"]
