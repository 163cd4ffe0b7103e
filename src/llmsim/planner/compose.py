"""From per-replica / per-worker answers to whole deployments, sized for the objective.

Aggregated: a replica sustains `r` requests/s within the SLOs at its best concurrency C. For a
target rate R it takes ceil(R / r) replicas (C clients each); without a rate, as many replicas as
the budgets allow (goodput per GPU does not depend on the count).

Disaggregated (Dynamo / DistServe): a prefill worker sustains `r_p` requests/s within the TTFT
SLO (its TTFT plus the backend's hand-off time, `Backend.disagg_handoff_s`, where the client's
first token comes from the decode worker) and a decode worker `r_d` within the TPOT SLO (`evaluate.py`). x prefill and y decode workers
serve min(x r_p, y r_d) requests/s on x g_p + y g_d GPUs. For a rate R: x = ceil(R / r_p),
y = ceil(R / r_d). Without a rate every (x, y) within the budgets is scored by the objective
(goodput per GPU, $ per token, energy per token; ties go to the larger deployment). Prefill and
decode pools may use different GPU types but share the engine and precision (one model
checkpoint, one KV format).

Budgets: GPUs per type (the `--gpus` counts), total GPUs, $/hour (catalog or given prices),
and provisioned power (GPUs x TDP).

Predicted metrics of a composition come from its parts (TTFT of the prefill worker at its rate,
TPOT of the decode worker at its concurrency, throughput = the bottleneck pool); `plan.py`
re-simulates the chosen deployments end to end and keeps the verified numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .evaluate import Point, Sweep
from .space import Candidate

OBJECTIVES = ("goodput", "cost", "gpus", "energy")


@dataclass
class Budget:
    max_gpus: int | None = None
    usd_per_hour: float | None = None
    power_w: float | None = None
    per_type: dict[str, int] = field(default_factory=dict)

    def check(self, gpus_by_type: dict[str, int], usd_per_hour: float, tdp_w: float) -> str | None:
        """None if within every budget, else which one is exceeded."""
        for name, n in gpus_by_type.items():
            cap = self.per_type.get(name)
            if cap is not None and n > cap:
                return f"needs {n} {name} GPUs, at most {cap} available"
        total = sum(gpus_by_type.values())
        if self.max_gpus is not None and total > self.max_gpus:
            return f"needs {total} GPUs > --max-gpus {self.max_gpus}"
        if self.usd_per_hour is not None and usd_per_hour > self.usd_per_hour * (1 + 1e-9):
            return f"costs ${usd_per_hour:,.2f}/h > budget ${self.usd_per_hour:,.2f}/h"
        if self.power_w is not None and tdp_w > self.power_w * (1 + 1e-9):
            return f"draws up to {tdp_w:,.0f} W (GPUs x TDP) > power budget {self.power_w:,.0f} W"
        return None


@dataclass
class Config:
    """A whole deployment: aggregated replicas, or prefill + decode worker pools."""

    mode: str  # 'aggregated' | 'disaggregated'
    agg: Sweep | None = None
    prefill: Sweep | None = None
    decode: Sweep | None = None
    replicas: int = 0
    prefill_workers: int = 0
    decode_workers: int = 0
    # predicted from the parts
    requests_per_s: float = 0.0
    output_tokens_per_s: float = 0.0
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    tpot_mean_ms: float | None = None
    power_w: float = 0.0  # mean draw
    # filled by plan.py after an end-to-end simulation
    verified: Point | None = None
    verified_meets: bool | None = None
    note: str = ""
    engine_concurrency: int | None = None  # max_num_seqs per engine when lowered after end-to-end simulation

    # ------------------------------------------------------------------ shape
    @property
    def parts(self) -> list[tuple[Candidate, int]]:
        if self.mode == "aggregated":
            return [(self.agg.candidate, self.replicas)]
        return [(self.prefill.candidate, self.prefill_workers), (self.decode.candidate, self.decode_workers)]

    @property
    def gpus_by_type(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for cand, n in self.parts:
            out[cand.family.gpu.name] = out.get(cand.family.gpu.name, 0) + n * cand.family.num_gpus
        return out

    @property
    def num_gpus(self) -> int:
        return sum(self.gpus_by_type.values())

    @property
    def usd_per_hour(self) -> float:
        return sum(n * c.family.num_gpus * c.family.gpu.price_per_hour_usd for c, n in self.parts)

    @property
    def tdp_w(self) -> float:
        return sum(n * c.family.num_gpus * c.family.gpu.tdp_w for c, n in self.parts)

    @property
    def concurrency(self) -> int:
        """Clients (= max concurrency of a benchmark) the deployment is sized for."""
        return (self.replicas if self.mode == "aggregated" else self.decode_workers) * self.per_engine_concurrency

    @property
    def per_engine_concurrency(self) -> int:
        if self.engine_concurrency is not None:
            return self.engine_concurrency
        return self.agg.best.concurrency if self.mode == "aggregated" else self.decode.best.concurrency

    @property
    def engine(self) -> str:
        return self.parts[0][0].family.engine

    @property
    def label(self) -> str:
        if self.mode == "aggregated":
            c = self.agg.candidate
            return f"{self.replicas}x [{c.family.label}, {_knobs(c)}, max_num_seqs {self.per_engine_concurrency}]"
        p, d = self.prefill.candidate, self.decode.candidate
        return (f"{self.prefill_workers}x prefill [{p.family.label}, {_knobs(p)}] + {self.decode_workers}x decode "
                f"[{d.family.label}, max_num_seqs {self.per_engine_concurrency}]")

    @property
    def short_label(self) -> str:
        """Compact form for narrow tables: '8x h200-sxm tp4 fp8 vllm mbt4096 seqs8'."""
        def lay(c: Candidate) -> str:
            p = c.family.par
            return (f"tp{p.tp}" + (f"pp{p.pp}" if p.pp > 1 else "") + (f"dp{p.dp}" if p.dp > 1 else "") + (f"ep{p.ep}" if p.ep > 1 else ""))

        def kn(c: Candidate) -> str:
            return f"mbt{c.max_num_batched_tokens}" if c.chunked_prefill else "nochunk"

        if self.mode == "aggregated":
            c = self.agg.candidate
            f = c.family
            return f"{self.replicas}x {f.gpu.name} {lay(c)} {f.prec.label} {f.engine} {kn(c)} seqs{self.per_engine_concurrency}"
        p, d = self.prefill.candidate, self.decode.candidate
        pg = p.family.gpu.name
        dg = "" if d.family.gpu.name == pg else f"{d.family.gpu.name} "
        return (f"{self.prefill_workers}P {pg} {lay(p)} {kn(p)} + {self.decode_workers}D {dg}{lay(d)} seqs{self.per_engine_concurrency} "
                f"{d.family.prec.label} {d.family.engine}")

    # ------------------------------------------------------------------ metrics (verified when available)
    def metric(self, name: str):
        v = self.verified
        if v is not None:
            if name == "output_tokens_per_s":
                return v.output_tokens_per_s
            if name == "requests_per_s":
                return v.requests_per_s
            if name == "ttft_ms":
                return v.ttft_ms
            if name == "tpot_ms":
                return v.tpot_ms
            if name == "tpot_mean_ms":
                return v.tpot_stats_ms.get("mean")
            if name == "power_w":
                return v.avg_power_w * self.num_gpus
        return getattr(self, name)

    @property
    def output_tokens_per_s_per_gpu(self) -> float:
        return self.metric("output_tokens_per_s") / self.num_gpus

    @property
    def tokens_per_s_per_user(self) -> float | None:
        m = self.metric("tpot_mean_ms")
        return 1e3 / m if m else None

    @property
    def usd_per_million_output_tokens(self) -> float:
        tps = self.metric("output_tokens_per_s")
        return self.usd_per_hour / 3600.0 / tps * 1e6 if tps > 0 else math.inf

    @property
    def energy_j_per_output_token(self) -> float:
        tps = self.metric("output_tokens_per_s")
        return self.metric("power_w") / tps if tps > 0 else math.inf

    def objective_key(self, objective: str) -> tuple:
        """Sort key (smaller is better) for an objective."""
        tput = self.metric("output_tokens_per_s")
        if objective == "goodput":
            return (-round(self.output_tokens_per_s_per_gpu, 6), -tput, self.num_gpus)
        if objective == "cost":
            return (round(self.usd_per_million_output_tokens, 9), -tput)
        if objective == "energy":
            return (round(self.energy_j_per_output_token, 9), -tput)
        if objective == "gpus":
            return (self.num_gpus, round(self.usd_per_hour, 6), -tput)
        raise ValueError(objective)

    def to_dict(self, percentile: float) -> dict:
        p = f"p{percentile:g}"
        d = {
            "mode": self.mode,
            "label": self.label,
            "engine": self.engine,
            "num_gpus": self.num_gpus,
            "gpus_by_type": self.gpus_by_type,
            "concurrency": self.concurrency,
            "requests_per_s": self.metric("requests_per_s"),
            "output_tokens_per_s": self.metric("output_tokens_per_s"),
            "output_tokens_per_s_per_gpu": self.output_tokens_per_s_per_gpu,
            "tokens_per_s_per_user": self.tokens_per_s_per_user,
            f"ttft_{p}_ms": self.metric("ttft_ms"),
            f"tpot_{p}_ms": self.metric("tpot_ms"),
            "tpot_mean_ms": self.metric("tpot_mean_ms"),
            "usd_per_hour": self.usd_per_hour,
            "usd_per_million_output_tokens": self.usd_per_million_output_tokens,
            "energy_j_per_output_token": self.energy_j_per_output_token,
            "avg_power_w": self.metric("power_w"),
            "provisioned_power_w": self.tdp_w,
            "verified_by_simulation": self.verified is not None,
            "meets_slo": self.verified_meets,
        }
        if self.mode == "aggregated":
            c = self.agg.candidate
            d["replicas"] = self.replicas
            d["replica"] = {**c.family.layout_dict(), **c.knobs_dict(), "max_num_seqs": self.per_engine_concurrency}
        else:
            pc, dc = self.prefill.candidate, self.decode.candidate
            d["prefill_workers"] = self.prefill_workers
            d["prefill"] = {**pc.family.layout_dict(), **pc.knobs_dict(), "requests_per_s_per_worker": self.prefill.best.rate,
                            f"ttft_{p}_ms_per_worker": self.prefill.best.ttft_ms}
            d["decode_workers"] = self.decode_workers
            d["decode"] = {**dc.family.layout_dict(), "max_num_seqs": self.per_engine_concurrency,
                           "requests_per_s_per_worker": self.decode.best.requests_per_s, f"tpot_{p}_ms_per_worker": self.decode.best.tpot_ms}
        if self.verified is not None:
            d["verification"] = self.verified.to_dict()
        if self.note:
            d["note"] = self.note
        return d


def _knobs(c: Candidate) -> str:
    return f"max_num_batched_tokens {c.max_num_batched_tokens}" if c.chunked_prefill else "chunked prefill off"


# ----------------------------------------------------------------------------- aggregated


def compose_agg(sw: Sweep, rate: float | None, budget: Budget, mean_osl: float) -> tuple[Config | None, str | None]:
    b = sw.best
    fam = sw.candidate.family
    g = fam.num_gpus
    if b is None or b.requests_per_s <= 0:
        return None, "no concurrency meets the SLOs"
    if rate is not None:
        n = max(1, math.ceil(rate / b.requests_per_s - 1e-9))
    else:
        n = _max_count(budget, fam.gpu.name, g, fam.gpu.price_per_hour_usd, fam.gpu.tdp_w)
        if n < 1:
            n = 1
    cfg = Config("aggregated", agg=sw, replicas=n)
    why = budget.check(cfg.gpus_by_type, cfg.usd_per_hour, cfg.tdp_w)
    if why:
        return None, why
    cfg.requests_per_s = n * b.requests_per_s
    cfg.output_tokens_per_s = n * b.output_tokens_per_s
    cfg.ttft_ms, cfg.tpot_ms = b.ttft_ms, b.tpot_ms
    cfg.tpot_mean_ms = b.tpot_stats_ms.get("mean")
    cfg.power_w = n * g * b.avg_power_w
    return cfg, None


def _max_count(budget: Budget, gpu: str, g: int, price: float, tdp: float) -> int:
    n = 10**6
    cap = budget.per_type.get(gpu)
    if cap is not None:
        n = min(n, cap // g)
    if budget.max_gpus is not None:
        n = min(n, budget.max_gpus // g)
    if budget.usd_per_hour is not None and price > 0:
        n = min(n, int(budget.usd_per_hour * (1 + 1e-9) // (price * g)))
    if budget.power_w is not None and tdp > 0:
        n = min(n, int(budget.power_w * (1 + 1e-9) // (tdp * g)))
    return n if n < 10**6 else 1


# ----------------------------------------------------------------------------- disaggregated


def _disagg_config(p: Sweep, d: Sweep, x: int, y: int, mean_osl: float) -> Config:
    bp, bd = p.best, d.best
    rate = min(x * bp.rate, y * bd.requests_per_s)
    cfg = Config("disaggregated", prefill=p, decode=d, prefill_workers=x, decode_workers=y)
    cfg.requests_per_s = rate
    cfg.output_tokens_per_s = rate * mean_osl
    cfg.ttft_ms = bp.ttft_ms
    cfg.tpot_ms, cfg.tpot_mean_ms = bd.tpot_ms, bd.tpot_stats_ms.get("mean")
    # pools draw power in proportion to how busy the bottleneck leaves them
    gp, gd = p.candidate.family, d.candidate.family
    up = min(1.0, rate / (x * bp.rate)) if bp.rate else 0.0
    ud = min(1.0, rate / (y * bd.requests_per_s)) if bd.requests_per_s else 0.0
    cfg.power_w = (x * gp.num_gpus * _scaled_power(bp.avg_power_w, gp.gpu, up) + y * gd.num_gpus * _scaled_power(bd.avg_power_w, gd.gpu, ud))
    return cfg


def _scaled_power(p: float, gpu, util: float) -> float:
    idle = gpu.spec.idle_power_w
    return idle + (p - idle) * util


def compose_disagg(p: Sweep, d: Sweep, rate: float | None, budget: Budget, mean_osl: float, objective: str,
                   max_workers: int = 256) -> tuple[Config | None, str | None]:
    bp, bd = p.best, d.best
    if bp is None or bd is None or not bp.rate or bd.requests_per_s <= 0:
        return None, "a pool meets no SLO"
    gp, gd = p.candidate.family, d.candidate.family
    if rate is not None:
        x = max(1, math.ceil(rate / bp.rate - 1e-9))
        y = max(1, math.ceil(rate / bd.requests_per_s - 1e-9))
        cfg = _disagg_config(p, d, x, y, mean_osl)
        why = budget.check(cfg.gpus_by_type, cfg.usd_per_hour, cfg.tdp_w)
        return (None, why) if why else (cfg, None)
    best: Config | None = None
    why_last = None
    xmax = min(max_workers, _max_count(budget, gp.gpu.name, gp.num_gpus, gp.gpu.price_per_hour_usd, gp.gpu.tdp_w))
    ymax = min(max_workers, _max_count(budget, gd.gpu.name, gd.num_gpus, gd.gpu.price_per_hour_usd, gd.gpu.tdp_w))
    for y in range(1, ymax + 1):
        # prefill workers to keep up with y decode workers: no fewer than needed, one less allowed
        need = y * bd.requests_per_s / bp.rate
        for x in sorted({max(1, math.floor(need)), max(1, math.ceil(need - 1e-9))}):
            if x > xmax:
                continue
            cfg = _disagg_config(p, d, x, y, mean_osl)
            why = budget.check(cfg.gpus_by_type, cfg.usd_per_hour, cfg.tdp_w)
            if why:
                why_last = why
                continue
            if best is None or cfg.objective_key(objective) < best.objective_key(objective):
                best = cfg
    if best is None:
        return None, why_last or "no worker counts fit the budgets"
    return best, None
