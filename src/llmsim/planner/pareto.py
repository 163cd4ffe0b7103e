"""Pareto frontiers of the simulated operating points.

Two views, as deployment planners draw them:

- throughput per GPU (output tokens/s/GPU, up) against interactivity (output tokens/s per user
  = 1000 / mean TPOT, right): every simulated concurrency of every aggregated candidate, and for
  disaggregated serving every decode-worker concurrency paired with the prefill worker of the
  same engine and precision that needs the fewest GPUs per request/s (prefill GPUs counted in the
  fractional ratio the decode rate needs, as in the DistServe/AIConfigurator accounting);
- cost against latency: $ per million output tokens (down) against TPOT at the plan's percentile
  (left).

A point is on a frontier when no other point is at least as good on both axes and better on one.
"""

from __future__ import annotations

from dataclasses import dataclass

from .evaluate import Point, Sweep


@dataclass
class OpPoint:
    """One operating point of one configuration family, normalised per GPU."""

    family: str
    mode: str
    concurrency: int
    output_tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float | None
    ttft_ms: float | None
    tpot_ms: float | None
    usd_per_million_output_tokens: float | None
    meets_slo: bool

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def frontier(points: list, x: str, y: str, x_better: str = "max", y_better: str = "max") -> list:
    """Points not dominated on (x, y); `*_better` is 'max' or 'min'. Returned sorted by x."""
    sx = 1.0 if x_better == "max" else -1.0
    sy = 1.0 if y_better == "max" else -1.0
    pts = [p for p in points if getattr(p, x) is not None and getattr(p, y) is not None]
    pts.sort(key=lambda p: (-sx * getattr(p, x), -sy * getattr(p, y)))
    out, best_y = [], None
    for p in pts:
        v = sy * getattr(p, y)
        if best_y is None or v > best_y:
            out.append(p)
            best_y = v
    out.sort(key=lambda p: getattr(p, x))
    return out


def _usd(gpu_price_per_hour: float, gpus: float, tok_s: float) -> float | None:
    return gpu_price_per_hour * gpus / 3600.0 / tok_s * 1e6 if tok_s > 0 else None


def agg_points(sweeps: list[Sweep]) -> list[OpPoint]:
    out = []
    for sw in sweeps:
        if sw.candidate.role != "agg":
            continue
        fam = sw.candidate.family
        for p in sw.points:
            out.append(OpPoint(sw.candidate.label, "aggregated", p.concurrency, p.output_tokens_per_s_per_gpu, p.tokens_per_s_per_user,
                               p.ttft_ms, p.tpot_ms, _usd(fam.gpu.price_per_hour_usd, p.gpus, p.output_tokens_per_s), p.meets))
    return out


def disagg_points(sweeps: list[Sweep], mean_osl: float, ttft_extra_ms=None, ttft_ms: float | None = None) -> list[OpPoint]:
    """`ttft_extra_ms(prefill candidate, decode candidate, decode point)`: what the decode side adds
    to the client's TTFT (KV transfer, first decode steps: `compose.disagg_ttft_parts`), so a
    point's TTFT and its SLO verdict are the deployment's, not the prefill worker's alone;
    `ttft_ms`: the TTFT target."""
    prefills: dict[tuple, Sweep] = {}
    for sw in sweeps:
        if sw.candidate.role == "prefill" and sw.best is not None and sw.best.rate:
            f = sw.candidate.family
            key = (f.prec, f.engine)
            # GPU-cost of one request/s of prefill capacity
            cost = f.num_gpus * f.gpu.price_per_hour_usd / sw.best.rate
            if key not in prefills or cost < _pcost(prefills[key]):
                prefills[key] = sw
    out = []
    for sw in sweeps:
        if sw.candidate.role != "decode":
            continue
        f = sw.candidate.family
        ps = prefills.get((f.prec, f.engine))
        if ps is None:
            continue
        pf, bp = ps.candidate.family, ps.best
        assert bp is not None and bp.rate  # `prefills` holds only sweeps with a best rate
        for d in sw.points:
            r = d.requests_per_s
            if r <= 0:
                continue
            prefill_gpus = pf.num_gpus * r / bp.rate
            gpus = f.num_gpus + prefill_gpus
            tok = r * mean_osl
            usd = (f.num_gpus * f.gpu.price_per_hour_usd + prefill_gpus * pf.gpu.price_per_hour_usd) / 3600.0 / tok * 1e6
            extra = ttft_extra_ms(ps.candidate, sw.candidate, d) if ttft_extra_ms is not None else 0.0
            ttft = None if bp.ttft_ms is None else bp.ttft_ms + extra
            meets = d.meets and bp.meets and (ttft_ms is None or (ttft is not None and ttft <= ttft_ms))
            out.append(OpPoint(f"prefill {pf.label} + decode {f.label}", "disaggregated", d.concurrency, tok / gpus, d.tokens_per_s_per_user,
                               ttft, d.tpot_ms, usd, meets))
    return out


def _pcost(sw: Sweep) -> float:
    f = sw.candidate.family
    assert sw.best is not None and sw.best.rate  # only called on sweeps kept in `prefills`
    return f.num_gpus * f.gpu.price_per_hour_usd / sw.best.rate


def frontiers(sweeps: list[Sweep], mean_osl: float, ttft_extra_ms=None, ttft_ms: float | None = None) -> dict[str, list[OpPoint]]:
    pts = agg_points(sweeps) + disagg_points(sweeps, mean_osl, ttft_extra_ms, ttft_ms)
    return {
        "points": pts,
        "throughput_vs_interactivity": frontier(pts, "tokens_per_s_per_user", "output_tokens_per_s_per_gpu", "max", "max"),
        "cost_vs_latency": frontier(pts, "tpot_ms", "usd_per_million_output_tokens", "min", "min"),
    }


__all__ = ["OpPoint", "Point", "agg_points", "disagg_points", "frontier", "frontiers"]
