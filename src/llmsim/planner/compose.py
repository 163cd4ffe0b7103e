"""From per-replica / per-worker answers to whole deployments, sized for the objective.

Aggregated: a replica sustains `r` requests/s within the SLOs at its best concurrency C. For a
target rate R it takes ceil(R / r) replicas (C clients each); without a rate, as many replicas as
the budgets allow (goodput per GPU does not depend on the count).

Disaggregated (Dynamo / DistServe): a prefill worker sustains `r_p` requests/s within the TTFT
SLO and a decode worker `r_d` within the TPOT SLO (`evaluate.py`). Where the client's first
token comes from the decode worker (vLLM / SGLang P/D proxies; `Backend.disagg_first_token`),
the TTFT a client sees is, for one pairing of prefill and decode worker (`disagg_ttft_parts`):

    the prefill worker's TTFT at its rate (queueing included)
  + the front end's fixed hand-off time (`Backend.disagg_handoff_s`)
  + the KV-cache transfer (`serving.handoff.kv_handoff_s`: the slower end's link, the bytes per
    receiving GPU; prompt tokens at the plan's percentile of the input lengths). Over NVLink
    while the pair fits one NVLink domain; once the worker counts are chosen, a deployment whose
    workers do not all fit it sends every hand-off over the NICs, as `simulate` does
    (`DisaggTtft.for_gpus`)
  + the decode worker's first step: the rest of the iteration it is running when the KV arrives
    (half an iteration on average) and the request's own first iteration, one more where the
    decode loop overlaps scheduling (it sees the request an iteration late) -- iterations of the
    decode worker's mean TPOT at its operating concurrency (DECODE_FIRST_TOKEN_ITERATIONS).

Waiting for a decode slot is not added: at the sized concurrency a decode worker has a free slot
for every client whose request is in prefill. `plan.py` then picks each pairing's prefill
operating point as the largest rate whose prefill TTFT leaves room for the decode side
(`evaluate.prefill_point_for_ttft`). Where the first token comes from the prefill worker
(TRT-LLM), the transfer and the decode step fall in TPOT, which the decode worker's sweep
measures. x prefill and y decode workers
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
`Config.verification_status` says which: 'meets_slo' / 'misses_slo' (verified end to end) or
'unchecked' (predicted from the parts only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from ..layout import Precision
from ..memory.model import kv_bytes_per_token_per_gpu
from ..models.spec import ModelSpec
from ..serving.backends import get_backend
from ..serving.handoff import kv_handoff_s
from .evaluate import Point, Sweep
from .space import Candidate

OBJECTIVES = ("goodput", "cost", "gpus", "energy")
# decode iterations between a request's KV arriving at a decode worker and its first token there:
# the rest of the running iteration (half of one on average) and the request's own
DECODE_FIRST_TOKEN_ITERATIONS = 1.5
_STATUS_RANK = {"meets_slo": 0, "unchecked": 1, "misses_slo": 2}


@dataclass(frozen=True)
class DisaggTtft:
    """What a pairing of prefill and decode worker adds to the prefill worker's TTFT (its own
    TTFT at its rate, the front end's hand-off time included, as `evaluate.point_from_result`
    reports it) before the client sees the first token."""

    first_token_from: str  # 'decode' | 'prefill' (`Backend.disagg_first_token`)
    kv_transfer_ms: float  # 0 where the first token comes from the prefill worker
    decode_first_step_ms: float  # ditto
    # the transfer once the deployment's workers no longer fit one NVLink domain of
    # `nvlink_domain_gpus` GPUs: over the NICs, as `simulate` then sends every hand-off (equal to
    # `kv_transfer_ms` where the pair alone already goes over them)
    kv_transfer_nic_ms: float = 0.0
    nvlink_domain_gpus: int = 0

    @property
    def extra_ms(self) -> float:
        return self.kv_transfer_ms + self.decode_first_step_ms

    def for_gpus(self, total_gpus: int) -> "DisaggTtft":
        """These parts for a deployment of `total_gpus` GPUs in all (prefill and decode workers):
        the hand-offs stay on NVLink only while every worker fits the domain (`serving.simulate._handoff_parts`)."""
        if total_gpus <= self.nvlink_domain_gpus:
            return self
        return replace(self, kv_transfer_ms=self.kv_transfer_nic_ms)


def disagg_ttft_parts(model: ModelSpec, prefill: Candidate, decode: Candidate, decode_point: Point, kv_tokens: int) -> DisaggTtft:
    """The decode side of a disaggregated TTFT (module docstring): the KV transfer of `kv_tokens`
    tokens from a `prefill` worker to a `decode` worker (`kv_handoff_s`, per-GPU KV bytes as
    `simulate` computes them) and DECODE_FIRST_TOKEN_ITERATIONS (+1 with overlap scheduling)
    decode iterations of `decode_point`'s mean TPOT; both 0 where the first token comes from the
    prefill worker."""
    pf, df = prefill.family, decode.family
    be = get_backend(df.engine)
    if be.disagg_first_token != "decode":
        return DisaggTtft(be.disagg_first_token, 0.0, 0.0)
    src_kv = kv_bytes_per_token_per_gpu(model, pf.par, Precision.make(pf.prec.weight, None, pf.prec.kv))
    dst_kv = kv_bytes_per_token_per_gpu(model, df.par, Precision.make(df.prec.weight, None, df.prec.kv))
    args = (int(kv_tokens), pf.gpu.spec, pf.num_gpus, src_kv, df.gpu.spec, df.num_gpus, dst_kv)
    domain = pf.gpu.spec.nvlink_domain_size
    xfer_s = kv_handoff_s(*args)  # one worker of each (the counts come later: `for_gpus`)
    nic_s = kv_handoff_s(*args, domain_gpus=domain + 1)  # workers past the domain: over the NICs
    it_ms = decode_point.tpot_stats_ms.get("mean") if decode_point.tpot_stats_ms else None
    if it_ms is None:
        it_ms = decode_point.tpot_ms or 0.0
    iters = DECODE_FIRST_TOKEN_ITERATIONS + (1.0 if be.overlaps("decode", df.par) else 0.0)
    return DisaggTtft("decode", xfer_s * 1e3, iters * float(it_ms), nic_s * 1e3, domain)


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
    power_w: float = 0.0  # mean draw of all the GPUs together, W
    # disaggregated: the prefill worker's operating point (None: prefill.best) and what the
    # decode side adds to its TTFT in `ttft_ms` (`disagg_ttft_parts`)
    prefill_point: Point | None = None
    kv_transfer_ms: float = 0.0
    decode_first_step_ms: float = 0.0
    # filled by plan.py after an end-to-end simulation
    verified: Point | None = None
    verified_meets: bool | None = None
    note: str = ""
    engine_concurrency: int | None = None  # max_num_seqs per engine when lowered after end-to-end simulation
    # the load the plan was asked to serve (--rate, requests/s; None: sized by the budgets) and the
    # workload's mean output length: cost and energy per token are at that load, not at capacity
    target_requests_per_s: float | None = None
    mean_osl: float = 0.0

    # ------------------------------------------------------------------ shape
    # the sweeps the mode requires: `compose_agg` sets `agg` (with a best point), `_disagg_config`
    # sets `prefill` and `decode` (the decode sweep with a best point)
    @property
    def agg_sweep(self) -> Sweep:
        assert self.agg is not None, "an aggregated configuration has its replica's sweep"
        return self.agg

    @property
    def prefill_sweep(self) -> Sweep:
        assert self.prefill is not None, "a disaggregated configuration has its prefill worker's sweep"
        return self.prefill

    @property
    def decode_sweep(self) -> Sweep:
        assert self.decode is not None, "a disaggregated configuration has its decode worker's sweep"
        return self.decode

    @property
    def parts(self) -> list[tuple[Candidate, int]]:
        if self.mode == "aggregated":
            return [(self.agg_sweep.candidate, self.replicas)]
        return [(self.prefill_sweep.candidate, self.prefill_workers), (self.decode_sweep.candidate, self.decode_workers)]

    @property
    def prefill_op(self) -> Point | None:
        """The prefill worker's operating point (rate, TTFT) the deployment is sized with."""
        if self.mode == "aggregated":
            return None
        return self.prefill_point if self.prefill_point is not None else self.prefill_sweep.best

    @property
    def verification_status(self) -> str:
        """'meets_slo' / 'misses_slo': re-simulated end to end; 'unchecked': predicted from its parts only."""
        if self.verified is None:
            return "unchecked"
        return "meets_slo" if self.verified_meets else "misses_slo"

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
        return _best(self.agg_sweep if self.mode == "aggregated" else self.decode_sweep).concurrency

    @property
    def engine(self) -> str:
        return self.parts[0][0].family.engine

    @property
    def label(self) -> str:
        if self.mode == "aggregated":
            c = self.agg_sweep.candidate
            return f"{self.replicas}x [{c.family.label}, {_knobs(c)}, max_num_seqs {self.per_engine_concurrency}]"
        p, d = self.prefill_sweep.candidate, self.decode_sweep.candidate
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
            c = self.agg_sweep.candidate
            f = c.family
            return f"{self.replicas}x {f.gpu.name} {lay(c)} {f.prec.label} {f.engine} {kn(c)} seqs{self.per_engine_concurrency}"
        p, d = self.prefill_sweep.candidate, self.decode_sweep.candidate
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
    def served_output_tokens_per_s(self) -> float:
        """Output tokens/s the deployment produces under the plan's load: the target rate's
        (rate x mean output length, at most the capacity) when a rate was asked for, else its
        capacity (`output_tokens_per_s`). A deployment sized up to ceil(rate / per-replica rate)
        replicas has spare capacity it is paid for but does not use."""
        cap = self.metric("output_tokens_per_s")
        if self.target_requests_per_s is None or not self.mean_osl:
            return cap
        return min(cap, self.target_requests_per_s * self.mean_osl)

    @property
    def served_power_w(self) -> float:
        """Mean draw of all the GPUs under the plan's load: idle power plus the busy part scaled by
        the load's share of the capacity (as a pool's busy fraction scales it)."""
        full = self.metric("power_w")
        cap = self.metric("output_tokens_per_s")
        if self.target_requests_per_s is None or not cap:
            return full
        idle = sum(n * c.family.num_gpus * c.family.gpu.spec.idle_power_w for c, n in self.parts)
        return idle + max(0.0, full - idle) * min(1.0, self.served_output_tokens_per_s / cap)

    @property
    def usd_per_million_output_tokens(self) -> float:
        """$ per million output tokens at the plan's load (`served_output_tokens_per_s`)."""
        tps = self.served_output_tokens_per_s
        return self.usd_per_hour / 3600.0 / tps * 1e6 if tps > 0 else math.inf

    @property
    def energy_j_per_output_token(self) -> float:
        """J per output token at the plan's load (`served_power_w` / `served_output_tokens_per_s`)."""
        tps = self.served_output_tokens_per_s
        return self.served_power_w / tps if tps > 0 else math.inf

    def objective_key(self, objective: str) -> tuple:
        """Sort key (smaller is better) for an objective. Ties (e.g. GPUs priced at 0) go to the
        deployment with fewer GPUs, then to more throughput."""
        tput = self.metric("output_tokens_per_s")
        if objective == "goodput":
            return (-round(self.output_tokens_per_s_per_gpu, 6), -tput, self.num_gpus)
        if objective == "cost":
            return (round(self.usd_per_million_output_tokens, 9), self.num_gpus, -tput)
        if objective == "energy":
            return (round(self.energy_j_per_output_token, 9), self.num_gpus, -tput)
        if objective == "gpus":
            return (self.num_gpus, round(self.usd_per_hour, 6), -tput)
        raise ValueError(objective)

    def rank_key(self, objective: str) -> tuple:
        """Order of the ranked list: verified-passing first, then unchecked (predicted), then
        verified-failing; by the objective within each."""
        return (_STATUS_RANK[self.verification_status], *self.objective_key(objective))

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
            # at the plan's load: the target rate's tokens when --rate was given, else capacity
            "served_output_tokens_per_s": self.served_output_tokens_per_s,
            "usd_per_million_output_tokens": self.usd_per_million_output_tokens,
            "energy_j_per_output_token": self.energy_j_per_output_token,
            "total_power_w": self.metric("power_w"),
            "avg_power_per_gpu_w": self.metric("power_w") / self.num_gpus if self.num_gpus else None,
            "avg_power_w": self.metric("power_w"),  # legacy key: all GPUs together (= total_power_w)
            "provisioned_power_w": self.tdp_w,
            "verified_by_simulation": self.verified is not None,
            "meets_slo": self.verified_meets,
            # 'unchecked': the numbers above are predicted from the parts, not re-simulated
            "verification_status": self.verification_status,
        }
        if self.mode == "aggregated":
            c = self.agg_sweep.candidate
            d["replicas"] = self.replicas
            d["replica"] = {**c.family.layout_dict(), **c.knobs_dict(), "max_num_seqs": self.per_engine_concurrency}
        else:
            pc, dc = self.prefill_sweep.candidate, self.decode_sweep.candidate
            d["prefill_workers"] = self.prefill_workers
            op = self.prefill_op
            assert op is not None, "a disaggregated configuration has its prefill operating point"
            d["prefill"] = {**pc.family.layout_dict(), **pc.knobs_dict(), "requests_per_s_per_worker": op.rate,
                            f"ttft_{p}_ms_per_worker": op.ttft_ms}
            d[f"predicted_ttft_{p}_ms_parts"] = {
                "prefill_worker_ms": None if op.ttft_ms is None else op.ttft_ms - op.ttft_handoff_ms,
                "frontend_handoff_ms": op.ttft_handoff_ms, "kv_transfer_ms": self.kv_transfer_ms,
                "decode_first_step_ms": self.decode_first_step_ms, "total_ms": self.ttft_ms}
            d["decode_workers"] = self.decode_workers
            bd = _best(self.decode_sweep)
            d["decode"] = {**dc.family.layout_dict(), "max_num_seqs": self.per_engine_concurrency,
                           "requests_per_s_per_worker": bd.requests_per_s, f"tpot_{p}_ms_per_worker": bd.tpot_ms}
        if self.verified is not None:
            d["verification"] = self.verified.to_dict()
        if self.note:
            d["note"] = self.note
        return d


def _best(sw: Sweep) -> Point:
    """The best point of a sweep a configuration was composed from (`compose_agg` and
    `compose_disagg` compose only sweeps that have one)."""
    assert sw.best is not None, "a composed sweep has a best point"
    return sw.best


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
    cfg.target_requests_per_s, cfg.mean_osl = rate, mean_osl
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


def _disagg_config(p: Sweep, d: Sweep, x: int, y: int, mean_osl: float, prefill_point: Point | None = None,
                   ttft: DisaggTtft | None = None) -> Config:
    bp, bd = prefill_point if prefill_point is not None else p.best, d.best
    # `compose_disagg` checked both points and the prefill rate
    assert bp is not None and bp.rate is not None and bd is not None
    rate = min(x * bp.rate, y * bd.requests_per_s)
    cfg = Config("disaggregated", prefill=p, decode=d, prefill_workers=x, decode_workers=y, prefill_point=prefill_point)
    cfg.requests_per_s = rate
    cfg.output_tokens_per_s = rate * mean_osl
    if ttft is not None:
        ttft = ttft.for_gpus(x * p.candidate.family.num_gpus + y * d.candidate.family.num_gpus)
        cfg.kv_transfer_ms, cfg.decode_first_step_ms = ttft.kv_transfer_ms, ttft.decode_first_step_ms
    cfg.ttft_ms = None if bp.ttft_ms is None else bp.ttft_ms + cfg.kv_transfer_ms + cfg.decode_first_step_ms
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
                   max_workers: int = 256, *, prefill_point: Point | None = None,
                   ttft: DisaggTtft | None = None) -> tuple[Config | None, str | None]:
    """Worker counts for prefill sweep `p` (at `prefill_point`, default its best) and decode sweep
    `d`; `ttft`: what the decode side adds to the predicted TTFT (`disagg_ttft_parts`)."""
    bp, bd = prefill_point if prefill_point is not None else p.best, d.best
    if bp is None or bd is None or not bp.rate or bd.requests_per_s <= 0:
        return None, "a pool meets no SLO"
    gp, gd = p.candidate.family, d.candidate.family
    if rate is not None:
        x = max(1, math.ceil(rate / bp.rate - 1e-9))
        y = max(1, math.ceil(rate / bd.requests_per_s - 1e-9))
        cfg = _disagg_config(p, d, x, y, mean_osl, prefill_point, ttft)
        cfg.target_requests_per_s, cfg.mean_osl = rate, mean_osl
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
            cfg = _disagg_config(p, d, x, y, mean_osl, prefill_point, ttft)
            why = budget.check(cfg.gpus_by_type, cfg.usd_per_hour, cfg.tdp_w)
            if why:
                why_last = why
                continue
            if best is None or cfg.objective_key(objective) < best.objective_key(objective):
                best = cfg
    if best is None:
        return None, why_last or "no worker counts fit the budgets"
    return best, None
